// The NBD client stream scanner (nbd_stream.h).
#include "vandra/content/nbd_stream.h"

#include <algorithm>

#include "bytes.h"

namespace vandra::content {
namespace {

constexpr std::string_view kOptMagic = "IHAVEOPT";
constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint16_t kCmdWrite = 1;
constexpr uint16_t kCmdFlush = 3;
constexpr uint16_t kCmdFlagFua = 1;
constexpr uint16_t kMaxCmd = 7;  // BLOCK_STATUS
constexpr uint32_t kMaxOptionData = 64 * 1024;
constexpr uint32_t kMaxWrite = 32 * 1024 * 1024;  // QEMU's client sends at most 32 MiB

}  // namespace

void NbdWriteScanner::giveUp(std::string why) {
  state_ = State::Pass;
  why_ = std::move(why);
}

size_t NbdWriteScanner::step(std::string_view data) {
  switch (state_) {
    case State::Pass:
      return data.size();
    case State::OptionData: {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(skip_, data.size()));
      skip_ -= n;
      if (skip_ == 0) {
        state_ = State::OptionOrRequest;
        want_ = 4;
      }
      return n;
    }
    case State::WriteData: {
      // Bytes before the next aligned block, or of the block being collected.
      size_t n = static_cast<size_t>(std::min<uint64_t>(data_left_, data.size()));
      if (block_.empty() && data_offset_ % kPageSize != 0) {
        n = static_cast<size_t>(
            std::min<uint64_t>(n, kPageSize - data_offset_ % kPageSize));  // skip to aligned
      } else if (block_.empty() && data_left_ < kPageSize) {
        // the rest of this WRITE is less than a block: not reported
      } else {
        if (block_.empty()) {
          block_offset_ = data_offset_;
        }
        n = std::min(n, kPageSize - block_.size());
        block_.append(data.substr(0, n));
      }
      data_left_ -= n;
      data_offset_ += n;
      if (data_left_ == 0) {
        if (block_.size() != kPageSize) {
          block_.clear();
        }
        state_ = State::Request;
        want_ = 28;
      }
      return n;
    }
    case State::ClientFlags:
    case State::OptionOrRequest:
    case State::OptionHead:
    case State::Request:
      break;
  }
  // The fixed-size fields.
  const size_t n = std::min(want_ - field_.size(), data.size());
  field_.append(data.substr(0, n));
  if (field_.size() < want_) {
    return n;
  }
  const std::string f = std::move(field_);
  field_.clear();
  switch (state_) {
    case State::ClientFlags:
      state_ = State::OptionOrRequest;
      want_ = 4;
      break;
    case State::OptionOrRequest:
      // "IHAV" starts an option; the request magic starts the transmission phase.
      if (f == kOptMagic.substr(0, 4)) {
        state_ = State::OptionHead;
        want_ = 12;  // "EOPT" be32 option be32 length
      } else if (detail::readBe(f) == kRequestMagic) {
        state_ = State::Request;
        want_ = 24;  // the rest of the first request header
      } else {
        giveUp("neither an option nor a request");
      }
      break;
    case State::OptionHead: {
      const uint64_t len = detail::readBe(std::string_view(f).substr(8, 4));
      if (f.substr(0, 4) != kOptMagic.substr(4) || len > kMaxOptionData) {
        giveUp("a malformed option");
      } else if (len == 0) {
        state_ = State::OptionOrRequest;
        want_ = 4;
      } else {
        state_ = State::OptionData;
        skip_ = len;
      }
      break;
    }
    case State::Request: {
      // A whole header (28 bytes), or its last 24 after the magic was read above.
      const std::string_view h = f.size() == 28 ? std::string_view(f).substr(4) : f;
      if (f.size() == 28 && detail::readBe(std::string_view(f).substr(0, 4)) != kRequestMagic) {
        giveUp("a request without the request magic");
        break;
      }
      const auto flags = static_cast<uint16_t>(detail::readBe(h.substr(0, 2)));
      const auto type = static_cast<uint16_t>(detail::readBe(h.substr(2, 2)));
      if (type == kCmdFlush || (type == kCmdWrite && (flags & kCmdFlagFua) != 0)) {
        ++flushes_;
      }
      const uint64_t offset = detail::readBe(h.substr(12, 8));
      const uint64_t length = detail::readBe(h.substr(20, 4));
      if (type > kMaxCmd) {
        giveUp("request type " + std::to_string(type) + " is not known");
      } else if (type == kCmdWrite && length > 0) {
        if (length > kMaxWrite) {
          giveUp("a WRITE of " + std::to_string(length) + " bytes");
          break;
        }
        ++writes_;
        state_ = State::WriteData;
        data_left_ = length;
        data_offset_ = offset;
      } else {
        want_ = 28;
      }
      break;
    }
    case State::OptionData:
    case State::WriteData:
    case State::Pass:
      break;
  }
  return n;
}

}  // namespace vandra::content
