// Private to src/orchestrator: the source's side of a migration as one step object per phase
// (run() and rollback()), driven by runSourceMigration's loop over the transition table
// (migration_phase.h, completionOf). docs/migration/orchestrator.md draws the steps.
//
//   loop: step = steps[record.phase]; outcome = step.run()
//     done   -> persist transition(phase, completionOf(phase)) BEFORE the next step's effects
//     fail   -> persist failure/cancel (rolling_back); rollback() of every step that ran, in
//               phase order (the target is told to abort before the source resumes: never two
//               copies); rolled_back, or failed with the leftovers
//     hold   -> write the record as it is (confirm not acknowledged: settled later)
//     settle -> no answer to switchover: settleSourceMigration asks the target
//
//   PreflightSrc ---> PrepareDstSrc ---> MirrorSrc ---> PrecopySrc ---> SwitchoverSrc --->
//   ConfirmSrc (offer, plan)     (target ready)     \______ one migrateOut (OutgoingRun) ______/
//   (release,
//                                         hooks "ram" and "switchover" end the phases      confirm)
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "source_report.h"
#include "vandra/orchestrator/downtime_plan.h"
#include "vandra/orchestrator/migrator.h"
#include "vandra/ovf/sla.h"

namespace vandra::orchestrator::detail {

int64_t nowUs();
/// The SLA of a VmSpec's (JSON) first virtual system, as ovf::Sla: the one model wherever an
/// SLA clause is checked. A spec without one has the default SLA. Errors: SlaInvalid (a field
/// this build does not know or accept).
Result<ovf::Sla> slaOf(const nlohmann::json& spec);
/// The same for an SLA object as the preflight message carries it ({} or null: the default).
Result<ovf::Sla> slaFromMessage(const nlohmann::json& sla);

/// The store's advance + write in one step.
Result<MigrationRecord> persist(MigrationStore& store, MigrationRecord r, MigrationEvent e);

/// The target's answer as a @p T; an `aborted` or another message is an error naming @p what.
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
                                   (a->cleaned             ? " (it cleaned up)"
                                    : a->leftovers.empty() ? " (it reports leftovers)"
                                                           : ": " + a->leftovers.front()));
  }
  return fail(
      ErrorCode::TunnelProtocol,
      std::string("The target answered ") + std::string(tunnel::typeName(*answer)) + " to " + what);
}

/// AgentService::migrateOut (one blocking call over mirror, RAM and the pause) on a thread of
/// its own, so that each of its phases can be a step: the engine's before_step hooks wait
/// here until the loop has written the phase and the next step answers them.
class OutgoingRun {
 public:
  enum class Progress { AtStep, Beyond, Failed };

  OutgoingRun() = default;
  OutgoingRun(const OutgoingRun&) = delete;
  OutgoingRun& operator=(const OutgoingRun&) = delete;
  /// Ends the run (a pending hook is answered with Cancelled) and joins.
  ~OutgoingRun();

  void start(MigrationHost& host, agent::OutgoingRequest request);
  bool started() const { return worker_.joinable() || result_.has_value(); }
  /// Waits until the engine waits in hook @p step (AtStep), in a later hook or has completed
  /// (Beyond), or has failed (Failed: error() says why).
  Progress waitFor(agent::OutgoingStep step);
  /// Answers the hook the engine waits in (ok: go on; an error: it cancels and resumes).
  void proceed(Result<void> answer);
  /// Waits for migrateOut's return (answering a pending hook with @p why first) and joins.
  const Result<migration::SwitchoverResult>& finish(const Error& why);
  /// migrateOut returned success: the source is paused with its migration completed.
  bool completed() const { return result_ && result_->has_value(); }
  Error error() const;
  migration::SourceMigration& state() { return state_; }

 private:
  Result<void> hook(agent::OutgoingStep step);

  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<agent::OutgoingStep> pending_;  // the hook the engine waits in
  std::optional<Result<void>> answer_;
  bool ended_ = false;
  std::optional<Result<migration::SwitchoverResult>> result_;
  migration::SourceMigration state_;
  std::thread worker_;
};

/// What the source's steps share: the request, what each step learnt, the record.
struct SourceContext {
  SourceContext(MigrationHost& h, MigrationStore& s, PeerChannel& p, const MigrateRequest& r,
                HostVm v, MigrationRecord record)
      : host(h),
        store(s),
        peer(p),
        req(r),
        deadline(Clock::now() + r.max_total),
        t0(Clock::now()),
        vm(std::move(v)),
        rec(std::move(record)) {}

  MigrationHost& host;
  MigrationStore& store;
  PeerChannel& peer;
  const MigrateRequest& req;
  Clock::time_point deadline;
  Clock::time_point t0;
  HostVm vm;
  MigrationRecord rec;
  SourceReport report;             // written into rec.report before each write of rec (the loop)
  tunnel::Preflight offer;         // PreflightSrc: what the target was offered
  tunnel::PreflightResult answer;  // ... and its answer
  DowntimePlan plan;               // PreflightSrc
  std::unique_ptr<OutgoingRun> outgoing = std::make_unique<OutgoingRun>();  // MirrorSrc on

  /// The operator's cancel, if asked (checked where each phase ends).
  std::optional<Error> cancelledNow() const;
};

/// Post-copy (postcopy_src.cc draws it): after the target started the guest, waits until the
/// source QEMU has sent every page, pausing a stalled stream and recovering a broken one over
/// a new stream (MigrateRequest::reopen_migration, recover/recovering) as often as it takes;
/// report.post_copy shows where it stands. Errors: Cancelled (the agent stops), Io (QEMU's
/// post-copy failed: the guest is lost).
Result<void> finishPostcopy(SourceContext& ctx);

struct StepOutcome {
  enum class Kind { Done, Fail, Hold, Settle };
  Kind kind = Kind::Done;
  std::optional<Error> error;  // Fail: why

  static StepOutcome done() { return {}; }
  static StepOutcome failed(Error e) { return {Kind::Fail, std::move(e)}; }
  static StepOutcome hold() { return {Kind::Hold, std::nullopt}; }
  static StepOutcome settle() { return {Kind::Settle, std::nullopt}; }
};

/// One phase of the source's side.
class SourceStep {
 public:
  virtual ~SourceStep() = default;
  virtual MigrationPhase phase() const = 0;
  /// The phase's work; Done when the phase may end (the loop writes the next phase).
  virtual StepOutcome run(SourceContext& ctx) = 0;
  /// Undoes what run() did (called for every step that ran, in phase order, after a
  /// failure before the target runs the guest). Returns what could not be undone.
  virtual std::vector<std::string> rollback(SourceContext& ctx) = 0;
};

/// One step per working phase, preflight to confirm, in phase order.
std::vector<std::unique_ptr<SourceStep>> makeSourceSteps();

}  // namespace vandra::orchestrator::detail
