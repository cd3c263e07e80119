#include "vandra/orchestrator/downtime_verdict.h"

#include <cstdio>

namespace vandra::orchestrator {
namespace {

std::string ms(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f ms", v);
  return buf;
}

const char* name(InterruptionSource s) {
  switch (s) {
    case InterruptionSource::LanSilence:
      return "lan_silence";
    case InterruptionSource::QemuDowntime:
      return "qemu_downtime";
    case InterruptionSource::None:
      break;
  }
  return "none";
}

}  // namespace

DowntimeVerdict judgeDowntime(std::optional<uint64_t> budget_ms,
                              std::optional<double> lan_silence_ms,
                              std::optional<uint64_t> qemu_downtime_ms) {
  DowntimeVerdict v;
  v.budget_ms = budget_ms;
  if (lan_silence_ms && *lan_silence_ms >= 0) {
    v.interruption_ms = *lan_silence_ms;
    v.source = InterruptionSource::LanSilence;
  } else if (qemu_downtime_ms && *qemu_downtime_ms > 0) {
    v.interruption_ms = static_cast<double>(*qemu_downtime_ms);
    v.source = InterruptionSource::QemuDowntime;
  }
  if (!budget_ms) {
    v.reason = "the SLA sets no downtime budget";
    return v;
  }
  if (!v.interruption_ms) {
    v.reason = "nothing measured to judge the budget of " + ms(static_cast<double>(*budget_ms)) +
               " by (the guest never paused)";
    return v;
  }
  v.met = *v.interruption_ms <= static_cast<double>(*budget_ms);
  const std::string what = v.source == InterruptionSource::LanSilence
                               ? "the guest was silent on the LAN for "
                               : "QEMU paused the guest for ";
  v.reason = what + ms(*v.interruption_ms) + (*v.met ? ", within" : ", over") +
             " the SLA's budget of " + ms(static_cast<double>(*budget_ms));
  return v;
}

void addToReport(const DowntimeVerdict& v, nlohmann::json& report) {
  using nlohmann::json;
  report["downtime_budget_ms"] = v.budget_ms ? json(*v.budget_ms) : json(nullptr);
  report["interruption_ms"] = v.interruption_ms ? json(*v.interruption_ms) : json(nullptr);
  report["interruption_by"] = name(v.source);
  report["sla_met"] = v.met ? json(*v.met) : json(nullptr);
  report["sla_note"] = v.reason;
}

}  // namespace vandra::orchestrator
