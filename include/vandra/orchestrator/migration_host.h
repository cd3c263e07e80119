// What the migration protocol (migrator.h) needs from the agent of its site: typed
// operations, one side each. Production: agent::AgentMigrationHost adapts AgentService
// (agent/migration_host_adapter.h); tests: a GoogleMock fake (test/orchestrator), so every
// phase's failure can be provoked without QEMU or root. Header only: src/agent implements
// it without linking the orchestrator.
//
//   source (runSourceMigration, settleSourceMigration)   target (TargetSide)
//     vm, diskBases                    preflight            checkFits, freeCapacity, vm, hasBase
//                                      prepare              prepareIncoming
//     migrateOut (mirror, RAM, pause)  mirror .. switchover
//                                      switchover           finishIncoming
//     postcopyProgress, pausePostcopyOut,  confirm (post-copy)  recoverPostcopyIn
//     resumePostcopyOut
//     releaseMigrated                  confirm
//     cancelStrayMigration,            rollback             abortIncoming
//     resumeAfterFailedSwitchover
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "vandra/agent/agent_service.h"
#include "vandra/agent/capacity.h"
#include "vandra/common/result.h"
#include "vandra/migration/qemu_migration.h"

namespace vandra::orchestrator {

/// What the protocol needs to know of a VM on this host.
struct HostVm {
  std::string spec_json;  // its VmSpec (one virtual system)
  uint64_t memory_mib = 0;
  uint32_t vcpus = 0;
  bool qemu_alive = false;     // its QEMU process runs (the pid with its start time)
  bool guest_running = false;  // ... and the agent has the VM Running
};

/// Every method may block (QMP, disk work) and is called from one migration's thread; calls
/// for different migrations may run at once.
class MigrationHost {
 public:
  virtual ~MigrationHost() = default;

  // ---- both sides ----
  /// The VM @p vm_id as the agent has it. Errors: NotFound.
  [[nodiscard]] virtual Result<HostVm> vm(const std::string& vm_id) = 0;

  // ---- source ----
  /// Each disk's base image digest (disk id -> digest) where the agent knows it.
  [[nodiscard]] virtual Result<std::map<std::string, std::string>> diskBases(
      const std::string& vm_id) = 0;
  /// Mirrors, pre-copies and pauses the VM (AgentService::migrateOut): calls
  /// request.before_step(OutgoingStep::Ram) and (OutgoingStep::Switchover); on failure the VM runs
  /// on here.
  [[nodiscard]] virtual Result<migration::SwitchoverResult> migrateOut(
      const agent::OutgoingRequest& request, migration::SourceMigration& state) = 0;
  /// After the target started the guest: the source QEMU ends; its disks are kept under
  /// migration @p migration_id's key for a move back (ADR 0027), or go.
  [[nodiscard]] virtual Result<void> releaseMigrated(const std::string& vm_id,
                                                     const std::string& migration_id) = 0;
  /// The source QEMU completed its migration but the target did not start the guest: it
  /// takes the disks back and runs the guest again.
  [[nodiscard]] virtual Result<void> resumeAfterFailedSwitchover(const std::string& vm_id) = 0;
  /// Cancels migration/mirror jobs QEMU still runs for @p vm_id and resumes the guest.
  /// Errors: IllegalTransition (QEMU's migration completed: resume instead), Qmp*.
  [[nodiscard]] virtual Result<void> cancelStrayMigration(const std::string& vm_id) = 0;
  /// After migrateOut() returned in post-copy (SwitchoverResult::post_copy): QEMU's word on
  /// it (status postcopy-active, postcopy-paused or completed; RAM sent so far).
  [[nodiscard]] virtual Result<migration::MigrationProgress> postcopyProgress(
      const std::string& vm_id) = 0;
  /// Pauses a post-copy whose stream stalled without closing (a paused one is left).
  [[nodiscard]] virtual Result<void> pausePostcopyOut(const std::string& vm_id) = 0;
  /// Reconnects a paused post-copy to @p migration_socket (reaching the target's
  /// recoverPostcopyIn) and waits until pages flow again. Errors: Timeout, IllegalTransition.
  [[nodiscard]] virtual Result<void> resumePostcopyOut(
      const std::string& vm_id, const std::string& migration_socket,
      std::chrono::steady_clock::time_point deadline) = 0;

  // ---- target ----
  /// What this host has free now (what preflight_result reports).
  [[nodiscard]] virtual Result<agent::Resources> freeCapacity() = 0;
  /// Whether a VM needing @p request fits here now: the agent's one capacity check
  /// (agent/capacity.h, checkFits). Errors: CapacityExceeded naming each resource that does
  /// not fit and the numbers; Io.
  [[nodiscard]] virtual Result<void> checkFits(const agent::Resources& request) = 0;
  /// Whether this site's image store holds the base image @p digest.
  [[nodiscard]] virtual bool hasBase(const std::string& digest) = 0;
  /// Source and target: the file of base image @p digest in this site's image store (the top
  /// of its chain; nothing writes it), if the store holds it. Content references read it.
  [[nodiscard]] virtual std::optional<std::string> basePath(const std::string& digest) = 0;
  /// Disks, QEMU -incoming, NBD exports (AgentService::prepareIncoming). On failure nothing
  /// is left. Errors: AlreadyExists, CapacityExceeded, Io (disk full), Subprocess, Qmp*.
  [[nodiscard]] virtual Result<void> prepareIncoming(const agent::IncomingRequest& request) = 0;
  /// Waits for the incoming migration, drops the exports, resumes the guest; returns the
  /// pid of its QEMU. Errors: Timeout, Io, Qmp*.
  [[nodiscard]] virtual Result<uint64_t> finishIncoming(
      const std::string& vm_id, bool resume, std::chrono::steady_clock::time_point deadline) = 0;
  /// Kills the incoming QEMU and removes the VM's disks and record (idempotent).
  [[nodiscard]] virtual Result<void> abortIncoming(const std::string& vm_id) = 0;
  /// A post-copy paused here (or still waiting on a stalled stream: paused first) listens
  /// on @p migration_socket for the source's resumePostcopyOut. Errors: IllegalTransition.
  [[nodiscard]] virtual Result<void> recoverPostcopyIn(
      const std::string& vm_id, const std::string& migration_socket,
      std::chrono::steady_clock::time_point deadline) = 0;
};

}  // namespace vandra::orchestrator
