// Post-copy on QEMU 7.2 (qemu_migration.h, "Post-copy"): after the switch the guest runs at
// the target while the pages it has not received yet are fetched from the source on demand.
// Both QEMUs then hold half the VM: the migration can only go forward.
//
//   source                                   target
//   active --migrate-start-postcopy-->
//   pre-switchover (mirrors complete)
//   --migrate-continue--> postcopy-active    postcopy-active (cont: the guest runs here)
//        | the stream breaks (EOF), or            | the same
//        | migrate-pause (a stream that stalls)   |
//        v                                        v
//   postcopy-paused                          postcopy-paused (vCPUs wait for missing pages)
//        |                                        |  migrate-recover uri2 (listens again)
//        +-- migrate uri2 resume=true ----------->|
//   postcopy-recover -> postcopy-active      postcopy-recover -> postcopy-active
//   completed (last page sent)               completed
//
// QEMU 7.2 facts this relies on (measured under TCG, docs/migration/qemu-engine.md):
// `migrate_cancel` is accepted in post-copy and is harmful (in postcopy-active it stops the
// source for good while the target waits for pages; in postcopy-paused it wedges the source
// in `cancelling`), so cancel() refuses it; a paused target does not quit (its vCPUs sit in
// userfaultfd), only SIGKILL ends it; a stream that stalls without closing is not noticed.
#include <thread>

#include "engine_support.h"
#include "vandra/migration/qemu_migration.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::migration {

using namespace engine;

bool inPostcopy(std::string_view status) {
  return status == "postcopy-active" || status == "postcopy-paused" || status == "postcopy-recover";
}

Result<bool> waitIncomingSwitched(qmp::QmpClient& target, EventWaiter& events,
                                  Clock::time_point deadline) {
  VANDRA_TRY_ASSIGN(std::string status,
                    waitMigrationStatus(target, events, {"completed", "postcopy-active"},
                                        {"failed", "cancelled", "postcopy-paused"}, deadline,
                                        "the incoming migration to switch over"));
  return status == "postcopy-active";
}

Result<PostcopyEnd> waitPostcopyEnd(qmp::QmpClient& qemu, EventWaiter& events,
                                    Clock::time_point deadline) {
  VANDRA_TRY_ASSIGN(std::string status,
                    waitMigrationStatus(qemu, events, {"completed", "postcopy-paused"},
                                        {"failed", "cancelled", "cancelling", "none"}, deadline,
                                        "the post-copy to end"));
  PostcopyEnd end;
  end.completed = status == "completed";
  VANDRA_TRY_ASSIGN(MigrationProgress p, progress(qemu));
  end.ram_transferred = p.ram_transferred;
  end.total_time_ms = p.total_time_ms;
  end.downtime_ms = p.downtime_ms.value_or(0);
  end.error_desc = p.error_desc;
  return end;
}

Result<bool> waitIncomingPostcopyEnd(EventWaiter& events, Clock::time_point deadline) {
  VANDRA_TRY_ASSIGN(qmp::QmpEvent ev, events.waitFor(
                                          "MIGRATION",
                                          [](const qmp::QmpEvent& e) {
                                            const std::string s = str(e.data, "status");
                                            return s == "completed" || s == "postcopy-paused" ||
                                                   s == "failed";
                                          },
                                          deadline));
  const std::string status = str(ev.data, "status");
  if (status == "failed") {
    return fail(ErrorCode::Io, "The incoming post-copy failed: the guest is lost at this site");
  }
  return status == "completed";
}

namespace {

// @p name with @p args out of band: the main loop of a post-copy target may wait for a page.
// QEMU's refusal (a command for another state) becomes IllegalTransition.
Result<void> outOfBand(qmp::QmpClient& qemu, const char* name, json args) {
  qmp::QmpCommand c = qmp::makeCommand(name, std::move(args));
  c.out_of_band = true;
  auto r = qemu.execute(c);
  if (!r) {
    Error e = std::move(r).error();
    if (e.code == ErrorCode::QmpError) {
      e.code = ErrorCode::IllegalTransition;
    }
    return fail(std::move(e));
  }
  return {};
}

}  // namespace

Result<void> pausePostcopy(qmp::QmpClient& qemu) {
  return outOfBand(qemu, "migrate-pause", json::object());
}

Result<void> recoverIncoming(qmp::QmpClient& target, const std::string& uri) {
  if (!validUnixUri(uri)) {
    return fail(ErrorCode::InvalidArgument, "Migration URI '" + uri + "' is not unix:<path>");
  }
  // Without asking the status first: QEMU itself refuses unless the post-copy is paused.
  return outOfBand(target, "migrate-recover", {{"uri", uri}});
}

Result<void> resumePostcopy(qmp::QmpClient& source, EventWaiter& events, const std::string& uri,
                            Clock::time_point deadline) {
  if (!validUnixUri(uri)) {
    return fail(ErrorCode::InvalidArgument, "Migration URI '" + uri + "' is not unix:<path>");
  }
  VANDRA_TRY_ASSIGN(std::string status, migrationStatus(source));
  if (status != "postcopy-paused") {
    return fail(ErrorCode::IllegalTransition,
                "The migration is '" + status + "', not postcopy-paused");
  }
  VANDRA_TRY(exec(source, "migrate", {{"uri", uri}, {"resume", true}}));
  // The status reads postcopy-paused until the migration thread has reconnected, then
  // postcopy-recover for a few milliseconds, then postcopy-active: a paused status here is
  // not yet a failure, only one that lasts to the deadline is.
  VANDRA_TRY(waitMigrationStatus(source, events, {"postcopy-active", "completed"},
                                 {"failed", "cancelled", "cancelling"}, deadline,
                                 "the post-copy to resume"));
  return {};
}

}  // namespace vandra::migration
