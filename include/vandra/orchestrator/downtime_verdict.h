// Whether a migration kept the SLA's downtime budget: the budget written in the VM's OVF
// against the interruption the agent measured itself (docs/migration/orchestrator.md,
// "Downtime"). Pure: the caller measures, this judges.
//
//   interruption = the guest's silence on this site's LAN around the pause (LanSilenceMeter:
//                  what a client here saw), or, with no frame to judge by, the pause itself
//                  as QEMU reported it (a lower bound: said so in `interruption_by`)
//   sla_met      = interruption <= budget        (null: no budget, or nothing measured)
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace vandra::orchestrator {

enum class InterruptionSource : uint8_t {
  None = 0,          // nothing measured (the guest never paused, or no meter)
  LanSilence = 1,    // the guest's silence on this site's LAN (what a client saw)
  QemuDowntime = 2,  // QEMU's own downtime figure (no frame from the guest to judge by)
};

struct DowntimeVerdict {
  std::optional<uint64_t> budget_ms;      // the SLA's downtime budget (nullopt: no clause)
  std::optional<double> interruption_ms;  // what was measured (nullopt: nothing)
  InterruptionSource source = InterruptionSource::None;
  std::optional<bool> met;  // nullopt: no budget or no measurement
  std::string reason;       // one sentence, with the numbers
};

/// @p budget_ms: the SLA's DowntimeBudgetMs. @p lan_silence_ms: the agent's LAN measurement,
/// if any. @p qemu_downtime_ms: QEMU's downtime, if the guest paused (0 or nullopt: it did not).
DowntimeVerdict judgeDowntime(std::optional<uint64_t> budget_ms,
                              std::optional<double> lan_silence_ms,
                              std::optional<uint64_t> qemu_downtime_ms);

/// Adds downtime_budget_ms, interruption_ms, interruption_by, sla_met and sla_note to a
/// migration's report (null where the verdict has no value).
void addToReport(const DowntimeVerdict& v, nlohmann::json& report);

}  // namespace vandra::orchestrator
