// Private to src/orchestrator: what the source's side of a migration records of itself in
// its record's report, typed, and written to the record's JSON here only (writeTo). The
// service adds its own fields (tunnel bytes, the LAN: migration_service_runs.cc); the
// target's working data (spec, base digests, lan_*) stays with target_side.cc.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "vandra/migration/qemu_migration.h"
#include "vandra/orchestrator/downtime_plan.h"

namespace vandra::orchestrator::detail {

struct SourceReport {
  /// PreflightSrc: the downtime plan against the link's round trip.
  struct Plan {
    double rtt_ms = 0;
    DowntimePlan plan;
    std::optional<uint64_t> budget_ms;  // the SLA's
  };
  /// SwitchoverSrc: what QEMU reported once its migration completed.
  struct Switchover {
    migration::CopyMode copy_mode = migration::CopyMode::Background;
    std::vector<double> nbd_connect_ms;  // per mirror
    migration::SwitchoverResult result;
    std::optional<uint64_t> tunnel_backlog_bytes;  // RAM written at the pause, not yet sent
    /// Per disk whose writes were throttled to let its mirror converge: every change.
    std::vector<std::pair<std::string, std::vector<migration::ThrottleStep>>> disk_throttles;
  };

  std::optional<Plan> downtime_plan;
  std::optional<std::vector<std::string>> overlay_only_disks;  // MirrorSrc
  std::optional<Switchover> switchover;
  std::optional<std::string> warning;                 // ConfirmSrc: the source not released
  std::optional<double> total_s;                      // ConfirmSrc
  std::optional<std::vector<std::string>> leftovers;  // rollback

  /// Writes the fields that are set into @p report (the record's), leaving the others.
  void writeTo(nlohmann::json& report) const;
};

/// One try of settleSourceMigration, appended to report.settle (the last 20 kept).
struct SettleTry {
  int64_t at_us = 0;
  std::string phase;
  std::string peer;
  std::string said;
  bool source_qemu_alive = false;
  std::string step;
  void appendTo(nlohmann::json& report) const;
};

}  // namespace vandra::orchestrator::detail
