// LanSilenceMeter: how long a migrating VM was silent on this site's LAN around its
// switchover — the service interruption a client at this site sees, measured by the agent
// itself rather than by a client (docs/migration/orchestrator.md, "Records").
//
//   frames from the VM's MAC on the interfaces named (its tap, which carries them before the
//   switchover, and the link's LAN tap, which carries them from the other site after it):
//
//   ...|  |  |  |  |          (guest paused)              |  |  |  |...
//               ^ last frame     ^ the pause               ^ first frame after it
//               |                |<------ silence_ms ----->|
//               |<------------ since_last_frame_ms ------->|
//
// The silence counts from the pause, or from the last frame when that came later: a guest
// that happened to say nothing for a while before the pause was running and would have
// answered then (an idle guest's quiet second is not an interruption).
//
// One AF_PACKET socket per interface, bound to it (a socket on all interfaces would make the
// kernel clone every packet the migration sends on the WAN for it), with a classic BPF filter
// on the source MAC, so only the VM's own frames are copied to us.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::orchestrator {

struct LanSilence {
  double silence_ms = 0;  // the instant (or the last frame, if later) to the first frame after
  uint64_t frames = 0;    // frames from the MAC seen in all
  double since_last_frame_ms = 0;  // the last frame before the instant to the first after it
};

class LanSilenceMeter {
 public:
  using Clock = std::chrono::steady_clock;
  /// Starts watching frames whose source is @p mac ("52:54:00:12:34:56") on @p interfaces
  /// (1..8 names in the caller's network namespace). Errors: InvalidArgument (mac, no or too
  /// many interfaces), NotFound (an interface), Io (socket: needs CAP_NET_RAW).
  [[nodiscard]] static Result<std::unique_ptr<LanSilenceMeter>> start(
      const std::string& mac, const std::vector<std::string>& interfaces);
  ~LanSilenceMeter();
  LanSilenceMeter(const LanSilenceMeter&) = delete;
  LanSilenceMeter& operator=(const LanSilenceMeter&) = delete;

  /// The silence around @p instant (e.g. when the guest paused), waiting until @p deadline
  /// for the first frame after it. nullopt: no frame before it, or none after it by then.
  std::optional<LanSilence> silenceAround(Clock::time_point instant, Clock::time_point deadline);

  struct Impl;

 private:
  explicit LanSilenceMeter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vandra::orchestrator
