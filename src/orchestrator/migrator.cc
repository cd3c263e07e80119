#include "vandra/orchestrator/migrator.h"

#include <algorithm>

#include "vandra/common/failpoint.h"
#include "vandra/common/scope_guard.h"
#include "vandra/orchestrator/downtime_plan.h"

namespace vandra::orchestrator {
namespace {

int64_t nowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The store's advance + write in one step.
Result<MigrationRecord> persist(MigrationStore& store, MigrationRecord r, MigrationEvent e) {
  VANDRA_TRY_ASSIGN(r, advance(std::move(r), e, nowUs()));
  return store.update(r);
}

template <class T>
Result<T> expect(Result<tunnel::ControlMessage> answer, const char* what) {
  if (!answer) {
    return fail(std::move(answer).error());
  }
  if (auto* t = std::get_if<T>(&*answer)) {
    return *t;
  }
  if (auto* a = std::get_if<tunnel::Aborted>(&*answer)) {
    return fail(ErrorCode::Io, std::string("The target aborted instead of answering ") + what +
                                   (a->cleaned ? " (it cleaned up)" : " (it reports leftovers)"));
  }
  return fail(
      ErrorCode::TunnelProtocol,
      std::string("The target answered ") + std::string(tunnel::typeName(*answer)) + " to " + what);
}

}  // namespace

Result<MigrationRecord> runSourceMigration(MigrationHost& host, MigrationStore& store,
                                           PeerChannel& peer, const MigrateRequest& req) {
  const auto deadline = Clock::now() + req.max_total;
  VANDRA_TRY_ASSIGN(const HostVm vm, host.vm(req.vm_id));
  MigrationRecord rec = newMigrationRecord(req.migration_id, req.vm_id, MigrationRole::Source,
                                           req.target_site, nowUs());
  VANDRA_TRY_ASSIGN(rec, store.insert(rec));
  const auto t0 = Clock::now();

  // Before the target runs the guest, every failure ends here: target told to abort, the
  // source resumed if it was paused, the record rolled back with the reason.
  auto rollBack = [&](const Error& why,
                      bool after_completed_switchover) -> Result<MigrationRecord> {
    auto r = persist(
        store, rec,
        why.code == ErrorCode::Cancelled ? MigrationEvent::Cancel : MigrationEvent::Failure);
    if (!r) {
      return fail(r.error());
    }
    rec = *r;
    rec.error = why.describe();
    std::vector<std::string> leftovers;
    auto aborted = peer.exchange(tunnel::Abort{req.migration_id, why.describe().substr(0, 1000),
                                               tunnel::MigrationPhase::Preflight},
                                 Clock::now() + std::chrono::seconds(60));
    if (!aborted) {
      leftovers.push_back("target not reached: " + aborted.error().describe());
    } else if (auto* a = std::get_if<tunnel::Aborted>(&*aborted); a != nullptr && !a->cleaned) {
      leftovers.insert(leftovers.end(), a->leftovers.begin(), a->leftovers.end());
    }
    if (after_completed_switchover) {
      if (auto resumed = host.resumeAfterFailedSwitchover(req.vm_id); !resumed) {
        leftovers.push_back("source not resumed: " + resumed.error().describe());
      }
    }
    rec.report["leftovers"] = leftovers;
    VANDRA_TRY_ASSIGN(rec, persist(store, rec,
                                   leftovers.empty() ? MigrationEvent::RollbackDone
                                                     : MigrationEvent::RollbackFailed));
    return rec;
  };

  // Preflight.
  const auto spec = nlohmann::json::parse(vm.spec_json, nullptr, false);
  if (spec.is_discarded() || !spec.contains("virtual_systems") || spec["virtual_systems"].empty()) {
    return rollBack(Error(ErrorCode::Internal, "The VM's stored spec is unusable"), false);
  }
  const auto& vs = spec["virtual_systems"][0];
  tunnel::Preflight pf;
  pf.migration_id = req.migration_id;
  pf.vm_id = req.vm_id;
  pf.spec = spec;
  pf.source_site = req.source_site;
  pf.sla = vs.contains("sla") && vs["sla"].is_object() ? vs["sla"] : nlohmann::json::object();
  // Each disk's base image, so that a target holding the same base is sent only the overlay.
  std::map<std::string, std::string> bases;
  if (auto b = host.diskBases(req.vm_id)) {
    bases = std::move(*b);
  }  // else: no base known, every disk is copied whole
  for (const auto& d : vs.value("disks", nlohmann::json::array())) {
    const std::string id = d.value("id", "");
    pf.disks.push_back(
        {id, d.value("capacity_bytes", uint64_t{0}), bases.count(id) != 0 ? bases[id] : ""});
  }
  pf.machine_type = req.machine_type;
  pf.cpu_model = req.cpu_model;
  for (const auto& n : vs.value("nics", nlohmann::json::array())) {
    if (n.is_object() && n.contains("network") && n["network"].is_string() &&
        std::find(pf.networks.begin(), pf.networks.end(), n["network"].get<std::string>()) ==
            pf.networks.end()) {
      pf.networks.push_back(n["network"].get<std::string>());
    }
  }
  // The operator's cancel, between the phases (inside migrateOut the waits are interrupted).
  auto cancelledNow = [&]() -> std::optional<Error> {
    if (req.cancelled) {
      if (auto why = req.cancelled()) {
        return Error(ErrorCode::Cancelled, "Cancelled: " + *why);
      }
    }
    return std::nullopt;
  };
  pf.memory_mib = vm.memory_mib;
  pf.vcpus = vm.vcpus;
  const auto asked = Clock::now();
  auto result = expect<tunnel::PreflightResult>(peer.exchange(pf, deadline), "preflight");
  auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - asked);
  if (!result) {
    return rollBack(result.error(), false);
  }
  if (!result->ok) {
    std::string why = "Refused by " + result->target_site + ":";
    for (const auto& r : result->reasons) {
      why += " " + r + ";";
    }
    return rollBack(Error(ErrorCode::Unsupported, why), false);
  }
  // The SLA's downtime budget against this link.
  if (req.link_rtt) {
    if (auto smoothed = req.link_rtt(); smoothed && *smoothed < rtt) {
      rtt = *smoothed;
    }
  }
  const DowntimePlan plan = planDowntime(req.downtime_budget_ms, req.downtime_limit_ms, rtt);
  rec.report["downtime_plan"] = {{"rtt_ms", static_cast<double>(rtt.count()) / 1000.0},
                                 {"overhead_ms", plan.overhead_ms},
                                 {"initial_limit_ms", plan.initial_limit_ms},
                                 {"max_limit_ms", plan.max_limit_ms}};
  if (req.downtime_budget_ms) {
    rec.report["downtime_plan"]["budget_ms"] = *req.downtime_budget_ms;
  }
  if (plan.refusal) {
    return rollBack(Error(ErrorCode::Unsupported, *plan.refusal), false);
  }
  if (auto c = cancelledNow()) {
    return rollBack(*c, false);
  }
  VANDRA_TRY_ASSIGN(rec, persist(store, rec, MigrationEvent::PreflightPassed));

  // Prepare the target.
  auto prepared = expect<tunnel::Prepared>(
      peer.exchange(tunnel::Prepare{req.migration_id}, deadline), "prepare");
  if (!prepared) {
    return rollBack(prepared.error(), false);
  }
  if (auto c = cancelledNow()) {
    return rollBack(*c, false);
  }
  VANDRA_TRY_ASSIGN(rec, persist(store, rec, MigrationEvent::TargetPrepared));

  // Mirror, pre-copy, switchover (the phases are written by the hooks).
  agent::OutgoingRequest out;
  out.id = req.vm_id;
  out.nbd_socket = req.source_paths.nbd_socket;
  out.migration_socket = req.source_paths.migration_socket;
  out.mirror = req.mirror;
  rec.report["overlay_only_disks"] = nlohmann::json::array();
  for (const auto& d : pf.disks) {
    if (!d.base_digest.empty() &&
        std::find(result->bases_present.begin(), result->bases_present.end(), d.base_digest) !=
            result->bases_present.end()) {
      out.overlay_only_disks.insert(d.id);
      rec.report["overlay_only_disks"].push_back(d.id);
    }
  }
  out.ram = req.ram;
  // XBZRLE with a cache of an eighth of the guest's RAM (16..512 MiB): a working set that
  // size is re-sent as deltas, not whole pages (docs/benchmarks.md, wan).
  out.ram.xbzrle_cache_bytes =
      std::clamp<uint64_t>((vm.memory_mib << 20) / 8, 16ULL << 20, 512ULL << 20);
  out.ram.downtime_limit_ms = plan.initial_limit_ms;
  out.ram.max_downtime_limit_ms = plan.max_limit_ms;
  out.deadline = deadline;
  out.cancelled = req.cancelled;
  out.on_switchover_stop = req.at_guest_stop;
  out.before_step = [&](std::string_view step) -> Result<void> {
    if (auto c = cancelledNow()) {
      return fail(*c);
    }
    if (step == "switchover" && req.at_pause) {
      req.at_pause(rec.report);
    }
    VANDRA_TRY_ASSIGN(
        rec, persist(store, rec,
                     step == "ram" ? MigrationEvent::MirrorsReady : MigrationEvent::RamConverged));
    if (step == "switchover") {
      failpoint("source-paused");
    }
    return {};
  };
  migration::SourceMigration state;
  auto switched = host.migrateOut(out, state);
  if (!switched) {
    return rollBack(switched.error(), false);
  }
  if (rec.phase == MigrationPhase::PrecopyRam) {
    VANDRA_TRY_ASSIGN(rec, persist(store, rec, MigrationEvent::RamConverged));
  }
  rec.report["mirror_copy_mode"] =
      req.mirror.copy_mode == migration::CopyMode::WriteBlocking ? "write-blocking" : "background";
  rec.report["nbd_connect_ms"] = nlohmann::json::array();
  for (const auto& m : state.mirrors) {
    rec.report["nbd_connect_ms"].push_back(m.connect_ms);
  }
  rec.report["downtime_ms"] = switched->downtime_ms;
  rec.report["qemu_total_ms"] = switched->total_time_ms;
  rec.report["ram_bytes"] = switched->ram_transferred;
  rec.report["disk_bytes"] = switched->disk_transferred;
  rec.report["mirror_complete_ms"] = switched->mirror_complete_ms;  // of the downtime
  rec.report["paused_ms"] = switched->paused_ms;  // pre-switchover seen -> completed
  rec.report["downtime_limit_ms"] = switched->downtime_limit_ms;  // QEMU's, when it paused
  rec.report["ram_bytes_at_pause"] = switched->ram_at_pause;
  rec.report["ram_remaining_at_pause"] = switched->ram_remaining_at_pause;
  rec.report["qemu_mbps_at_pause"] = switched->mbps_at_pause;
  rec.report["continue_to_completed_ms"] = switched->continue_to_completed_ms;
  if (rec.report.contains("tunnel_migration_bytes_at_pause")) {
    const uint64_t sent = rec.report["tunnel_migration_bytes_at_pause"].get<uint64_t>();
    rec.report["tunnel_backlog_bytes"] =
        switched->ram_at_pause > sent ? switched->ram_at_pause - sent : 0;
  }

  failpoint("source-completed");

  // The target starts the guest; from its answer on, only forward. Without an answer the
  // source cannot know whether the guest runs there: it stays paused and asks.
  auto started = peer.exchange(tunnel::Switchover{req.migration_id}, deadline);
  if (started && std::holds_alternative<tunnel::Aborted>(*started)) {
    return rollBack(Error(ErrorCode::Io, "The target could not start the guest and rolled back"),
                    /*after_completed_switchover=*/true);
  }
  if (started && !std::holds_alternative<tunnel::Started>(*started)) {
    return rollBack(
        Error(ErrorCode::TunnelProtocol,
              "The target answered " + std::string(tunnel::typeName(*started)) + " to switchover"),
        /*after_completed_switchover=*/true);
  }
  if (!started) {
    rec.error = "No answer to switchover: " + started.error().describe();
    VANDRA_TRY_ASSIGN(rec, store.update(rec));
    return settleSourceMigration(host, store, peer, rec);
  }
  failpoint("source-target-started");
  VANDRA_TRY_ASSIGN(rec, persist(store, rec, MigrationEvent::TargetStarted));
  if (auto released = host.releaseMigrated(req.vm_id); !released) {
    rec.report["warning"] = "source not released: " + released.error().describe();
  }
  auto confirmed = expect<tunnel::Confirmed>(
      peer.exchange(tunnel::Confirm{req.migration_id}, deadline), "confirm");
  if (!confirmed) {
    rec.error = "confirm not acknowledged: " + confirmed.error().describe();  // settled later
    return store.update(rec);
  }
  rec.report["total_s"] = std::chrono::duration<double>(Clock::now() - t0).count();
  VANDRA_TRY_ASSIGN(rec, persist(store, rec, MigrationEvent::TargetConfirmed));
  return rec;
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
