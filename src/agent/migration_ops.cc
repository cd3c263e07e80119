// AgentService's halves of a live migration (agent_service.h, "live migration"): the target
// prepares and finishes an incoming VM, the source migrates out and releases. The QMP
// choreography is migration/qemu_migration.h's; this file adds the registry, the disks, the
// QEMU process and the locks around it. Which side does what, and when, is the orchestrator's.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <ctime>
#include <filesystem>

#include "vandra/agent/agent_service.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/qemu/names.h"
#include "vm_spec_parse.h"

namespace vandra::agent {

Result<ovf::VmSpec> detail::parseVmSpec(const std::string& spec_json) {
  const auto j = nlohmann::json::parse(spec_json, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::InvalidArgument, "The VM's spec is not JSON");
  }
  VANDRA_TRY_ASSIGN(ovf::VmSpec spec, ovf::vmSpecFromJson(j));
  if (spec.virtual_systems.size() != 1) {
    return fail(ErrorCode::InvalidArgument, "The VM's spec must hold exactly one virtual system");
  }
  return spec;
}

namespace {

// The format nodes of the VM's disks, by the builder's names (vandra/qemu/names.h).
Result<std::vector<std::string>> formatNodes(const ovf::VirtualSystemSpec& vs) {
  VANDRA_TRY_ASSIGN(const auto names, qemu::diskNames(vs.disks));
  std::vector<std::string> nodes;
  for (const auto& n : names) {
    nodes.push_back(n.format_node);
  }
  return nodes;
}

// Writes @p files' data to disk every second until stopped: what a flush inside the guest's
// pause then has left to write is at most a second's worth.
std::jthread syncEverySecond(std::vector<std::string> files) {
  return std::jthread([files = std::move(files)](std::stop_token stop) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lk(m);
    while (!cv.wait_for(lk, stop, std::chrono::seconds(1), [] { return false; }) &&
           !stop.stop_requested()) {
      for (const auto& f : files) {
        const int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
          (void)::fdatasync(fd);
          ::close(fd);
        }
      }
    }
  });
}

}  // namespace

void AgentService::setEventSink(const std::string& id,
                                std::function<void(const qmp::QmpEvent&)> sink) {
  std::lock_guard lock(monitors_mu_);
  if (auto it = monitors_.find(id); it != monitors_.end() && it->second) {
    it->second->setSink(std::move(sink));
  }
}

Result<std::map<std::string, std::string>> AgentService::diskBases(const std::string& id) {
  VANDRA_TRY_ASSIGN(const VmRecord r, get(id));
  VANDRA_TRY_ASSIGN(const ovf::VmSpec spec, detail::parseVmSpec(r.spec_json));
  std::map<std::string, std::string> out;
  for (const auto& d : spec.virtual_systems.front().disks) {
    VANDRA_TRY_ASSIGN(std::string digest, store_.baseDigest(id, d.id));
    if (!digest.empty()) {
      out[d.id] = std::move(digest);
    }
  }
  return out;
}

Result<VmRecord> AgentService::prepareIncoming(const IncomingRequest& req) {
  if (!validVmId(req.id)) {
    return fail(ErrorCode::InvalidArgument,
                "VM id '" + req.id + "' must be 1..64 characters of A-Z a-z 0-9 - _ .");
  }
  if (!config_.command_line) {
    return fail(ErrorCode::Unsupported,
                "This agent was started without a QEMU command-line builder");
  }
  VANDRA_TRY_ASSIGN(ovf::VmSpec spec, detail::parseVmSpec(req.spec_json));
  const auto& vs = spec.virtual_systems.front();
  std::lock_guard one_import(import_mu_);
  VANDRA_TRY_ASSIGN(auto held, lockVm(req.id));
  VANDRA_TRY_ASSIGN(const auto existing, registry_->get(req.id));
  if (existing) {
    return fail(ErrorCode::AlreadyExists, "A VM named '" + req.id + "' already exists here");
  }
  Resources need{vs.vcpus, vs.memory_mib, 0};
  for (const auto& d : vs.disks) {
    need.disk_bytes += d.capacity_bytes;
  }
  VANDRA_TRY_ASSIGN(const Resources in_use, inUse());
  VANDRA_TRY(checkFits(config_.capacity, in_use, need));
  VmRecord r;
  r.id = req.id;
  r.state = VmState::Incoming;  // on disk before any disk or process exists
  r.spec_json = ovf::toJson(spec).dump();
  r.vcpus = vs.vcpus;
  r.memory_mib = need.memory_mib;
  r.disk_bytes = need.disk_bytes;
  VANDRA_TRY(registry_->insert(r));
  VANDRA_TRY_ASSIGN(r, get(req.id));
  events_.append(req.id, "state", "incoming", {});
  auto undo = defer([&] {
    held.unlock();
    (void)abortIncoming(req.id);
  });
  // Disks of the same virtual sizes: empty (the mirror fills them), or overlays on a base
  // image this site holds too (the mirror sends only the source's overlay).
  std::vector<ImageStore::IncomingDisk> disks;
  for (const auto& d : vs.disks) {
    ImageStore::IncomingDisk in{d.id, d.capacity_bytes, ""};
    if (auto b = req.base_digests.find(d.id); b != req.base_digests.end()) {
      auto path = store_.findBase(b->second);
      if (!path) {
        return fail(ErrorCode::NotFound, "The base image of disk '" + d.id + "' is no longer here");
      }
      in.base_path = *path;
    }
    disks.push_back(std::move(in));
  }
  VANDRA_TRY(store_.createIncoming(req.id, disks));
  // While the copy comes in, a thread writes the images' data to disk every second, so that
  // the flush barrier before the guest starts here (ADR 0033) and a freeze (below) have little
  // left to write inside the guest's pause.
  auto a = std::make_unique<Arrival>();
  std::vector<std::string> files;
  for (const auto& d : vs.disks) {
    files.push_back(store_.root() + "/vms/" + req.id + "/" + d.id + ".qcow2");
  }
  a->syncer = syncEverySecond(std::move(files));
  // A move back sends only what changed here: stage the freeze of the arrival images (best
  // effort; without it the VM runs the same, and a move back sends its disks whole).
  if (config_.retain_departed.count() > 0 && !req.migration_id.empty()) {
    std::vector<std::pair<std::string, uint64_t>> ids;
    for (const auto& d : vs.disks) {
      ids.emplace_back(d.id, d.capacity_bytes);
    }
    if (auto staged = store_.stageArrival(req.id, req.migration_id, ids); staged) {
      a->migration_id = req.migration_id;
    } else {
      events_.append(req.id, "migration", "arrival-not-kept",
                     {{"error", staged.error().describe()}});
    }
  }
  {
    std::lock_guard lock(arrivals_mu_);
    arrivals_[req.id] = std::move(a);
  }
  VANDRA_TRY_ASSIGN(r, launch(r, vs, /*incoming=*/true));
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(req.id).qmp_socket, {}));
  VANDRA_TRY_ASSIGN(const auto nodes, formatNodes(vs));
  VANDRA_TRY(migration::startNbdExports(*qmp, req.nbd_socket, nodes));
  migration::IncomingOptions io;
  // Post-copy only for a VM whose owner opted in (ADR 0032): then the source may switch to it.
  io.post_copy = vs.sla && vs.sla->post_copy_allowed;
  VANDRA_TRY(migration::startIncoming(*qmp, "unix:" + req.migration_socket, io));
  undo.dismiss();
  return r;
}

Result<VmRecord> AgentService::finishIncoming(const std::string& id, bool resume,
                                              std::chrono::steady_clock::time_point deadline) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  if (r.state != VmState::Incoming) {
    return fail(ErrorCode::IllegalTransition,
                "VM '" + id + "' is " + std::string(toString(r.state)) + ", not incoming");
  }
  migration::EventWaiter waiter;
  setEventSink(id, waiter.sink());
  auto unsink = defer([&] { setEventSink(id, {}); });
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(id).qmp_socket, {}));
  // Completed, or post-copy: the guest starts here while its missing pages still come.
  VANDRA_TRY_ASSIGN(const bool post_copy, migration::waitIncomingSwitched(*qmp, waiter, deadline));
  migration::FinishTargetOptions fo;
  fo.resume = resume;
  std::string arrival;
  {
    std::unique_ptr<Arrival> a;
    {
      std::lock_guard lock(arrivals_mu_);
      if (auto it = arrivals_.find(id); it != arrivals_.end()) {
        a = std::move(it->second);
        arrivals_.erase(it);
      }
    }
    if (a) {
      arrival = a->migration_id;  // "" when not staged; ~Arrival stops the syncer
    }
  }
  VANDRA_TRY_ASSIGN(const ovf::VmSpec spec, detail::parseVmSpec(r.spec_json));
  if (!arrival.empty()) {
    VANDRA_TRY_ASSIGN(const auto names, qemu::diskNames(spec.virtual_systems.front().disks));
    for (const auto& n : names) {
      fo.freeze.push_back({n.disk_id, n.format_node,
                           store_.root() + "/vms/" + id + "/" + n.disk_id + ".next.qcow2",
                           n.top_node});
    }
  }
  VANDRA_TRY_ASSIGN(const auto finished, migration::finishTarget(*qmp, fo));
  if (!arrival.empty()) {
    auto kept = store_.commitArrival(id, arrival, finished.frozen, r.spec_json);
    events_.append(id, "migration", "arrival-kept",
                   {{"migration_id", arrival},
                    {"frozen", finished.frozen},
                    {"errors", finished.freeze_errors},
                    {"kept", kept.has_value()},
                    {"error", kept ? "" : kept.error().describe()}});
  }
  return move(r, VmEvent::QemuUp,
              {{"reason", post_copy ? "migrated-in, post-copy" : "migrated-in"},
               {"flush_ms", finished.flush_ms}});
}

Result<void> AgentService::abortIncoming(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(const auto found, registry_->get(id));
  if (!found) {
    return {};  // nothing (left) to undo
  }
  VmRecord r = *found;
  if (r.state != VmState::Incoming && r.state != VmState::Failed && r.state != VmState::Stopped) {
    return fail(ErrorCode::IllegalTransition,
                "VM '" + id + "' is " + std::string(toString(r.state)) +
                    ": an incoming migration that has taken over is not aborted");
  }
  if (r.pid != 0) {
    const QemuPid p{r.pid, r.pid_start_time};
    VANDRA_TRY(signalProcess(p, SIGKILL));
    VANDRA_TRY(waitForExit(p, std::chrono::seconds(10)));
  }
  unwatch(id);
  {
    std::lock_guard lock(arrivals_mu_);
    arrivals_.erase(id);
  }
  store_.discardArrival(id);
  VANDRA_TRY(store_.removeVm(id));
  std::error_code ec;
  std::filesystem::remove_all(runPaths(id).dir, ec);
  VANDRA_TRY(registry_->remove(id));
  events_.append(id, "state", "deleted", {{"reason", "incoming-aborted"}});
  return {};
}

Result<bool> AgentService::incomingGuestRuns(const std::string& id) {
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  // Running: the agent died after finishIncoming, before the migration's record said so.
  if ((r.state != VmState::Incoming && r.state != VmState::Running) || r.pid == 0) {
    return false;
  }
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(id).qmp_socket, {}));
  VANDRA_TRY_ASSIGN(const auto st, qmp->execute(qmp::makeCommand("query-status")));
  return st.value("status", "") == "running";
}

Result<VmRecord> AgentService::adoptIncoming(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  if (r.state != VmState::Incoming && r.state != VmState::Running) {
    return fail(ErrorCode::IllegalTransition,
                "VM '" + id + "' is " + std::string(toString(r.state)) + ", not incoming");
  }
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(id).qmp_socket, {}));
  migration::FinishTargetOptions fo;
  fo.resume = false;  // it runs: this only finishes what the dead agent began
  VANDRA_TRY_ASSIGN(const auto f, migration::finishTarget(*qmp, fo));
  if (f.status_before != "running") {
    return fail(ErrorCode::IllegalTransition,
                "VM '" + id + "' is " + f.status_before + " at this site, not running");
  }
  if (r.state == VmState::Running) {
    events_.append(id, "state", "running", {{"reason", "migrated-in, adopted after a restart"}});
    return r;
  }
  return move(r, VmEvent::QemuUp, {{"reason", "migrated-in, adopted after a restart"}});
}

Result<migration::SwitchoverResult> AgentService::migrateOut(const OutgoingRequest& req,
                                                             migration::SourceMigration& state) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(req.id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(req.id));
  if (r.state != VmState::Running) {
    return fail(ErrorCode::IllegalTransition,
                "Cannot migrate a VM that is " + std::string(toString(r.state)));
  }
  VANDRA_TRY_ASSIGN(ovf::VmSpec spec, detail::parseVmSpec(r.spec_json));
  events_.append(req.id, "state", "migration-started", {});
  migration::EventWaiter waiter;
  // QEMU's STOP once the pre-copy runs is the guest pausing for the switchover: the caller
  // acts on it at once (the monitor's thread), before QEMU has flushed the disks.
  std::atomic<bool> ram_running{false};
  std::atomic<bool> stop_seen{false};
  setEventSink(req.id, [&, forward = waiter.sink()](const qmp::QmpEvent& e) {
    if (e.name == "STOP" && req.on_switchover_stop && ram_running.load() &&
        !stop_seen.exchange(true)) {
      req.on_switchover_stop();
    }
    forward(e);
  });
  auto unsink = defer([&] { setEventSink(req.id, {}); });
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(req.id).qmp_socket, {}));
  {
    std::lock_guard lock(outgoing_mu_);
    outgoing_[req.id] = {qmp.get(), &waiter};
    // A cancel that came before this registration (interruptOutgoing found nothing).
    if (req.cancelled) {
      if (auto why = req.cancelled()) {
        waiter.interrupt(*why);
      }
    }
  }
  auto unregister = defer([&] {
    std::lock_guard lock(outgoing_mu_);
    outgoing_.erase(req.id);
  });
  std::vector<migration::DiskMirrorTarget> targets;
  VANDRA_TRY_ASSIGN(const auto names, qemu::diskNames(spec.virtual_systems.front().disks));
  // The node each device reads now: an arrival freeze put an overlay over the format node.
  VANDRA_TRY_ASSIGN(const auto reads, migration::deviceNodes(*qmp));
  for (const auto& n : names) {
    const auto active = reads.find(n.device_id);
    targets.push_back({active != reads.end() ? active->second : n.format_node, req.nbd_socket,
                       n.format_node, req.overlay_only_disks.count(n.disk_id) != 0, n.device_id});
  }
  auto attempt = [&]() -> Result<migration::SwitchoverResult> {
    VANDRA_TRY(migration::startMirrors(*qmp, state, targets, req.mirror));
    VANDRA_TRY(migration::waitMirrorsReady(*qmp, waiter, state, req.deadline));
    if (req.before_step) {
      VANDRA_TRY(req.before_step(OutgoingStep::Ram));
    }
    VANDRA_TRY(migration::startRamMigration(*qmp, state, "unix:" + req.migration_socket, req.ram));
    ram_running = true;
    // Pre-copy until QEMU pauses the source. The switchover phase is written while the
    // mirrors make their last round trip, and before migrate-continue, after which the
    // target holds the whole VM ("persisted before the side effect").
    VANDRA_TRY(migration::waitPreSwitchover(*qmp, waiter, state, req.deadline));
    std::function<Result<void>()> persist_phase;
    if (req.before_step) {
      persist_phase = [&req]() { return req.before_step(OutgoingStep::Switchover); };
    }
    return migration::switchover(*qmp, waiter, state, req.deadline, persist_phase);
  };
  auto done = attempt();
  if (!done) {
    // The source stays authoritative: undo everything here, the VM runs on.
    Error e = done.error();
    waiter.clearInterrupt();  // the cancel below must run to its end
    if (auto c = migration::cancel(*qmp, waiter, state,
                                   std::chrono::steady_clock::now() + std::chrono::seconds(60));
        !c) {
      e.secondary.push_back(c.error());
    }
    events_.append(req.id, "state", "migration-cancelled", {{"error", e.describe()}});
    return fail(std::move(e));
  }
  events_.append(req.id, "state", done->post_copy ? "migrating-out-post-copy" : "migrated-out",
                 {{"downtime_ms", done->downtime_ms},
                  {"total_time_ms", done->total_time_ms},
                  {"ram_bytes", done->ram_transferred},
                  {"disk_bytes", done->disk_transferred}});
  return done;
}

Result<migration::MigrationProgress> AgentService::outgoingProgress(const std::string& id) {
  std::lock_guard lock(outgoing_mu_);
  auto it = outgoing_.find(id);
  if (it == outgoing_.end()) {
    return fail(ErrorCode::NotFound, "No migration out of VM '" + id + "' runs here");
  }
  return migration::progress(*it->second.qmp);
}

bool AgentService::interruptOutgoing(const std::string& id, const std::string& reason) {
  std::lock_guard lock(outgoing_mu_);
  auto it = outgoing_.find(id);
  if (it == outgoing_.end()) {
    return false;
  }
  it->second.waiter->interrupt(reason);
  return true;
}

Result<migration::CancelReport> AgentService::cancelStrayMigration(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  if (r.state != VmState::Running) {
    return fail(ErrorCode::IllegalTransition,
                "VM '" + id + "' is " + std::string(toString(r.state)));
  }
  VANDRA_TRY_ASSIGN(ovf::VmSpec spec, detail::parseVmSpec(r.spec_json));
  migration::EventWaiter waiter;
  setEventSink(id, waiter.sink());
  auto unsink = defer([&] { setEventSink(id, {}); });
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(id).qmp_socket, {}));
  // What migrateOut would have set up, by the engine's names; cancel() skips what is absent.
  migration::SourceMigration m;
  m.ram_started = true;
  m.state_known = true;
  m.vm_was_running = true;  // only a running VM is migrated
  VANDRA_TRY_ASSIGN(const auto names, qemu::diskNames(spec.virtual_systems.front().disks));
  for (const auto& n : names) {
    migration::MirrorJob j;
    j.disk_node = n.format_node;
    j.job_id = migration::mirrorJobId(n.format_node);
    j.nbd_node = migration::nbdClientNode(n.format_node);
    j.device_id = n.device_id;
    j.throttled = true;  // the lost run may have throttled the guest's writes
    j.nbd_node_added = true;
    j.job_started = true;
    m.mirrors.push_back(j);
  }
  VANDRA_TRY_ASSIGN(auto report,
                    migration::cancel(*qmp, waiter, m,
                                      std::chrono::steady_clock::now() + std::chrono::seconds(60)));
  events_.append(id, "state", "migration-recovered",
                 {{"migration_status", report.migration_status},
                  {"mirrors_cancelled", report.mirrors_cancelled},
                  {"throttles_lifted", report.throttles_lifted},
                  {"resumed", report.resumed},
                  {"announced", report.announced}});
  return report;
}

Result<void> AgentService::resumeAfterFailedSwitchover(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  if (r.state != VmState::Running) {
    return fail(ErrorCode::IllegalTransition,
                "VM '" + id + "' is " + std::string(toString(r.state)));
  }
  VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(id).qmp_socket, {}));
  VANDRA_TRY_ASSIGN(const auto st, qmp->execute(qmp::makeCommand("query-status")));
  if (st.value("status", "") != "running") {
    VANDRA_TRY(qmp->execute(qmp::makeCommand("cont")));  // QEMU re-activates the disks
  }
  // The switchover pointed this site's bridge at the peer: the guest's RARPs point it back.
  // Best effort: the guest runs either way, and its own next frame does the same.
  const auto announced = migration::announce(*qmp);
  nlohmann::json data = {{"after", "switchover"}, {"announced", announced.has_value()}};
  if (!announced) {
    data["announce_error"] = announced.error().describe();
  }
  events_.append(id, "state", "migration-rolled-back", data);
  return {};
}

Result<void> AgentService::releaseMigrated(const std::string& id, const std::string& migration_id) {
  VANDRA_TRY_ASSIGN(auto held, lockVm(id));
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  VANDRA_TRY(transition(r.state, VmEvent::Kill));
  // A post-copy that has not completed: the target's guest still needs pages only this QEMU
  // holds. Ending it would lose the VM, so it is refused whoever asks.
  if (r.pid != 0) {
    if (auto qmp = qmp::connectQmp(runPaths(id).qmp_socket, {}); qmp) {
      if (auto st = migration::progress(**qmp); st && migration::inPostcopy(st->status)) {
        return fail(ErrorCode::IllegalTransition, "VM '" + id + "' is in post-copy (" + st->status +
                                                      "): the target still needs pages from here");
      }
    }
  }
  const QemuPid p{r.pid, r.pid_start_time};
  unwatch(id);  // the exit is ours, not a crash
  VANDRA_TRY(signalProcess(p, SIGKILL));
  VANDRA_TRY(waitForExit(p, std::chrono::seconds(10)));
  r.pid = 0;
  r.pid_start_time = 0;
  VANDRA_TRY_ASSIGN(r, move(r, VmEvent::Kill, {{"reason", "migrated-away"}}));
  VANDRA_TRY_ASSIGN(r, move(r, VmEvent::Delete));
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  bool kept = false;
  if (config_.retain_departed.count() > 0 && !migration_id.empty()) {
    // What the VM left here, for a move back that sends only what changed since.
    auto retained =
        store_.retainDeparted(id, migration_id, r.spec_json, now + config_.retain_departed.count());
    kept = retained.has_value();
    if (!retained) {
      events_.append(id, "migration", "departed-not-kept",
                     {{"error", retained.error().describe()}});
    }
  }
  if (!kept) {
    VANDRA_TRY(store_.removeVm(id));
  }
  std::error_code ec;
  std::filesystem::remove_all(runPaths(id).dir, ec);
  VANDRA_TRY(registry_->remove(id));
  events_.append(id, "state", "deleted",
                 {{"reason", "migrated-away"},
                  {"disks_kept_until", kept ? nlohmann::json(now + config_.retain_departed.count())
                                            : nlohmann::json(nullptr)}});
  (void)store_.sweepRetained(now);
  return {};
}

}  // namespace vandra::agent
