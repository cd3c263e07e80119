// The source's RAM pre-copy, the switchover and the cancel of a live migration on QEMU 7.2
// (qemu_migration.h; docs/migration/qemu-engine.md). The first half, names, the target side
// and the mirrors, is in qemu_migration.cc; the QMP helpers in engine_support.h.
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "engine_support.h"
#include "vandra/migration/qemu_migration.h"
#include "vandra/qmp/commands.h"

namespace vandra::migration {

using namespace engine;
using namespace std::chrono_literals;

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
                                                       {"xbzrle", options.xbzrle_cache_bytes > 0},
                                                       {"postcopy-ram", options.post_copy}};
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
  for (const char* p :
       {"downtime-limit", "max-bandwidth", "xbzrle-cache-size", "max-postcopy-bandwidth",
        "cpu-throttle-initial", "cpu-throttle-increment"}) {
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
  migration.post_copy_allowed = options.post_copy;
  migration.post_copy = false;
  migration.post_copy_reason.clear();
  migration.raised_limits.clear();
  migration.precopy_samples.clear();
  migration.throttle_increment = kQemuThrottleIncrement;

  VANDRA_TRY(exec(source, "migrate-set-capabilities", {{"capabilities", capabilitiesArg(caps)}}));
  // max-bandwidth 0: no rate limit on the migration stream (QEMU 7.2's default: 128 MiB/s).
  json params_now = {{"downtime-limit", options.downtime_limit_ms},
                     {"max-bandwidth", options.max_bandwidth_bytes_per_s}};
  if (options.xbzrle_cache_bytes > 0) {
    params_now["xbzrle-cache-size"] = options.xbzrle_cache_bytes;
  }
  if (options.post_copy) {
    params_now["max-postcopy-bandwidth"] = options.max_postcopy_bandwidth_bytes_per_s;
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

// A verdict's reason: how far the pre-copy got, then @p detail.
std::string notConverging(const MigrationProgress& p, const char* detail) {
  char head[160];
  std::snprintf(head, sizeof head,
                "The RAM pre-copy does not converge: after %llu passes %.1f MB are still dirty",
                static_cast<unsigned long long>(p.dirty_sync_count),
                static_cast<double>(p.ram_remaining) / 1e6);
  return std::string(head) + detail;
}

void recordSample(SourceMigration& migration, const MigrationProgress& p) {
  auto& samples = migration.precopy_samples;
  if (samples.size() >= kMaxPrecopySamples) {
    samples.erase(samples.begin());
  }
  PrecopySample s;
  s.at_s = std::chrono::duration<double>(Clock::now() - migration.ram_started_at).count();
  s.passes = p.dirty_sync_count;
  s.transferred = p.ram_transferred;
  s.remaining = p.ram_remaining;
  s.mbps = p.mbps;
  s.dirty_bytes_per_s = p.dirty_pages_rate * 4096.0;
  s.throttle_percent = p.cpu_throttle_percentage;
  s.throttle_step = migration.throttle_increment;
  s.limit_ms = migration.downtime_limit_ms;
  samples.push_back(s);
}

// What the pre-copy sent per second over its last two seconds of samples; 0: not known yet.
double recentSendRate(const std::vector<PrecopySample>& samples) {
  if (samples.size() < 2) {
    return 0;
  }
  const PrecopySample& last = samples.back();
  const PrecopySample* first = &last;
  for (auto it = samples.rbegin(); it != samples.rend() && it->at_s >= last.at_s - 2.0; ++it) {
    first = &*it;
  }
  const double span = last.at_s - first->at_s;
  if (span < 0.5 || last.transferred < first->transferred) {
    return 0;
  }
  return static_cast<double>(last.transferred - first->transferred) / span;
}

}  // namespace

PrecopyVerdict judgePrecopy(const SourceMigration& migration, const MigrationProgress& p) {
  PrecopyVerdict v;
  if (p.dirty_sync_count < migration.limit_raised_at_sync + kSyncsPerRaise) {
    return v;  // too soon since the start or the last raise
  }
  v.judged = true;
  // With post-copy allowed, a pre-copy whose dirty RAM would take far longer than even the
  // largest downtime limit to send is not waited on: no raise and no throttle brings
  // kHopelessFactor times the limit down within a few passes, and every pass costs the link.
  const double link_bytes_per_s = p.mbps * 1e6 / 8.0;
  if (migration.post_copy_allowed && !migration.post_copy && link_bytes_per_s > 0) {
    const double needs_ms = static_cast<double>(p.ram_remaining) / link_bytes_per_s * 1000.0;
    const double max_ms =
        static_cast<double>(std::max(migration.max_downtime_limit_ms, migration.downtime_limit_ms));
    if (needs_ms > kHopelessFactor * max_ms) {
      char detail[160];
      std::snprintf(detail, sizeof detail,
                    ", %.0f ms at the %.1f MB/s QEMU measures, against a downtime limit of at "
                    "most %.0f ms",
                    needs_ms, link_bytes_per_s / 1e6, max_ms);
      v.start_post_copy = notConverging(p, detail);
      return v;
    }
  }
  // QEMU's own ramp (+10 points every other pass that dirtied more than half of what it
  // sent) takes many passes to slow a guest that dirties about as fast as the link carries,
  // and every pass resends its working set: a steeper step ends the pre-copy sooner.
  if (migration.auto_converge && !migration.post_copy &&
      migration.throttle_increment < kMaxThrottleIncrement) {
    const double sent_per_s = recentSendRate(migration.precopy_samples);
    if (sent_per_s > 0 && p.dirty_pages_rate * 4096.0 >= kSteepenThrottleShare * sent_per_s) {
      v.throttle_increment = std::min(migration.throttle_increment * 2, kMaxThrottleIncrement);
    }
  }
  if (migration.downtime_limit_ms < migration.max_downtime_limit_ms) {
    v.raise_to = std::min(std::max<uint64_t>(migration.downtime_limit_ms, 1) * 2,
                          migration.max_downtime_limit_ms);
    return v;
  }
  if (migration.post_copy || (migration.auto_converge && !migration.post_copy_allowed)) {
    return v;  // post-copy finishes it, or QEMU throttles the guest until it fits the link
  }
  // QEMU's own measures: pages dirtied per second, and the link's rate in Mbit/s (a burst
  // into the tunnel's buffers can inflate the latter, so a rate comparison alone cannot be
  // trusted to say no; a pre-copy that has not converged in kGiveUpPasses passes at its
  // largest limit will not).
  const double dirty_bytes_per_s = p.dirty_pages_rate * 4096.0;
  const bool outpaced = link_bytes_per_s > 0 && dirty_bytes_per_s >= link_bytes_per_s;
  if (outpaced || p.dirty_sync_count >= kGiveUpPasses) {
    const std::string converge =
        migration.auto_converge
            ? "on (the guest's vCPUs throttled " + std::to_string(p.cpu_throttle_percentage) + " %)"
            : std::string("off");
    char detail[256];
    std::snprintf(detail, sizeof detail,
                  "; the guest dirties %.1f MB/s and QEMU measures the link at %.1f MB/s, and "
                  "auto-converge is %s",
                  dirty_bytes_per_s / 1e6, link_bytes_per_s / 1e6, converge.c_str());
    (migration.post_copy_allowed ? v.start_post_copy : v.give_up) = notConverging(p, detail);
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
  // Waits in slices; between them the pre-copy's progress is sampled and judged (the
  // judgement counts passes, not slices).
  for (;;) {
    const Clock::time_point slice = std::min(converge_by, Clock::now() + kPrecopySampleEvery);
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
    recordSample(migration, p);
    const PrecopyVerdict v = judgePrecopy(migration, p);
    if (v.start_post_copy) {
      // QEMU stops the guest and pauses at pre-switchover as for the last pre-copy pass
      // (pause-before-switchover applies to post-copy's start too).
      VANDRA_TRY(exec(source, "migrate-start-postcopy"));
      migration.post_copy = true;
      migration.post_copy_reason = *v.start_post_copy;
    }
    if (v.give_up) {
      return fail(ErrorCode::Unsupported, *v.give_up);
    }
    if (v.throttle_increment) {
      VANDRA_TRY(
          exec(source, "migrate-set-parameters",
               {{"cpu-throttle-increment", *v.throttle_increment},
                {"cpu-throttle-initial", std::max(kQemuThrottleInitial, *v.throttle_increment)}}));
      migration.throttle_increment = *v.throttle_increment;
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
  std::set<std::string> done{"completed"};
  if (migration.post_copy) {
    // The device state has gone and the target may start the guest: the rest of the RAM
    // follows on demand (waitPostcopyEnd). A break from here pauses, never fails.
    done.insert({"postcopy-active", "postcopy-paused"});
  }
  VANDRA_TRY(
      waitMigrationStatus(source, events, done, {"failed", "cancelled"}, finish_by, "completion"));
  r.continue_to_completed_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - continued_at).count();
  r.paused_ms = std::chrono::duration<double, std::milli>(Clock::now() - paused_at).count();
  r.downtime_limit_ms = migration.downtime_limit_ms;
  r.precopy = migration.precopy_samples;
  r.post_copy = migration.post_copy;
  r.post_copy_reason = migration.post_copy_reason;
  if (migration.post_copy) {
    VANDRA_TRY_ASSIGN(MigrationProgress p, progress(source));
    r.ram_transferred = p.ram_transferred;
    for (const auto& e : deleteNbdNodes(source, migration)) {
      r.warnings.push_back(e.describe());
    }
    return r;
  }
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
    if (inPostcopy(status)) {
      // Accepted by QEMU 7.2 and fatal: a source cancelled in post-copy never sends the
      // pages the running target still needs.
      return fail(ErrorCode::IllegalTransition,
                  "The migration is in post-copy ('" + status +
                      "'): the target runs the VM with part of its memory still here; it can "
                      "only go forward");
    }
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
