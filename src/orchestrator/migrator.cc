#include "vandra/orchestrator/migrator.h"

#include <algorithm>

#include "source_steps.h"
#include "vandra/common/failpoint.h"

namespace vandra::orchestrator {

using detail::expect;
using detail::nowUs;
using detail::persist;

// The step loop (source_steps.h draws it): each phase's step runs; its outcome and the
// transition table decide what is written next.
Result<MigrationRecord> runSourceMigration(MigrationHost& host, MigrationStore& store,
                                           PeerChannel& peer, const MigrateRequest& req) {
  VANDRA_TRY_ASSIGN(HostVm vm, host.vm(req.vm_id));
  MigrationRecord rec = newMigrationRecord(req.migration_id, req.vm_id, MigrationRole::Source,
                                           req.target_site, nowUs());
  VANDRA_TRY_ASSIGN(rec, store.insert(rec));
  detail::SourceContext ctx(host, store, peer, req, std::move(vm), std::move(rec));
  const auto steps = detail::makeSourceSteps();
  size_t ran = 0;  // steps[0, ran) have run
  for (;;) {
    const MigrationPhase phase = ctx.rec.phase;
    const auto it = std::find_if(steps.begin(), steps.end(),
                                 [&](const auto& s) { return s->phase() == phase; });
    const auto completion = completionOf(phase);
    if (it == steps.end() || !completion) {
      return ctx.rec;  // terminal
    }
    ran = std::max(ran, static_cast<size_t>(it - steps.begin()) + 1);
    const detail::StepOutcome out = (*it)->run(ctx);
    switch (out.kind) {
      case detail::StepOutcome::Kind::Done: {
        ctx.report.writeTo(ctx.rec.report);
        VANDRA_TRY_ASSIGN(ctx.rec, persist(store, ctx.rec, *completion));
        continue;
      }
      case detail::StepOutcome::Kind::Hold:
        ctx.report.writeTo(ctx.rec.report);
        return store.update(ctx.rec);
      case detail::StepOutcome::Kind::Settle: {
        ctx.report.writeTo(ctx.rec.report);
        VANDRA_TRY_ASSIGN(ctx.rec, store.update(ctx.rec));
        return settleSourceMigration(host, store, peer, ctx.rec);
      }
      case detail::StepOutcome::Kind::Fail:
        break;
    }
    // Before the target runs the guest, every failure ends here: the engine stopped, the
    // target told to abort, the source resumed if it was paused, the record rolled back with
    // the reason (or failed, naming what was left).
    const Error why = *out.error;
    (void)ctx.outgoing->finish(why);
    ctx.report.writeTo(ctx.rec.report);
    VANDRA_TRY_ASSIGN(ctx.rec, persist(store, ctx.rec,
                                       why.code == ErrorCode::Cancelled ? MigrationEvent::Cancel
                                                                        : MigrationEvent::Failure));
    ctx.rec.error = why.describe();
    std::vector<std::string> leftovers;
    for (size_t i = 0; i < ran; ++i) {  // in phase order: the target before the source
      auto left = steps[i]->rollback(ctx);
      leftovers.insert(leftovers.end(), left.begin(), left.end());
    }
    ctx.report.leftovers = leftovers;
    ctx.report.writeTo(ctx.rec.report);
    return persist(
        store, ctx.rec,
        leftovers.empty() ? MigrationEvent::RollbackDone : MigrationEvent::RollbackFailed);
  }
}

Result<MigrationRecord> settleSourceMigration(MigrationHost& host, MigrationStore& store,
                                              PeerChannel& peer, MigrationRecord rec,
                                              const PostcopyRecovery& postcopy) {
  if (rec.role != MigrationRole::Source ||
      (rec.phase != MigrationPhase::Switchover && rec.phase != MigrationPhase::Confirm)) {
    return rec;  // nothing the peer's word decides
  }
  // 1. Ask.
  Observation seen;
  std::optional<tunnel::Status> status;
  std::string said;
  auto answer = peer.exchange(tunnel::Query{rec.id}, Clock::now() + std::chrono::seconds(30));
  if (!answer) {
    said = "no answer: " + answer.error().describe();
  } else if (const auto* st = std::get_if<tunnel::Status>(&*answer)) {
    status = *st;
    seen.peer = peerViewOf(st->known, st->phase, st->guest_running);
    said = st->known ? "its record is in " + st->phase +
                           (st->guest_running ? ", the guest runs there" : ", no guest runs there")
                     : "it has no record of the migration";
  } else {
    said = "it answered " + std::string(tunnel::typeName(*answer)) + " to query";
  }
  const auto vm = host.vm(rec.vm_id);
  seen.local_qemu_alive = vm && vm->qemu_alive;
  const RecoveryStep step = recoveryFor(MigrationRole::Source, rec.phase, seen);
  detail::SettleTry{nowUs(),
                    std::string(toString(rec.phase)),
                    std::string(toString(seen.peer)),
                    said,
                    seen.local_qemu_alive,
                    std::string(toString(step))}
      .appendTo(rec.report);
  detail::SourceReport report;
  const std::string target = rec.peer_site;
  // 2. Act on the table's answer.
  switch (step) {
    case RecoveryStep::FinishConfirm: {
      if (rec.phase == MigrationPhase::Switchover) {
        VANDRA_TRY_ASSIGN(rec, persist(store, rec, MigrationEvent::TargetStarted));
      }
      // A post-copy still running: the guest there needs pages only this QEMU holds.
      if (vm && vm->qemu_alive) {
        if (auto p = host.postcopyProgress(rec.vm_id); p && migration::inPostcopy(p->status)) {
          if (!postcopy.reopen_migration) {
            rec.error = "The guest runs at " + target + " in post-copy (" + p->status +
                        "): the source keeps its QEMU until every page is sent";
            return store.update(rec);
          }
          MigrateRequest req;
          req.migration_id = rec.id;
          req.vm_id = rec.vm_id;
          req.target_site = target;
          req.reopen_migration = postcopy.reopen_migration;
          req.cancelled = postcopy.stopping;
          detail::SourceContext ctx(host, store, peer, req, *vm, rec);
          auto sent = detail::finishPostcopy(ctx);
          rec = ctx.rec;
          if (!sent) {
            rec.error = "The guest runs at " + target +
                        " in post-copy, not finished: " + sent.error().describe();
            return store.update(rec);
          }
        }
      }
      if (vm) {
        if (auto released = host.releaseMigrated(rec.vm_id, rec.id); !released) {
          report.warning = "source not released: " + released.error().describe();
          report.writeTo(rec.report);
        }
      }
      auto confirmed = expect<tunnel::Confirmed>(
          peer.exchange(tunnel::Confirm{rec.id}, Clock::now() + std::chrono::seconds(30)),
          "confirm");
      if (!confirmed) {
        rec.error = "The guest runs at " + target +
                    "; its confirm is not acknowledged yet: " + confirmed.error().describe();
        return store.update(rec);
      }
      rec.error.clear();
      return persist(store, rec, MigrationEvent::TargetConfirmed);
    }
    case RecoveryStep::RollBack: {
      // The target never started the guest: the paused source copy is the only one.
      std::vector<std::string> leftovers;
      if (status && status->known &&
          !isTerminal(migrationPhaseFromString(status->phase).value_or(MigrationPhase::Failed))) {
        auto aborted = peer.exchange(tunnel::Abort{rec.id, "the source resumes the guest",
                                                   tunnel::MigrationPhase::Switchover},
                                     Clock::now() + std::chrono::seconds(60));
        if (!aborted) {
          leftovers.push_back("target not reached: " + aborted.error().describe());
        } else if (auto* a = std::get_if<tunnel::Aborted>(&*aborted); a != nullptr && !a->cleaned) {
          leftovers.insert(leftovers.end(), a->leftovers.begin(), a->leftovers.end());
        }
      }
      auto cancelled = host.cancelStrayMigration(rec.vm_id);  // paused before completion
      if (!cancelled && cancelled.error().code == ErrorCode::IllegalTransition) {
        // QEMU's migration completed (the target holds the state but never ran it): the
        // source's disks were never switched away, so it simply continues.
        if (auto resumed = host.resumeAfterFailedSwitchover(rec.vm_id); !resumed) {
          leftovers.push_back("source not resumed: " + resumed.error().describe());
        }
      } else if (!cancelled) {
        leftovers.push_back("source not resumed: " + cancelled.error().describe());
      }
      const std::string why = "Rolled back after the switchover was interrupted: " + target +
                              " never started the guest (" + said + ")";
      VANDRA_TRY_ASSIGN(rec, persist(store, rec, MigrationEvent::Failure));
      rec.error = why;
      report.leftovers = leftovers;
      report.writeTo(rec.report);
      return persist(
          store, rec,
          leftovers.empty() ? MigrationEvent::RollbackDone : MigrationEvent::RollbackFailed);
    }
    case RecoveryStep::MarkFailed:
      rec.error = "Neither site can finish or undo this migration by itself (" + target + ": " +
                  said + "; the source's QEMU " + (seen.local_qemu_alive ? "runs" : "is gone") +
                  "): an operator must look";
      return persist(store, rec, MigrationEvent::Lost);
    case RecoveryStep::WaitForPeer:
    case RecoveryStep::Nothing:
    case RecoveryStep::ResumeRollback:
    case RecoveryStep::CleanUpTarget:
    case RecoveryStep::KeepTarget:
    case RecoveryStep::AdoptTarget:
      break;
  }
  rec.error = "Waiting for " + target +
              " to say whether it runs the guest (the source keeps it paused): " + said;
  return store.update(rec);
}

}  // namespace vandra::orchestrator
