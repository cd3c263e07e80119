#include "vandra/placement/solver.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <unordered_map>

#include "hosts.h"
#include "vandra/orchestrator/downtime_plan.h"

namespace vandra::placement {

double costPerHour(const Vm& vm, const Site& site) {
  return static_cast<double>(vm.vcpus) * site.price.vcpu_hour +
         static_cast<double>(vm.memory_mib) / 1024.0 * site.price.memory_gib_hour;
}

namespace {

using namespace detail;

// One movable VM: the sites its SLA allows, cheapest first, its own site first among equals.
struct SiteOption {
  size_t site = 0;
  double cost = 0;
  bool other_site = false;  // going there moves the VM
};

struct Choice {
  size_t vm = 0;
  std::vector<SiteOption> sites;
  size_t host_count = 0;  // hosts over all of them
};

struct Best {
  size_t placed = 0;
  double cost = 0;
  size_t moves = 0;
  double imbalance = 0;          // sum of squared host loads: lower is better spread
  std::vector<long> assignment;  // per Choice: HostState index, -1 unplaced
  bool found = false;
};

class Search {
 public:
  Search(const Fleet& f, std::vector<HostState>& hosts,
         const std::vector<std::vector<size_t>>& site_hosts, const std::vector<Choice>& choices)
      : fleet_(f),
        hosts_(hosts),
        site_hosts_(site_hosts),
        choices_(choices),
        current_(choices.size(), -1) {}

  // Branch and bound over every choice: optimal for (placed desc, cost asc, moves asc); among
  // equals the first in preference order. Leaves the hosts as it found them.
  Best exact() {
    dfs(0, 0, 0.0, 0);
    return best_;
  }

  // One pass: each VM takes the cheapest host that fits, not moving it if it can stay, the
  // least loaded among equals. Leaves the VMs it placed on the hosts.
  Best greedy() {
    Best b;
    b.assignment.assign(choices_.size(), -1);
    for (size_t i = 0; i < choices_.size(); ++i) {
      const Choice& c = choices_[i];
      const Vm& vm = fleet_.vms[c.vm];
      long pick = -1;
      double pick_cost = 0;
      int pick_moved = 0;
      double pick_free = 0;
      for (const SiteOption& o : c.sites) {
        if (pick >= 0 && o.cost > pick_cost + kEps) {
          break;  // cheapest first: nothing later is as good
        }
        for (size_t h : site_hosts_[o.site]) {
          const HostState& st = hosts_[h];
          if (!fits(st, vm)) {
            continue;
          }
          const int moved = movesIt(vm, o, st) ? 1 : 0;
          const double free = 1.0 - static_cast<double>(st.memory_mib + vm.memory_mib) /
                                        static_cast<double>(st.host->memory_mib);
          const bool better =
              pick < 0 || o.cost < pick_cost - kEps ||
              (o.cost < pick_cost + kEps &&
               (moved < pick_moved || (moved == pick_moved && free > pick_free + kEps)));
          if (better) {
            pick = static_cast<long>(h);
            pick_cost = o.cost;
            pick_moved = moved;
            pick_free = free;
          }
        }
      }
      if (pick >= 0) {
        add(hosts_[static_cast<size_t>(pick)], vm, +1);
        b.assignment[i] = pick;
        ++b.placed;
        b.cost += pick_cost;
        b.moves += static_cast<size_t>(pick_moved);
      }
    }
    b.found = true;
    return b;
  }

  static bool movesIt(const Vm& vm, const SiteOption& o, const HostState& h) {
    return o.other_site || (!vm.host.empty() && vm.host != h.host->name);
  }

 private:
  void dfs(size_t i, size_t placed, double cost, size_t moves) {
    const size_t left = choices_.size() - i;
    if (best_.found) {
      if (placed + left < best_.placed) {
        return;
      }
      if (placed + left == best_.placed &&
          (cost > best_.cost + kEps || (cost > best_.cost - kEps && moves > best_.moves))) {
        return;
      }
    }
    if (i == choices_.size()) {
      const double imbalance = imbalanceNow();
      const bool better = !best_.found || placed > best_.placed ||
                          (placed == best_.placed &&
                           (cost < best_.cost - kEps ||
                            (cost < best_.cost + kEps &&
                             (moves < best_.moves ||
                              (moves == best_.moves && imbalance < best_.imbalance - kEps)))));
      if (better) {
        best_ = {placed, cost, moves, imbalance, current_, true};
      }
      return;
    }
    const Choice& c = choices_[i];
    const Vm& vm = fleet_.vms[c.vm];
    for (const SiteOption& o : c.sites) {
      for (size_t h : site_hosts_[o.site]) {
        HostState& st = hosts_[h];
        if (!fits(st, vm)) {
          continue;
        }
        add(st, vm, +1);
        current_[i] = static_cast<long>(h);
        dfs(i + 1, placed + 1, cost + o.cost, moves + (movesIt(vm, o, st) ? 1 : 0));
        add(st, vm, -1);
      }
    }
    current_[i] = -1;
    dfs(i + 1, placed, cost, moves);
  }

  double imbalanceNow() const {
    double sum = 0;
    for (const HostState& h : hosts_) {
      const double m = static_cast<double>(h.memory_mib) / static_cast<double>(h.host->memory_mib);
      const double c = h.vcpus / h.vcpu_cap;
      sum += m * m + c * c;
    }
    return sum;
  }

  const Fleet& fleet_;
  std::vector<HostState>& hosts_;
  const std::vector<std::vector<size_t>>& site_hosts_;
  const std::vector<Choice>& choices_;
  std::vector<long> current_;
  Best best_;
};

}  // namespace

std::string slaClause(const Fleet& fleet, const Vm& vm, const Site& site) {
  const ovf::Sla& sla = vm.sla;
  if (!sla.jurisdictions.empty()) {
    const bool allowed =
        std::any_of(site.jurisdictions.begin(), site.jurisdictions.end(), [&](auto& j) {
          return std::find(sla.jurisdictions.begin(), sla.jurisdictions.end(), j) !=
                 sla.jurisdictions.end();
        });
    if (!allowed) {
      const std::string here = site.jurisdictions.empty() ? "no jurisdiction label"
                               : site.jurisdictions.size() == 1
                                   ? "jurisdiction " + site.jurisdictions[0]
                                   : "jurisdictions " + listOf(site.jurisdictions);
      return here + " not in [" + listOf(sla.jurisdictions) + "]";
    }
  }
  if (sla.max_rtt) {
    const auto loc =
        std::find_if(fleet.locations.begin(), fleet.locations.end(),
                     [&](const Location& l) { return l.name == sla.max_rtt->location; });
    if (loc == fleet.locations.end()) {
      return "max_rtt: location " + sla.max_rtt->location + " is not in the fleet";
    }
    const auto rtt = loc->rtt_ms.find(site.name);
    if (rtt == loc->rtt_ms.end()) {
      return "max_rtt: no round trip known from " + loc->name;
    }
    if (rtt->second > sla.max_rtt->ms) {
      return "max_rtt: " + number(rtt->second, false) + " ms from " + loc->name + ", over " +
             std::to_string(sla.max_rtt->ms);
    }
  }
  if (sla.max_cost_per_hour) {
    if (site.price.currency != sla.currency) {
      return "max_cost_per_hour: prices here in " + site.price.currency + ", the ceiling in " +
             sla.currency;
    }
    const double cost = costPerHour(vm, site);
    if (cost > *sla.max_cost_per_hour + kEps) {
      return "max_cost_per_hour: " + number(cost) + " " + site.price.currency + "/h here, over " +
             number(*sla.max_cost_per_hour);
    }
  }
  if (!vm.site.empty() && vm.site != site.name) {  // a live move from where it runs
    const Link* link = findLink(fleet, vm.site, site.name);
    if (link == nullptr) {
      return "live move: no link from " + vm.site;
    }
    if (vm.dirty_rate_mbps && *vm.dirty_rate_mbps >= link->mbps) {
      return "live move: the VM dirties " + number(*vm.dirty_rate_mbps, false) +
             " Mbit/s, the link from " + vm.site + " carries " + number(link->mbps, false);
    }
    if (sla.downtime_budget_ms) {
      const auto plan = orchestrator::planDowntime(
          *sla.downtime_budget_ms, std::nullopt,
          std::chrono::microseconds(static_cast<int64_t>(link->rtt_ms * 1000.0)));
      if (plan.refusal) {
        return "downtime_budget_ms over the link from " + vm.site + ": " + *plan.refusal;
      }
    }
  }
  return "";
}

Result<Solution> solve(const Fleet& fleet, const SolveOptions& options) {
  VANDRA_TRY_ASSIGN(Hosts index, indexHosts(fleet));
  VANDRA_TRY(checkVms(fleet, index));
  std::vector<HostState>& hosts = index.hosts;
  const std::vector<std::vector<size_t>>& site_hosts = index.site_hosts;

  // Fixed VMs stay where they run: on their host, or the best fitting host of their site.
  std::vector<long> placed_on(fleet.vms.size(), -1);
  std::vector<Choice> choices;
  for (size_t v = 0; v < fleet.vms.size(); ++v) {
    const Vm& vm = fleet.vms[v];
    if (!vm.site.empty() && vm.sla.mobility != ovf::Mobility::Automatic) {
      const long pick = runningHost(index, vm);
      if (pick < 0) {
        return invalid("VM '" + vm.name + "' runs at site '" + vm.site + "', which has no hosts");
      }
      const size_t at = static_cast<size_t>(pick);
      add(hosts[at], vm, +1);
      placed_on[v] = static_cast<long>(at);
      continue;
    }
    Choice c;
    c.vm = v;
    for (size_t st = 0; st < fleet.sites.size(); ++st) {
      if (site_hosts[st].empty() || !slaClause(fleet, vm, fleet.sites[st]).empty()) {
        continue;
      }
      const bool other = !vm.site.empty() && fleet.sites[st].name != vm.site;
      c.sites.push_back({st, costPerHour(vm, fleet.sites[st]), other});
      c.host_count += site_hosts[st].size();
    }
    std::stable_sort(c.sites.begin(), c.sites.end(), [](const SiteOption& x, const SiteOption& y) {
      if (std::abs(x.cost - y.cost) > kEps) {
        return x.cost < y.cost;
      }
      return !x.other_site && y.other_site;
    });
    choices.push_back(std::move(c));
  }
  // Most constrained first. Then, when everything could fit, the largest first (packs best);
  // when the fleet asks for more than is free, the smallest first (places the most). Size is
  // a VM's share of the free memory plus its share of the free vCPUs.
  double want_mem = 0;
  double want_cpu = 0;
  double free_mem = 0;
  double free_cpu = 0;
  for (const Choice& c : choices) {
    want_mem += static_cast<double>(fleet.vms[c.vm].memory_mib);
    want_cpu += static_cast<double>(fleet.vms[c.vm].vcpus);
  }
  for (const HostState& h : hosts) {
    free_mem +=
        std::max(0.0, static_cast<double>(h.host->memory_mib) - static_cast<double>(h.memory_mib));
    free_cpu += std::max(0.0, h.vcpu_cap - h.vcpus);
  }
  const bool largest_first = want_mem <= free_mem && want_cpu <= free_cpu;
  auto size = [&](const Vm& v) {
    return static_cast<double>(v.memory_mib) / std::max(free_mem, 1.0) +
           static_cast<double>(v.vcpus) / std::max(free_cpu, 1.0);
  };
  std::stable_sort(choices.begin(), choices.end(), [&](const Choice& a, const Choice& b) {
    if (a.host_count != b.host_count) {
      return a.host_count < b.host_count;
    }
    const double x = size(fleet.vms[a.vm]);
    const double y = size(fleet.vms[b.vm]);
    return largest_first ? x > y : x < y;
  });
  double space = 1;
  for (const Choice& c : choices) {
    space *= static_cast<double>(c.host_count + 1);
    if (space > options.exact_limit) {
      break;
    }
  }
  Solution out;
  out.exact = space <= options.exact_limit;
  Search search(fleet, hosts, site_hosts, choices);
  const Best best = out.exact ? search.exact() : search.greedy();
  if (out.exact) {  // the search left the hosts as it found them: apply the best
    for (size_t i = 0; i < choices.size(); ++i) {
      if (best.assignment[i] >= 0) {
        add(hosts[static_cast<size_t>(best.assignment[i])], fleet.vms[choices[i].vm], +1);
      }
    }
  }
  for (size_t i = 0; i < choices.size(); ++i) {
    if (best.assignment[i] >= 0) {
      placed_on[choices[i].vm] = best.assignment[i];
    }
  }

  for (size_t v = 0; v < fleet.vms.size(); ++v) {
    const Vm& vm = fleet.vms[v];
    if (placed_on[v] < 0) {
      Unplaced u{vm.name, {}};
      for (size_t s = 0; s < fleet.sites.size(); ++s) {
        const Site& site = fleet.sites[s];
        std::string clause = slaClause(fleet, vm, site);
        if (clause.empty()) {
          clause = closestShortfall(index, s, vm);
        }
        u.reasons.push_back({site.name, clause});
      }
      out.unplaced.push_back(std::move(u));
      continue;
    }
    const HostState& h = hosts[static_cast<size_t>(placed_on[v])];
    const Site& site = fleet.sites[h.site];
    out.placements.push_back({vm.name, site.name, h.host->name});
    out.cost_per_hour += costPerHour(vm, site);
    if (!vm.site.empty() &&
        (vm.site != site.name || (!vm.host.empty() && vm.host != h.host->name))) {
      out.moves.push_back({vm.name, vm.site, site.name, vm.host, h.host->name});
    }
  }
  return out;
}

}  // namespace vandra::placement
