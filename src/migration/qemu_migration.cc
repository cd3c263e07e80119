// The QMP choreography of a live migration with local disks on QEMU 7.2, both ends
// (qemu_migration.h; docs/migration/qemu-engine.md). Everything here is QMP: no sockets of
// its own, no processes. Waits are event-driven (EventWaiter) with a periodic query as a
// safety net, so a lost or dropped event costs at most one poll interval, never a hang.
#include "vandra/migration/qemu_migration.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "vandra/qmp/commands.h"

namespace vandra::migration {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// How often a wait re-checks QEMU's state by query when no event came.
constexpr auto kPollInterval = 500ms;
// After the pre-switchover pause the engine needs at least this long to finish or undo.
constexpr auto kMinPausedBudget = 60s;

Result<json> exec(qmp::QmpClient& c, std::string name, json args = json::object()) {
  return c.execute(qmp::makeCommand(std::move(name), std::move(args)));
}

uint64_t u64(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return 0;
  }
  auto it = obj.find(key);
  if (it == obj.end()) {
    return 0;
  }
  if (it->is_number_unsigned()) {
    return it->get<uint64_t>();
  }
  if (it->is_number_integer()) {
    const int64_t v = it->get<int64_t>();
    return v < 0 ? 0 : static_cast<uint64_t>(v);
  }
  if (it->is_number_float()) {
    const double v = it->get<double>();
    return v < 0 ? 0 : static_cast<uint64_t>(v);
  }
  return 0;
}

double f64(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return 0;
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return {};
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool boolean(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return false;
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

// query-migrate's status ("none" when QEMU has no migration state to report).
Result<std::string> migrationStatus(qmp::QmpClient& c) {
  VANDRA_TRY_ASSIGN(json r, exec(c, "query-migrate"));
  std::string s = str(r, "status");
  return s.empty() ? std::string("none") : s;
}

// A migration is under way in these states (QEMU's migration_is_running() plus pre-
// switchover): migrate_cancel applies, a new migrate is refused.
bool migrationRunning(const std::string& s) {
  static const std::set<std::string> running = {
      "setup",      "active",          "pre-switchover",  "device",           "wait-unplug",
      "cancelling", "postcopy-active", "postcopy-paused", "postcopy-recover", "colo"};
  return running.count(s) != 0;
}

Result<json> blockJobs(qmp::QmpClient& c) {
  VANDRA_TRY_ASSIGN(json r, exec(c, "query-block-jobs"));
  if (!r.is_array()) {
    return fail(ErrorCode::QmpProtocol, "Reply to query-block-jobs is not an array");
  }
  return r;
}

const json* findJob(const json& jobs, const std::string& id) {
  for (const auto& j : jobs) {
    if (str(j, "device") == id) {
      return &j;
    }
  }
  return nullptr;
}

Result<std::set<std::string>> nodeNames(qmp::QmpClient& c) {
  VANDRA_TRY_ASSIGN(json r, exec(c, "query-named-block-nodes", {{"flat", true}}));
  std::set<std::string> names;
  if (r.is_array()) {
    for (const auto& n : r) {
      if (std::string name = str(n, "node-name"); !name.empty()) {
        names.insert(std::move(name));
      }
    }
  }
  return names;
}

// The next matching event, or Timeout after one poll interval. @p interruptible: an
// operator's cancel (EventWaiter::interrupt) ends the wait with Cancelled.
Result<qmp::QmpEvent> nextEvent(EventWaiter& events,
                                const std::function<bool(const qmp::QmpEvent&)>& match,
                                Clock::time_point deadline, bool interruptible = false) {
  return events.waitForAny(match, std::min(deadline, Clock::now() + kPollInterval), interruptible);
}

bool isCancelled(const Result<qmp::QmpEvent>& r) {
  return !r && r.error().code == ErrorCode::Cancelled;
}

bool isMigrationEvent(const qmp::QmpEvent& e) {
  return e.name == "MIGRATION";
}

bool isJobEvent(const qmp::QmpEvent& e) {
  return e.name == "BLOCK_JOB_READY" || e.name == "BLOCK_JOB_COMPLETED" ||
         e.name == "BLOCK_JOB_CANCELLED" || e.name == "BLOCK_JOB_ERROR";
}

// Waits until query-migrate / MIGRATION events report a status in @p wanted (returned) or in
// @p bad (error). Events of other statuses are consumed on the way.
Result<std::string> waitMigrationStatus(qmp::QmpClient& c, EventWaiter& events,
                                        const std::set<std::string>& wanted,
                                        const std::set<std::string>& bad,
                                        Clock::time_point deadline, const char* what,
                                        bool interruptible = false) {
  // query-migrate decides; a MIGRATION event (or the poll interval) only wakes the wait. An
  // event may be stale: from an earlier, cancelled attempt, or from the incoming migration
  // that brought the VM to this QEMU. Every state waited for lasts until the engine acts
  // (pre-switchover) or for good (completed, failed, cancelled), so a query cannot miss it.
  for (;;) {
    VANDRA_TRY_ASSIGN(std::string status, migrationStatus(c));
    if (wanted.count(status) != 0) {
      return status;
    }
    if (bad.count(status) != 0) {
      std::string desc;
      if (auto q = exec(c, "query-migrate"); q) {
        desc = str(*q, "error-desc");
      }
      return fail(ErrorCode::Io, std::string("Migration ") + status + " while waiting for " + what +
                                     (desc.empty() ? "" : ": " + desc));
    }
    if (Clock::now() >= deadline) {
      return fail(ErrorCode::Timeout, std::string("Migration still '") + status +
                                          "' at the deadline, waiting for " + what);
    }
    if (auto ev = nextEvent(events, isMigrationEvent, deadline, interruptible); isCancelled(ev)) {
      return fail(std::move(ev).error());
    }
  }
}

json capabilitiesArg(const std::vector<std::pair<std::string, bool>>& caps) {
  json a = json::array();
  for (const auto& [name, on] : caps) {
    a.push_back({{"capability", name}, {"state", on}});
  }
  return a;
}

bool validUnixUri(const std::string& uri) {
  return uri.rfind("unix:", 0) == 0 && uri.size() > 5 && uri.size() - 5 <= 107;
}

Error withSecondary(Error primary, std::vector<Error> more) {
  for (auto& e : more) {
    primary.secondary.push_back(std::move(e));
  }
  return primary;
}

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

Result<TargetFinish> finishTarget(qmp::QmpClient& target, const FinishTargetOptions& options) {
  VANDRA_TRY_ASSIGN(std::string status, migrationStatus(target));
  if (status != "completed") {
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

namespace {

Result<void> recordRunState(qmp::QmpClient& source, SourceMigration& m) {
  if (m.state_known) {
    return {};
  }
  VANDRA_TRY_ASSIGN(json st, exec(source, "query-status"));
  m.vm_was_running = boolean(st, "running");
  m.state_known = true;
  return {};
}

}  // namespace

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

Result<void> startRamMigration(qmp::QmpClient& source, SourceMigration& migration,
                               const std::string& uri, const RamMigrationOptions& options) {
  if (!validUnixUri(uri)) {
    return fail(ErrorCode::InvalidArgument, "Migration URI '" + uri + "' is not unix:<path>");
  }
  if (migration.ram_started) {
    return fail(ErrorCode::IllegalTransition, "The RAM migration was started already");
  }
  VANDRA_TRY_ASSIGN(std::string status, migrationStatus(source));
  if (migrationRunning(status)) {
    return fail(ErrorCode::IllegalTransition,
                "A migration is already '" + status + "' on the source QEMU");
  }
  VANDRA_TRY(recordRunState(source, migration));

  const std::vector<std::pair<std::string, bool>> caps{{"events", true},
                                                       {"pause-before-switchover", true},
                                                       {"auto-converge", options.auto_converge},
                                                       {"return-path", options.return_path},
                                                       {"xbzrle", options.xbzrle_cache_bytes > 0}};
  // Remember what cancel() must restore.
  VANDRA_TRY_ASSIGN(json before, exec(source, "query-migrate-capabilities"));
  json saved = json::array();
  for (const auto& [name, on] : caps) {
    bool was = false;
    if (before.is_array()) {
      for (const auto& c : before) {
        if (str(c, "capability") == name) {
          was = boolean(c, "state");
        }
      }
    }
    saved.push_back({{"capability", name}, {"state", was}});
  }
  VANDRA_TRY_ASSIGN(json params, exec(source, "query-migrate-parameters"));
  json saved_params = json::object();
  for (const char* p : {"downtime-limit", "max-bandwidth", "xbzrle-cache-size"}) {
    if (params.is_object() && params.contains(p)) {
      saved_params[p] = params[p];
    }
  }
  migration.saved_capabilities = saved;
  migration.saved_parameters = saved_params;
  migration.downtime_limit_ms = options.downtime_limit_ms;
  migration.max_downtime_limit_ms =
      std::max(options.max_downtime_limit_ms, options.downtime_limit_ms);
  migration.limit_raised_at_sync = 0;
  migration.auto_converge = options.auto_converge;
  migration.raised_limits.clear();

  VANDRA_TRY(exec(source, "migrate-set-capabilities", {{"capabilities", capabilitiesArg(caps)}}));
  // max-bandwidth 0: no rate limit on the migration stream (QEMU 7.2's default: 128 MiB/s).
  json params_now = {{"downtime-limit", options.downtime_limit_ms},
                     {"max-bandwidth", options.max_bandwidth_bytes_per_s}};
  if (options.xbzrle_cache_bytes > 0) {
    params_now["xbzrle-cache-size"] = options.xbzrle_cache_bytes;
  }
  VANDRA_TRY(exec(source, "migrate-set-parameters", params_now));
  VANDRA_TRY(exec(source, "migrate", {{"uri", uri}}));
  migration.ram_started = true;
  migration.ram_started_at = Clock::now();
  if (options.max_total_time.count() > 0) {
    migration.ram_deadline = migration.ram_started_at + options.max_total_time;
  }
  return {};
}

Result<MigrationProgress> progress(qmp::QmpClient& source) {
  MigrationProgress p;
  VANDRA_TRY_ASSIGN(json q, exec(source, "query-migrate"));
  p.status = str(q, "status");
  if (p.status.empty()) {
    p.status = "none";
  }
  if (q.is_object() && q.contains("ram")) {
    const json& ram = q["ram"];
    p.ram_transferred = u64(ram, "transferred");
    p.ram_remaining = u64(ram, "remaining");
    p.ram_total = u64(ram, "total");
    p.ram_duplicate = u64(ram, "duplicate");
    p.ram_normal_bytes = u64(ram, "normal-bytes");
    p.dirty_sync_count = u64(ram, "dirty-sync-count");
    p.dirty_pages_rate = f64(ram, "dirty-pages-rate");
    p.mbps = f64(ram, "mbps");
  }
  p.expected_downtime_ms = u64(q, "expected-downtime");
  p.setup_time_ms = u64(q, "setup-time");
  p.total_time_ms = u64(q, "total-time");
  if (q.is_object() && q.contains("downtime")) {
    p.downtime_ms = u64(q, "downtime");
  }
  p.cpu_throttle_percentage = static_cast<int>(u64(q, "cpu-throttle-percentage"));
  p.error_desc = str(q, "error-desc");
  VANDRA_TRY_ASSIGN(json jobs, blockJobs(source));
  for (const auto& j : jobs) {
    BlockJobProgress b;
    b.job_id = str(j, "device");
    b.status = str(j, "status");
    b.ready = boolean(j, "ready");
    b.offset = u64(j, "offset");
    b.len = u64(j, "len");
    b.speed = u64(j, "speed");
    p.jobs.push_back(std::move(b));
  }
  return p;
}

namespace {

// Removes the NBD client nodes that exist; returns the failures.
std::vector<Error> deleteNbdNodes(qmp::QmpClient& source, SourceMigration& m) {
  std::vector<Error> errors;
  auto names = nodeNames(source);
  for (auto& j : m.mirrors) {
    if (!j.nbd_node_added) {
      continue;
    }
    if (names && names->count(j.nbd_node) == 0) {
      j.nbd_node_added = false;
      continue;
    }
    auto del = exec(source, "blockdev-del", {{"node-name", j.nbd_node}});
    if (del) {
      j.nbd_node_added = false;
    } else {
      errors.push_back(
          Error(del.error().code, "blockdev-del " + j.nbd_node).withCause(del.error()));
    }
  }
  return errors;
}

}  // namespace

PrecopyVerdict judgePrecopy(const SourceMigration& migration, const MigrationProgress& p) {
  PrecopyVerdict v;
  if (p.dirty_sync_count < migration.limit_raised_at_sync + kSyncsPerRaise) {
    return v;  // too soon since the start or the last raise
  }
  v.judged = true;
  if (migration.downtime_limit_ms < migration.max_downtime_limit_ms) {
    v.raise_to = std::min(std::max<uint64_t>(migration.downtime_limit_ms, 1) * 2,
                          migration.max_downtime_limit_ms);
    return v;
  }
  if (migration.auto_converge) {
    return v;  // QEMU throttles the guest until it fits the link
  }
  // QEMU's own measures: pages dirtied per second, and the link's rate in Mbit/s (a burst
  // into the tunnel's buffers can inflate the latter, so a rate comparison alone cannot be
  // trusted to say no; a pre-copy that has not converged in kGiveUpPasses passes at its
  // largest limit will not).
  const double dirty_bytes_per_s = p.dirty_pages_rate * 4096.0;
  const double link_bytes_per_s = p.mbps * 1e6 / 8.0;
  const bool outpaced = link_bytes_per_s > 0 && dirty_bytes_per_s >= link_bytes_per_s;
  if (outpaced || p.dirty_sync_count >= kGiveUpPasses) {
    char why[320];
    std::snprintf(why, sizeof why,
                  "The RAM pre-copy does not converge: after %llu passes %.1f MB are still dirty; "
                  "the guest dirties "
                  "%.1f MB/s and QEMU measures the link at %.1f MB/s, and auto-converge is off",
                  static_cast<unsigned long long>(p.dirty_sync_count),
                  static_cast<double>(p.ram_remaining) / 1e6, dirty_bytes_per_s / 1e6,
                  link_bytes_per_s / 1e6);
    v.give_up = why;
  }
  return v;
}

Result<void> waitPreSwitchover(qmp::QmpClient& source, EventWaiter& events,
                               SourceMigration& migration, Clock::time_point deadline) {
  if (!migration.ram_started) {
    return fail(ErrorCode::IllegalTransition, "No RAM migration was started");
  }
  if (migration.paused_at) {
    return {};
  }
  const Clock::time_point converge_by =
      migration.ram_deadline ? std::min(deadline, *migration.ram_deadline) : deadline;
  // Waits in slices of a second; between them the pre-copy's progress is judged.
  for (;;) {
    const Clock::time_point slice = std::min(converge_by, Clock::now() + 1s);
    auto st = waitMigrationStatus(source, events, {"pre-switchover"},
                                  {"failed", "cancelled", "cancelling", "completed", "none"}, slice,
                                  "pre-switchover", /*interruptible=*/true);
    if (st) {
      break;
    }
    if (st.error().code != ErrorCode::Timeout || Clock::now() >= converge_by) {
      return fail(std::move(st).error());
    }
    VANDRA_TRY_ASSIGN(MigrationProgress p, progress(source));
    const PrecopyVerdict v = judgePrecopy(migration, p);
    if (v.give_up) {
      return fail(ErrorCode::Unsupported, *v.give_up);
    }
    if (v.raise_to) {
      VANDRA_TRY(exec(source, "migrate-set-parameters", {{"downtime-limit", *v.raise_to}}));
      migration.downtime_limit_ms = *v.raise_to;
      migration.raised_limits.push_back(*v.raise_to);
    }
    if (v.judged) {
      migration.limit_raised_at_sync = p.dirty_sync_count;
    }
  }
  migration.paused_at = Clock::now();
  return {};
}

Result<SwitchoverResult> switchover(qmp::QmpClient& source, EventWaiter& events,
                                    SourceMigration& migration, Clock::time_point deadline,
                                    const std::function<Result<void>()>& before_continue) {
  if (!migration.ram_started) {
    return fail(ErrorCode::IllegalTransition, "switchover() before startRamMigration()");
  }
  SwitchoverResult r;
  // 1. QEMU pauses by itself once the remaining RAM fits the downtime limit: vCPUs stopped,
  //    block I/O drained, devices not yet saved.
  if (!migration.paused_at) {
    VANDRA_TRY(waitPreSwitchover(source, events, migration, deadline));
  }
  const auto paused_at = *migration.paused_at;
  const Clock::time_point finish_by = std::max(deadline, paused_at + kMinPausedBudget);

  // 2. Every mirror must be ready (in sync but for the last writes); then a plain (not
  //    forced) block-job-cancel makes each copy what is left and end with
  //    BLOCK_JOB_COMPLETED, leaving the target identical to the stopped source.
  VANDRA_TRY_ASSIGN(json jobs, blockJobs(source));
  for (const auto& j : migration.mirrors) {
    const json* q = findJob(jobs, j.job_id);
    if (q == nullptr || !boolean(*q, "ready")) {
      return fail(ErrorCode::IllegalTransition, "Mirror " + j.job_id +
                                                    " is not ready at switchover" +
                                                    (q == nullptr ? " (the job is gone)" : ""));
    }
  }
  std::map<std::string, MirrorJob*> running;
  if (auto at_pause = progress(source)) {
    r.ram_at_pause = at_pause->ram_transferred;
    r.ram_remaining_at_pause = at_pause->ram_remaining;
    r.mbps_at_pause = at_pause->mbps;
  }
  for (auto& j : migration.mirrors) {
    // The last dirty blocks are copied inside the downtime: no bandwidth cap for them.
    VANDRA_TRY(exec(source, "block-job-set-speed", {{"device", j.job_id}, {"speed", 0}}));
    running[j.job_id] = &j;
    VANDRA_TRY(exec(source, "block-job-cancel", {{"device", j.job_id}, {"force", false}}));
  }
  // The mirrors' last copy takes a round trip to the target: the caller's own work (a
  // synchronous write of its phase) overlaps with it rather than adding to the pause.
  if (before_continue) {
    VANDRA_TRY(before_continue());
  }
  auto ours = [&](const qmp::QmpEvent& e) {
    return isJobEvent(e) && running.count(str(e.data, "device")) != 0;
  };
  while (!running.empty()) {
    auto ev = nextEvent(events, ours, finish_by);
    if (ev) {
      const std::string id = str(ev->data, "device");
      if (ev->name == "BLOCK_JOB_READY") {
        continue;  // a late duplicate of the ready event
      }
      if (ev->name == "BLOCK_JOB_ERROR") {
        return fail(ErrorCode::Io, "Mirror " + id + " hit an I/O error while completing (" +
                                       str(ev->data, "operation") + ")");
      }
      MirrorJob* j = running[id];
      j->job_started = false;
      running.erase(id);
      const std::string err = str(ev->data, "error");
      if (ev->name == "BLOCK_JOB_CANCELLED" || !err.empty()) {
        return fail(ErrorCode::Io, "Mirror " + id + " did not complete" +
                                       (err.empty() ? " (cancelled)" : ": " + err));
      }
      r.disk_transferred += u64(ev->data, "offset");
      continue;
    }
    VANDRA_TRY_ASSIGN(json now, blockJobs(source));
    for (const auto& [id, job] : running) {
      // Gone from the list: its COMPLETED or CANCELLED event is on its way on the event
      // monitor, unless the queue overflowed; then whether the target is in sync is unknown.
      if (findJob(now, id) == nullptr && events.dropped() > 0) {
        job->job_started = false;
        return fail(ErrorCode::Io, "Mirror " + id +
                                       " ended, but its event was lost: the "
                                       "target's disk may not be in sync");
      }
    }
    if (!running.empty() && Clock::now() >= finish_by) {
      return fail(ErrorCode::Timeout, "Mirrors did not complete at switchover in time");
    }
  }
  r.mirror_complete_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - paused_at).count();

  // 3. Devices and the last RAM go; the destination starts the guest when it has loaded
  //    them (and, with return-path, tells the source, which only then says completed).
  VANDRA_TRY(exec(source, "migrate-continue", {{"state", "pre-switchover"}}));
  const auto continued_at = Clock::now();
  VANDRA_TRY(waitMigrationStatus(source, events, {"completed"}, {"failed", "cancelled"}, finish_by,
                                 "completion"));
  r.continue_to_completed_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - continued_at).count();
  r.paused_ms = std::chrono::duration<double, std::milli>(Clock::now() - paused_at).count();
  r.downtime_limit_ms = migration.downtime_limit_ms;
  // QEMU says "completed" a moment before it has computed the downtime and total time
  // (migration_calculate_complete runs after the state change); until then both read 0.
  VANDRA_TRY_ASSIGN(MigrationProgress p, progress(source));
  for (int i = 0; i < 100 && (p.downtime_ms.value_or(0) == 0 || p.total_time_ms == 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    VANDRA_TRY_ASSIGN(p, progress(source));
  }
  r.downtime_ms = p.downtime_ms.value_or(0);
  r.total_time_ms = p.total_time_ms;
  r.setup_time_ms = p.setup_time_ms;
  r.ram_transferred = p.ram_transferred;
  // 4. The NBD client nodes are idle now; removing them closes the connections to the
  //    target's exports. Not fatal: the source QEMU is about to quit.
  for (const auto& e : deleteNbdNodes(source, migration)) {
    r.warnings.push_back(e.describe());
  }
  return r;
}

Result<CancelReport> cancel(qmp::QmpClient& source, EventWaiter& events, SourceMigration& migration,
                            Clock::time_point deadline) {
  std::vector<Error> errors;
  CancelReport report;
  report.migration_status = "none";
  // 1. The RAM migration. QEMU restarts a VM it stopped (pre-switchover, completion) once
  //    the cancel is through, if it was running when the migration started.
  if (migration.ram_started) {
    VANDRA_TRY_ASSIGN(std::string status, migrationStatus(source));
    if (status == "completed") {
      return fail(ErrorCode::IllegalTransition,
                  "The migration has completed: the target runs the VM, nothing to cancel");
    }
    report.migration_status = status;
    if (migrationRunning(status)) {
      if (auto c = exec(source, "migrate_cancel"); !c) {
        errors.push_back(c.error());
      } else {
        auto done = waitMigrationStatus(source, events, {"cancelled", "failed", "completed"}, {},
                                        deadline, "the cancel");
        if (!done) {
          errors.push_back(done.error());
        } else {
          report.migration_status = *done;
        }
        if (done && *done == "completed") {
          // Too late: the switchover went through before the cancel. The target runs the
          // VM; resuming the source now would run it twice.
          return fail(ErrorCode::IllegalTransition,
                      "The migration completed before the cancel took effect: the target "
                      "runs the VM");
        }
      }
    }
  }
  // 2. Mirrors: forced cancel (an unfinished copy is of no use), then wait for them to go.
  std::set<std::string> cancelling;
  if (auto jobs = blockJobs(source); jobs) {
    for (auto& j : migration.mirrors) {
      if (findJob(*jobs, j.job_id) == nullptr) {
        j.job_started = false;
        continue;
      }
      auto c = exec(source, "block-job-cancel", {{"device", j.job_id}, {"force", true}});
      if (c) {
        cancelling.insert(j.job_id);
        ++report.mirrors_cancelled;
      } else {
        errors.push_back(c.error());
      }
    }
  } else {
    errors.push_back(jobs.error());
  }
  while (!cancelling.empty()) {
    auto ev = nextEvent(
        events,
        [&](const qmp::QmpEvent& e) {
          return (e.name == "BLOCK_JOB_CANCELLED" || e.name == "BLOCK_JOB_COMPLETED") &&
                 cancelling.count(str(e.data, "device")) != 0;
        },
        deadline);
    if (ev) {
      cancelling.erase(str(ev->data, "device"));
      continue;
    }
    auto jobs = blockJobs(source);
    if (!jobs) {
      errors.push_back(jobs.error());
      break;
    }
    std::erase_if(cancelling, [&](const std::string& id) { return findJob(*jobs, id) == nullptr; });
    if (!cancelling.empty() && Clock::now() >= deadline) {
      errors.push_back(Error(ErrorCode::Timeout, "Mirror jobs still there after cancel"));
      break;
    }
  }
  for (auto& j : migration.mirrors) {
    if (cancelling.count(j.job_id) == 0) {
      j.job_started = false;
    }
  }
  // Old job events must not confuse a later attempt.
  events.discard([](const qmp::QmpEvent& e) { return isJobEvent(e); });
  // 2b. The guest's writes run at full speed again.
  for (auto& j : migration.mirrors) {
    if (!j.throttled || j.device_id.empty()) {
      continue;
    }
    if (auto c = qmp::setWriteThrottle(source, j.device_id, 0, 0); !c) {
      errors.push_back(c.error());
    } else {
      j.throttled = false;
      ++report.throttles_lifted;
    }
  }
  // 3. The NBD client nodes.
  const auto added = [&] {
    return static_cast<size_t>(std::count_if(migration.mirrors.begin(), migration.mirrors.end(),
                                             [](const MirrorJob& j) { return j.nbd_node_added; }));
  };
  const size_t nodes_before = added();
  for (auto& e : deleteNbdNodes(source, migration)) {
    errors.push_back(std::move(e));
  }
  report.nbd_nodes_deleted = nodes_before - added();
  // 4. Capabilities and parameters as they were (QEMU refuses while a migration runs, so
  //    only after the cancel went through).
  if (migration.ram_started) {
    if (auto status = migrationStatus(source); status && !migrationRunning(*status)) {
      if (!migration.saved_capabilities.empty()) {
        if (auto c = exec(source, "migrate-set-capabilities",
                          {{"capabilities", migration.saved_capabilities}});
            !c) {
          errors.push_back(c.error());
        }
      }
      if (!migration.saved_parameters.empty()) {
        if (auto c = exec(source, "migrate-set-parameters", migration.saved_parameters); !c) {
          errors.push_back(c.error());
        }
      }
    }
    events.discard(isMigrationEvent);
  }
  // 5. The VM runs again if it ran before, and tells the LAN where it is.
  if (migration.state_known && migration.vm_was_running) {
    auto st = exec(source, "query-status");
    bool running = false;
    if (!st) {
      errors.push_back(st.error());
    } else if (!boolean(*st, "running")) {
      if (auto c = exec(source, "cont"); !c) {
        errors.push_back(c.error());
      } else {
        report.resumed = true;
        running = true;
      }
    } else {
      running = true;
    }
    if (running && migration.ram_started) {
      if (auto a = announce(source); !a) {
        errors.push_back(a.error());
      } else {
        report.announced = true;
      }
    }
  }
  const bool leftovers =
      std::any_of(migration.mirrors.begin(), migration.mirrors.end(),
                  [](const MirrorJob& j) { return j.job_started || j.nbd_node_added; });
  if (errors.empty()) {
    migration = SourceMigration{};
    return report;
  }
  if (!leftovers) {
    migration.mirrors.clear();
  }
  migration.ram_started = false;
  migration.paused_at.reset();
  Error first = errors.front();
  errors.erase(errors.begin());
  return fail(withSecondary(std::move(first), std::move(errors)));
}

}  // namespace vandra::migration
