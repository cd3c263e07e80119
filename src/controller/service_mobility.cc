// The mobility loop: each round (leader only) repairs SLA violations of automatic VMs, goes on
// with sites being drained, then runs the planner (placement/mobility.h) and starts its moves.
// Every move passes the same preflight as an operator's, is bounded per link (running
// migrations count), and is in the audit log with its reason.
//
//   round ─► automatic VM whose site breaks its SLA ─► cheapest compliant site (placeOne) ─► move
//         ─► draining sites ─► planDrain ─► moves within the link bound; none left: drain ends
//         ─► paused? stop here ─► planMobility ─► over high: leave / home under low: come home
#include <algorithm>
#include <map>

#include "vandra/controller/service.h"
#include "vandra/placement/placed_fleet.h"

namespace vandra::controller {
namespace {

constexpr const char* kPaused = "mobility_paused";
constexpr const char* kDraining = "draining:";

std::string linkKey(const std::string& a, const std::string& b) {
  return a < b ? a + "|" + b : b + "|" + a;
}

}  // namespace

Result<placement::MobilityPolicy> ControllerService::mobilityPolicy() {
  placement::MobilityPolicy p;
  p.now = now() / 1000;
  p.min_stay_s = options_.mobility.min_stay_s;
  p.max_moves_per_link = options_.mobility.max_moves_per_link;
  VANDRA_TRY_ASSIGN(auto sites, store_.sites());
  for (const auto& s : sites) {
    p.marks[s.name] = {s.water_marks, s.water_marks};
  }
  VANDRA_TRY_ASSIGN(auto vms, store_.vms());
  for (const auto& v : vms) {
    placement::VmHistory h;
    h.home = v.home_site;
    const int64_t arrived = std::max(v.placed_at_ms, v.last_moved_at_ms);
    if (arrived > 0) {
      h.last_moved_at = arrived / 1000;
    }
    p.history[v.name] = h;
  }
  VANDRA_TRY_ASSIGN(auto running, store_.migrations("", 1000, true));
  for (const auto& m : running) {
    p.in_flight.push_back({m.vm, m.from_site, m.to_site});
  }
  return p;
}

Result<placement::MobilityPlan> ControllerService::mobilityPlan() {
  VANDRA_TRY_ASSIGN(auto f, fleet());
  VANDRA_TRY_ASSIGN(auto policy, mobilityPolicy());
  return placement::planMobility(f, policy);
}

Result<placement::MobilityPlan> ControllerService::drainPlan(const std::string& site) {
  VANDRA_TRY(store_.site(site));
  VANDRA_TRY_ASSIGN(auto f, fleet());
  VANDRA_TRY_ASSIGN(auto policy, mobilityPolicy());
  return placement::planDrain(f, site, policy);
}

Result<placement::MobilityPlan> ControllerService::drain(const std::string& site,
                                                         const Caller& who) {
  VANDRA_TRY(requireLeader());
  VANDRA_TRY_ASSIGN(auto plan, drainPlan(site));
  VANDRA_TRY(store_.putSetting(kDraining + site, who.who));
  (void)store_.appendEvent({0, now(), "mobility", site,
                            "drain started by " + who.who + ": " +
                                std::to_string(plan.moves.size()) + " VM(s) to move, " +
                                std::to_string(plan.held.size()) + " cannot leave"});
  startMoves(plan.moves, MoveReason::Drain);
  return plan;
}

Result<void> ControllerService::setMobilityPaused(bool paused, const Caller& who) {
  VANDRA_TRY(requireLeader());
  if (paused) {
    VANDRA_TRY(store_.putSetting(kPaused, who.who));
  } else {
    VANDRA_TRY(store_.deleteSetting(kPaused));
  }
  (void)store_.appendEvent(
      {0, now(), "mobility", "", std::string(paused ? "paused" : "resumed") + " by " + who.who});
  return {};
}

Result<bool> ControllerService::mobilityPaused() {
  VANDRA_TRY_ASSIGN(auto v, store_.setting(kPaused));
  return v.has_value();
}

void ControllerService::startMoves(const std::vector<placement::PlannedMove>& moves,
                                   MoveReason reason) {
  auto running = store_.migrations("", 1000, true);
  if (!running) {
    return;
  }
  std::map<std::string, uint32_t> per_link;
  for (const auto& m : *running) {
    ++per_link[linkKey(m.from_site, m.to_site)];
  }
  const Caller vandra{"vandra", Role::System};
  for (const auto& mv : moves) {
    uint32_t& on_link = per_link[linkKey(mv.from, mv.to)];
    if (on_link >= options_.mobility.max_moves_per_link) {
      continue;  // a later round starts it
    }
    const MoveReason r = reason != MoveReason::Wander                     ? reason
                         : mv.reason == placement::MoveReason::ComingHome ? MoveReason::ComeHome
                                                                          : MoveReason::Wander;
    auto m = migrate({mv.vm, mv.to, r, mv.why}, vandra);
    AuditEntry e;
    e.at_ms = now();
    e.who = vandra.who;
    e.role = "system";
    e.action = "move " + mv.vm + " " + mv.from + " -> " + mv.to;
    e.target = mv.vm;
    e.status = m ? 202 : 409;
    e.result = m ? "ok" : std::string(toString(m.error().code));
    e.reason = std::string(toString(r)) + ": " + mv.why +
               (m ? "" : " (not started: " + m.error().message + ")");
    (void)store_.appendAudit(e);
    if (m) {
      ++on_link;
    }
  }
}

void ControllerService::mobilityRound() {
  if (!leader().leader) {
    return;
  }
  auto running = store_.migrations("", 1000, true);
  auto vms = store_.vms();
  auto verdicts = slaStatus();
  if (!running || !vms || !verdicts) {
    return;
  }
  auto moving = [&](const std::string& vm) {
    return std::any_of(running->begin(), running->end(),
                       [&](const Migration& m) { return m.vm == vm; });
  };
  // 1. The SLA, wherever the VM runs: an automatic VM whose site now breaks it moves to the
  //    cheapest site that keeps it.
  auto f = fleet();
  if (f) {
    auto placed = placement::PlacedFleet::build(*f);
    std::vector<placement::PlannedMove> repairs;
    for (const auto& v : *verdicts) {
      auto vm = std::find_if(f->vms.begin(), f->vms.end(),
                             [&](const placement::Vm& x) { return x.name == v.vm; });
      if (v.ok || vm == f->vms.end() || vm->sla.mobility != ovf::Mobility::Automatic ||
          moving(v.vm) || !placed) {
        continue;
      }
      if (!placed->remove(v.vm)) {
        continue;
      }
      auto one = placed->placeOne(*vm);
      if (one && one->placed() && one->site != vm->site) {
        repairs.push_back({v.vm, vm->site, vm->host, one->site, one->host,
                           placement::MoveReason::OverHighWater,
                           "its SLA is broken at " + vm->site + " (" + v.violations.front() + ")",
                           0, one->cost_per_hour});
        (void)placed->commit(*vm, one->host);
      }
    }
    startMoves(repairs, MoveReason::Sla);
  }
  // 2. Drains in progress.
  if (auto draining = store_.settingNames(kDraining); draining) {
    for (const auto& key : *draining) {
      const std::string site = key.substr(std::string(kDraining).size());
      auto plan = drainPlan(site);
      if (!plan) {
        continue;
      }
      if (plan->moves.empty()) {
        (void)store_.deleteSetting(key);
        (void)store_.appendEvent(
            {0, now(), "mobility", site,
             "drain finished: " + std::to_string(plan->held.size()) + " VM(s) cannot leave"});
        continue;
      }
      startMoves(plan->moves, MoveReason::Drain);
    }
  }
  // 3. Wandering, unless paused.
  auto paused = mobilityPaused();
  if (!paused || *paused) {
    return;
  }
  if (auto plan = mobilityPlan(); plan) {
    startMoves(plan->moves, MoveReason::Wander);
  }
}

}  // namespace vandra::controller
