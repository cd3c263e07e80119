// One live migration as both agents see it: an explicit phase enum, the one table of legal
// transitions, and the recovery table a restarted agent applies (per role). Pure: no I/O.
// The rule it encodes (docs/architecture.md, "Rules that shape everything"): the source is
// authoritative until the target has started the guest; every failure before that ends with
// the VM running on the source and the target cleaned; after it, only forward.
//
//   preflight --passed--> prepare_target --prepared--> mirror_disks --mirrors_ready-->
//   precopy_ram --ram_converged--> switchover --target_started--> confirm --confirmed--> done
//        |               |                  |               |              |
//        +---------------+------------------+---------------+--------------+
//                 failure / cancel (the target has not started the guest)
//                                         v
//                                   rolling_back --rollback_done--> rolled_back
//                                         +------rollback_failed--> failed
//   confirm: failure stays in confirm (retried); cancel is refused: the VM runs at the target.
//   switchover, confirm --lost--> failed: the sites' accounts disagree or the guest is gone
//   (a restarted source's recovery found it so); an operator must look.
//   An operator who knows the target's fate ends a source that waits for its word (the peer
//   unreachable; docs/migration/orchestrator.md, "Resolving by hand"):
//     switchover --operator_resume--> rolling_back (the paused source copy resumes here)
//     switchover, confirm --operator_abandon--> done (the target runs it: the source let go)
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "vandra/common/migration_phase.h"
#include "vandra/common/result.h"

namespace vandra::orchestrator {

using vandra::kAllPhases;
using vandra::MigrationPhase;
using vandra::migrationPhaseFromString;
using vandra::toString;

enum class MigrationEvent : uint8_t {
  PreflightPassed = 1,
  TargetPrepared = 2,
  MirrorsReady = 3,
  RamConverged = 4,     // QEMU reached pre-switchover (source vCPUs stopped)
  TargetStarted = 5,    // the target reported the guest running
  TargetConfirmed = 6,  // source stopped and released; the target acknowledged
  Failure = 7,
  Cancel = 8,  // the operator asked
  RollbackDone = 9,
  RollbackFailed = 10,
  Lost = 11,             // recovery: nothing left that it may finish or undo by itself
  OperatorResume = 12,   // the operator says the target never ran the guest: resume it here
  OperatorAbandon = 13,  // the operator says the target runs the guest: let the source go
};
inline constexpr MigrationEvent kAllEvents[] = {MigrationEvent::PreflightPassed,
                                                MigrationEvent::TargetPrepared,
                                                MigrationEvent::MirrorsReady,
                                                MigrationEvent::RamConverged,
                                                MigrationEvent::TargetStarted,
                                                MigrationEvent::TargetConfirmed,
                                                MigrationEvent::Failure,
                                                MigrationEvent::Cancel,
                                                MigrationEvent::RollbackDone,
                                                MigrationEvent::RollbackFailed,
                                                MigrationEvent::Lost,
                                                MigrationEvent::OperatorResume,
                                                MigrationEvent::OperatorAbandon};

enum class MigrationRole : uint8_t { Source = 1, Target = 2 };

std::string_view toString(MigrationEvent e);
std::string_view toString(MigrationRole r);
bool isTerminal(MigrationPhase p);
/// True while the source is authoritative (a failure rolls back).
bool beforeSwitchoverCommitted(MigrationPhase p);

/// The event that ends phase @p p when its work succeeds: the table's forward path, which
/// the step loop (migrator.cc) follows. nullopt for phases without forward work (terminal,
/// rolling_back, invalid).
std::optional<MigrationEvent> completionOf(MigrationPhase p);

/// The phase after @p event in @p from. Errors: IllegalTransition naming both (a cancel in
/// confirm says the VM already runs at the target).
[[nodiscard]] Result<MigrationPhase> transition(MigrationPhase from, MigrationEvent event);

/// What the peer said of the migration (a `status` answer to `query`), as recovery needs it.
enum class PeerView : uint8_t {
  Unreachable = 1,  // no answer: down, cut off, or a peer too old to know `query`
  Unsettled = 2,    // the peer is inside a step of its own (switchover, rolling back), or
                    // names a phase this build does not know: ask again later
  TargetOwns = 3,   // the target started the guest (confirm with it running, or done)
  GuestLost = 4,    // the target started the guest, but its QEMU is gone now
  NotStarted = 5,   // the target never started it: no record, before switchover, rolled back
};
std::string_view toString(PeerView v);

/// The view of a `status` answer (control.h) from the target: @p phase is its record's phase.
PeerView peerViewOf(bool known, std::string_view phase, bool guest_running);

/// What a restarted agent finds on the host and at the peer.
struct Observation {
  bool local_qemu_alive = false;          // the migration's QEMU on this host
  PeerView peer = PeerView::Unreachable;  // what the target said (source only)
  bool local_guest_running = false;       // that QEMU runs the guest (target only)
};

enum class RecoveryStep : uint8_t {
  Nothing = 1,         // terminal phase: keep the record for history
  RollBack = 2,        // source: cancel jobs, resume the source, tell the target to abort
  ResumeRollback = 3,  // continue an interrupted rollback (idempotent steps)
  WaitForPeer = 4,     // switchover with the peer unreachable or mid-step: never resume the
                       // source while the target might run the guest (two copies); ask again
  FinishConfirm = 5,   // the target runs the guest: stop the source QEMU, release its disks,
                       // send confirm (again, until the target acknowledges it)
  CleanUpTarget = 6,   // target: kill the incoming QEMU, drop exports and disks
  KeepTarget = 7,      // target: the guest runs here; wait for the source's confirm
  MarkFailed = 8,      // nothing left to save automatically (e.g. both QEMUs gone)
  AdoptTarget = 9,     // target in switchover whose guest runs here (the agent died after
                       // `cont`, before writing confirm): write confirm and keep it
};
std::string_view toString(RecoveryStep s);

/// The recovery table, per role, over every phase (unit-tested for every combination).
RecoveryStep recoveryFor(MigrationRole role, MigrationPhase phase, const Observation& seen);

}  // namespace vandra::orchestrator
