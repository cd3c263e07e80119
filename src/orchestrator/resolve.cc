// An operator's word on a source migration that waits for an unreachable target (resolve.h).
#include "vandra/orchestrator/resolve.h"

#include <ctime>
#include <vector>

namespace vandra::orchestrator {
namespace {

using nlohmann::json;

int64_t nowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string rfc3339(int64_t us) {
  const auto secs = static_cast<time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>((us / 1000) % 1000));
  return std::string(buf, n) + ms;
}

Result<MigrationRecord> persist(MigrationStore& store, MigrationRecord r, MigrationEvent e) {
  VANDRA_TRY_ASSIGN(r, advance(std::move(r), e, nowUs()));
  return store.update(r);
}

std::string decided(const Resolution& how) {
  return "Resolved by " + (how.who.empty() ? std::string("an operator") : how.who) + ": " +
         std::string(toString(how.action)) + " (" + how.reason + ")";
}

}  // namespace

std::string_view toString(ResolveAction a) {
  return a == ResolveAction::ResumeSource ? "resume-source" : "abandon-source";
}

std::optional<ResolveAction> resolveActionFromString(std::string_view s) {
  for (auto a : {ResolveAction::ResumeSource, ResolveAction::AbandonSource}) {
    if (toString(a) == s) {
      return a;
    }
  }
  return std::nullopt;
}

Result<void> checkResolvable(const MigrationRecord& r, ResolveAction action, bool waiting) {
  const std::string what = "Migration '" + r.id + "' ";
  if (r.role != MigrationRole::Source) {
    return fail(ErrorCode::IllegalTransition,
                what + "is driven by its source site (" + r.peer_site + "): resolve it there");
  }
  if (isTerminal(r.phase)) {
    return fail(ErrorCode::IllegalTransition,
                what + "has ended (" + std::string(toString(r.phase)) + "): nothing to resolve");
  }
  if (r.phase != MigrationPhase::Switchover && r.phase != MigrationPhase::Confirm) {
    return fail(ErrorCode::IllegalTransition, what + "is in " + std::string(toString(r.phase)) +
                                                  ", not waiting for " + r.peer_site +
                                                  " (cancel it instead)");
  }
  if (!waiting) {
    return fail(ErrorCode::IllegalTransition,
                what + "is not waiting for " + r.peer_site +
                    ": the source is still talking to it (resolve only what `waiting_for` shows)");
  }
  if (action == ResolveAction::ResumeSource && r.phase == MigrationPhase::Confirm) {
    return fail(ErrorCode::IllegalTransition,
                what + "is in confirm: " + r.peer_site +
                    " reported the guest running and the source let its copy go; resuming it "
                    "here would run it twice (abandon-source closes the migration)");
  }
  return {};
}

Result<MigrationRecord> resolveSourceMigration(agent::AgentService& agent, MigrationStore& store,
                                               MigrationRecord rec, const Resolution& how) {
  rec.report["resolution"] = {{"action", std::string(toString(how.action))},
                              {"reason", how.reason},
                              {"who", how.who.empty() ? json(nullptr) : json(how.who)},
                              {"at_us", nowUs()},
                              {"phase", std::string(toString(rec.phase))},
                              {"result", "started"}};
  // The decision is on record before anything is done about it.
  VANDRA_TRY_ASSIGN(rec, store.update(rec));
  std::vector<std::string> leftovers;
  if (how.action == ResolveAction::ResumeSource) {
    VANDRA_TRY_ASSIGN(rec, persist(store, rec, MigrationEvent::OperatorResume));
    rec.error = decided(how);
    // As settleSourceMigration's roll-back: a migration QEMU has not completed is cancelled
    // (the guest continues); a completed one continues on its own disks.
    auto cancelled = agent.cancelStrayMigration(rec.vm_id);
    if (!cancelled && cancelled.error().code == ErrorCode::IllegalTransition) {
      if (auto resumed = agent.resumeAfterFailedSwitchover(rec.vm_id); !resumed) {
        leftovers.push_back("source not resumed: " + resumed.error().describe());
      }
    } else if (!cancelled) {
      leftovers.push_back("source not resumed: " + cancelled.error().describe());
    }
    rec.report["leftovers"] = leftovers;
    // Nobody told the target: when its agent is back it finds its record in switchover with
    // no guest running and cleans up (recoveryFor: clean_up_target).
    rec.report["resolution"]["result"] = leftovers.empty() ? "resumed here" : leftovers.front();
    rec.report["result"] = rec.error;
    return persist(
        store, rec,
        leftovers.empty() ? MigrationEvent::RollbackDone : MigrationEvent::RollbackFailed);
  }
  // Abandon: the source's copy goes (it may be gone already: confirm released it).
  auto released = agent.releaseMigrated(rec.vm_id, rec.id);
  if (!released && released.error().code != ErrorCode::NotFound) {
    rec.error = decided(how) + "; releasing the source failed: " + released.error().describe();
    rec.report["resolution"]["result"] = rec.error;
    rec.report["result"] = rec.error;
    return persist(store, rec, MigrationEvent::Lost);
  }
  rec.error = decided(how) + ": " + rec.peer_site + " runs the guest, the source let it go";
  rec.report["resolution"]["result"] = released ? "source released" : "source already released";
  rec.report["result"] = rec.error;
  return persist(store, rec, MigrationEvent::OperatorAbandon);
}

void noteWaiting(MigrationRecord& r, const std::string& fallback, int64_t now_us) {
  std::string what = fallback;
  if (what.empty() && r.report.contains("settle") && r.report["settle"].is_array() &&
      !r.report["settle"].empty()) {
    const json& last = r.report["settle"].back();
    const std::string said = last.value("said", "");
    what = last.value("peer", "") == "unreachable"
               ? "peer " + r.peer_site + " unreachable: " + said
               : r.peer_site + " to settle the switchover (" + said + ")";
  }
  if (what.empty()) {
    what = r.error.empty() ? "peer " + r.peer_site + "'s word" : r.error;
  }
  json w = r.report.contains("waiting") && r.report["waiting"].is_object() ? r.report["waiting"]
                                                                           : json::object();
  if (!w.contains("since_us")) {
    // Since the guest entered this phase (switchover: it paused), when the timeline says so.
    int64_t since = now_us;
    if (r.timeline.is_array()) {
      for (const auto& t : r.timeline) {
        if (t.is_object() && t.value("phase", "") == toString(r.phase)) {
          since = t.value("at_us", now_us);
        }
      }
    }
    w["since_us"] = since;
  }
  w["for"] = what.substr(0, 500);
  w["last_try_us"] = now_us;
  w["tries"] = w.value("tries", uint64_t{0}) + 1;
  r.report["waiting"] = w;
}

void addWaitingFields(json& out, const MigrationRecord& r) {
  if (isTerminal(r.phase) || !r.report.is_object() || !r.report.contains("waiting") ||
      !r.report["waiting"].is_object()) {
    return;
  }
  const json& w = r.report["waiting"];
  const int64_t since = w.value("since_us", int64_t{0});
  out["waiting_for"] = w.value("for", "");
  out["waiting_since_us"] = since;
  out["waiting_since"] = rfc3339(since);
}

}  // namespace vandra::orchestrator
