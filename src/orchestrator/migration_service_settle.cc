// MigrationService: settling what needs the peer's word after a run (migrator.h,
// settleSourceMigration), closing unconfirmed targets, and recovery at start.
// migration_service_impl.h says where the rest is.
#include "migration_service_impl.h"

namespace vandra::orchestrator {

namespace fs = std::filesystem;

void MigrationService::Impl::startSettler() {
  settler_ = std::thread([this] { settleLoop(); });
}

void MigrationService::Impl::settleLater(const std::string& id) {
  {
    std::lock_guard lock(settle_mu_);
    settling_.try_emplace(id, Settle{SteadyClock::now(), std::chrono::seconds(1)});
  }
  settle_cv_.notify_all();
}

// A target whose guest runs waits for the source's confirm, for config_.confirm_timeout.
void MigrationService::Impl::closeUnconfirmedLater(const std::string& id) {
  {
    std::lock_guard lock(settle_mu_);
    confirm_due_[id] = SteadyClock::now() + config_.confirm_timeout;
  }
  settle_cv_.notify_all();
}

// The source never confirmed (its site gone, its agent down for good): the guest runs
// here and has since the `started` answer, so this site closes the migration. A source
// that comes back asks (query), hears `done` with the guest running, and releases its copy.
void MigrationService::Impl::closeUnconfirmed(const std::string& id) {
  auto r = store_.get(id);
  if (!r || !*r || (*r)->role != MigrationRole::Target || (*r)->phase != MigrationPhase::Confirm) {
    return;  // confirmed meanwhile, or gone
  }
  MigrationRecord rec = **r;
  const auto vm = agent_.get(rec.vm_id);
  const bool runs = vm && vm->state == agent::VmState::Running && vm->pid != 0 &&
                    agent::observeProcess(vm->pid, vm->pid_start_time).alive;
  if (!runs) {
    rec.error = "The source (" + rec.peer_site +
                ") has not confirmed, and the guest no longer runs here: an operator must look";
    (void)store_.update(rec);
    return;
  }
  auto closed = advance(rec, MigrationEvent::TargetConfirmed, nowUs());
  if (!closed) {
    return;
  }
  closed->error = "The source (" + rec.peer_site + ") did not confirm within " +
                  std::to_string(config_.confirm_timeout.count()) +
                  " s; the guest runs here, so this site closed it";
  closed->report["closed_unconfirmed"] = true;
  if (store_.update(*closed)) {
    agent_.events().append(rec.vm_id, "migration", "migration-closed-unconfirmed",
                           {{"migration", id}, {"source", rec.peer_site}});
  }
}

// Each record is tried when due, then again after 1, 2, 4 ... 30 s until it is settled;
// unconfirmed targets are closed when their time is up.
void MigrationService::Impl::settleLoop() {
  std::unique_lock lock(settle_mu_);
  while (!settle_stop_) {
    const auto now = SteadyClock::now();
    std::vector<std::string> due;
    auto next = SteadyClock::time_point::max();
    for (const auto& [id, e] : settling_) {
      if (e.due <= now) {
        due.push_back(id);
      } else {
        next = std::min(next, e.due);
      }
    }
    std::vector<std::string> unconfirmed;
    for (auto it = confirm_due_.begin(); it != confirm_due_.end();) {
      if (it->second <= now) {
        unconfirmed.push_back(it->first);
        it = confirm_due_.erase(it);
      } else {
        next = std::min(next, it->second);
        ++it;
      }
    }
    if (!unconfirmed.empty()) {
      lock.unlock();
      for (const auto& id : unconfirmed) {
        closeUnconfirmed(id);
      }
      lock.lock();
      continue;
    }
    if (due.empty()) {
      if (next == SteadyClock::time_point::max()) {
        settle_cv_.wait(lock);
      } else {
        settle_cv_.wait_until(lock, next);
      }
      continue;
    }
    lock.unlock();
    std::vector<std::pair<std::string, bool>> tried;
    for (const auto& id : due) {
      tried.emplace_back(id, settleOnce(id));
    }
    lock.lock();
    for (const auto& [id, done] : tried) {
      auto it = settling_.find(id);
      if (it == settling_.end()) {
        continue;
      }
      if (done) {
        settling_.erase(it);
        settled_cv_.notify_all();
      } else {
        it->second.backoff =
            std::min<std::chrono::seconds>(it->second.backoff * 2, std::chrono::seconds(30));
        it->second.due = SteadyClock::now() + it->second.backoff;
      }
    }
  }
}

// One try: true once the record needs nothing more of the peer.
bool MigrationService::Impl::settleOnce(const std::string& id) {
  {
    std::lock_guard lock(settle_mu_);
    if (settle_stop_) {
      return false;  // the agent is stopping: the next start asks again
    }
  }
  auto r = store_.get(id);
  if (!r) {
    return false;  // the store failed: try again later
  }
  bool done = !*r || (*r)->role != MigrationRole::Source ||
              ((*r)->phase != MigrationPhase::Switchover && (*r)->phase != MigrationPhase::Confirm);
  if (!done) {
    MigrationRecord rec = **r;
    auto link = linkTo(rec.peer_site);
    auto stream = link ? (*link)->tunnel->openStream(tunnel::StreamKind::Control, id)
                       : Result<tunnel::Stream>(fail(link.error()));
    if (!stream) {
      rec.error =
          "Waiting for " + rec.peer_site +
          " to say whether it runs the guest: cannot reach it: " + stream.error().describe();
      (void)store_.update(rec);
      return false;
    }
    StreamChannel channel(std::move(*stream),
                          [this, peer = rec.peer_site, id]() -> Result<tunnel::Stream> {
                            VANDRA_TRY_ASSIGN(auto l, linkTo(peer));
                            return l->tunnel->openStream(tunnel::StreamKind::Control, id);
                          });
    auto out = settleSourceMigration(host_, store_, channel, rec);
    channel.close();
    if (!out) {
      return false;
    }
    done = isTerminal(out->phase);
    if (done) {
      out->report["result"] = out->phase == MigrationPhase::Done ? "ok"
                              : out->error.empty()               ? std::string(toString(out->phase))
                                                                 : out->error;
      (void)store_.update(*out);
      agent_.events().append(out->vm_id, "migration", "migration-settled",
                             {{"migration", id}, {"phase", std::string(toString(out->phase))}});
    }
  }
  if (done) {
    const std::shared_ptr<ActiveMigration> a = activeById(id);
    if (a) {
      std::lock_guard lock(a->mu);
      a->settling = false;
      ended_cv_.notify_all();
    }
  }
  return done;
}

// ---- recovery ---------------------------------------------------------------------------------

Result<json> MigrationService::Impl::recover() {
  VANDRA_TRY_ASSIGN(const auto all, store_.list(""));
  json done = json::array();
  for (auto r : all) {
    if (isTerminal(r.phase)) {
      continue;
    }
    Observation seen;
    auto vm = agent_.get(r.vm_id);
    seen.local_qemu_alive =
        vm && vm->pid != 0 && agent::observeProcess(vm->pid, vm->pid_start_time).alive;
    if (seen.local_qemu_alive && r.role == MigrationRole::Target &&
        r.phase == MigrationPhase::Switchover) {
      seen.local_guest_running = agent_.incomingGuestRuns(r.vm_id).value_or(false);
    }
    const RecoveryStep step = recoveryFor(r.role, r.phase, seen);
    json entry = {{"id", r.id},
                  {"vm", r.vm_id},
                  {"role", std::string(toString(r.role))},
                  {"phase", std::string(toString(r.phase))},
                  {"step", std::string(toString(step))}};
    auto setPhase = [&](MigrationEvent e, const std::string& why) {
      if (auto n = advance(r, e, nowUs())) {
        if (!why.empty()) {
          n->error = why;
        }
        if (auto u = store_.update(*n)) {
          r = *u;
        }
      }
    };
    switch (step) {
      case RecoveryStep::AdoptTarget: {
        // The guest has run here: it must not run at the source again. Confirm is written
        // now; the source hears it when it asks (query) and releases its copy.
        auto adopted = agent_.adoptIncoming(r.vm_id);
        if (adopted) {
          setPhase(MigrationEvent::TargetStarted, "");
          closeUnconfirmedLater(r.id);
          entry["result"] = "adopted: the guest ran here already";
          break;
        }
        entry["adopt_error"] = adopted.error().describe();
        [[fallthrough]];  // it does not run after all: the source's copy is the one
      }
      case RecoveryStep::CleanUpTarget: {
        auto undone = agent_.abortIncoming(r.vm_id);
        setPhase(MigrationEvent::Failure, "the target agent restarted before the switchover");
        setPhase(undone ? MigrationEvent::RollbackDone : MigrationEvent::RollbackFailed, "");
        entry["result"] = undone ? "cleaned" : undone.error().describe();
        break;
      }
      case RecoveryStep::RollBack:
      case RecoveryStep::ResumeRollback: {
        // The source QEMU: whatever migration or mirror it still runs is cancelled by QMP and
        // the guest resumed (the agent's own startup recovery re-attached it).
        std::string result = "rolled back";
        if (seen.local_qemu_alive) {
          if (auto c = agent_.cancelStrayMigration(r.vm_id); !c) {
            result = "source not cleaned: " + c.error().describe();
          }
        }
        if (r.phase != MigrationPhase::RollingBack) {
          setPhase(MigrationEvent::Failure, "the source agent restarted before the switchover");
        }
        setPhase(MigrationEvent::RollbackDone, "");
        entry["result"] = result;
        break;
      }
      case RecoveryStep::MarkFailed:
        setPhase(MigrationEvent::Failure,
                 "the agent restarted and found neither side running the guest");
        setPhase(MigrationEvent::RollbackFailed, "");
        entry["result"] = "failed";
        break;
      case RecoveryStep::WaitForPeer:
      case RecoveryStep::FinishConfirm:
        // The target's word decides (settleSourceMigration): asked in the background, so
        // that an unreachable peer does not hold up this agent's start.
        settleLater(r.id);
        entry["result"] = "asking " + r.peer_site;
        break;
      case RecoveryStep::KeepTarget:
        closeUnconfirmedLater(r.id);  // the source's confirm settles it, or the timeout
        entry["result"] = "left for the peer";
        break;
      case RecoveryStep::Nothing:
        entry["result"] = "left for the peer";
        break;
    }
    done.push_back(entry);
  }
  return done;
}

}  // namespace vandra::orchestrator
