// The inventory as the placement engine sees it (fleet(), the SLA status, the solver's view),
// and placement of a VM that runs nowhere yet (an import): the SLA, the hosts' room and the
// networks, at a named site or at the cheapest site that takes it.
#include <algorithm>

#include "vandra/controller/measured_links.h"
#include "vandra/controller/service.h"
#include "vandra/placement/placed_fleet.h"

namespace vandra::controller {
namespace {

// The site network each OVF network lands on at @p site, or the clause why one cannot.
Result<std::map<std::string, std::string>> mapNetworks(const NewVm& vm, const Site& site) {
  std::map<std::string, std::string> out;
  for (const auto& net : vm.networks) {
    std::string there;
    if (auto it = vm.network_map.find(net); it != vm.network_map.end()) {
      there = it->second;
    } else if (std::find(site.networks.begin(), site.networks.end(), net) != site.networks.end()) {
      there = net;
    } else {
      there = site.default_network;
    }
    if (there.empty() ||
        std::find(site.networks.begin(), site.networks.end(), there) == site.networks.end()) {
      return fail(ErrorCode::InvalidArgument,
                  "no network '" + (there.empty() ? net : there) + "' here (" + site.name +
                      " has " + nlohmann::json(site.networks).dump() +
                      (site.default_network.empty() ? ", no default network" : "") +
                      "; map it: network_map {\"" + net + "\": \"...\"})");
    }
    out[net] = there;
  }
  return out;
}

}  // namespace

Result<NewVmPlacement> ControllerService::placeNew(const NewVm& vm, const std::string& site) {
  const auto t0 = std::chrono::steady_clock::now();
  VANDRA_TRY(ovf::validateSla(vm.sla));
  if (vm.vcpus == 0 || vm.memory_mib == 0) {
    return fail(ErrorCode::InvalidArgument, "VM " + vm.name + " has no vCPU or no memory");
  }
  VANDRA_TRY_ASSIGN(auto sites, store_.sites());
  if (!site.empty() &&
      std::none_of(sites.begin(), sites.end(), [&](const Site& s) { return s.name == site; })) {
    return fail(ErrorCode::NotFound, "No site '" + site + "'");
  }
  VANDRA_TRY_ASSIGN(auto f, fleet());
  // Sites whose networks cannot carry the VM's are ruled out first, with their clause.
  std::vector<std::string> refusals;
  ErrorCode code = ErrorCode::CapacityExceeded;
  std::map<std::string, std::map<std::string, std::string>> nets;
  placement::Fleet candidates = f;
  candidates.sites.clear();
  for (const auto& s : sites) {
    if (!site.empty() && s.name != site) {
      continue;
    }
    auto mapped = mapNetworks(vm, s);
    if (!mapped) {
      refusals.push_back(s.name + ": " + mapped.error().message);
      code = ErrorCode::InvalidArgument;
      continue;
    }
    nets[s.name] = *mapped;
    for (const auto& ps : f.sites) {
      if (ps.name == s.name) {
        candidates.sites.push_back(ps);
      }
    }
  }
  // VMs on sites left out still take their hosts' room elsewhere: keep only those on
  // candidate sites (the others do not compete for these hosts).
  std::erase_if(candidates.vms, [&](const placement::Vm& v) {
    return std::none_of(candidates.sites.begin(), candidates.sites.end(),
                        [&](const placement::Site& s) { return s.name == v.site; });
  });
  if (!candidates.sites.empty()) {
    VANDRA_TRY_ASSIGN(auto placed, placement::PlacedFleet::build(candidates));
    placement::Vm pv{vm.name, vm.vcpus, vm.memory_mib, std::max<uint64_t>(vm.disk_gib, 1),
                     "",      "",       vm.sla,        std::nullopt};
    VANDRA_TRY_ASSIGN(auto one, placed.placeOne(pv));
    metrics_->placementLatency(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (one.placed()) {
      return NewVmPlacement{one.site, one.host, one.cost_per_hour, nets[one.site]};
    }
    for (const auto& r : one.reasons) {
      refusals.push_back(r.site + ": " + r.clause);
      const bool capacity = r.clause.find(" free, ") != std::string::npos ||
                            r.clause.find("no host") != std::string::npos;
      if (!capacity) {
        code = ErrorCode::SlaViolated;
      }
    }
  }
  std::string msg =
      "VM " + vm.name + " cannot be placed" + (site.empty() ? "" : " at " + site) + ": ";
  for (size_t i = 0; i < refusals.size(); ++i) {
    msg += (i ? "; " : "") + refusals[i];
  }
  return fail(code, msg);
}

// ---- the inventory as the placement engine sees it ----

Result<placement::Fleet> ControllerService::fleet() {
  placement::Fleet f;
  VANDRA_TRY_ASSIGN(auto sites, store_.sites());
  VANDRA_TRY_ASSIGN(auto hosts, store_.hosts());
  std::set<std::string> host_names;
  for (const auto& s : sites) {
    placement::Site ps{s.name, s.jurisdictions, s.vcpu_overcommit, s.price, {}};
    for (const auto& h : hosts) {
      if (h.site == s.name && h.vcpus > 0 && h.memory_mib > 0) {
        ps.hosts.push_back({h.name, h.vcpus, h.memory_mib, std::max<uint64_t>(h.disk_gib, 1)});
        host_names.insert(h.name);
      }
    }
    f.sites.push_back(std::move(ps));
  }
  VANDRA_TRY_ASSIGN(auto locations, store_.locations());
  for (const auto& l : locations) {
    f.locations.push_back({l.name, l.rtt_ms});
  }
  VANDRA_TRY_ASSIGN(auto links, store_.links());
  for (const auto& l : links) {
    f.links.push_back({l.a, l.b, l.rtt_ms, l.mbps});
  }
  VANDRA_TRY_ASSIGN(auto vms, store_.vms());
  for (const auto& v : vms) {
    if (v.state == VmState::Missing || v.vcpus == 0 || v.memory_mib == 0) {
      continue;
    }
    placement::Vm pv{v.name,       v.vcpus,
                     v.memory_mib, std::max<uint64_t>(v.disk_gib, 1),
                     v.site,       host_names.contains(v.host) ? v.host : "",
                     v.sla,        v.dirty_rate_mbps};
    f.vms.push_back(std::move(pv));
  }
  return f;
}

Result<std::vector<SlaVerdict>> ControllerService::slaStatus() {
  VANDRA_TRY_ASSIGN(auto f, fleet());
  std::vector<SlaVerdict> out;
  for (const auto& vm : f.vms) {
    SlaVerdict v{vm.name, vm.site, true, {}};
    auto site = std::find_if(f.sites.begin(), f.sites.end(),
                             [&](const placement::Site& s) { return s.name == vm.site; });
    if (site != f.sites.end()) {
      placement::Vm here = vm;
      here.site.clear();  // judged as if placed there: no live move involved
      const std::string clause = placement::slaClause(f, here, *site);
      if (!clause.empty()) {
        v.ok = false;
        v.violations.push_back(clause);
      }
    }
    v.link_violations = liveMoveClauses(f, vm);
    out.push_back(std::move(v));
  }
  return out;
}

Result<placement::Solution> ControllerService::placementNow() {
  const auto t0 = std::chrono::steady_clock::now();
  VANDRA_TRY_ASSIGN(auto f, fleet());
  auto s = placement::solve(f);
  metrics_->placementLatency(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return s;
}

}  // namespace vandra::controller
