// How long the guest may pause at switchover, planned at preflight from the SLA's downtime
// budget and the link's measured round trip (docs/migration/orchestrator.md, "Downtime").
//
// The pause is more than QEMU's downtime limit, which covers only the RAM's last copy:
//
//   vCPUs stop, disks drained and flushed (the NBD flush: 1 RTT)
//   mirrors complete                      (1 RTT)
//   last RAM + device state               (downtime limit)
//   the target's "loaded" on return path  (1 RTT)
//   the target is told to start, starts   (1 RTT at most, and local work)
//
// hence a fixed share of about 4 RTT + 150 ms that no limit can shrink. The plan starts
// QEMU at a short limit and lets the engine raise it (waitPreSwitchover) only while the
// guest outpaces the link, never past what the budget leaves.
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
inline constexpr uint64_t kSwitchoverRoundTrips = 4;

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
/// too when it and the overhead do not fit the budget. @p rtt: the link's round trip.
DowntimePlan planDowntime(std::optional<uint64_t> budget_ms,
                          std::optional<uint64_t> operator_limit_ms, std::chrono::microseconds rtt);

}  // namespace vandra::orchestrator
