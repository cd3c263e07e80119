// The NBD server handshake filter (nbd_flags.h).
#include "vandra/content/nbd_flags.h"

#include <algorithm>

#include "bytes.h"

namespace vandra::content {
namespace {

constexpr std::string_view kGreeting = "NBDMAGICIHAVEOPT";
constexpr uint64_t kReplyMagic = 0x3e889045565a9ULL;
constexpr uint32_t kOptAbort = 2;
constexpr uint32_t kOptGo = 7;
constexpr uint32_t kRepAck = 1;
constexpr uint32_t kRepInfo = 3;
constexpr uint16_t kInfoExport = 0;
constexpr size_t kGreetingSize = 18;    // the two magics, be16 handshake flags
constexpr size_t kReplyHeadSize = 20;   // be64 magic be32 option be32 type be32 length
constexpr size_t kInfoExportRest = 10;  // be64 size be16 transmission flags

}  // namespace

NbdServerFlagsFilter::NbdServerFlagsFilter(uint16_t clear,
                                           std::shared_ptr<NbdFlagCounters> counters)
    : clear_(clear), counters_(std::move(counters)), want_(kGreetingSize) {
  if (!counters_) {
    counters_ = std::make_shared<NbdFlagCounters>();
  }
}

void NbdServerFlagsFilter::giveUp(std::string why, std::string& out) {
  out.append(field_);
  field_.clear();
  state_ = State::Pass;
  why_ = std::move(why);
  counters_->passed_through.fetch_add(1, std::memory_order_relaxed);
}

Result<void> NbdServerFlagsFilter::feed(std::string_view in, std::string& out) {
  while (!in.empty()) {
    if (state_ == State::Pass) {
      out.append(in);
      return {};
    }
    if (state_ == State::ReplyData) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left_, in.size()));
      out.append(in.substr(0, n));
      in.remove_prefix(n);
      left_ -= n;
      if (left_ == 0) {
        state_ = State::ReplyHead;
        want_ = kReplyHeadSize;
      }
      continue;
    }
    const size_t n = std::min(want_ - field_.size(), in.size());
    field_.append(in.substr(0, n));
    in.remove_prefix(n);
    if (field_.size() == want_) {
      completeField(out);
    }
  }
  return {};
}

// A fixed-size field is whole in field_: decide, pass it on (rewritten or not), move on.
void NbdServerFlagsFilter::completeField(std::string& out) {
  const std::string_view f = field_;
  switch (state_) {
    case State::Greeting:
      if (f.substr(0, kGreeting.size()) != kGreeting) {
        return giveUp("not a fixed-newstyle NBD server", out);
      }
      state_ = State::ReplyHead;
      want_ = kReplyHeadSize;
      break;
    case State::ReplyHead: {
      if (detail::readBe(f.substr(0, 8)) != kReplyMagic) {
        // EXPORT_NAME's answer has no reply header: its flags go as the server sent them.
        return giveUp("no option reply where one was due", out);
      }
      option_ = static_cast<uint32_t>(detail::readBe(f.substr(8, 4)));
      reply_ = static_cast<uint32_t>(detail::readBe(f.substr(12, 4)));
      left_ = detail::readBe(f.substr(16, 4));
      if (reply_ == kRepAck && (option_ == kOptGo || option_ == kOptAbort) && left_ == 0) {
        state_ = State::Pass;  // the transmission phase (or the end) follows
      } else if (reply_ == kRepInfo && left_ >= 2) {
        state_ = State::InfoType;
        want_ = 2;
      } else if (left_ > 0) {
        state_ = State::ReplyData;
      } else {
        want_ = kReplyHeadSize;
      }
      break;
    }
    case State::InfoType:
      left_ -= 2;
      if (detail::readBe(f) == kInfoExport && left_ == kInfoExportRest) {
        state_ = State::InfoExport;
        want_ = kInfoExportRest;
      } else if (left_ > 0) {
        state_ = State::ReplyData;
      } else {
        state_ = State::ReplyHead;
        want_ = kReplyHeadSize;
      }
      break;
    case State::InfoExport: {
      const auto flags = static_cast<uint16_t>(detail::readBe(f.substr(8, 2)));
      const auto kept = static_cast<uint16_t>(flags & ~clear_);
      if (kept != flags) {
        field_.resize(8);
        detail::putBe(field_, kept, 2);
        counters_->exports_rewritten.fetch_add(1, std::memory_order_relaxed);
      }
      left_ = 0;
      state_ = State::ReplyHead;
      want_ = kReplyHeadSize;
      break;
    }
    case State::ReplyData:
    case State::Pass:
      break;
  }
  out.append(field_);
  field_.clear();
}

Result<void> NbdServerFlagsFilter::finish(std::string& out) {
  out.append(field_);  // the connection ended inside a field: what came goes on as it was
  field_.clear();
  return {};
}

tunnel::TransformFactory hideFlushFromClient(std::shared_ptr<NbdFlagCounters> counters) {
  return [counters = std::move(counters)](const tunnel::Stream&) {
    return std::make_unique<NbdServerFlagsFilter>(kNbdFlagSendFlush | kNbdFlagSendFua, counters);
  };
}

}  // namespace vandra::content
