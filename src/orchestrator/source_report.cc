#include "source_report.h"

namespace vandra::orchestrator::detail {

void SourceReport::writeTo(nlohmann::json& report) const {
  if (downtime_plan) {
    const auto& p = *downtime_plan;
    report["downtime_plan"] = {{"rtt_ms", p.rtt_ms},
                               {"overhead_ms", p.plan.overhead_ms},
                               {"initial_limit_ms", p.plan.initial_limit_ms},
                               {"max_limit_ms", p.plan.max_limit_ms}};
    if (p.budget_ms) {
      report["downtime_plan"]["budget_ms"] = *p.budget_ms;
    }
  }
  if (overlay_only_disks) {
    report["overlay_only_disks"] = *overlay_only_disks;
  }
  if (switchover) {
    const auto& s = *switchover;
    const auto& r = s.result;
    report["mirror_copy_mode"] =
        s.copy_mode == migration::CopyMode::WriteBlocking ? "write-blocking" : "background";
    report["nbd_connect_ms"] = s.nbd_connect_ms;
    report["downtime_ms"] = r.downtime_ms;
    report["qemu_total_ms"] = r.total_time_ms;
    report["ram_bytes"] = r.ram_transferred;
    report["disk_bytes"] = r.disk_transferred;
    report["mirror_complete_ms"] = r.mirror_complete_ms;  // of the downtime
    report["paused_ms"] = r.paused_ms;                    // pre-switchover seen -> completed
    report["downtime_limit_ms"] = r.downtime_limit_ms;    // QEMU's, when it paused
    report["ram_bytes_at_pause"] = r.ram_at_pause;
    report["ram_remaining_at_pause"] = r.ram_remaining_at_pause;
    report["qemu_mbps_at_pause"] = r.mbps_at_pause;
    report["continue_to_completed_ms"] = r.continue_to_completed_ms;
    auto& passes = report["precopy"] = nlohmann::json::array();
    for (const auto& p : r.precopy) {
      passes.push_back({{"at_s", p.at_s},
                        {"passes", p.passes},
                        {"sent_mb", static_cast<double>(p.transferred) / 1e6},
                        {"remaining_mb", static_cast<double>(p.remaining) / 1e6},
                        {"qemu_mbps", p.mbps},
                        {"dirty_mb_s", p.dirty_bytes_per_s / 1e6},
                        {"throttle_percent", p.throttle_percent},
                        {"throttle_step", p.throttle_step},
                        {"limit_ms", p.limit_ms}});
    }
    if (r.post_copy) {
      report["post_copy_reason"] = r.post_copy_reason;
    }
    if (s.tunnel_backlog_bytes) {
      report["tunnel_backlog_bytes"] = *s.tunnel_backlog_bytes;
    }
    if (!s.disk_throttles.empty()) {
      auto& out = report["disk_write_throttle"] = nlohmann::json::array();
      for (const auto& [device, steps] : s.disk_throttles) {
        for (const auto& t : steps) {
          out.push_back({{"device", device},
                         {"at_s", t.at_s},
                         {"level", t.level},
                         {"bytes_per_s", t.throttle.bytes_per_s},
                         {"writes_per_s", t.throttle.writes_per_s},
                         {"backlog_bytes", t.backlog_bytes},
                         {"copied_bytes_per_s", t.copied_bytes_per_s},
                         {"why", t.why}});
        }
      }
    }
  }
  if (warning) {
    report["warning"] = *warning;
  }
  if (total_s) {
    report["total_s"] = *total_s;
  }
  if (leftovers) {
    report["leftovers"] = *leftovers;
  }
}

void SettleTry::appendTo(nlohmann::json& report) const {
  if (!report.contains("settle") || !report["settle"].is_array()) {
    report["settle"] = nlohmann::json::array();
  }
  if (report["settle"].size() >= 20) {
    report["settle"].erase(report["settle"].begin());  // a long wait keeps the last 20 tries
  }
  report["settle"].push_back({{"at_us", at_us},
                              {"phase", phase},
                              {"peer", peer},
                              {"said", said.substr(0, 500)},
                              {"source_qemu_alive", source_qemu_alive},
                              {"step", step}});
}

}  // namespace vandra::orchestrator::detail
