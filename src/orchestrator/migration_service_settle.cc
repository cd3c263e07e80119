// MigrationService: settling what needs the peer's word after a run (migrator.h,
// settleSourceMigration), closing unconfirmed targets, and recovery at start.
// migration_service_impl.h says where the rest is.
#include "migration_service_impl.h"
#include "vandra/orchestrator/resolve.h"

namespace vandra::orchestrator {

namespace fs = std::filesystem;

void MigrationService::Impl::startSettler() {
  settler_ = std::thread([this] { settleLoop(); });
}

void MigrationService::Impl::settleLater(const std::string& id) {
  {
    std::lock_guard lock(settle_mu_);
    settling_.try_emplace(id, Settle{SteadyClock::now(), std::chrono::seconds(1), false, false});
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
    for (auto& [id, e] : settling_) {
      if (e.resolving) {
        continue;  // the operator's word decides it now (resolve)
      }
      if (e.due <= now) {
        due.push_back(id);
        e.trying = true;
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
      it->second.trying = false;
      settled_cv_.notify_all();  // a resolve waits for the try to end
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
      noteWaiting(rec, "peer " + rec.peer_site + " unreachable: " + stream.error().describe(),
                  nowUs());
      (void)store_.update(rec);
      return false;
    }
    StreamChannel channel(std::move(*stream),
                          [this, peer = rec.peer_site, id]() -> Result<tunnel::Stream> {
                            VANDRA_TRY_ASSIGN(auto l, linkTo(peer));
                            return l->tunnel->openStream(tunnel::StreamKind::Control, id);
                          });
    // A source QEMU found in post-copy sends the rest first (recovering its stream).
    ReopenedStreams reopened;
    PostcopyRecovery postcopy;
    postcopy.reopen_migration = reopener(id, rec.peer_site, reopened);
    postcopy.stopping = [this]() -> std::optional<std::string> {
      std::lock_guard lock(mu_);
      return stopping_ ? std::optional<std::string>("the agent is stopping") : std::nullopt;
    };
    auto out = settleSourceMigration(host_, store_, channel, rec, postcopy);
    channel.close();
    if (!reopened.held.empty()) {  // the recovery's sockets, in the migration's run folder
      reopened.held.clear();
      std::error_code ec;
      fs::remove_all(migrationNames(config_.run_dir, id).dir, ec);
    }
    if (!out) {
      return false;
    }
    done = isTerminal(out->phase);
    if (!done) {
      noteWaiting(*out, "", nowUs());
      (void)store_.update(*out);
    }
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
        noteWaiting(r, "peer " + r.peer_site + "'s word (asking it since this agent restarted)",
                    nowUs());
        if (auto u = store_.update(r)) {
          r = *u;
        }
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

// The settler holds migration @p id (its runner, if any, has handed it over) and no resolve
// owns it: it waits for the peer's word, and an operator may resolve it.
bool MigrationService::Impl::waitingForPeer(const std::string& id) {
  if (const std::shared_ptr<ActiveMigration> a = activeById(id)) {
    std::lock_guard lock(a->mu);
    if (!a->ended) {
      return false;
    }
  }
  std::lock_guard lock(settle_mu_);
  const auto it = settling_.find(id);
  return !settle_stop_ && it != settling_.end() && !it->second.resolving;
}

// ---- the operator's word on a source that waits for its peer (resolve.h) ----------------------

Result<json> MigrationService::Impl::resolve(const std::string& id, const Resolution& how) {
  VANDRA_TRY_ASSIGN(auto r, store_.get(id));
  if (!r) {
    if (activeById(id)) {  // begun, its record not written yet
      return fail(ErrorCode::IllegalTransition,
                  "Migration '" + id + "' is starting: it is not waiting for its peer");
    }
    return fail(ErrorCode::NotFound, "No migration '" + id + "' at " + config_.site);
  }
  auto release = [&] {  // the settler takes it up again (unless it settled meanwhile)
    std::lock_guard lock(settle_mu_);
    if (auto it = settling_.find(id); it != settling_.end()) {
      it->second.resolving = false;
      it->second.due = SteadyClock::now();
    }
    settle_cv_.notify_all();
  };
  bool runner_done = true;  // a runner still talking to the peer owns the record
  if (const std::shared_ptr<ActiveMigration> a = activeById(id)) {
    std::lock_guard lock(a->mu);
    runner_done = a->ended;
  }
  {
    std::unique_lock lock(settle_mu_);
    auto it = settling_.find(id);
    const bool waiting =
        runner_done && it != settling_.end() && !it->second.resolving && !settle_stop_;
    VANDRA_TRY(checkResolvable(*r, how.action, waiting));
    it->second.resolving = true;
    // A try under way ends first: at most a dial and a query (handshake and answer timeouts).
    if (!settled_cv_.wait_for(lock, std::chrono::seconds(90), [&] {
          const auto e = settling_.find(id);
          return settle_stop_ || e == settling_.end() || !e->second.trying;
        })) {
      lock.unlock();
      release();
      return fail(ErrorCode::Timeout, "Migration '" + id + "' is being asked of " + r->peer_site +
                                          " right now: try again");
    }
    if (settle_stop_) {
      return fail(ErrorCode::Busy, "The agent is stopping");
    }
  }
  // The try may have settled it meanwhile: then there is nothing left to decide.
  auto now = store_.get(id);
  if (!now || !*now) {
    release();
    return fail(!now ? now.error() : Error(ErrorCode::NotFound, "Migration '" + id + "' is gone"));
  }
  if (auto ok = checkResolvable(**now, how.action, true); !ok) {
    release();
    return fail(ok.error());
  }
  auto out = resolveSourceMigration(agent_, store_, **now, how);
  {
    std::lock_guard lock(settle_mu_);
    if (out && isTerminal(out->phase)) {
      settling_.erase(id);
      settled_cv_.notify_all();
    }
  }
  if (!out) {
    release();
    return fail(out.error());
  }
  agent_.events().append(out->vm_id, "migration", "migration-resolved",
                         {{"migration", id},
                          {"action", std::string(toString(how.action))},
                          {"reason", how.reason},
                          {"who", how.who},
                          {"phase", std::string(toString(out->phase))}});
  if (const std::shared_ptr<ActiveMigration> a = activeById(id)) {
    std::lock_guard lock(a->mu);
    a->settling = false;
    ended_cv_.notify_all();
  }
  return show(id);
}

}  // namespace vandra::orchestrator
