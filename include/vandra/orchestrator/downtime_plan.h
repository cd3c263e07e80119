// How long the guest may pause at switchover, planned at preflight from the SLA's downtime
// budget and the link's measured round trip (docs/migration/orchestrator.md, "Downtime").
//
// The pause is more than QEMU's downtime limit, which covers only the RAM's last copy:
//
//   vCPUs stop, disks drained and flushed   (the mirrors' writes in flight: 1 RTT at most;
//                                            the NBD flush: 1 RTT unless the target hides it)
//   mirrors complete                        (their flush: 1 RTT unless the target hides it)
//   last RAM + device state                 (downtime limit)
//   the target's "loaded" on return path    (1 RTT, only with the return path: post-copy)
//   the target is told to start, starts     (half a RTT, counted as one, and local work)
//
// A target agent of tunnel version 6 hides its exports' FLUSH from the source's mirrors and
// flushes its disks itself before it starts the guest (ADR 0033); the return path is only
// opened for post-copy. Hence a fixed share of 2 RTT + 150 ms (4 towards an older agent, one
// more with post-copy) that no limit can shrink. The plan starts QEMU at a short limit and
// lets the engine raise it (waitPreSwitchover) only while the guest outpaces the link, never
// past what the budget leaves.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace vandra::orchestrator {

inline constexpr uint64_t kMinDowntimeLimitMs = 20;       // below this QEMU's RAM rarely converges
inline constexpr uint64_t kInitialDowntimeLimitMs = 100;  // a short first target
inline constexpr uint64_t kMaxDowntimeLimitMs = 300;      // QEMU's default, the most we allow
inline constexpr uint64_t kSwitchoverLocalMs = 150;       // flushes, writes, QMP, start (measured)

/// The WAN round trips inside the pause (above): @p target_flushes, the target hides its
/// exports' FLUSH and flushes itself (tunnel version 6); @p return_path, QEMU waits for the
/// target's "loaded" (post-copy).
constexpr uint64_t switchoverRoundTrips(bool target_flushes, bool return_path) {
  return 2U + (target_flushes ? 0U : 2U) + (return_path ? 1U : 0U);
}
/// Between two agents of this build, in pre-copy (what placement assumes of a link).
inline constexpr uint64_t kSwitchoverRoundTrips = switchoverRoundTrips(true, false);

struct DowntimePlan {
  uint64_t overhead_ms = 0;       // the switchover's share beyond the RAM's last copy
  uint64_t initial_limit_ms = 0;  // QEMU's downtime limit at the start of the pre-copy
  uint64_t max_limit_ms = 0;      // how far the engine may raise it
  /// Set when the budget cannot be met on this link: why, with the numbers (the migration
  /// is refused at preflight, nothing changed).
  std::optional<std::string> refusal;
};

/// @p budget_ms: the SLA's DowntimeBudgetMs (nullopt: none). @p operator_limit_ms: a limit
/// the operator asked for (`--downtime-limit-ms`; nullopt: plan it): kept fixed, but refused
/// too when it and the overhead do not fit the budget. @p rtt: the link's round trip;
/// @p round_trips: how many of them the pause holds (switchoverRoundTrips).
DowntimePlan planDowntime(std::optional<uint64_t> budget_ms,
                          std::optional<uint64_t> operator_limit_ms, std::chrono::microseconds rtt,
                          uint64_t round_trips = kSwitchoverRoundTrips);

}  // namespace vandra::orchestrator
