#include "vandra/orchestrator/downtime_plan.h"

#include <algorithm>

namespace vandra::orchestrator {

DowntimePlan planDowntime(std::optional<uint64_t> budget_ms,
                          std::optional<uint64_t> operator_limit_ms, std::chrono::microseconds rtt,
                          uint64_t round_trips) {
  DowntimePlan p;
  const uint64_t rtt_ms = static_cast<uint64_t>((std::max<int64_t>(rtt.count(), 0) + 999) / 1000);
  p.overhead_ms = round_trips * rtt_ms + kSwitchoverLocalMs;
  if (operator_limit_ms) {
    p.initial_limit_ms = p.max_limit_ms = *operator_limit_ms;
  } else {
    p.initial_limit_ms = kInitialDowntimeLimitMs;
    p.max_limit_ms = kMaxDowntimeLimitMs;
  }
  if (!budget_ms) {
    return p;
  }
  const uint64_t room = *budget_ms > p.overhead_ms ? *budget_ms - p.overhead_ms : 0;
  const std::string numbers = "the switchover costs about " + std::to_string(p.overhead_ms) +
                              " ms on this link (" + std::to_string(round_trips) +
                              " round trips of " + std::to_string(rtt_ms) + " ms measured, and " +
                              std::to_string(kSwitchoverLocalMs) +
                              " ms of local work) before the RAM's last copy";
  if (operator_limit_ms) {
    if (*operator_limit_ms > room) {
      p.refusal = "The downtime limit of " + std::to_string(*operator_limit_ms) +
                  " ms does not fit the SLA's budget of " + std::to_string(*budget_ms) +
                  " ms: " + numbers;
    }
    return p;
  }
  if (room < kMinDowntimeLimitMs) {
    p.refusal = "The SLA's downtime budget of " + std::to_string(*budget_ms) +
                " ms cannot be met: " + numbers + ", which needs at least " +
                std::to_string(kMinDowntimeLimitMs) + " ms";
    return p;
  }
  p.max_limit_ms = std::min(p.max_limit_ms, room);
  p.initial_limit_ms = std::min(p.initial_limit_ms, p.max_limit_ms);
  return p;
}

}  // namespace vandra::orchestrator
