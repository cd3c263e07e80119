// What consoles see live: each running migration's progress read from its source agent every
// progress_interval_ms and pushed to the hub (GET /v1/stream), kept as samples for the
// history charts, and a "changed" event when a list they show has changed. Also the cancel
// button's call and the confirm dialog's estimate.
//
//   every interval: running migrations ──► source agent (record, progress) ──► hub "migration"
//                                                                         └──► sample (leader)
//                   store generation / audit / events moved ──► hub "changed" {what}
#include <algorithm>

#include "vandra/controller/inventory_json.h"
#include "vandra/controller/service.h"

namespace vandra::controller {
namespace {

using nlohmann::json;

constexpr size_t kPage = 1000;

bool cancellable(MigrationPhase p) {
  return p == MigrationPhase::Preflight || p == MigrationPhase::PrepareTarget ||
         p == MigrationPhase::MirrorDisks || p == MigrationPhase::PrecopyRam;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

json estimateJson(const std::optional<MoveEstimate>& e) {
  if (!e) {
    return nullptr;
  }
  return {{"duration_s", e->duration_s},
          {"interruption_ms", e->interruption_ms},
          {"rtt_ms", e->rtt_ms},
          {"mbps", e->mbps},
          {"basis", e->basis}};
}

}  // namespace

json ControllerService::progressEvent(const Migration& m, const AgentMigration* live) {
  json j = toJson(m);
  const bool running = m.state == MigrationState::Running;
  json rec = live != nullptr ? json::parse(live->report_json, nullptr, false) : json();
  std::string phase = running ? "preflight" : "";
  if (live != nullptr && live->phase != MigrationPhase::Invalid) {
    phase = std::string(toString(live->phase));
  }
  if (!running) {
    phase = m.state == MigrationState::Done        ? "done"
            : m.state == MigrationState::Cancelled ? "rolled_back"
            : phase.empty()                        ? "failed"
                                                   : phase;
  }
  j["phase"] = phase;
  const auto parsed = migrationPhaseFromString(phase);
  j["cancellable"] = running && (!parsed || cancellable(*parsed));
  j["progress"] =
      running && rec.is_object() && rec.contains("progress") ? rec["progress"] : json(nullptr);
  // The stored report is the agent's whole record; the console wants the report proper.
  auto report = json::parse(m.report_json, nullptr, false);
  if (report.is_object() && report.contains("report") && report["report"].is_object()) {
    report = report["report"];
  }
  j["report"] = !running && report.is_object() ? report : json(nullptr);
  // What a running move was expected to cost, worked out once (it reads the VM, the links
  // and the past moves) and shown with every progress event after.
  json estimate = nullptr;
  {
    std::lock_guard lock(estimates_mu_);
    if (!running) {
      estimates_.erase(m.id);
    } else if (auto it = estimates_.find(m.id); it != estimates_.end()) {
      estimate = it->second;
    }
  }
  if (running && estimate.is_null()) {
    if (auto e = estimateMove(m.vm, m.to_site); e) {
      estimate = estimateJson(*e);
      std::lock_guard lock(estimates_mu_);
      estimates_[m.id] = estimate;
    }
  }
  j["estimate"] = estimate;
  return j;
}

Result<std::optional<MoveEstimate>> ControllerService::estimateMove(const std::string& vm_name,
                                                                    const std::string& site) {
  VANDRA_TRY_ASSIGN(auto vm, store_.vm(vm_name));
  VANDRA_TRY_ASSIGN(auto links, store_.links());
  const std::string& from = vm.site;
  auto link = std::find_if(links.begin(), links.end(), [&](const Link& l) {
    return (l.a == from && l.b == site) || (l.b == from && l.a == site);
  });
  if (link == links.end() || from == site) {
    return std::optional<MoveEstimate>();
  }
  MoveEstimate e;
  e.rtt_ms = link->rtt_ms;
  e.mbps = link->mbps;
  // The model: the VM's memory and disks once over the link, a few seconds to prepare the
  // target, and a pause of a few round trips (the last pages, the switchover's handshake).
  const double bytes = static_cast<double>(vm.memory_mib) * (1ull << 20) +
                       static_cast<double>(vm.disk_gib) * (1ull << 30);
  e.duration_s = 3.0 + (e.mbps > 0 ? bytes * 8 / (e.mbps * 1e6) : 0);
  e.interruption_ms = 3 * e.rtt_ms + 100;
  e.basis = "model";
  // Past moves over this link say better: this VM's own first, else any VM's interruption.
  VANDRA_TRY_ASSIGN(auto past, store_.migrations("", 200));
  std::vector<double> own_s;
  std::vector<double> own_ms;
  std::vector<double> link_ms;
  for (const auto& p : past) {
    const bool same_link =
        (p.from_site == from && p.to_site == site) || (p.from_site == site && p.to_site == from);
    if (!same_link || p.state != MigrationState::Done || !p.downtime_ms) {
      continue;
    }
    link_ms.push_back(*p.downtime_ms);
    if (p.vm == vm_name && p.finished_at_ms > p.started_at_ms) {
      own_s.push_back(static_cast<double>(p.finished_at_ms - p.started_at_ms) / 1000.0);
      own_ms.push_back(*p.downtime_ms);
    }
  }
  if (!own_s.empty()) {
    e.duration_s = median(own_s);
    e.interruption_ms = median(own_ms);
    e.basis = "history: " + std::to_string(own_s.size()) + " move(s) of " + vm_name;
  } else if (!link_ms.empty()) {
    e.interruption_ms = median(link_ms);
    e.basis = "history: " + std::to_string(link_ms.size()) + " move(s) over the link";
  }
  return std::optional<MoveEstimate>(e);
}

Result<Migration> ControllerService::cancelMigration(int64_t id, const Caller& who) {
  VANDRA_TRY(requireLeader());
  VANDRA_TRY_ASSIGN(auto m, store_.migration(id));
  if (m.state != MigrationState::Running) {
    return fail(ErrorCode::IllegalTransition, "Migration " + std::to_string(id) + " has ended (" +
                                                  std::string(toString(m.state)) + ")");
  }
  AgentLink* source = linkFor(m.from_site);
  if (source == nullptr) {
    return fail(ErrorCode::NotFound, "No agent for site " + m.from_site);
  }
  if (auto r = source->cancel(m.agent_migration_id); !r) {
    noteAgentError(r.error());
    return fail(r.error());
  }
  (void)store_.appendEvent(
      {0, now(), "migration", m.vm,
       "cancel asked by " + who.who + ": " + m.from_site + " -> " + m.to_site + " rolls back"});
  return m;
}

void ControllerService::progressLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    progressOnce();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(options_.progress_interval_ms),
                 [this] { return stopping_; });
  }
}

void ControllerService::progressOnce() {
  std::lock_guard round(progress_mu_);
  if (!progress_primed_) {
    // Start from the logs' ends: only what changes from now on is news.
    progress_primed_ = true;
    seen_generation_ = store_.generation();
    for (size_t got = kPage; got == kPage;) {
      auto a = store_.audit({seen_audit_seq_, "", "", kPage});
      got = a ? a->size() : 0;
      seen_audit_seq_ = got > 0 ? a->back().seq : seen_audit_seq_;
    }
    for (size_t got = kPage; got == kPage;) {
      auto e = store_.events(seen_event_seq_, kPage);
      got = e ? e->size() : 0;
      seen_event_seq_ = got > 0 ? e->back().seq : seen_event_seq_;
    }
  }
  const bool leading = leader().leader;
  if (auto running = store_.migrations("", 1000, true); running) {
    for (const auto& m : *running) {
      auto live = liveMigration(m);
      const AgentMigration* rec = live ? &*live : nullptr;
      json event = progressEvent(m, rec);
      hub_.publish("migration", event.dump());
      if (leading && rec != nullptr && event["progress"].is_object()) {
        const json& p = event["progress"];
        MigrationSample s;
        s.t_ms = std::max<int64_t>(0, now() - m.started_at_ms);
        s.phase = event.value("phase", "");
        s.mbps = p.value("mbps", 0.0);
        s.dirty_rate_bps = p.value("dirty_rate_bps", uint64_t{0});
        s.wan_bytes = p.value("wan_bytes", uint64_t{0});
        (void)store_.addSample(m.id, s);
      }
    }
  }
  auto changed = [this](const char* what) { hub_.publish("changed", json{{"what", what}}.dump()); };
  if (const uint64_t g = store_.generation(); g != seen_generation_) {
    seen_generation_ = g;
    changed("vms");
    changed("migrations");
  }
  if (auto a = store_.audit({seen_audit_seq_, "", "", kPage}); a && !a->empty()) {
    seen_audit_seq_ = std::max(seen_audit_seq_, a->back().seq);
    for (const char* what : {"audit", "sites", "mobility"}) {
      changed(what);
    }
  }
  if (auto e = store_.events(seen_event_seq_, kPage); e && !e->empty()) {
    seen_event_seq_ = std::max(seen_event_seq_, e->back().seq);
    changed("mobility");
    changed("vms");
  }
}

}  // namespace vandra::controller
