#include "vandra/placement/mobility.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "hosts.h"
#include "vandra/placement/solver.h"

namespace vandra::placement {

using namespace detail;

std::string_view toString(MoveReason r) {
  switch (r) {
    case MoveReason::OverHighWater:
      return "over-high-water";
    case MoveReason::ComingHome:
      return "coming-home";
    case MoveReason::Drain:
      return "drain";
  }
  return "?";
}

std::string_view toString(HoldReason r) {
  switch (r) {
    case HoldReason::MinStay:
      return "min-stay";
    case HoldReason::LinkBudget:
      return "link-budget";
    case HoldReason::NoDestination:
      return "no-destination";
    case HoldReason::PlanCap:
      return "plan-cap";
    case HoldReason::Pinned:
      return "pinned";
  }
  return "?";
}

double SiteLoad::memoryShare() const {
  return memory_capacity_mib > 0 ? memory_mib / memory_capacity_mib : 0;
}
double SiteLoad::vcpuShare() const {
  return vcpu_capacity > 0 ? vcpus / vcpu_capacity : 0;
}

namespace {

// "91%", "85.4%": a share as a percentage with at most one decimal.
std::string pct(double share) {
  return number(std::round(share * 1000.0) / 10.0, false) + "%";
}

// One plan being made: the hosts with what runs on them, site loads, links in use.
class Planner {
 public:
  Planner(const Fleet& f, const MobilityPolicy& p, Hosts index)
      : fleet_(f), policy_(p), idx_(std::move(index)) {}

  Result<void> start() {
    for (const auto& [name, m] : policy_.marks) {
      if (idx_.site_of.count(name) == 0) {
        return invalid("Water marks for site '" + name + "', which is not in the fleet");
      }
      for (const auto& [what, w] : {std::pair{"memory", m.memory}, std::pair{"vcpu", m.vcpu}}) {
        if (!(w.low >= 0 && w.low < w.high && w.high <= 1)) {
          return invalid("Water marks of site '" + name + "': " + what + " needs 0 <= low (" +
                         number(w.low, false) + ") < high (" + number(w.high, false) + ") <= 1");
        }
      }
    }
    marks_.resize(fleet_.sites.size());
    for (size_t s = 0; s < fleet_.sites.size(); ++s) {
      const auto it = policy_.marks.find(fleet_.sites[s].name);
      marks_[s] = it == policy_.marks.end() ? SiteMarks{} : it->second;
    }
    std::unordered_map<std::string, size_t> vm_of;
    for (size_t v = 0; v < fleet_.vms.size(); ++v) {
      vm_of.emplace(fleet_.vms[v].name, v);
    }
    for (const auto& [name, h] : policy_.history) {
      if (vm_of.count(name) == 0) {
        return invalid("Mobility history for VM '" + name + "', which is not in the fleet");
      }
      if (!h.home.empty() && idx_.site_of.count(h.home) == 0) {
        return invalid("VM '" + name + "' has home '" + h.home + "', which is not a site");
      }
    }
    load_.resize(fleet_.sites.size());
    for (size_t s = 0; s < fleet_.sites.size(); ++s) {
      load_[s].site = fleet_.sites[s].name;
      for (size_t h : idx_.site_hosts[s]) {
        load_[s].memory_capacity_mib += static_cast<double>(idx_.hosts[h].host->memory_mib);
        load_[s].vcpu_capacity += idx_.hosts[h].vcpu_cap;
      }
    }
    on_.assign(fleet_.vms.size(), -1);
    for (size_t v = 0; v < fleet_.vms.size(); ++v) {
      const Vm& vm = fleet_.vms[v];
      if (vm.site.empty()) {
        continue;
      }
      const long h = runningHost(idx_, vm);
      if (h < 0) {
        return invalid("VM '" + vm.name + "' runs at site '" + vm.site + "', which has no hosts");
      }
      on_[v] = h;
      add(idx_.hosts[static_cast<size_t>(h)], vm, +1);
      charge(idx_.site_of.at(vm.site), vm, +1);
    }
    // In flight: counted on their link, and as arrived (it leaves `from`, loads `to`).
    for (const InFlight& m : policy_.in_flight) {
      const auto from = idx_.site_of.find(m.from);
      const auto to = idx_.site_of.find(m.to);
      if (from == idx_.site_of.end() || to == idx_.site_of.end() || m.from == m.to) {
        return invalid("Move in flight of VM '" + m.vm + "' from '" + m.from + "' to '" + m.to +
                       "': not two sites of the fleet");
      }
      ++links_[linkKey(from->second, to->second)];
      const auto v = vm_of.find(m.vm);
      if (v != vm_of.end() && busy_.insert(v->second).second &&
          fleet_.vms[v->second].site == m.from) {
        charge(from->second, fleet_.vms[v->second], -1);
        charge(to->second, fleet_.vms[v->second], +1);
      }
    }
    moved_.assign(fleet_.vms.size(), false);
    plan_.before = load_;
    return {};
  }

  // Sites over their high mark, in fleet order: as few of their automatic VMs as get each
  // under, each to the cheapest site with room.
  void relieve() {
    for (size_t s = 0; s < fleet_.sites.size(); ++s) {
      if (over(s).empty()) {
        continue;
      }
      std::vector<Candidate> candidates;
      for (size_t v = 0; v < fleet_.vms.size(); ++v) {
        if (siteOf(v) == static_cast<long>(s) && movable(v)) {
          candidates.push_back({static_cast<double>(fleet_.vms[v].memory_mib),
                                static_cast<double>(fleet_.vms[v].vcpus), v});
        }
      }
      std::vector<size_t> others;
      for (size_t t = 0; t < fleet_.sites.size(); ++t) {
        if (t != s) {
          others.push_back(t);
        }
      }
      // VMs held for want of a destination (or a link) count as gone when deciding whether
      // more must go: the plan names the VMs that would have been needed, not every VM of a
      // full site, and stays short. A VM held for its minimum stay does not count: another
      // goes instead.
      SiteLoad gone;
      while (!candidates.empty()) {
        const std::string why = over(s);
        if (why.empty() || over(s, -gone.memory_mib, -gone.vcpus).empty()) {
          break;
        }
        const size_t v = takeForRelief(s, candidates, gone);
        const Vm& vm = fleet_.vms[v];
        const std::string text = fleet_.sites[s].name + " above its high water mark: " + why;
        if (!mayMove(v, MoveReason::OverHighWater)) {
          if (plan_.held.back().reason == HoldReason::PlanCap) {
            return;  // said once: the others would only repeat it
          }
          continue;
        }
        if (!moveOrHold(v, others, MoveReason::OverHighWater, text, true, true)) {
          gone.memory_mib += static_cast<double>(vm.memory_mib);
          gone.vcpus += static_cast<double>(vm.vcpus);
        }
      }
    }
  }

  // Sites under their low mark (both resources) when this step starts: VMs whose home it is
  // come home, in fleet order, while the home stays at or under its high mark.
  void comeHome() {
    std::vector<std::string> under(fleet_.sites.size());
    for (size_t s = 0; s < fleet_.sites.size(); ++s) {
      under[s] = belowLow(s);
    }
    for (size_t v = 0; v < fleet_.vms.size(); ++v) {
      const long at = siteOf(v);
      if (at < 0 || !movable(v)) {
        continue;
      }
      const auto h = policy_.history.find(fleet_.vms[v].name);
      if (h == policy_.history.end() || h->second.home.empty()) {
        continue;
      }
      const size_t home = idx_.site_of.at(h->second.home);
      if (home == static_cast<size_t>(at) || under[home].empty()) {
        continue;
      }
      if (!mayMove(v, MoveReason::ComingHome)) {
        if (plan_.held.back().reason == HoldReason::PlanCap) {
          return;
        }
        continue;
      }
      const std::string text = "home " + fleet_.sites[home].name +
                               " below its low water mark: " + under[home] + ", coming home";
      moveOrHold(v, {home}, MoveReason::ComingHome, text, true, true);
    }
  }

  void drain(size_t s) {
    std::vector<size_t> leaving;
    for (size_t v = 0; v < fleet_.vms.size(); ++v) {
      if (siteOf(v) == static_cast<long>(s) && busy_.count(v) == 0) {
        leaving.push_back(v);
      }
    }
    // Largest first: the hardest to fit take their pick while there is most room.
    std::stable_sort(leaving.begin(), leaving.end(), [&](size_t a, size_t b) {
      const Vm& x = fleet_.vms[a];
      const Vm& y = fleet_.vms[b];
      if (x.memory_mib != y.memory_mib) {
        return x.memory_mib > y.memory_mib;
      }
      return x.vcpus > y.vcpus;
    });
    std::vector<size_t> others;
    for (size_t t = 0; t < fleet_.sites.size(); ++t) {
      if (t != s) {
        others.push_back(t);
      }
    }
    const std::string text = "drain of " + fleet_.sites[s].name;
    for (size_t v : leaving) {
      const Vm& vm = fleet_.vms[v];
      if (vm.sla.mobility == ovf::Mobility::Pinned) {
        plan_.held.push_back(
            {vm.name, vm.site, MoveReason::Drain, HoldReason::Pinned, "mobility pinned", {}});
        continue;
      }
      // Within the high marks where possible; else anywhere with room (the site must empty).
      if (!moveOrHold(v, others, MoveReason::Drain, text, false, true, false)) {
        moveOrHold(v, others, MoveReason::Drain, text, false, false);
      }
    }
  }

  MobilityPlan finish() {
    plan_.after = load_;
    return std::move(plan_);
  }

 private:
  static std::pair<size_t, size_t> linkKey(size_t a, size_t b) {
    return {std::min(a, b), std::max(a, b)};
  }

  long siteOf(size_t v) const {
    return on_[v] < 0 ? -1 : static_cast<long>(idx_.hosts[static_cast<size_t>(on_[v])].site);
  }

  bool movable(size_t v) const {
    return fleet_.vms[v].sla.mobility == ovf::Mobility::Automatic && busy_.count(v) == 0 &&
           !moved_[v];
  }

  void charge(size_t s, const Vm& vm, int sign) {
    load_[s].memory_mib += sign * static_cast<double>(vm.memory_mib);
    load_[s].vcpus += sign * static_cast<double>(vm.vcpus);
  }

  // "memory 91% > 85%, vCPUs 88% > 85%" for each resource over the high mark; "" when none.
  // @p extra: as if that VM were there too.
  std::string over(size_t s, const Vm* extra = nullptr) const {
    return extra == nullptr
               ? over(s, 0, 0)
               : over(s, static_cast<double>(extra->memory_mib), static_cast<double>(extra->vcpus));
  }
  // As if @p memory_mib and @p vcpus were added (or, negative, taken away).
  std::string over(size_t s, double memory_mib, double vcpus) const {
    SiteLoad l = load_[s];
    l.memory_mib += memory_mib;
    l.vcpus += vcpus;
    std::string out;
    if (l.memoryShare() > marks_[s].memory.high + kEps) {
      out = "memory " + pct(l.memoryShare()) + " > " + pct(marks_[s].memory.high);
    }
    if (l.vcpuShare() > marks_[s].vcpu.high + kEps) {
      out += (out.empty() ? "" : ", ") + std::string("vCPUs ") + pct(l.vcpuShare()) + " > " +
             pct(marks_[s].vcpu.high);
    }
    return out;
  }

  // "memory 42% < 60%, vCPUs 30% < 60%" when both are under the low mark; "" otherwise.
  std::string belowLow(size_t s) const {
    const SiteLoad& l = load_[s];
    if (idx_.site_hosts[s].empty() || l.memoryShare() >= marks_[s].memory.low ||
        l.vcpuShare() >= marks_[s].vcpu.low) {
      return "";
    }
    return "memory " + pct(l.memoryShare()) + " < " + pct(marks_[s].memory.low) + ", vCPUs " +
           pct(l.vcpuShare()) + " < " + pct(marks_[s].vcpu.low);
  }

  // A VM that may leave an over-full site, its size at hand (the scan below runs often).
  struct Candidate {
    double memory_mib;
    double vcpus;
    size_t vm;
  };

  // Fewest moves: the smallest VM that alone gets the site under, if one does; else the
  // largest (by its share of each resource over the mark). Then in fleet order. Takes it
  // out of @p c. A linear scan: the need changes after every VM. @p gone: held VMs counted
  // as gone.
  size_t takeForRelief(size_t s, std::vector<Candidate>& c, const SiteLoad& gone) const {
    const SiteLoad& l = load_[s];
    const double need_mem =
        l.memory_mib - gone.memory_mib - marks_[s].memory.high * l.memory_capacity_mib;
    const double need_cpu = l.vcpus - gone.vcpus - marks_[s].vcpu.high * l.vcpu_capacity;
    const double w_mem = need_mem > 0 ? 1.0 / l.memory_capacity_mib : 0;
    const double w_cpu = need_cpu > 0 ? 1.0 / l.vcpu_capacity : 0;
    auto suffices = [&](const Candidate& x) {
      return (need_mem <= 0 || x.memory_mib >= need_mem) && (need_cpu <= 0 || x.vcpus >= need_cpu);
    };
    size_t best = 0;
    bool best_suffices = false;
    double best_size = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      const bool sx = suffices(c[i]);
      const double zx = c[i].memory_mib * w_mem + c[i].vcpus * w_cpu;
      bool better = i == 0 || (sx && !best_suffices);
      if (!better && sx == best_suffices && std::abs(zx - best_size) > kEps) {
        better = sx ? zx < best_size : zx > best_size;
      }
      if (!better && sx == best_suffices && std::abs(zx - best_size) <= kEps) {
        better = c[i].vm < c[best].vm;
      }
      if (better) {
        best = i;
        best_suffices = sx;
        best_size = zx;
      }
    }
    const size_t v = c[best].vm;
    c.erase(c.begin() + static_cast<long>(best));
    return v;
  }

  // Min stay and the plan's cap; holds the VM (and says false) when either stops it.
  bool mayMove(size_t v, MoveReason wanted) {
    const Vm& vm = fleet_.vms[v];
    const auto h = policy_.history.find(vm.name);
    if (h != policy_.history.end() && h->second.last_moved_at) {
      const int64_t last = *h->second.last_moved_at;
      // now - last without overflow: a moment in the future counts as just now.
      const int64_t age = last >= policy_.now ? 0
                          : (last < 0 && policy_.now > std::numeric_limits<int64_t>::max() + last)
                              ? std::numeric_limits<int64_t>::max()
                              : policy_.now - last;
      if (age < policy_.min_stay_s) {
        plan_.held.push_back({vm.name,
                              vm.site,
                              wanted,
                              HoldReason::MinStay,
                              "moved " + std::to_string(std::max<int64_t>(age, 0)) +
                                  " s ago, minimum stay " + std::to_string(policy_.min_stay_s) +
                                  " s",
                              {}});
        return false;
      }
    }
    if (policy_.max_moves != 0 && plan_.moves.size() >= policy_.max_moves) {
      plan_.held.push_back(
          {vm.name,
           vm.site,
           wanted,
           HoldReason::PlanCap,
           "the plan's cap of " + std::to_string(policy_.max_moves) + " moves is reached",
           {}});
      return false;
    }
    return true;
  }

  // Moves VM @p v to the best of @p sites (cheapest, then most room left, then fleet
  // order) that passes every hard constraint, @p within_high: stays at or under its high
  // mark, @p link_bound: its link has room. Else holds it with each site's clause (when
  // @p hold_on_failure). Returns whether it moved.
  bool moveOrHold(size_t v, const std::vector<size_t>& sites, MoveReason reason,
                  const std::string& why, bool link_bound, bool within_high,
                  bool hold_on_failure = true) {
    const Vm& vm = fleet_.vms[v];
    const size_t from = static_cast<size_t>(siteOf(v));
    long best_site = -1;
    long best_host = -1;
    double best_cost = 0;
    double best_room = 0;
    bool link_only = false;  // some site failed on the link alone
    std::vector<Reason> reasons;
    for (size_t t : sites) {
      const Site& site = fleet_.sites[t];
      std::string clause = slaClause(fleet_, vm, site);
      // The high mark before the hosts: O(1), and on a full fleet most sites stop here.
      if (clause.empty() && within_high) {
        const std::string passes = over(t, &vm);
        if (!passes.empty()) {
          clause = "would pass its high water mark: " + passes;
        }
      }
      long h = -1;
      if (clause.empty()) {
        h = bestHost(idx_, t, vm);
        if (h < 0) {
          clause = closestShortfall(idx_, t, vm);
        }
      }
      if (clause.empty() && link_bound) {
        const auto l = links_.find(linkKey(from, t));
        const int used = l == links_.end() ? 0 : l->second;
        if (used >= static_cast<int>(policy_.max_moves_per_link)) {
          clause = "link from " + fleet_.sites[from].name + ": " + std::to_string(used) +
                   " moves in flight or planned, at most " +
                   std::to_string(policy_.max_moves_per_link);
          link_only = true;
        }
      }
      if (!clause.empty()) {
        reasons.push_back({site.name, std::move(clause)});
        continue;
      }
      const double cost = costPerHour(vm, site);
      SiteLoad after = load_[t];
      after.memory_mib += static_cast<double>(vm.memory_mib);
      after.vcpus += static_cast<double>(vm.vcpus);
      const double room = std::min(marks_[t].memory.high - after.memoryShare(),
                                   marks_[t].vcpu.high - after.vcpuShare());
      if (best_site < 0 || cost < best_cost - kEps ||
          (cost < best_cost + kEps && room > best_room + kEps)) {
        best_site = static_cast<long>(t);
        best_host = h;
        best_cost = cost;
        best_room = room;
      }
    }
    if (best_site < 0) {
      if (hold_on_failure) {
        const bool home = reason == MoveReason::ComingHome;
        plan_.held.push_back(
            {vm.name, vm.site, reason,
             link_only ? HoldReason::LinkBudget : HoldReason::NoDestination,
             link_only ? "every site that could take it is behind a link at its bound"
             : home    ? "home " + fleet_.sites[sites.front()].name + " cannot take it"
                       : "no site with room that satisfies the SLA",
             std::move(reasons)});
      }
      return false;
    }
    const size_t to = static_cast<size_t>(best_site);
    HostState& src = idx_.hosts[static_cast<size_t>(on_[v])];
    HostState& dst = idx_.hosts[static_cast<size_t>(best_host)];
    plan_.moves.push_back({vm.name, fleet_.sites[from].name, src.host->name, fleet_.sites[to].name,
                           dst.host->name, reason, why, costPerHour(vm, fleet_.sites[from]),
                           best_cost});
    add(src, vm, -1);
    add(dst, vm, +1);
    charge(from, vm, -1);
    charge(to, vm, +1);
    ++links_[linkKey(from, to)];
    on_[v] = best_host;
    moved_[v] = true;
    // A VM held earlier in this plan (say, no room away) that found a way after all.
    std::erase_if(plan_.held, [&](const HeldVm& h) { return h.vm == vm.name; });
    return true;
  }

  const Fleet& fleet_;
  const MobilityPolicy& policy_;
  Hosts idx_;
  std::vector<SiteMarks> marks_;
  std::vector<SiteLoad> load_;
  std::vector<long> on_;  // per VM: its host, -1 when not placed
  std::vector<bool> moved_;
  std::set<size_t> busy_;  // VMs in flight
  std::map<std::pair<size_t, size_t>, int> links_;
  MobilityPlan plan_;
};

Result<Planner> planner(const Fleet& fleet, const MobilityPolicy& policy) {
  VANDRA_TRY_ASSIGN(Hosts index, indexHosts(fleet));
  VANDRA_TRY(checkVms(fleet, index));
  Planner p(fleet, policy, std::move(index));
  VANDRA_TRY(p.start());
  return p;
}

}  // namespace

Result<MobilityPlan> planMobility(const Fleet& fleet, const MobilityPolicy& policy) {
  VANDRA_TRY_ASSIGN(Planner p, planner(fleet, policy));
  p.relieve();
  p.comeHome();
  return p.finish();
}

Result<MobilityPlan> planDrain(const Fleet& fleet, const std::string& site,
                               const MobilityPolicy& policy) {
  const auto it = std::find_if(fleet.sites.begin(), fleet.sites.end(),
                               [&](const Site& s) { return s.name == site; });
  if (it == fleet.sites.end()) {
    return fail(ErrorCode::NotFound, "Site '" + site + "' is not in the fleet");
  }
  VANDRA_TRY_ASSIGN(Planner p, planner(fleet, policy));
  p.drain(static_cast<size_t>(it - fleet.sites.begin()));
  return p.finish();
}

}  // namespace vandra::placement
