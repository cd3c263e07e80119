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
        VANDRA_TRY_ASSIGN(ctx.rec, persist(store, ctx.rec, *completion));
        continue;
      }
      case detail::StepOutcome::Kind::Hold:
        return store.update(ctx.rec);
      case detail::StepOutcome::Kind::Settle: {
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
    VANDRA_TRY_ASSIGN(ctx.rec, persist(store, ctx.rec,
                                       why.code == ErrorCode::Cancelled ? MigrationEvent::Cancel
                                                                        : MigrationEvent::Failure));
    ctx.rec.error = why.describe();
    std::vector<std::string> leftovers;
    for (size_t i = 0; i < ran; ++i) {  // in phase order: the target before the source
      auto left = steps[i]->rollback(ctx);
      leftovers.insert(leftovers.end(), left.begin(), left.end());
    }
    ctx.rec.report["leftovers"] = leftovers;
    return persist(
        store, ctx.rec,
        leftovers.empty() ? MigrationEvent::RollbackDone : MigrationEvent::RollbackFailed);
  }
}

Result<MigrationRecord> settleSourceMigration(MigrationHost& host, MigrationStore& store,
                                              PeerChannel& peer, MigrationRecord rec) {
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
  if (!rec.report.contains("settle") || !rec.report["settle"].is_array()) {
    rec.report["settle"] = nlohmann::json::array();
  }
  if (rec.report["settle"].size() >= 20) {
    rec.report["settle"].erase(
        rec.report["settle"].begin());  // a long wait keeps the last 20 tries
  }
  rec.report["settle"].push_back({{"at_us", nowUs()},
                                  {"phase", std::string(toString(rec.phase))},
                                  {"peer", std::string(toString(seen.peer))},
                                  {"said", said.substr(0, 500)},
                                  {"source_qemu_alive", seen.local_qemu_alive},
                                  {"step", std::string(toString(step))}});
  const std::string target = rec.peer_site;
  // 2. Act on the table's answer.
  switch (step) {
    case RecoveryStep::FinishConfirm: {
      if (rec.phase == MigrationPhase::Switchover) {
        VANDRA_TRY_ASSIGN(rec, persist(store, rec, MigrationEvent::TargetStarted));
      }
      if (vm) {
        if (auto released = host.releaseMigrated(rec.vm_id); !released) {
          rec.report["warning"] = "source not released: " + released.error().describe();
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
      rec.report["leftovers"] = leftovers;
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

// ---- target -------------------------------------------------------------------------------

Result<MigrationRecord> TargetSide::record(const std::string& migration_id) {
  VANDRA_TRY_ASSIGN(auto r, store_.get(migration_id));
  if (!r || r->role != MigrationRole::Target) {
    return fail(ErrorCode::NotFound, "No incoming migration '" + migration_id + "' here");
  }
  return *r;
}

Result<MigrationRecord> TargetSide::step(MigrationRecord r, MigrationEvent e) {
  return persist(store_, std::move(r), e);
}

tunnel::Aborted TargetSide::rollBack(MigrationRecord r, const std::string& why) {
  tunnel::Aborted a;
  a.migration_id = r.id;
  if (auto s = step(r, MigrationEvent::Failure); s) {
    r = *s;
  }
  if (config_.lan) {  // first: it reads the VM's MACs, which go with the VM
    r.report["lan_drop"] = config_.lan(r.vm_id, Config::LanStep::Drop);
  }
  auto undone = host_.abortIncoming(r.vm_id);
  a.cleaned = undone.has_value();
  if (!undone) {
    a.leftovers.push_back(undone.error().describe().substr(0, 500));
  }
  r.error = why;
  (void)step(r, a.cleaned ? MigrationEvent::RollbackDone : MigrationEvent::RollbackFailed);
  return a;
}

Result<tunnel::ControlMessage> TargetSide::handle(const tunnel::ControlMessage& msg) {
  if (const auto* pf = std::get_if<tunnel::Preflight>(&msg)) {
    tunnel::PreflightResult res;
    res.migration_id = pf->migration_id;
    res.target_site = config_.site;
    res.jurisdiction = config_.jurisdiction;
    // Capacity.
    VANDRA_TRY_ASSIGN(const agent::Resources free, host_.freeCapacity());
    res.free = {static_cast<uint32_t>(free.vcpus), free.memory_mib, free.disk_bytes};
    uint64_t disk = 0;
    for (const auto& d : pf->disks) {
      disk += d.virtual_size;
    }
    if (pf->memory_mib > res.free.memory_mib) {
      res.reasons.push_back("needs " + std::to_string(pf->memory_mib) + " MiB of memory, " +
                            std::to_string(res.free.memory_mib) + " MiB free");
    }
    if (pf->vcpus > res.free.vcpus) {
      res.reasons.push_back("needs " + std::to_string(pf->vcpus) + " vCPUs, " +
                            std::to_string(res.free.vcpus) + " free");
    }
    if (disk > res.free.disk_bytes) {
      res.reasons.push_back("needs " + std::to_string(disk) + " bytes of disk, " +
                            std::to_string(res.free.disk_bytes) + " free");
    }
    // The SLA's jurisdictions: the VM may only live where its owner allows.
    if (pf->sla.is_object() && pf->sla.contains("jurisdictions") &&
        pf->sla["jurisdictions"].is_array() && !pf->sla["jurisdictions"].empty()) {
      const auto& allowed = pf->sla["jurisdictions"];
      if (std::find(allowed.begin(), allowed.end(), config_.jurisdiction) == allowed.end()) {
        res.reasons.push_back("the SLA allows " + allowed.dump() + ", this site is in '" +
                              config_.jurisdiction + "'");
      }
    }
    // The same virtual hardware: a guest must not see its machine or CPU change under it.
    if (pf->machine_type != config_.machine_type) {
      res.reasons.push_back("the VM runs on machine type '" + pf->machine_type +
                            "', this site runs '" + config_.machine_type + "'");
    }
    if (pf->cpu_model != config_.cpu_model) {
      res.reasons.push_back("the VM runs with CPU model '" + pf->cpu_model + "', this site runs '" +
                            config_.cpu_model + "'");
    }
    // Every network of the VM's NICs must exist here (the stretched site LAN).
    if (!config_.networks.empty()) {
      for (const auto& n : pf->networks) {
        if (std::find(config_.networks.begin(), config_.networks.end(), n) ==
            config_.networks.end()) {
          res.reasons.push_back("no network '" + n + "' here (this site has " +
                                std::to_string(config_.networks.size()) + ": " +
                                config_.networks.front() +
                                (config_.networks.size() > 1 ? ", ..." : "") + ")");
        }
      }
    }
    if (auto existing = host_.vm(pf->vm_id); existing) {
      res.reasons.push_back("a VM named '" + pf->vm_id + "' exists here already");
    }
    // Base images this site holds too: those disks become overlays on them, and the source
    // sends only its overlay.
    nlohmann::json bases = nlohmann::json::object();
    for (const auto& d : pf->disks) {
      if (!d.base_digest.empty() && host_.hasBase(d.base_digest)) {
        bases[d.id] = d.base_digest;
        if (std::find(res.bases_present.begin(), res.bases_present.end(), d.base_digest) ==
            res.bases_present.end()) {
          res.bases_present.push_back(d.base_digest);
        }
      }
    }
    res.ok = res.reasons.empty();
    if (res.ok) {
      MigrationRecord r = newMigrationRecord(pf->migration_id, pf->vm_id, MigrationRole::Target,
                                             pf->source_site, nowUs());
      r.report["spec"] = pf->spec;  // prepare needs it
      r.report["base_digests"] = bases;
      auto inserted = store_.insert(r);
      if (!inserted) {
        res.ok = false;
        res.reasons.push_back(inserted.error().describe());
      }
    }
    return tunnel::ControlMessage(res);
  }
  if (const auto* p = std::get_if<tunnel::Prepare>(&msg)) {
    VANDRA_TRY_ASSIGN(MigrationRecord r, record(p->migration_id));
    VANDRA_TRY_ASSIGN(
        r, step(r, MigrationEvent::PreflightPassed));  // prepare_target, before side effects
    const StreamPaths paths = config_.paths(r.id);
    agent::IncomingRequest in{r.vm_id,
                              r.report.value("spec", nlohmann::json::object()).dump(),
                              paths.nbd_socket,
                              paths.migration_socket,
                              {}};
    const nlohmann::json bases = r.report.value("base_digests", nlohmann::json::object());
    for (const auto& [disk, digest] : bases.items()) {
      if (digest.is_string()) {
        in.base_digests[disk] = digest.get<std::string>();
      }
    }
    auto made = host_.prepareIncoming(in);
    if (!made) {
      return tunnel::ControlMessage(rollBack(r, made.error().describe()));
    }
    if (config_.lan) {
      r.report["lan_hold"] = config_.lan(r.vm_id, Config::LanStep::Hold);
    }
    VANDRA_TRY_ASSIGN(r, step(r, MigrationEvent::TargetPrepared));
    tunnel::Prepared out;
    out.migration_id = r.id;
    out.ready = true;
    for (const auto& d :
         r.report["spec"]["virtual_systems"][0].value("disks", nlohmann::json::array())) {
      out.exports.push_back({d.value("id", ""), "fmt-" + d.value("id", std::string())});
    }
    return tunnel::ControlMessage(out);
  }
  if (const auto* sw = std::get_if<tunnel::Switchover>(&msg)) {
    VANDRA_TRY_ASSIGN(MigrationRecord r, record(sw->migration_id));
    // Mirrors ready, then switchover, in one synchronous write: the guest is paused now.
    VANDRA_TRY_ASSIGN(r, advance(std::move(r), MigrationEvent::MirrorsReady, nowUs()));
    VANDRA_TRY_ASSIGN(r, step(r, MigrationEvent::RamConverged));  // switchover, before cont
    failpoint("target-before-start");
    auto running = host_.finishIncoming(r.vm_id, true, Clock::now() + std::chrono::seconds(120));
    if (!running) {
      return tunnel::ControlMessage(rollBack(r, running.error().describe()));
    }
    failpoint("target-started");
    if (config_.lan) {  // the guest runs: its frames that waited go to it now
      r.report["lan_deliver"] = config_.lan(r.vm_id, Config::LanStep::Deliver);
    }
    VANDRA_TRY_ASSIGN(r, step(r, MigrationEvent::TargetStarted));
    return tunnel::ControlMessage(tunnel::Started{r.id, *running});
  }
  if (const auto* c = std::get_if<tunnel::Confirm>(&msg)) {
    VANDRA_TRY_ASSIGN(MigrationRecord r, record(c->migration_id));
    failpoint("target-before-confirmed");
    if (r.phase != MigrationPhase::Done) {
      VANDRA_TRY_ASSIGN(r, step(r, MigrationEvent::TargetConfirmed));
    }
    return tunnel::ControlMessage(tunnel::Confirmed{r.id});
  }
  if (const auto* q = std::get_if<tunnel::Query>(&msg)) {
    tunnel::Status st;
    st.migration_id = q->migration_id;
    auto r = record(q->migration_id);
    if (r) {
      st.known = true;
      st.phase = std::string(toString(r->phase));
      const auto vm = host_.vm(r->vm_id);
      st.guest_running = vm && vm->guest_running;
    }
    return tunnel::ControlMessage(st);
  }
  if (const auto* a = std::get_if<tunnel::Abort>(&msg)) {
    auto r = record(a->migration_id);
    if (!r) {
      return tunnel::ControlMessage(tunnel::Aborted{a->migration_id, true, {}});  // nothing here
    }
    if (isTerminal(r->phase)) {
      return tunnel::ControlMessage(
          tunnel::Aborted{a->migration_id, r->phase != MigrationPhase::Failed, {}});
    }
    if (!beforeSwitchoverCommitted(r->phase)) {
      return fail(ErrorCode::IllegalTransition,
                  "Migration '" + a->migration_id + "' has switched over: the guest runs here");
    }
    return tunnel::ControlMessage(rollBack(*r, a->reason));
  }
  return fail(ErrorCode::TunnelProtocol,
              "Unexpected message " + std::string(tunnel::typeName(msg)) + " at the target");
}

}  // namespace vandra::orchestrator
