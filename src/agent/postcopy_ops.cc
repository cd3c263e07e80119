// AgentService's halves of a post-copy (ADR 0032; the engine's states are drawn in
// migration/qemu_migration_postcopy.cc). Once the source continued into post-copy the guest
// runs at the target and its missing pages come from the source: nothing rolls back. A stream
// that breaks pauses both QEMUs; the orchestrator then connects a new one and these resume.
//
//   source                                    target
//   postcopyProgress (query-migrate) ...      (guest runs, faults pages in)
//   stalled? pausePostcopyOut                 recoverPostcopyIn: pause if still active,
//                                               wait postcopy-paused, migrate-recover (OOB)
//   resumePostcopyOut (migrate resume) ---->  new stream, pages flow again
//   completed: releaseMigrated                 completed
//
// The target's commands go through its event monitor (VmMonitor::withClient), connected
// since QEMU started: a paused target's main loop may wait for a page and then neither answers
// an in-band command nor a new connection's handshake.
#include "vandra/agent/agent_service.h"
#include "vandra/common/scope_guard.h"

namespace vandra::agent {

Result<migration::MigrationProgress> AgentService::postcopyProgress(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(const VmRecord r, get(id));
  if (r.pid == 0) {
    return fail(ErrorCode::IllegalTransition, "VM '" + id + "' has no QEMU here");
  }
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(id).qmp_socket, {}));
  return migration::progress(*qmp);
}

Result<void> AgentService::pausePostcopyOut(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  qmp::QmpClientOptions oob;
  oob.enable_oob = true;  // migrate-pause goes out of band
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(id).qmp_socket, oob));
  VANDRA_TRY_ASSIGN(const auto st, migration::progress(*qmp));
  if (st.status == "postcopy-paused") {
    return {};  // paused already (the stream closed): nothing to do
  }
  VANDRA_TRY(migration::pausePostcopy(*qmp));
  events_.append(id, "migration", "post-copy-paused", {{"by", "stall"}});
  return {};
}

Result<void> AgentService::resumePostcopyOut(const std::string& id,
                                             const std::string& migration_socket,
                                             std::chrono::steady_clock::time_point deadline) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  migration::EventWaiter waiter;
  setEventSink(id, waiter.sink());
  auto unsink = defer([&] { setEventSink(id, {}); });
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(id).qmp_socket, {}));
  VANDRA_TRY(migration::resumePostcopy(*qmp, waiter, "unix:" + migration_socket, deadline));
  events_.append(id, "migration", "post-copy-resumed", {});
  return {};
}

Result<void> AgentService::recoverPostcopyIn(const std::string& id,
                                             const std::string& migration_socket,
                                             std::chrono::steady_clock::time_point deadline) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(const VmRecord r, get(id));
  if (r.state != VmState::Running) {
    return fail(ErrorCode::IllegalTransition,
                "VM '" + id + "' is " + std::string(toString(r.state)) + ", not running here");
  }
  migration::EventWaiter waiter;
  setEventSink(id, waiter.sink());
  auto unsink = defer([&] { setEventSink(id, {}); });
  VmMonitor* monitor = nullptr;
  {
    std::lock_guard lock(monitors_mu_);  // unwatch() needs the VM's lock, which is held
    if (auto it = monitors_.find(id); it != monitors_.end()) {
      monitor = it->second.get();
    }
  }
  if (monitor == nullptr) {
    return fail(ErrorCode::QmpDisconnected, "VM '" + id + "' has no event monitor here");
  }
  const std::string uri = "unix:" + migration_socket;
  // True: QEMU listens on @p migration_socket; false: it refused (not paused).
  auto listen = [&]() -> Result<bool> {
    auto done =
        monitor->withClient([&](qmp::QmpClient& c) { return migration::recoverIncoming(c, uri); });
    if (done) {
      return true;
    }
    if (done.error().code != ErrorCode::IllegalTransition) {  // QEMU's refusal
      return fail(done.error());
    }
    // An earlier attempt's listener still waits (its stream never came): the orchestrator
    // reuses the same socket path for every attempt, so it serves this one too.
    return done.error().message.find("triggered already") != std::string::npos;
  };
  VANDRA_TRY_ASSIGN(bool listening, listen());
  if (!listening) {
    // Refused: the stream stalled without closing and this end still waits on it. Paused
    // here too (the source paused first), then it listens again.
    VANDRA_TRY(monitor->withClient([](qmp::QmpClient& c) { return migration::pausePostcopy(c); }));
    VANDRA_TRY_ASSIGN(const bool completed, migration::waitIncomingPostcopyEnd(waiter, deadline));
    if (completed) {
      return fail(ErrorCode::IllegalTransition,
                  "VM '" + id + "' completed its post-copy here: nothing to recover");
    }
    VANDRA_TRY_ASSIGN(listening, listen());
    if (!listening) {
      return fail(ErrorCode::IllegalTransition,
                  "VM '" + id + "' paused its post-copy but refuses to listen again");
    }
  }
  events_.append(id, "migration", "post-copy-recovering", {});
  return {};
}

}  // namespace vandra::agent
