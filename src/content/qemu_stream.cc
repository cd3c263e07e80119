// The QEMU 7.2 precopy stream scanner (qemu_stream.h): a byte-at-a-time state machine over
// fixed-size fields, with page payloads and skipped blobs passed through in runs.
#include "vandra/content/qemu_stream.h"

#include <algorithm>
#include <cstdio>

#include "bytes.h"

namespace vandra::content {
namespace {

constexpr uint32_t kMagic = 0x5145564d;  // "QEVM"
constexpr uint32_t kVersion = 3;
constexpr size_t kMaxConfigName = 256;
constexpr uint32_t kMaxCapabilities = 64;
constexpr uint32_t kMaxCompressed = 1 << 20;

// Section types (savevm.c).
constexpr uint8_t kEof = 0x00;
constexpr uint8_t kStart = 0x01;
constexpr uint8_t kPart = 0x02;
constexpr uint8_t kEnd = 0x03;
constexpr uint8_t kFull = 0x04;
constexpr uint8_t kSubsection = 0x05;
constexpr uint8_t kVmDescription = 0x06;
constexpr uint8_t kConfiguration = 0x07;
constexpr uint8_t kCommand = 0x08;
constexpr uint8_t kFooter = 0x7e;

// RAM record flags (ram.c); the page offset is in the bits above them.
constexpr uint64_t kFlagMask = 0xfff;
constexpr uint64_t kZero = 0x02;
constexpr uint64_t kMemSize = 0x04;
constexpr uint64_t kPage = 0x08;
constexpr uint64_t kEos = 0x10;
constexpr uint64_t kContinue = 0x20;
constexpr uint64_t kXbzrle = 0x40;
constexpr uint64_t kCompressPage = 0x100;

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

void QemuStreamScanner::expect(Step s, size_t n) {
  step_ = s;
  want_ = n;
  field_.clear();
  if (n == 0) {
    onField();
  }
}

void QemuStreamScanner::skip(size_t n, Step then) {
  next_ = then;
  if (n == 0) {
    expect(then, then == Step::RamHeader ? 8 : 1);
    return;
  }
  step_ = Step::Skip;
  skip_ = n;
}

void QemuStreamScanner::giveUp(std::string why) {
  step_ = Step::Pass;
  why_ = std::move(why);
}

void QemuStreamScanner::scan(std::string_view data, std::vector<StreamPiece>& out) {
  auto emit = [&out](size_t n, bool page, bool start) {
    if (n == 0) {
      return;
    }
    if (!page && !out.empty() && !out.back().page) {
      out.back().length += n;
      return;
    }
    out.push_back({n, page, start});
  };
  size_t i = 0;
  while (i < data.size()) {
    const size_t left = data.size() - i;
    if (step_ == Step::Pass) {
      emit(left, false, false);
      break;
    }
    if (step_ == Step::Skip) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(skip_, left));
      emit(n, false, false);
      i += n;
      skip_ -= n;
      if (skip_ == 0) {
        expect(next_, next_ == Step::RamHeader ? 8 : 1);
      }
      continue;
    }
    if (step_ == Step::Page) {
      const size_t n = std::min(page_left_, left);
      emit(n, true, page_left_ == kPageSize);
      i += n;
      page_left_ -= n;
      if (page_left_ == 0) {
        expect(Step::RamHeader, 8);
      }
      continue;
    }
    const size_t n = std::min(want_ - field_.size(), left);
    field_.append(data.substr(i, n));
    emit(n, false, false);
    i += n;
    if (field_.size() == want_) {
      onField();
    }
  }
}

void QemuStreamScanner::onSectionType(uint8_t type) {
  section_type_ = type;
  switch (type) {
    case kStart:
      expect(Step::SectionId, 4);
      return;
    case kPart:
    case kEnd:
      expect(Step::PartId, 4);
      return;
    case kConfiguration:
      expect(Step::ConfigLen, 4);
      return;
    case kCommand:
      expect(Step::CommandHead, 4);
      return;
    case kFooter:
      expect(Step::FooterId, 4);
      return;
    case kFull:  // device state: in precopy every page came before it
    case kEof:
    case kVmDescription:
      giveUp("");
      return;
    default:
      giveUp("section type " + hex(type) + " is not known");
  }
}

void QemuStreamScanner::onRamHeader(uint64_t header) {
  const uint64_t flags = header & kFlagMask;
  if ((flags & kMemSize) != 0) {
    if (flags != kMemSize) {
      giveUp("RAM size record with flags " + hex(flags));
      return;
    }
    mem_total_ = header & ~kFlagMask;
    mem_seen_ = 0;
    if (mem_total_ == 0) {
      expect(Step::RamHeader, 8);
    } else {
      expect(Step::MemBlockLen, 1);
    }
    return;
  }
  if (flags == kEos) {
    expect(Step::SectionType, 1);
    return;
  }
  const uint64_t kind = flags & ~kContinue;
  if (kind != kZero && kind != kPage && kind != kXbzrle && kind != kCompressPage) {
    giveUp("RAM record flags " + hex(flags) + " are not known");
    return;
  }
  ram_flags_ = kind;
  if ((flags & kContinue) == 0) {
    expect(Step::BlockLen, 1);
  } else {
    ramBody();
  }
}

void QemuStreamScanner::ramBody() {
  switch (ram_flags_) {
    case kZero:
      ++zero_pages_;
      skip(1, Step::RamHeader);
      return;
    case kPage:
      ++pages_;
      step_ = Step::Page;
      page_left_ = kPageSize;
      return;
    case kXbzrle:
      expect(Step::XbzrleHead, 3);
      return;
    default:
      expect(Step::CompressLen, 4);
      return;
  }
}

void QemuStreamScanner::onField() {
  const std::string_view f = field_;
  switch (step_) {
    case Step::Magic:
      if (detail::readBe(f.substr(0, 4)) != kMagic || detail::readBe(f.substr(4, 4)) != kVersion) {
        giveUp("not a QEMU migration stream of version 3");
      } else {
        expect(Step::SectionType, 1);
      }
      return;
    case Step::SectionType:
      onSectionType(static_cast<uint8_t>(f[0]));
      return;
    case Step::ConfigLen: {
      const uint64_t n = detail::readBe(f);
      if (n > kMaxConfigName) {
        giveUp("configuration name of " + std::to_string(n) + " bytes");
      } else {
        expect(Step::ConfigName, static_cast<size_t>(n));
      }
      return;
    }
    case Step::ConfigName:
      expect(Step::AfterConfig, 1);
      return;
    case Step::AfterConfig:
      if (static_cast<uint8_t>(f[0]) == kSubsection) {
        expect(Step::SubLen, 1);
      } else {
        onSectionType(static_cast<uint8_t>(f[0]));
      }
      return;
    case Step::SubLen:
      expect(Step::SubName, static_cast<uint8_t>(f[0]));
      return;
    case Step::SubName:
      subsection_ = field_;
      expect(Step::SubVersion, 4);
      return;
    case Step::SubVersion:
      if (subsection_ == "configuration/target-page-bits") {
        skip(4, Step::AfterConfig);
      } else if (subsection_ == "configuration/uuid") {
        skip(16, Step::AfterConfig);
      } else if (subsection_ == "configuration/capabilities") {
        expect(Step::CapCount, 4);
      } else {
        giveUp("configuration subsection '" + subsection_ + "' is not known");
      }
      return;
    case Step::CapCount:
      caps_left_ = static_cast<uint32_t>(detail::readBe(f));
      if (caps_left_ > kMaxCapabilities) {
        giveUp(std::to_string(caps_left_) + " capabilities in the configuration");
      } else if (caps_left_ == 0) {
        expect(Step::AfterConfig, 1);
      } else {
        expect(Step::CapLen, 1);
      }
      return;
    case Step::CapLen:
      --caps_left_;
      skip(static_cast<uint8_t>(f[0]), caps_left_ > 0 ? Step::CapLen : Step::AfterConfig);
      return;
    case Step::SectionId:
      section_id_ = static_cast<uint32_t>(detail::readBe(f));
      expect(Step::IdstrLen, 1);
      return;
    case Step::IdstrLen:
      expect(Step::Idstr, static_cast<uint8_t>(f[0]));
      return;
    case Step::Idstr:
      if (field_ != "ram") {
        giveUp("iterative section '" + field_ + "' is not known");
      } else {
        expect(Step::InstanceVersion, 8);
      }
      return;
    case Step::InstanceVersion:
      ram_known_ = true;
      ram_section_ = section_id_;
      expect(Step::RamHeader, 8);
      return;
    case Step::PartId:
      if (!ram_known_ || detail::readBe(f) != ram_section_) {
        giveUp("section " + std::to_string(detail::readBe(f)) + " is not RAM");
      } else {
        expect(Step::RamHeader, 8);
      }
      return;
    case Step::FooterId:
      expect(Step::SectionType, 1);
      return;
    case Step::CommandHead:
      skip(static_cast<size_t>(detail::readBe(f.substr(2, 2))), Step::SectionType);
      return;
    case Step::RamHeader:
      onRamHeader(detail::readBe(f));
      return;
    case Step::BlockLen:
      expect(Step::BlockName, static_cast<uint8_t>(f[0]));
      return;
    case Step::BlockName:
      ramBody();
      return;
    case Step::MemBlockLen:
      expect(Step::MemBlockName, static_cast<uint8_t>(f[0]));
      return;
    case Step::MemBlockName:
      expect(Step::MemBlockSize, 8);
      return;
    case Step::MemBlockSize: {
      const uint64_t n = detail::readBe(f);
      if (n > mem_total_ - mem_seen_) {
        giveUp("RAM blocks add up to more than the stated size");
        return;
      }
      mem_seen_ += n;
      expect(mem_seen_ == mem_total_ ? Step::RamHeader : Step::MemBlockLen,
             mem_seen_ == mem_total_ ? 8 : 1);
      return;
    }
    case Step::XbzrleHead:
      ++xbzrle_pages_;
      skip(static_cast<size_t>(detail::readBe(f.substr(1, 2))), Step::RamHeader);
      return;
    case Step::CompressLen: {
      const uint64_t n = detail::readBe(f);
      if (n > kMaxCompressed) {
        giveUp("compressed page of " + std::to_string(n) + " bytes");
      } else {
        skip(static_cast<size_t>(n), Step::RamHeader);
      }
      return;
    }
    case Step::Skip:
    case Step::Page:
    case Step::Pass:
      return;
  }
}

}  // namespace vandra::content
