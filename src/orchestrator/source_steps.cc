// The source's steps (source_steps.h draws how the loop drives them).
#include "source_steps.h"

#include <algorithm>

#include "vandra/common/failpoint.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::orchestrator::detail {
namespace {

// Offers the VM to the target and plans the downtime against the link.
class PreflightSrc : public SourceStep {
 public:
  MigrationPhase phase() const override { return MigrationPhase::Preflight; }

  StepOutcome run(SourceContext& ctx) override {
    const MigrateRequest& req = ctx.req;
    const auto spec = nlohmann::json::parse(ctx.vm.spec_json, nullptr, false);
    if (spec.is_discarded() || !spec.contains("virtual_systems") ||
        spec["virtual_systems"].empty()) {
      return StepOutcome::failed(Error(ErrorCode::Internal, "The VM's stored spec is unusable"));
    }
    const auto& vs = spec["virtual_systems"][0];
    tunnel::Preflight& pf = ctx.offer;
    pf.migration_id = req.migration_id;
    pf.vm_id = req.vm_id;
    pf.spec = spec;
    pf.source_site = req.source_site;
    pf.sla = vs.contains("sla") && vs["sla"].is_object() ? vs["sla"] : nlohmann::json::object();
    // Each disk's base image, so that a target holding the same base is sent only the overlay.
    std::map<std::string, std::string> bases;
    if (auto b = ctx.host.diskBases(req.vm_id)) {
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
    pf.memory_mib = ctx.vm.memory_mib;
    pf.vcpus = ctx.vm.vcpus;
    pf.network_map = req.networks;
    const auto asked = Clock::now();
    auto result = expect<tunnel::PreflightResult>(ctx.peer.exchange(pf, ctx.deadline), "preflight");
    auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - asked);
    if (!result) {
      return StepOutcome::failed(result.error());
    }
    ctx.answer = *result;
    if (!result->ok) {
      std::string why = "Refused by " + result->target_site + ":";
      for (const auto& r : result->reasons) {
        why += " " + r + ";";
      }
      return StepOutcome::failed(Error(ErrorCode::Unsupported, why));
    }
    // The SLA's downtime budget against this link.
    if (req.link_rtt) {
      if (auto path = req.link_rtt(); path && *path < rtt) {
        rtt = *path;
      }
    }
    ctx.plan = planDowntime(req.downtime_budget_ms, req.downtime_limit_ms, rtt,
                            switchoverRoundTrips(req.target_flushes, req.ram.post_copy));
    const DowntimePlan& plan = ctx.plan;
    ctx.report.downtime_plan =
        SourceReport::Plan{static_cast<double>(rtt.count()) / 1000.0, plan, req.downtime_budget_ms};
    if (plan.refusal) {
      return StepOutcome::failed(Error(ErrorCode::Unsupported, *plan.refusal));
    }
    if (auto c = ctx.cancelledNow()) {
      return StepOutcome::failed(*c);
    }
    return StepOutcome::done();
  }

  // The target may hold a record (and, later, disks and QEMU) from the preflight on: it is
  // told to abort first, before any step of the source undoes anything.
  std::vector<std::string> rollback(SourceContext& ctx) override {
    std::vector<std::string> leftovers;
    const std::string why = ctx.rec.error;
    auto aborted = ctx.peer.exchange(
        tunnel::Abort{ctx.req.migration_id, why.substr(0, 1000), tunnel::MigrationPhase::Preflight},
        Clock::now() + std::chrono::seconds(60));
    if (!aborted) {
      leftovers.push_back("target not reached: " + aborted.error().describe());
    } else if (auto* a = std::get_if<tunnel::Aborted>(&*aborted); a != nullptr && !a->cleaned) {
      leftovers.insert(leftovers.end(), a->leftovers.begin(), a->leftovers.end());
    }
    return leftovers;
  }
};

// The target makes its disks, QEMU -incoming and NBD exports.
class PrepareDstSrc : public SourceStep {
 public:
  MigrationPhase phase() const override { return MigrationPhase::PrepareTarget; }
  StepOutcome run(SourceContext& ctx) override {
    auto prepared = expect<tunnel::Prepared>(
        ctx.peer.exchange(tunnel::Prepare{ctx.req.migration_id}, ctx.deadline), "prepare");
    if (!prepared) {
      return StepOutcome::failed(prepared.error());
    }
    if (auto c = ctx.cancelledNow()) {
      return StepOutcome::failed(*c);
    }
    return StepOutcome::done();
  }
  std::vector<std::string> rollback(SourceContext&) override {
    return {};  // PreflightSrc's abort: the target undoes its prepare itself
  }
};

// Starts migrateOut (mirrors to the target's exports, then RAM) and ends at its Ram hook:
// every mirror is ready.
class MirrorSrc : public SourceStep {
 public:
  MigrationPhase phase() const override { return MigrationPhase::MirrorDisks; }
  StepOutcome run(SourceContext& ctx) override {
    const MigrateRequest& req = ctx.req;
    agent::OutgoingRequest out;
    out.id = req.vm_id;
    out.nbd_socket = req.source_paths.nbd_socket;
    out.migration_socket = req.source_paths.migration_socket;
    out.mirror = req.mirror;
    ctx.report.overlay_only_disks.emplace();
    std::vector<std::string> shared;
    for (const auto& d : ctx.offer.disks) {
      if (!d.base_digest.empty() &&
          std::find(ctx.answer.bases_present.begin(), ctx.answer.bases_present.end(),
                    d.base_digest) != ctx.answer.bases_present.end()) {
        out.overlay_only_disks.insert(d.id);
        ctx.report.overlay_only_disks->push_back(d.id);
        if (std::find(shared.begin(), shared.end(), d.base_digest) == shared.end()) {
          shared.push_back(d.base_digest);
        }
      }
    }
    if (req.at_shared_bases && !shared.empty()) {
      req.at_shared_bases(shared);
    }
    out.ram = req.ram;
    // QEMU's return path only for post-copy (which needs it): in pre-copy it adds a round
    // trip to the pause (the source waits for the target's "loaded"), and the target's own
    // answer to `switchover` tells the same (ADR 0033).
    out.ram.return_path = req.ram.post_copy;
    // XBZRLE with a cache of an eighth of the guest's RAM (16..512 MiB): a working set that
    // size is re-sent as deltas, not whole pages (docs/benchmarks.md, wan).
    out.ram.xbzrle_cache_bytes =
        std::clamp<uint64_t>((ctx.vm.memory_mib << 20) / 8, 16ULL << 20, 512ULL << 20);
    out.ram.downtime_limit_ms = ctx.plan.initial_limit_ms;
    out.ram.max_downtime_limit_ms = ctx.plan.max_limit_ms;
    out.deadline = ctx.deadline;
    out.cancelled = req.cancelled;
    out.on_switchover_stop = req.at_guest_stop;
    ctx.outgoing->start(ctx.host, std::move(out));
    if (ctx.outgoing->waitFor(agent::OutgoingStep::Ram) == OutgoingRun::Progress::Failed) {
      return StepOutcome::failed(ctx.outgoing->error());
    }
    if (auto c = ctx.cancelledNow()) {
      return StepOutcome::failed(*c);
    }
    return StepOutcome::done();
  }
  std::vector<std::string> rollback(SourceContext&) override {
    return {};  // a failed migrateOut has cancelled its jobs and resumed the guest
  }
};

// RAM pre-copy until QEMU pauses the guest at pre-switchover (the Switchover hook).
class PrecopySrc : public SourceStep {
 public:
  MigrationPhase phase() const override { return MigrationPhase::PrecopyRam; }
  StepOutcome run(SourceContext& ctx) override {
    ctx.outgoing->proceed({});  // the Ram hook: mirror_disks is written
    const auto p = ctx.outgoing->waitFor(agent::OutgoingStep::Switchover);
    if (p == OutgoingRun::Progress::Failed) {
      return StepOutcome::failed(ctx.outgoing->error());
    }
    if (auto c = ctx.cancelledNow()) {
      return StepOutcome::failed(*c);
    }
    if (p == OutgoingRun::Progress::AtStep && ctx.req.at_pause) {
      ctx.req.at_pause(ctx.rec.report);
    }
    return StepOutcome::done();
  }
  std::vector<std::string> rollback(SourceContext&) override { return {}; }
};

// The mirrors complete, the last pages go; then the target starts the guest. From its
// answer on, only forward; without an answer the source cannot know whether the guest runs
// there: it stays paused and asks (settle).
class SwitchoverSrc : public SourceStep {
 public:
  MigrationPhase phase() const override { return MigrationPhase::Switchover; }
  StepOutcome run(SourceContext& ctx) override {
    failpoint("source-paused");
    ctx.outgoing->proceed({});  // the Switchover hook: switchover is written
    const auto& switched =
        ctx.outgoing->finish(Error(ErrorCode::Internal, "Unexpected hook after the switchover"));
    if (!switched) {
      return StepOutcome::failed(switched.error());
    }
    SourceReport::Switchover sw{ctx.req.mirror.copy_mode, {}, *switched, std::nullopt, {}};
    for (const auto& m : ctx.outgoing->state().mirrors) {
      sw.nbd_connect_ms.push_back(m.connect_ms);
      if (!m.throttle_steps.empty()) {
        sw.disk_throttles.emplace_back(m.device_id, m.throttle_steps);
      }
    }
    // The service's count of QEMU's migration bytes the tunnel had taken at the pause
    // (at_pause; before compression, as QEMU counts them).
    if (const auto& report = ctx.rec.report;
        report.contains("tunnel_migration_plain_bytes_at_pause")) {
      const uint64_t sent = report["tunnel_migration_plain_bytes_at_pause"].get<uint64_t>();
      sw.tunnel_backlog_bytes = switched->ram_at_pause > sent ? switched->ram_at_pause - sent : 0;
    }
    ctx.report.switchover = std::move(sw);

    failpoint("source-completed");

    auto started = ctx.peer.exchange(tunnel::Switchover{ctx.req.migration_id}, ctx.deadline);
    if (started && std::holds_alternative<tunnel::Aborted>(*started)) {
      return StepOutcome::failed(
          Error(ErrorCode::Io, "The target could not start the guest and rolled back"));
    }
    if (started && !std::holds_alternative<tunnel::Started>(*started)) {
      return StepOutcome::failed(Error(
          ErrorCode::TunnelProtocol,
          "The target answered " + std::string(tunnel::typeName(*started)) + " to switchover"));
    }
    if (!started) {
      ctx.rec.error = "No answer to switchover: " + started.error().describe();
      return StepOutcome::settle();
    }
    failpoint("source-target-started");
    return StepOutcome::done();
  }
  // The source QEMU completed its migration but the target does not run the guest: the
  // source takes its disks back and runs it again (after PreflightSrc's abort).
  std::vector<std::string> rollback(SourceContext& ctx) override {
    std::vector<std::string> leftovers;
    if (ctx.report.switchover && ctx.report.switchover->result.post_copy) {
      // QEMU cannot take a guest back from post-copy (ADR 0032): the source is not resumed.
      leftovers.push_back(
          "the guest was handed over in post-copy and the target did not start it: the "
          "source QEMU is left paused for an operator");
      return leftovers;
    }
    if (ctx.outgoing->completed()) {
      if (auto resumed = ctx.host.resumeAfterFailedSwitchover(ctx.req.vm_id); !resumed) {
        leftovers.push_back("source not resumed: " + resumed.error().describe());
      }
    }
    return leftovers;
  }
};

// The target runs the guest: the source lets go of its copy and confirms.
class ConfirmSrc : public SourceStep {
 public:
  MigrationPhase phase() const override { return MigrationPhase::Confirm; }
  StepOutcome run(SourceContext& ctx) override {
    // After a post-copy switchover the target still needs pages only the source QEMU holds.
    if (ctx.report.switchover && ctx.report.switchover->result.post_copy) {
      if (auto sent = finishPostcopy(ctx); !sent) {
        ctx.rec.error = "post-copy not finished: " + sent.error().describe();  // settled later
        return StepOutcome::hold();
      }
    }
    if (auto released = ctx.host.releaseMigrated(ctx.req.vm_id, ctx.req.migration_id); !released) {
      ctx.report.warning = "source not released: " + released.error().describe();
    }
    auto confirmed = expect<tunnel::Confirmed>(
        ctx.peer.exchange(tunnel::Confirm{ctx.req.migration_id}, ctx.deadline), "confirm");
    if (!confirmed) {
      ctx.rec.error = "confirm not acknowledged: " + confirmed.error().describe();  // settled later
      return StepOutcome::hold();
    }
    ctx.report.total_s = std::chrono::duration<double>(Clock::now() - ctx.t0).count();
    return StepOutcome::done();
  }
  std::vector<std::string> rollback(SourceContext&) override {
    return {};  // never called: after the target started the guest there is no way back
  }
};

}  // namespace

int64_t nowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<MigrationRecord> persist(MigrationStore& store, MigrationRecord r, MigrationEvent e) {
  VANDRA_TRY_ASSIGN(r, advance(std::move(r), e, nowUs()));
  return store.update(r);
}

Result<ovf::Sla> slaFromMessage(const nlohmann::json& sla) {
  if (sla.is_null() || (sla.is_object() && sla.empty())) {
    return ovf::Sla{};
  }
  return ovf::slaFromJson(sla);
}

Result<ovf::Sla> slaOf(const nlohmann::json& spec) {
  if (!spec.is_object() || !spec.contains("virtual_systems") ||
      !spec["virtual_systems"].is_array() || spec["virtual_systems"].empty() ||
      !spec["virtual_systems"][0].is_object() || !spec["virtual_systems"][0].contains("sla")) {
    return ovf::Sla{};
  }
  return slaFromMessage(spec["virtual_systems"][0]["sla"]);
}

std::optional<Error> SourceContext::cancelledNow() const {
  if (req.cancelled) {
    if (auto why = req.cancelled()) {
      return Error(ErrorCode::Cancelled, "Cancelled: " + *why);
    }
  }
  return std::nullopt;
}

std::vector<std::unique_ptr<SourceStep>> makeSourceSteps() {
  std::vector<std::unique_ptr<SourceStep>> steps;
  steps.push_back(std::make_unique<PreflightSrc>());
  steps.push_back(std::make_unique<PrepareDstSrc>());
  steps.push_back(std::make_unique<MirrorSrc>());
  steps.push_back(std::make_unique<PrecopySrc>());
  steps.push_back(std::make_unique<SwitchoverSrc>());
  steps.push_back(std::make_unique<ConfirmSrc>());
  return steps;
}

// ---- OutgoingRun ------------------------------------------------------------------------------

OutgoingRun::~OutgoingRun() {
  if (worker_.joinable()) {
    (void)finish(Error(ErrorCode::Cancelled, "The migration was abandoned"));
  }
}

void OutgoingRun::start(MigrationHost& host, agent::OutgoingRequest request) {
  request.before_step = [this](agent::OutgoingStep step) { return hook(step); };
  worker_ = std::thread([this, &host, request = std::move(request)] {
    auto r = host.migrateOut(request, state_);
    std::lock_guard lock(mu_);
    result_ = std::move(r);
    ended_ = true;
    cv_.notify_all();
  });
}

Result<void> OutgoingRun::hook(agent::OutgoingStep step) {
  std::unique_lock lock(mu_);
  pending_ = step;
  answer_.reset();
  cv_.notify_all();
  cv_.wait(lock, [&] { return answer_.has_value(); });
  Result<void> a = std::move(*answer_);
  answer_.reset();
  pending_.reset();
  return a;
}

OutgoingRun::Progress OutgoingRun::waitFor(agent::OutgoingStep step) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return (pending_ && !answer_) || ended_; });
  if (pending_ && !answer_) {
    return *pending_ == step ? Progress::AtStep : Progress::Beyond;
  }
  return result_->has_value() ? Progress::Beyond : Progress::Failed;
}

void OutgoingRun::proceed(Result<void> answer) {
  std::lock_guard lock(mu_);
  if (pending_ && !answer_) {
    answer_ = std::move(answer);
    cv_.notify_all();
  }
}

const Result<migration::SwitchoverResult>& OutgoingRun::finish(const Error& why) {
  if (!worker_.joinable() && !result_) {  // never started
    result_ = fail(why);
    return *result_;
  }
  {
    std::unique_lock lock(mu_);
    // A hook still waiting is told why the migration stops; the engine then cancels.
    while (!ended_) {
      if (pending_ && !answer_) {
        answer_ = fail(why);
        cv_.notify_all();
      }
      cv_.wait(lock, [&] { return ended_ || (pending_ && !answer_); });
    }
  }
  if (worker_.joinable()) {
    worker_.join();
  }
  return *result_;
}

Error OutgoingRun::error() const {
  return result_ && !result_->has_value() ? result_->error()
                                          : Error(ErrorCode::Internal, "migrateOut has not failed");
}

}  // namespace vandra::orchestrator::detail
