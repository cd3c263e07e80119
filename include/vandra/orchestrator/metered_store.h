// The one place where migrations reach the agent's metrics (agent/metrics.h): every record
// the migration service writes, in either role and on every path (the runner, the target's
// steps, the settler, recovery, an operator's resolve), goes through this MigrationStore. A
// write that moves a record into an end phase (done, rolled_back, failed) counts the
// migration's end; a figure of its report (bytes, the interruption) is counted the first time
// an ended record carries it, because the source's runner adds its account of the tunnel and
// the LAN right after the end phase is written (migration_service_runs.cc).
#pragma once

#include <mutex>
#include <optional>

#include "vandra/agent/metrics.h"
#include "vandra/orchestrator/migration_store.h"

namespace vandra::orchestrator {

/// What one write of a migration's record adds to the metrics.
struct MigrationAccount {
  std::optional<MigrationPhase> ended;  // this write moved it into this end phase
  double duration_s = 0;                // created -> ended (when ended)
  agent::MigrationBytes bytes;          // report figures first seen in an ended record
  std::optional<double> interruption_ms;
};

/// The account of writing @p after over @p before (nullopt: a new record). Pure.
MigrationAccount accountOf(const std::optional<MigrationRecord>& before,
                           const MigrationRecord& after);

/// Passes every call to @p inner; a successful insert or update adds accountOf() to
/// @p metrics (none: nothing is counted).
class MeteredMigrationStore : public MigrationStore {
 public:
  MeteredMigrationStore(MigrationStore& inner, agent::AgentMetrics* metrics)
      : inner_(inner), metrics_(metrics) {}
  [[nodiscard]] Result<MigrationRecord> insert(const MigrationRecord& r) override;
  [[nodiscard]] Result<MigrationRecord> update(const MigrationRecord& r) override;
  [[nodiscard]] Result<std::optional<MigrationRecord>> get(const std::string& id) override {
    return inner_.get(id);
  }
  [[nodiscard]] Result<std::optional<MigrationRecord>> active(const std::string& vm_id) override {
    return inner_.active(vm_id);
  }
  [[nodiscard]] Result<std::vector<MigrationRecord>> list(const std::string& vm_id) override {
    return inner_.list(vm_id);
  }

 private:
  void count(const MigrationAccount& a, MigrationRole role);

  MigrationStore& inner_;
  agent::AgentMetrics* metrics_;
  std::mutex mu_;  // a record read before its update is the one the update replaces
};

}  // namespace vandra::orchestrator
