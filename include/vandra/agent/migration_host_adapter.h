// AgentService as the migration protocol's MigrationHost (orchestrator/migration_host.h):
// each operation forwards to the agent's "live migration" halves. Holds a reference; the
// agent must outlive it.
#pragma once

#include "vandra/agent/agent_service.h"
#include "vandra/orchestrator/migration_host.h"

namespace vandra::agent {

class AgentMigrationHost final : public orchestrator::MigrationHost {
 public:
  explicit AgentMigrationHost(AgentService& agent) : agent_(agent) {}

  Result<orchestrator::HostVm> vm(const std::string& vm_id) override;
  Result<std::map<std::string, std::string>> diskBases(const std::string& vm_id) override;
  Result<migration::SwitchoverResult> migrateOut(const OutgoingRequest& request,
                                                 migration::SourceMigration& state) override;
  Result<void> releaseMigrated(const std::string& vm_id, const std::string& migration_id) override;
  Result<void> resumeAfterFailedSwitchover(const std::string& vm_id) override;
  Result<void> cancelStrayMigration(const std::string& vm_id) override;
  Result<migration::MigrationProgress> postcopyProgress(const std::string& vm_id) override;
  Result<void> pausePostcopyOut(const std::string& vm_id) override;
  Result<void> resumePostcopyOut(const std::string& vm_id, const std::string& migration_socket,
                                 std::chrono::steady_clock::time_point deadline) override;
  Result<Resources> freeCapacity() override;
  Result<void> checkFits(const Resources& request) override;
  bool hasBase(const std::string& digest) override;
  std::optional<std::string> basePath(const std::string& digest) override;
  Result<void> prepareIncoming(const IncomingRequest& request) override;
  Result<uint64_t> finishIncoming(const std::string& vm_id, bool resume,
                                  std::chrono::steady_clock::time_point deadline) override;
  Result<void> abortIncoming(const std::string& vm_id) override;
  Result<void> recoverPostcopyIn(const std::string& vm_id, const std::string& migration_socket,
                                 std::chrono::steady_clock::time_point deadline) override;

 private:
  AgentService& agent_;
};

}  // namespace vandra::agent
