// Hides an NBD export's FLUSH and FUA from the client (QEMU's disk mirror at the source), so
// that no flush crosses the WAN inside the guest's pause (ADR 0033). Applied at the target
// agent to the server's side of an NBD connection (target QEMU -> tunnel).
//
// Server to client, as QEMU 7.2's NBD server speaks it (newstyle, fixed):
//
//   "NBDMAGIC" "IHAVEOPT" be16 handshake flags
//   { be64 0x3e889045565a9 be32 option be32 reply-type be32 length data[length] }*
//       reply-type INFO (3), data: be16 info-type EXPORT (0) be64 size be16 transmission flags
//                                  ^ SEND_FLUSH (bit 2) and SEND_FUA (bit 3) are cleared here
//       reply-type ACK (1) to option GO (7): the transmission phase starts
//   replies to requests ...                                       passed on untouched
//
// Why it is safe: a QEMU NBD client whose export has no SEND_FLUSH answers its own flushes
// (the guest's stop, the mirror's completion) at once, and one without SEND_FUA writes plainly.
// The source stays authoritative until the switchover; before the target starts the guest,
// its agent flushes every disk there itself (finishTarget's barrier). Anything the filter does
// not recognise (an old-style server, EXPORT_NAME's reply, a malformed reply) switches it to
// passing everything on as it is: the flushes then cross the WAN as before, still correct.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "vandra/tunnel/forward.h"

namespace vandra::content {

inline constexpr uint16_t kNbdFlagSendFlush = 1u << 2;
inline constexpr uint16_t kNbdFlagSendFua = 1u << 3;

/// What the filters of one migration did (shared by its connections; read at any time).
struct NbdFlagCounters {
  std::atomic<uint64_t> exports_rewritten{0};  // NBD_INFO_EXPORT replies whose flags it cleared
  std::atomic<uint64_t> passed_through{0};     // connections it gave up on (unrecognised)
};

class NbdServerFlagsFilter : public tunnel::ByteTransform {
 public:
  /// Clears the transmission flags in @p clear from every NBD_INFO_EXPORT the server sends.
  NbdServerFlagsFilter(uint16_t clear, std::shared_ptr<NbdFlagCounters> counters);

  Result<void> feed(std::string_view in, std::string& out) override;
  Result<void> finish(std::string& out) override;

  /// The handshake is over (or was never recognised): every byte passes as it is.
  bool passing() const { return state_ == State::Pass; }
  /// Why it stopped looking before the transmission phase ("" if it did not).
  const std::string& why() const { return why_; }

 private:
  enum class State : uint8_t { Greeting, ReplyHead, InfoType, InfoExport, ReplyData, Pass };
  void giveUp(std::string why, std::string& out);
  void completeField(std::string& out);

  uint16_t clear_;
  std::shared_ptr<NbdFlagCounters> counters_;
  State state_ = State::Greeting;
  std::string field_;  // the fixed-size field being collected (not yet passed on)
  size_t want_;        // bytes of the field being collected
  uint32_t option_ = 0;
  uint32_t reply_ = 0;
  uint64_t left_ = 0;  // reply data still to pass on
  std::string why_;
};

/// The transform factory the target's NBD forwarder takes as ForwardOptions::to_stream.
tunnel::TransformFactory hideFlushFromClient(std::shared_ptr<NbdFlagCounters> counters);

}  // namespace vandra::content
