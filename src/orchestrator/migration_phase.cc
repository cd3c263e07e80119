#include "vandra/orchestrator/migration_phase.h"

#include <string>

namespace vandra::orchestrator {

std::string_view toString(MigrationEvent e) {
  switch (e) {
    case MigrationEvent::PreflightPassed:
      return "preflight_passed";
    case MigrationEvent::TargetPrepared:
      return "target_prepared";
    case MigrationEvent::MirrorsReady:
      return "mirrors_ready";
    case MigrationEvent::RamConverged:
      return "ram_converged";
    case MigrationEvent::TargetStarted:
      return "target_started";
    case MigrationEvent::TargetConfirmed:
      return "target_confirmed";
    case MigrationEvent::Failure:
      return "failure";
    case MigrationEvent::Cancel:
      return "cancel";
    case MigrationEvent::RollbackDone:
      return "rollback_done";
    case MigrationEvent::RollbackFailed:
      return "rollback_failed";
    case MigrationEvent::Lost:
      return "lost";
    case MigrationEvent::OperatorResume:
      return "operator_resume";
    case MigrationEvent::OperatorAbandon:
      return "operator_abandon";
  }
  return "invalid";
}

std::string_view toString(MigrationRole r) {
  return r == MigrationRole::Source ? "source" : "target";
}

bool isTerminal(MigrationPhase p) {
  return p == MigrationPhase::Done || p == MigrationPhase::RolledBack ||
         p == MigrationPhase::Failed;
}

bool beforeSwitchoverCommitted(MigrationPhase p) {
  switch (p) {
    case MigrationPhase::Preflight:
    case MigrationPhase::PrepareTarget:
    case MigrationPhase::MirrorDisks:
    case MigrationPhase::PrecopyRam:
    case MigrationPhase::Switchover:  // committed only once the target reports the guest running
      return true;
    case MigrationPhase::Invalid:
    case MigrationPhase::Confirm:
    case MigrationPhase::Done:
    case MigrationPhase::RollingBack:
    case MigrationPhase::RolledBack:
    case MigrationPhase::Failed:
      return false;
  }
  return false;
}

std::optional<MigrationEvent> completionOf(MigrationPhase p) {
  switch (p) {
    case MigrationPhase::Preflight:
      return MigrationEvent::PreflightPassed;
    case MigrationPhase::PrepareTarget:
      return MigrationEvent::TargetPrepared;
    case MigrationPhase::MirrorDisks:
      return MigrationEvent::MirrorsReady;
    case MigrationPhase::PrecopyRam:
      return MigrationEvent::RamConverged;
    case MigrationPhase::Switchover:
      return MigrationEvent::TargetStarted;
    case MigrationPhase::Confirm:
      return MigrationEvent::TargetConfirmed;
    case MigrationPhase::Invalid:
    case MigrationPhase::Done:
    case MigrationPhase::RollingBack:
    case MigrationPhase::RolledBack:
    case MigrationPhase::Failed:
      return std::nullopt;
  }
  return std::nullopt;
}

Result<MigrationPhase> transition(MigrationPhase from, MigrationEvent event) {
  std::optional<MigrationPhase> to;
  if (event == MigrationEvent::Lost &&
      (from == MigrationPhase::Switchover || from == MigrationPhase::Confirm)) {
    return MigrationPhase::Failed;
  }
  // The operator's word on a source that waits for an unreachable target. Resuming is only
  // possible before the target reported the guest running; letting go, in either phase.
  if (event == MigrationEvent::OperatorResume && from == MigrationPhase::Switchover) {
    return MigrationPhase::RollingBack;
  }
  if (event == MigrationEvent::OperatorAbandon &&
      (from == MigrationPhase::Switchover || from == MigrationPhase::Confirm)) {
    return MigrationPhase::Done;
  }
  const bool undo = event == MigrationEvent::Failure || event == MigrationEvent::Cancel;
  switch (from) {
    case MigrationPhase::Preflight:
      to = event == MigrationEvent::PreflightPassed ? std::optional(MigrationPhase::PrepareTarget)
                                                    : std::nullopt;
      break;
    case MigrationPhase::PrepareTarget:
      to = event == MigrationEvent::TargetPrepared ? std::optional(MigrationPhase::MirrorDisks)
                                                   : std::nullopt;
      break;
    case MigrationPhase::MirrorDisks:
      to = event == MigrationEvent::MirrorsReady ? std::optional(MigrationPhase::PrecopyRam)
                                                 : std::nullopt;
      break;
    case MigrationPhase::PrecopyRam:
      to = event == MigrationEvent::RamConverged ? std::optional(MigrationPhase::Switchover)
                                                 : std::nullopt;
      break;
    case MigrationPhase::Switchover:
      to = event == MigrationEvent::TargetStarted ? std::optional(MigrationPhase::Confirm)
                                                  : std::nullopt;
      break;
    case MigrationPhase::Confirm:
      if (event == MigrationEvent::TargetConfirmed) {
        to = MigrationPhase::Done;
      } else if (event == MigrationEvent::Failure) {
        to = MigrationPhase::Confirm;  // the guest runs at the target: retry, never go back
      } else if (event == MigrationEvent::Cancel) {
        return fail(ErrorCode::IllegalTransition,
                    "Too late to cancel: the VM already runs at the target (phase confirm)");
      }
      return to ? Result<MigrationPhase>(*to)
                : fail(ErrorCode::IllegalTransition, std::string("Event ") +
                                                         std::string(toString(event)) +
                                                         " is not allowed in phase confirm");
    case MigrationPhase::RollingBack:
      to = event == MigrationEvent::RollbackDone     ? std::optional(MigrationPhase::RolledBack)
           : event == MigrationEvent::RollbackFailed ? std::optional(MigrationPhase::Failed)
           : event == MigrationEvent::Cancel || event == MigrationEvent::Failure
               ? std::optional(MigrationPhase::RollingBack)  // already undoing: idempotent
               : std::nullopt;
      return to ? Result<MigrationPhase>(*to)
                : fail(ErrorCode::IllegalTransition, std::string("Event ") +
                                                         std::string(toString(event)) +
                                                         " is not allowed while rolling back");
    case MigrationPhase::Invalid:
    case MigrationPhase::Done:
    case MigrationPhase::RolledBack:
    case MigrationPhase::Failed:
      return fail(ErrorCode::IllegalTransition,
                  std::string("Migration already ended (") + std::string(toString(from)) +
                      "): " + std::string(toString(event)) + " is not allowed");
  }
  if (!to && undo) {
    to = MigrationPhase::RollingBack;  // the source is still authoritative: undo
  }
  if (!to) {
    return fail(ErrorCode::IllegalTransition, std::string("Event ") + std::string(toString(event)) +
                                                  " is not allowed in phase " +
                                                  std::string(toString(from)));
  }
  return *to;
}

std::string_view toString(RecoveryStep s) {
  switch (s) {
    case RecoveryStep::Nothing:
      return "nothing";
    case RecoveryStep::RollBack:
      return "roll_back";
    case RecoveryStep::ResumeRollback:
      return "resume_rollback";
    case RecoveryStep::WaitForPeer:
      return "wait_for_peer";
    case RecoveryStep::FinishConfirm:
      return "finish_confirm";
    case RecoveryStep::CleanUpTarget:
      return "clean_up_target";
    case RecoveryStep::KeepTarget:
      return "keep_target";
    case RecoveryStep::MarkFailed:
      return "mark_failed";
    case RecoveryStep::AdoptTarget:
      return "adopt_target";
  }
  return "invalid";
}

std::string_view toString(PeerView v) {
  switch (v) {
    case PeerView::Unreachable:
      return "unreachable";
    case PeerView::Unsettled:
      return "unsettled";
    case PeerView::TargetOwns:
      return "target_owns";
    case PeerView::GuestLost:
      return "guest_lost";
    case PeerView::NotStarted:
      return "not_started";
  }
  return "invalid";
}

PeerView peerViewOf(bool known, std::string_view phase, bool guest_running) {
  if (!known) {
    return PeerView::NotStarted;  // it has no record: nothing of the guest is there
  }
  const auto p = migrationPhaseFromString(phase);
  if (!p) {
    return PeerView::Unsettled;  // a newer peer's phase: do not guess
  }
  switch (*p) {
    case MigrationPhase::Done:
      return PeerView::TargetOwns;  // over: whether it runs now is the target's business
    case MigrationPhase::Confirm:
      return guest_running ? PeerView::TargetOwns : PeerView::GuestLost;
    case MigrationPhase::Switchover:   // starting the guest right now (its answer decides)
    case MigrationPhase::RollingBack:  // cleaning up right now
      return PeerView::Unsettled;
    case MigrationPhase::Preflight:
    case MigrationPhase::PrepareTarget:
    case MigrationPhase::MirrorDisks:
    case MigrationPhase::PrecopyRam:
    case MigrationPhase::RolledBack:
    case MigrationPhase::Failed:
      return PeerView::NotStarted;
    case MigrationPhase::Invalid:
      break;
  }
  return PeerView::Unsettled;
}

RecoveryStep recoveryFor(MigrationRole role, MigrationPhase phase, const Observation& seen) {
  if (isTerminal(phase) || phase == MigrationPhase::Invalid) {
    return RecoveryStep::Nothing;
  }
  if (role == MigrationRole::Target) {
    switch (phase) {
      case MigrationPhase::Confirm:
        // A running guest here may be the only copy: keep it unless it is gone.
        return seen.local_qemu_alive ? RecoveryStep::KeepTarget : RecoveryStep::CleanUpTarget;
      case MigrationPhase::Switchover:
        // `started` is sent only after confirm is written, so the source never heard it: it
        // keeps its paused copy until this side says how it ended. A guest that runs here
        // already (the agent died after `cont`) has run: it goes on here, the source's copy
        // is stale. Otherwise clean up, and the source resumes its copy.
        return seen.local_qemu_alive && seen.local_guest_running ? RecoveryStep::AdoptTarget
                                                                 : RecoveryStep::CleanUpTarget;
      case MigrationPhase::RollingBack:
      case MigrationPhase::Preflight:
      case MigrationPhase::PrepareTarget:
      case MigrationPhase::MirrorDisks:
      case MigrationPhase::PrecopyRam:
        return RecoveryStep::CleanUpTarget;  // the source is authoritative: nothing here counts
      case MigrationPhase::Invalid:
      case MigrationPhase::Done:
      case MigrationPhase::RolledBack:
      case MigrationPhase::Failed:
        return RecoveryStep::Nothing;
    }
    return RecoveryStep::Nothing;
  }
  switch (phase) {
    case MigrationPhase::Preflight:
    case MigrationPhase::PrepareTarget:
    case MigrationPhase::MirrorDisks:
    case MigrationPhase::PrecopyRam:
      return RecoveryStep::RollBack;
    case MigrationPhase::Switchover:
      switch (seen.peer) {
        case PeerView::Unreachable:
        case PeerView::Unsettled:
          return RecoveryStep::WaitForPeer;
        case PeerView::TargetOwns:
          return RecoveryStep::FinishConfirm;
        case PeerView::GuestLost:
          return RecoveryStep::MarkFailed;  // it ran there: the source's copy is stale
        case PeerView::NotStarted:
          return seen.local_qemu_alive ? RecoveryStep::RollBack : RecoveryStep::MarkFailed;
      }
      return RecoveryStep::WaitForPeer;
    case MigrationPhase::Confirm:
      // Past the point of no return: only forward. A target that lost the guest, or says it
      // never had it, leaves nothing to finish automatically.
      return seen.peer == PeerView::GuestLost || seen.peer == PeerView::NotStarted
                 ? RecoveryStep::MarkFailed
                 : RecoveryStep::FinishConfirm;
    case MigrationPhase::RollingBack:
      return RecoveryStep::ResumeRollback;
    case MigrationPhase::Invalid:
    case MigrationPhase::Done:
    case MigrationPhase::RolledBack:
    case MigrationPhase::Failed:
      return RecoveryStep::Nothing;
  }
  return RecoveryStep::Nothing;
}

}  // namespace vandra::orchestrator
