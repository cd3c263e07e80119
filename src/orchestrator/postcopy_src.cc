// The source's post-copy (ADR 0032), between the target's `started` and the source's release.
// The guest runs at the target; pages it has not received yet come from the source QEMU, so
// the source QEMU must live until QEMU says `completed`. Nothing rolls back from here: a
// stream that breaks (a WAN cut that kills the tunnel) or stalls (a cut the tunnel survives)
// is paused at both ends and recovered over a new stream, as often as it takes.
//
//            +--------------------- pages flow ---------------------+
//            v                                                      |
//   postcopy-active --(RAM counter still for postcopy_stall)--> pause (source; the target
//        |   ^                                                 |   pauses in `recover`)
//        |   |                                                 v
//        |   +-- resumePostcopyOut <-- recovering <-- recover <-- postcopy-paused
//        |        (new stream, attempt n)    (target listens)      (stream closed: QEMU
//        v                                                          paused by itself)
//    completed --> ConfirmSrc releases the source QEMU
//
// Every failed attempt (no link, no answer, the resume timed out) is tried again after a
// back-off of 1, 2, 4 .. 15 s; the record's report.post_copy shows where it stands.
#include <algorithm>
#include <thread>

#include "source_steps.h"

namespace vandra::orchestrator::detail {
namespace {

constexpr auto kPoll = std::chrono::milliseconds(500);
constexpr auto kMaxBackoff = std::chrono::seconds(15);
constexpr auto kRecoverAnswer = std::chrono::seconds(30);  // recover -> recovering
constexpr auto kResume = std::chrono::seconds(30);         // migrate resume -> pages flow

// One recovery: a new stream to the target's new listener, then the source resumes on it.
Result<void> recoverOnce(SourceContext& ctx, uint32_t attempt) {
  if (!ctx.req.reopen_migration) {
    return fail(ErrorCode::Unsupported, "No way to open a new migration stream here");
  }
  VANDRA_TRY_ASSIGN(const std::string socket, ctx.req.reopen_migration(attempt));
  VANDRA_TRY(
      expect<tunnel::Recovering>(ctx.peer.exchange(tunnel::Recover{ctx.req.migration_id, attempt},
                                                   Clock::now() + kRecoverAnswer),
                                 "recover"));
  return ctx.host.resumePostcopyOut(ctx.req.vm_id, socket, Clock::now() + kResume);
}

}  // namespace

Result<void> finishPostcopy(SourceContext& ctx) {
  nlohmann::json report = ctx.rec.report.value("post_copy", nlohmann::json::object());
  uint32_t attempt = report.value("recoveries", uint32_t{0});
  uint64_t last_bytes = 0;
  auto last_change = Clock::now();
  auto backoff = std::chrono::seconds(1);
  std::string shown;  // the status the record shows
  auto show = [&](const std::string& status, const std::string& error) {
    report["status"] = status;
    report["recoveries"] = attempt;
    report["ram_bytes"] = last_bytes;
    if (!error.empty()) {
      report["last_error"] = error.substr(0, 500);
    }
    ctx.rec.report["post_copy"] = report;
    if (status != shown || !error.empty()) {
      shown = status;
      if (auto u = ctx.store.update(ctx.rec)) {
        ctx.rec = *u;
      }
    }
  };
  for (;;) {
    if (auto c = ctx.cancelledNow()) {
      return fail(*c);  // the agent stops: settled after its restart
    }
    auto p = ctx.host.postcopyProgress(ctx.req.vm_id);
    if (!p) {
      show("unknown", p.error().describe());
      std::this_thread::sleep_for(backoff);
      backoff = std::min<std::chrono::seconds>(backoff * 2, kMaxBackoff);
      continue;
    }
    if (p->ram_transferred != last_bytes) {
      last_bytes = p->ram_transferred;
      last_change = Clock::now();
    }
    if (p->status == "completed") {
      report["total_time_ms"] = p->total_time_ms;
      show("completed", "");
      return {};
    }
    if (!migration::inPostcopy(p->status)) {  // failed, cancelled: the guest is lost
      show(p->status, p->error_desc);
      return fail(ErrorCode::Io, "The post-copy " + p->status +
                                     (p->error_desc.empty() ? "" : ": " + p->error_desc));
    }
    if (p->status == "postcopy-active" && Clock::now() - last_change >= ctx.req.postcopy_stall) {
      // The stream stalled without closing: paused here, the target pauses in `recover`.
      if (auto paused = ctx.host.pausePostcopyOut(ctx.req.vm_id); !paused) {
        show(p->status, "stalled, not paused: " + paused.error().describe());
      }
      last_change = Clock::now();
      continue;
    }
    if (p->status == "postcopy-paused") {
      ++attempt;
      show("recovering", "");
      if (auto r = recoverOnce(ctx, attempt); !r) {
        show("postcopy-paused",
             "recovery " + std::to_string(attempt) + ": " + r.error().describe());
        std::this_thread::sleep_for(backoff);
        backoff = std::min<std::chrono::seconds>(backoff * 2, kMaxBackoff);
        continue;
      }
      backoff = std::chrono::seconds(1);
      last_change = Clock::now();
      continue;
    }
    show(p->status, "");  // postcopy-active with pages flowing, or postcopy-recover
    std::this_thread::sleep_for(kPoll);
  }
}

}  // namespace vandra::orchestrator::detail
