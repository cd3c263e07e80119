#include "vandra/orchestrator/metered_store.h"

#include <algorithm>

namespace vandra::orchestrator {

namespace {

// A non-negative number of the report, if it has one under @p key.
std::optional<double> figure(const nlohmann::json& report, const char* key) {
  if (!report.is_object() || !report.contains(key) || !report[key].is_number()) {
    return std::nullopt;
  }
  return std::max(0.0, report[key].get<double>());
}

}  // namespace

MigrationAccount accountOf(const std::optional<MigrationRecord>& before,
                           const MigrationRecord& after) {
  MigrationAccount a;
  if (!isTerminal(after.phase)) {
    return a;  // counted once it has ended: a rolled-back migration's bytes count too
  }
  const bool was_ended = before && isTerminal(before->phase);
  if (!was_ended) {
    a.ended = after.phase;
    a.duration_s = std::max(0.0, static_cast<double>(after.updated_us - after.created_us) / 1e6);
  }
  // What this write brings that the stored ended record did not have yet.
  auto fresh = [&](const char* key) -> std::optional<double> {
    if (was_ended && figure(before->report, key)) {
      return std::nullopt;
    }
    return figure(after.report, key);
  };
  a.bytes.wan = static_cast<uint64_t>(fresh("wan_bytes").value_or(0));
  a.bytes.ram = static_cast<uint64_t>(fresh("ram_bytes").value_or(0));
  a.bytes.disk = static_cast<uint64_t>(fresh("disk_bytes").value_or(0));
  a.interruption_ms = fresh("interruption_ms");
  return a;
}

Result<MigrationRecord> MeteredMigrationStore::insert(const MigrationRecord& r) {
  VANDRA_TRY_ASSIGN(auto stored, inner_.insert(r));
  count(accountOf(std::nullopt, stored), stored.role);
  return stored;
}

Result<MigrationRecord> MeteredMigrationStore::update(const MigrationRecord& r) {
  if (metrics_ == nullptr) {
    return inner_.update(r);
  }
  std::lock_guard lock(mu_);
  auto before = inner_.get(r.id);
  VANDRA_TRY_ASSIGN(auto stored, inner_.update(r));
  if (before) {  // else unknown whether it had ended: not counted rather than counted twice
    count(accountOf(*before, stored), stored.role);
  }
  return stored;
}

void MeteredMigrationStore::count(const MigrationAccount& a, MigrationRole role) {
  if (metrics_ == nullptr) {
    return;
  }
  const auto side =
      role == MigrationRole::Source ? agent::MigrationSide::Source : agent::MigrationSide::Target;
  if (a.ended) {
    metrics_->migrationEnded(side, *a.ended, a.duration_s);
  }
  if (a.bytes.wan != 0 || a.bytes.ram != 0 || a.bytes.disk != 0) {
    metrics_->migrationBytes(side, a.bytes);
  }
  if (a.interruption_ms) {
    metrics_->migrationInterruption(*a.interruption_ms / 1000);
  }
}

}  // namespace vandra::orchestrator
