#include "vandra/agent/migration_host_adapter.h"

#include "vandra/agent/recovery.h"

namespace vandra::agent {

Result<orchestrator::HostVm> AgentMigrationHost::vm(const std::string& vm_id) {
  VANDRA_TRY_ASSIGN(const VmRecord r, agent_.get(vm_id));
  orchestrator::HostVm v;
  v.spec_json = r.spec_json;
  v.memory_mib = r.memory_mib;
  v.vcpus = r.vcpus;
  v.qemu_alive = r.pid != 0 && observeProcess(r.pid, r.pid_start_time).alive;
  v.guest_running = v.qemu_alive && r.state == VmState::Running;
  return v;
}

Result<std::map<std::string, std::string>> AgentMigrationHost::diskBases(const std::string& vm_id) {
  return agent_.diskBases(vm_id);
}

Result<migration::SwitchoverResult> AgentMigrationHost::migrateOut(
    const OutgoingRequest& request, migration::SourceMigration& state) {
  return agent_.migrateOut(request, state);
}

Result<void> AgentMigrationHost::releaseMigrated(const std::string& vm_id,
                                                 const std::string& migration_id) {
  return agent_.releaseMigrated(vm_id, migration_id);
}

Result<void> AgentMigrationHost::resumeAfterFailedSwitchover(const std::string& vm_id) {
  return agent_.resumeAfterFailedSwitchover(vm_id);
}

Result<void> AgentMigrationHost::cancelStrayMigration(const std::string& vm_id) {
  VANDRA_TRY(agent_.cancelStrayMigration(vm_id));
  return {};
}

Result<migration::MigrationProgress> AgentMigrationHost::postcopyProgress(
    const std::string& vm_id) {
  return agent_.postcopyProgress(vm_id);
}

Result<void> AgentMigrationHost::pausePostcopyOut(const std::string& vm_id) {
  return agent_.pausePostcopyOut(vm_id);
}

Result<void> AgentMigrationHost::resumePostcopyOut(const std::string& vm_id,
                                                   const std::string& migration_socket,
                                                   std::chrono::steady_clock::time_point deadline) {
  return agent_.resumePostcopyOut(vm_id, migration_socket, deadline);
}

Result<void> AgentMigrationHost::recoverPostcopyIn(const std::string& vm_id,
                                                   const std::string& migration_socket,
                                                   std::chrono::steady_clock::time_point deadline) {
  return agent_.recoverPostcopyIn(vm_id, migration_socket, deadline);
}

namespace {

Resources resourcesOf(const nlohmann::json& j) {
  return Resources{j.value("vcpus", uint64_t{0}), j.value("memory_mib", uint64_t{0}),
                   j.value("disk_bytes", uint64_t{0})};
}

}  // namespace

Result<Resources> AgentMigrationHost::freeCapacity() {
  VANDRA_TRY_ASSIGN(const auto host, agent_.host());
  return resourcesOf(host["free"]);
}

Result<void> AgentMigrationHost::checkFits(const Resources& request) {
  VANDRA_TRY_ASSIGN(const auto host, agent_.host());
  const HostCapacity capacity{resourcesOf(host["capacity"]), resourcesOf(host["reserved"])};
  return agent::checkFits(capacity, resourcesOf(host["used"]), request);
}

bool AgentMigrationHost::hasBase(const std::string& digest) {
  return agent_.hasBase(digest);
}

std::optional<std::string> AgentMigrationHost::basePath(const std::string& digest) {
  return agent_.basePath(digest);
}

Result<void> AgentMigrationHost::prepareIncoming(const IncomingRequest& request) {
  VANDRA_TRY(agent_.prepareIncoming(request));
  return {};
}

Result<uint64_t> AgentMigrationHost::finishIncoming(
    const std::string& vm_id, bool resume, std::chrono::steady_clock::time_point deadline) {
  VANDRA_TRY_ASSIGN(const VmRecord r, agent_.finishIncoming(vm_id, resume, deadline));
  return static_cast<uint64_t>(r.pid);
}

Result<void> AgentMigrationHost::abortIncoming(const std::string& vm_id) {
  return agent_.abortIncoming(vm_id);
}

}  // namespace vandra::agent
