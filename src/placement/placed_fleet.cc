#include "vandra/placement/placed_fleet.h"

#include <algorithm>
#include <cmath>

#include "hosts.h"
#include "vandra/placement/solver.h"

namespace vandra::placement {

using namespace detail;

struct PlacedFleet::State {
  Fleet topology;  // sites, locations, links; no VMs (Hosts points into its sites)
  Hosts index;
  // Each VM: its host, and only what add() needs to take it off again.
  struct Resident {
    size_t host = 0;
    Vm shape;
  };
  std::unordered_map<std::string, Resident> vms;

  static Result<std::unique_ptr<State>> from(const Fleet& fleet) {
    auto s = std::make_unique<State>();
    s->topology.sites = fleet.sites;
    s->topology.locations = fleet.locations;
    s->topology.links = fleet.links;
    VANDRA_TRY_ASSIGN(s->index, indexHosts(s->topology));
    VANDRA_TRY(checkVms(fleet, s->index));
    s->vms.reserve(fleet.vms.size());
    return s;
  }

  void put(const Vm& vm, size_t host) {
    Vm shape;
    shape.vcpus = vm.vcpus;
    shape.memory_mib = vm.memory_mib;
    shape.disk_gib = vm.disk_gib;
    shape.sla.anti_affinity_group = vm.sla.anti_affinity_group;
    add(index.hosts[host], shape, +1);
    vms.insert_or_assign(vm.name, Resident{host, std::move(shape)});
  }
};

PlacedFleet::PlacedFleet(std::unique_ptr<State> s) : s_(std::move(s)) {}
PlacedFleet::PlacedFleet(PlacedFleet&&) noexcept = default;
PlacedFleet& PlacedFleet::operator=(PlacedFleet&&) noexcept = default;
PlacedFleet::~PlacedFleet() = default;

Result<PlacedFleet> PlacedFleet::build(const Fleet& fleet, const Solution& solution) {
  VANDRA_TRY_ASSIGN(auto s, State::from(fleet));
  std::unordered_map<std::string, const Vm*> by_name;
  by_name.reserve(fleet.vms.size());
  for (const Vm& vm : fleet.vms) {
    by_name.emplace(vm.name, &vm);
  }
  for (const Placement& p : solution.placements) {
    const auto vm = by_name.find(p.vm);
    const auto h = s->index.host_of.find(p.host);
    if (vm == by_name.end()) {
      return invalid("Placement of VM '" + p.vm + "', which is not in the fleet");
    }
    if (h == s->index.host_of.end() || fleet.sites[s->index.hosts[h->second].site].name != p.site) {
      return invalid("Placement of VM '" + p.vm + "' on host '" + p.host +
                     "', which is not a host of site '" + p.site + "'");
    }
    if (s->vms.count(p.vm) != 0) {
      return invalid("VM '" + p.vm + "' is placed twice");
    }
    s->put(*vm->second, h->second);
  }
  return PlacedFleet(std::move(s));
}

Result<PlacedFleet> PlacedFleet::build(const Fleet& fleet) {
  VANDRA_TRY_ASSIGN(auto s, State::from(fleet));
  for (const Vm& vm : fleet.vms) {
    if (vm.site.empty()) {
      continue;
    }
    const long h = runningHost(s->index, vm);
    if (h < 0) {
      return invalid("VM '" + vm.name + "' runs at site '" + vm.site + "', which has no hosts");
    }
    s->put(vm, static_cast<size_t>(h));
  }
  return PlacedFleet(std::move(s));
}

Result<OnePlacement> PlacedFleet::placeOne(const Vm& vm) const {
  if (vm.vcpus == 0 || vm.memory_mib == 0) {
    return invalid("VM '" + vm.name + "' has no vCPUs or no memory");
  }
  if (s_->vms.count(vm.name) != 0) {
    return invalid("VM '" + vm.name + "' is already in the fleet");
  }
  const Fleet& f = s_->topology;
  const Hosts& idx = s_->index;
  const bool fixed = !vm.site.empty() && vm.sla.mobility != ovf::Mobility::Automatic;
  // The allowed sites, cheapest first, the VM's own site first among equals (stays put).
  struct Option {
    size_t site;
    double cost;
    bool other;
  };
  std::vector<Option> options;
  options.reserve(f.sites.size());
  for (size_t st = 0; st < f.sites.size(); ++st) {
    const bool other = vm.site != f.sites[st].name;
    if (idx.site_hosts[st].empty() || (fixed && other) || !slaClause(f, vm, f.sites[st]).empty()) {
      continue;
    }
    options.push_back({st, costPerHour(vm, f.sites[st]), other && !vm.site.empty()});
  }
  std::stable_sort(options.begin(), options.end(), [](const Option& x, const Option& y) {
    if (std::abs(x.cost - y.cost) > kEps) {
      return x.cost < y.cost;
    }
    return !x.other && y.other;
  });
  // As the solver's greedy pass: among the cheapest sites with room, not moving the VM
  // when it can stay, then the host left with the most free memory.
  long pick = -1;
  double pick_cost = 0;
  bool pick_moved = false;
  double pick_free = 0;
  for (const Option& o : options) {
    if (pick >= 0 && o.cost > pick_cost + kEps) {
      break;
    }
    const long h = bestHost(idx, o.site, vm);
    if (h < 0) {
      continue;
    }
    const HostState& st = idx.hosts[static_cast<size_t>(h)];
    const bool moved = o.other || (!vm.host.empty() && vm.host != st.host->name);
    const double free = 1.0 - static_cast<double>(st.memory_mib + vm.memory_mib) /
                                  static_cast<double>(st.host->memory_mib);
    if (pick < 0 || (!moved && pick_moved) || (moved == pick_moved && free > pick_free + kEps)) {
      pick = h;
      pick_cost = o.cost;
      pick_moved = moved;
      pick_free = free;
    }
  }
  OnePlacement out;
  if (pick >= 0) {
    const HostState& st = idx.hosts[static_cast<size_t>(pick)];
    out.site = f.sites[st.site].name;
    out.host = st.host->name;
    out.cost_per_hour = pick_cost;
    return out;
  }
  for (size_t st = 0; st < f.sites.size(); ++st) {
    const Site& site = f.sites[st];
    std::string clause;
    if (fixed && vm.site != site.name) {
      clause = "mobility " + std::string(ovf::toString(vm.sla.mobility)) + ": stays at " + vm.site;
    } else {
      clause = slaClause(f, vm, site);
    }
    if (clause.empty()) {
      clause = closestShortfall(idx, st, vm);
    }
    out.reasons.push_back({site.name, std::move(clause)});
  }
  return out;
}

Result<void> PlacedFleet::commit(const Vm& vm, const std::string& host) {
  if (vm.vcpus == 0 || vm.memory_mib == 0) {
    return invalid("VM '" + vm.name + "' has no vCPUs or no memory");
  }
  if (s_->vms.count(vm.name) != 0) {
    return invalid("VM '" + vm.name + "' is already in the fleet");
  }
  const auto h = s_->index.host_of.find(host);
  if (h == s_->index.host_of.end()) {
    return invalid("Host '" + host + "' is not in the fleet");
  }
  const HostState& st = s_->index.hosts[h->second];
  if (!fits(st, vm)) {
    return invalid("VM '" + vm.name + "' does not fit on " + shortfall(st, vm));
  }
  s_->put(vm, h->second);
  return {};
}

Result<void> PlacedFleet::remove(const std::string& name) {
  const auto it = s_->vms.find(name);
  if (it == s_->vms.end()) {
    return fail(ErrorCode::NotFound, "VM '" + name + "' is not in the fleet");
  }
  add(s_->index.hosts[it->second.host], it->second.shape, -1);
  s_->vms.erase(it);
  return {};
}

size_t PlacedFleet::vmCount() const {
  return s_->vms.size();
}

std::string PlacedFleet::hostOf(const std::string& name) const {
  const auto it = s_->vms.find(name);
  return it == s_->vms.end() ? "" : s_->index.hosts[it->second.host].host->name;
}

}  // namespace vandra::placement
