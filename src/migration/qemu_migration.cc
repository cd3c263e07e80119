// The QMP choreography of a live migration with local disks on QEMU 7.2, both ends
// (qemu_migration.h; docs/migration/qemu-engine.md): names, the target side and the mirrors
// here; the RAM pre-copy, switchover and cancel in qemu_migration_ram.cc. Everything is QMP:
// no sockets of its own, no processes. Waits are event-driven (EventWaiter) with a periodic
// query as a safety net, so a lost or dropped event costs at most one poll interval.
#include "vandra/migration/qemu_migration.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "engine_support.h"
#include "vandra/qmp/commands.h"

namespace vandra::migration {

using namespace engine;
using namespace std::chrono_literals;

namespace {

// Feeds one sample of mirror @p j to its convergence and applies the throttle it asks for
// (disk_convergence.h). A device QEMU will not throttle ends the convergence of that disk:
// the deadline then stands, as without it.
void converge(qmp::QmpClient& source, const SourceMigration& migration, MirrorJob& j,
              uint64_t offset, uint64_t len) {
  const double t =
      std::chrono::duration<double>(Clock::now() - migration.mirrors_started_at).count();
  auto step = j.convergence.observe(t, offset, len, j.ready);
  if (!step) {
    return;
  }
  j.throttled = true;
  auto set = qmp::setWriteThrottle(source, j.device_id, step->throttle.bytes_per_s,
                                   step->throttle.writes_per_s);
  if (!set) {
    step->why += "; not applied: " + set.error().describe();
    j.convergence = DiskConvergence(DiskConvergenceOptions{.enabled = false});
  }
  j.throttle_steps.push_back(std::move(*step));
}

}  // namespace

std::string nbdExportId(std::string_view node) {
  return "vandra-export-" + std::string(node);
}

std::string nbdClientNode(std::string_view node) {
  return "vandra-nbd-" + std::string(node);
}

std::string mirrorJobId(std::string_view node) {
  return "vandra-mirror-" + std::string(node);
}

// =======================================================================================
// Target side

Result<std::vector<NbdExport>> startNbdExports(qmp::QmpClient& target,
                                               const std::string& nbd_socket_path,
                                               const std::vector<std::string>& nodes) {
  if (nodes.empty()) {
    return fail(ErrorCode::InvalidArgument, "No disks to export");
  }
  if (nbd_socket_path.empty() || nbd_socket_path.size() > 107) {
    return fail(ErrorCode::InvalidArgument,
                "NBD socket path '" + nbd_socket_path + "' is empty or longer than 107 bytes");
  }
  if (std::set<std::string>(nodes.begin(), nodes.end()).size() != nodes.size()) {
    return fail(ErrorCode::InvalidArgument, "A disk node is named twice");
  }
  // SocketAddressLegacy: {"type": "unix", "data": {"path": ...}} (QEMU 7.2).
  VANDRA_TRY(exec(target, "nbd-server-start",
                  {{"addr", {{"type", "unix"}, {"data", {{"path", nbd_socket_path}}}}}}));
  std::vector<NbdExport> exports;
  for (const auto& node : nodes) {
    NbdExport x{node, node, nbdExportId(node), nbd_socket_path};
    auto added = exec(target, "block-export-add",
                      {{"type", "nbd"},
                       {"id", x.export_id},
                       {"node-name", node},
                       {"name", x.export_name},
                       {"writable", true}});
    if (!added) {
      // nbd-server-stop also removes the exports added so far.
      auto stopped = exec(target, "nbd-server-stop");
      Error e = Error(added.error().code, "Cannot export disk node '" + node + "' over NBD")
                    .withCause(added.error());
      if (!stopped) {
        e.secondary.push_back(stopped.error());
      }
      return fail(std::move(e));
    }
    exports.push_back(std::move(x));
  }
  return exports;
}

Result<void> startIncoming(qmp::QmpClient& target, const std::string& uri,
                           const IncomingOptions& options) {
  if (!validUnixUri(uri)) {
    return fail(ErrorCode::InvalidArgument, "Migration URI '" + uri + "' is not unix:<path>");
  }
  VANDRA_TRY_ASSIGN(json st, exec(target, "query-status"));
  if (str(st, "status") != "inmigrate") {
    return fail(ErrorCode::IllegalTransition,
                "The target QEMU is '" + str(st, "status") +
                    "', not 'inmigrate' (start it with -incoming defer)");
  }
  // `events`: MIGRATION events on this end too. `return-path`: both ends must agree.
  // pause-before-switchover and auto-converge act on the source only.
  std::vector<std::pair<std::string, bool>> caps{{"events", true}};
  if (options.return_path) {
    caps.emplace_back("return-path", true);
  }
  if (options.post_copy) {
    caps.emplace_back("postcopy-ram", true);
  }
  VANDRA_TRY(exec(target, "migrate-set-capabilities", {{"capabilities", capabilitiesArg(caps)}}));
  VANDRA_TRY(exec(target, "migrate-incoming", {{"uri", uri}}));
  return {};
}

Result<void> waitIncomingDone(qmp::QmpClient& target, EventWaiter& events,
                              Clock::time_point deadline) {
  VANDRA_TRY(waitMigrationStatus(target, events, {"completed"}, {"failed", "cancelled"}, deadline,
                                 "the incoming migration to complete"));
  return {};
}

Result<std::map<std::string, std::string>> deviceNodes(qmp::QmpClient& qemu) {
  VANDRA_TRY_ASSIGN(json blocks, exec(qemu, "query-block"));
  std::map<std::string, std::string> out;
  if (!blocks.is_array()) {
    return out;
  }
  for (const auto& b : blocks) {
    std::string qdev = str(b, "qdev");
    // "/machine/peripheral/disk-disk1/virtio-backend" for virtio-blk; the id alone for others.
    constexpr std::string_view kPeripheral = "/machine/peripheral/";
    if (qdev.rfind(kPeripheral, 0) == 0) {
      qdev = qdev.substr(kPeripheral.size());
      qdev = qdev.substr(0, qdev.find('/'));
    }
    if (!qdev.empty() && b.contains("inserted") && b["inserted"].is_object()) {
      const std::string node = str(b["inserted"], "node-name");
      if (!node.empty()) {
        out[qdev] = node;
      }
    }
  }
  return out;
}

Result<TargetFinish> finishTarget(qmp::QmpClient& target, const FinishTargetOptions& options) {
  VANDRA_TRY_ASSIGN(std::string status, migrationStatus(target));
  // In post-copy the guest starts here while its pages still arrive: the mirrors completed
  // before the source continued, so the exports may go now as after a pre-copy.
  if (status != "completed" && status != "postcopy-active") {
    return fail(ErrorCode::IllegalTransition,
                "The incoming migration is '" + status + "', not completed");
  }
  TargetFinish f;
  // The source's mirrors are finished and its NBD clients idle: the exports go first so no
  // writer but the guest remains.
  auto stopped = exec(target, "nbd-server-stop");
  if (!stopped && stopped.error().code != ErrorCode::QmpError) {
    return fail(stopped.error());  // a QmpError here means no server was running
  }
  VANDRA_TRY_ASSIGN(json st, exec(target, "query-status"));
  f.status_before = str(st, "status");
  // The barrier before the guest may run here (ADR 0033): the source's mirrors were not let
  // flush across the WAN, so every disk is flushed here, locally. `stop` on a VM that does
  // not run drains and flushes every block node and changes nothing else. In post-copy the
  // mirrors flushed through (the target's agent hides nothing then).
  if (status == "completed" && !boolean(st, "running")) {
    const auto flush_from = std::chrono::steady_clock::now();
    VANDRA_TRY(exec(target, "stop"));
    f.flush_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - flush_from)
            .count();
  }
  // Before the guest writes anything here: a disk whose freeze fails writes on into its
  // arrival image (correct, only a later move back sends it whole).
  for (const auto& z : options.freeze) {
    auto s = exec(target, "blockdev-snapshot-sync",
                  {{"node-name", z.node},
                   {"snapshot-file", z.overlay},
                   {"snapshot-node-name", z.overlay_node},
                   {"format", "qcow2"},
                   {"mode", "existing"}});
    if (s) {
      f.frozen.push_back(z.disk_id);
    } else {
      f.freeze_errors.push_back(z.disk_id + ": " + s.error().describe());
    }
  }
  if (!boolean(st, "running") && options.resume) {
    VANDRA_TRY(exec(target, "cont"));
    f.resumed = true;
  }
  VANDRA_TRY(announce(target, options.announce));
  return f;
}

Result<void> announce(qmp::QmpClient& qemu, const AnnounceOptions& options) {
  VANDRA_TRY(exec(qemu, "announce-self",
                  {{"initial", options.initial_ms},
                   {"max", options.max_ms},
                   {"rounds", options.rounds},
                   {"step", options.step_ms}}));
  return {};
}

Result<void> abortTarget(qmp::QmpClient& target) {
  std::vector<Error> errors;
  auto stopped = exec(target, "nbd-server-stop");
  if (!stopped && stopped.error().code != ErrorCode::QmpError &&
      stopped.error().code != ErrorCode::QmpDisconnected) {
    errors.push_back(stopped.error());
  }
  auto quit = exec(target, "quit");
  if (!quit && quit.error().code != ErrorCode::QmpDisconnected) {
    errors.push_back(quit.error());
  }
  if (!errors.empty()) {
    Error first = errors.front();
    errors.erase(errors.begin());
    return fail(withSecondary(std::move(first), std::move(errors)));
  }
  return {};
}

// =======================================================================================
// Source side

Result<void> startMirrors(qmp::QmpClient& source, SourceMigration& migration,
                          const std::vector<DiskMirrorTarget>& disks,
                          const MirrorOptions& options) {
  if (disks.empty()) {
    return fail(ErrorCode::InvalidArgument, "No disks to mirror");
  }
  if (!migration.mirrors.empty()) {
    return fail(ErrorCode::InvalidArgument, "Mirrors were started already for this migration");
  }
  std::set<std::string> seen;
  for (const auto& d : disks) {
    if (d.node.empty() || d.export_name.empty() || d.nbd_socket.empty() ||
        d.nbd_socket.size() > 107) {
      return fail(ErrorCode::InvalidArgument,
                  "Disk '" + d.node + "': node, export and NBD socket (<= 107 bytes) needed");
    }
    if (!seen.insert(d.node).second) {
      return fail(ErrorCode::InvalidArgument, "Disk node '" + d.node + "' is named twice");
    }
  }
  VANDRA_TRY(recordRunState(source, migration));
  // An NBD node an earlier attempt could not remove (its connection hung when the link
  // died): no job uses it now, so it goes before a new one of the same name is added.
  if (auto names = nodeNames(source); names) {
    for (const auto& d : disks) {
      if (names->count(nbdClientNode(d.node)) != 0) {
        (void)exec(source, "blockdev-del", {{"node-name", nbdClientNode(d.node)}});
      }
    }
  }
  // First every disk's NBD connection, then the mirrors. QEMU holds its main loop, and with
  // it the guest's network, while blockdev-add negotiates NBD (four round trips over the
  // WAN); a mirror already copying would put its data ahead of the next negotiation in the
  // tunnel and stretch that stall (208 ms, then 567 ms, on wan: docs/benchmarks.md).
  for (const auto& d : disks) {
    MirrorJob job;
    job.disk_node = d.node;
    job.job_id = mirrorJobId(d.node);
    job.nbd_node = nbdClientNode(d.node);
    job.export_name = d.export_name;
    job.device_id = d.device_id;
    if (!d.device_id.empty()) {
      job.convergence = DiskConvergence(options.converge);
    }
    migration.mirrors.push_back(job);
    MirrorJob& j = migration.mirrors.back();
    // The destination's export as a block node of the source. No reconnect: a broken tunnel
    // fails the job (reported), and the orchestrator decides.
    const auto connecting = Clock::now();
    VANDRA_TRY(exec(source, "blockdev-add",
                    {{"driver", "nbd"},
                     {"node-name", j.nbd_node},
                     {"server", {{"type", "unix"}, {"path", d.nbd_socket}}},
                     {"export", d.export_name}}));
    j.connect_ms = std::chrono::duration<double, std::milli>(Clock::now() - connecting).count();
    j.nbd_node_added = true;
  }
  migration.mirrors_started_at = Clock::now();
  for (size_t i = 0; i < disks.size(); ++i) {
    const DiskMirrorTarget& d = disks[i];
    MirrorJob& j = migration.mirrors[i];
    json args = {{"job-id", j.job_id},
                 {"device", d.node},
                 {"target", j.nbd_node},
                 {"sync", options.sync == SyncMode::Top || d.top_only ? "top" : "full"},
                 {"copy-mode",
                  options.copy_mode == CopyMode::WriteBlocking ? "write-blocking" : "background"},
                 {"on-source-error", "report"},
                 {"on-target-error", "report"}};
    if (options.bandwidth_bytes_per_s > 0) {
      args["speed"] = options.bandwidth_bytes_per_s;
    }
    VANDRA_TRY(exec(source, "blockdev-mirror", std::move(args)));
    j.job_started = true;
  }
  return {};
}

Result<void> waitMirrorsReady(qmp::QmpClient& source, EventWaiter& events,
                              SourceMigration& migration, Clock::time_point deadline) {
  std::map<std::string, MirrorJob*> by_id;
  for (auto& j : migration.mirrors) {
    if (!j.job_started) {
      return fail(ErrorCode::IllegalTransition, "Mirror of '" + j.disk_node + "' never started");
    }
    by_id[j.job_id] = &j;
  }
  auto pending = [&] {
    return std::any_of(migration.mirrors.begin(), migration.mirrors.end(),
                       [](const MirrorJob& j) { return !j.ready; });
  };
  auto ours = [&](const qmp::QmpEvent& e) {
    return isJobEvent(e) && by_id.count(str(e.data, "device")) != 0;
  };
  while (pending()) {
    auto ev = nextEvent(events, ours, deadline, true);
    if (isCancelled(ev)) {
      return fail(std::move(ev).error());
    }
    if (ev) {
      MirrorJob& j = *by_id[str(ev->data, "device")];
      if (ev->name == "BLOCK_JOB_READY") {
        j.ready = true;
      } else if (ev->name == "BLOCK_JOB_ERROR") {
        return fail(ErrorCode::Io, "Mirror " + j.job_id + " hit an I/O error (" +
                                       str(ev->data, "operation") + ", action " +
                                       str(ev->data, "action") + ")");
      } else {
        j.job_started = false;  // the job is gone
        const std::string err = str(ev->data, "error");
        return fail(ErrorCode::Io,
                    "Mirror " + j.job_id + " ended before it was ready" +
                        (err.empty() ? std::string(" (") + ev->name + ")" : ": " + err));
      }
      continue;
    }
    // No event within the poll interval: ask QEMU.
    VANDRA_TRY_ASSIGN(json jobs, blockJobs(source));
    for (auto& j : migration.mirrors) {
      const json* q = findJob(jobs, j.job_id);
      if (q == nullptr) {
        if (!j.ready) {
          j.job_started = false;
          return fail(ErrorCode::Io, "Mirror " + j.job_id + " disappeared before it was ready");
        }
        continue;
      }
      if (boolean(*q, "ready")) {
        j.ready = true;
      }
      converge(source, migration, j, u64(*q, "offset"), u64(*q, "len"));
    }
    if (pending() && Clock::now() >= deadline) {
      std::string which;
      for (const auto& j : migration.mirrors) {
        if (!j.ready) {
          const json* q = findJob(jobs, j.job_id);
          which += " " + j.job_id + "(" + std::to_string(q ? u64(*q, "offset") : 0) + "/" +
                   std::to_string(q ? u64(*q, "len") : 0) + ")";
        }
      }
      return fail(ErrorCode::Timeout, "Mirrors not ready at the deadline:" + which);
    }
  }
  for (auto& j : migration.mirrors) {
    converge(source, migration, j, 0, 0);  // READY: a throttle eases to its first step
  }
  return {};
}

}  // namespace vandra::migration
