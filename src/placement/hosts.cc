#include "hosts.h"

#include <algorithm>
#include <cstdio>
#include <set>

namespace vandra::placement::detail {

std::string number(double v, bool money) {
  char b[64];
  if (money) {
    std::snprintf(b, sizeof b, "%.2f", v);
  } else {
    std::snprintf(b, sizeof b, "%g", v);
  }
  return b;
}

std::string listOf(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    out += (out.empty() ? "" : ", ") + s;
  }
  return out;
}

void add(HostState& h, const Vm& vm, int sign) {
  h.vcpus += sign * static_cast<double>(vm.vcpus);
  h.memory_mib = static_cast<uint64_t>(static_cast<int64_t>(h.memory_mib) +
                                       sign * static_cast<int64_t>(vm.memory_mib));
  h.disk_gib = static_cast<uint64_t>(static_cast<int64_t>(h.disk_gib) +
                                     sign * static_cast<int64_t>(vm.disk_gib));
  if (vm.sla.anti_affinity_group) {
    const auto it = h.groups.try_emplace(*vm.sla.anti_affinity_group, 0).first;
    it->second += sign;
    if (it->second == 0) {
      h.groups.erase(it);  // keeps the map as small as the groups present
    }
  }
}

std::string shortfall(const HostState& h, const Vm& vm) {
  const std::string name = h.host->name + ": ";
  if (h.memory_mib + vm.memory_mib > h.host->memory_mib) {
    return name + "memory " +
           std::to_string(h.host->memory_mib - std::min(h.memory_mib, h.host->memory_mib)) +
           " MiB free, " + std::to_string(vm.memory_mib) + " needed";
  }
  if (h.vcpus + vm.vcpus > h.vcpu_cap + kEps) {
    return name + "vCPUs " + number(std::max(0.0, h.vcpu_cap - h.vcpus), false) + " free (" +
           std::to_string(h.host->vcpus) + " x overcommit), " + std::to_string(vm.vcpus) +
           " needed";
  }
  if (h.disk_gib + vm.disk_gib > h.host->disk_gib) {
    return name + "disk " +
           std::to_string(h.host->disk_gib - std::min(h.disk_gib, h.host->disk_gib)) +
           " GiB free, " + std::to_string(vm.disk_gib) + " needed";
  }
  return name + "anti-affinity group " + *vm.sla.anti_affinity_group + " has a VM here";
}

Unexpected invalid(const std::string& what) {
  return fail(ErrorCode::InvalidArgument, what);
}

Result<Hosts> indexHosts(const Fleet& fleet) {
  Hosts out;
  for (size_t s = 0; s < fleet.sites.size(); ++s) {
    const Site& site = fleet.sites[s];
    if (!out.site_of.emplace(site.name, s).second) {
      return invalid("Site '" + site.name + "' is named twice");
    }
    if (!(site.vcpu_overcommit > 0)) {
      return invalid("Site '" + site.name + "' has a vCPU overcommit that is not above 0");
    }
    for (const Host& h : site.hosts) {
      if (!out.host_of.emplace(h.name, out.hosts.size()).second) {
        return invalid("Host '" + h.name + "' is named twice");
      }
      if (h.vcpus == 0 || h.memory_mib == 0) {
        return invalid("Host '" + h.name + "' has no vCPUs or no memory");
      }
      HostState st;
      st.site = s;
      st.host = &h;
      st.vcpu_cap = static_cast<double>(h.vcpus) * site.vcpu_overcommit;
      out.hosts.push_back(std::move(st));
    }
  }
  out.site_hosts.resize(fleet.sites.size());
  for (size_t h = 0; h < out.hosts.size(); ++h) {
    out.site_hosts[out.hosts[h].site].push_back(h);
  }
  return out;
}

Result<void> checkVms(const Fleet& fleet, const Hosts& hosts) {
  std::set<std::string> vm_names;
  for (const Vm& vm : fleet.vms) {
    if (!vm_names.insert(vm.name).second) {
      return invalid("VM '" + vm.name + "' is named twice");
    }
    if (vm.vcpus == 0 || vm.memory_mib == 0) {
      return invalid("VM '" + vm.name + "' has no vCPUs or no memory");
    }
    if (!vm.site.empty() && hosts.site_of.count(vm.site) == 0) {
      return invalid("VM '" + vm.name + "' runs at site '" + vm.site +
                     "', which is not in the fleet");
    }
    if (!vm.host.empty()) {
      const auto h = hosts.host_of.find(vm.host);
      if (h == hosts.host_of.end() || vm.site.empty() ||
          fleet.sites[hosts.hosts[h->second].site].name != vm.site) {
        return invalid("VM '" + vm.name + "' runs on host '" + vm.host +
                       "', which is not a host of site '" + vm.site + "'");
      }
    }
  }
  return {};
}

long runningHost(const Hosts& hosts, const Vm& vm) {
  if (!vm.host.empty()) {
    return static_cast<long>(hosts.host_of.at(vm.host));
  }
  long pick = -1;
  for (size_t h : hosts.site_hosts[hosts.site_of.at(vm.site)]) {
    if (pick < 0 ||
        (fits(hosts.hosts[h], vm) && !fits(hosts.hosts[static_cast<size_t>(pick)], vm))) {
      pick = static_cast<long>(h);
    }
  }
  return pick;
}

long bestHost(const Hosts& hosts, size_t site, const Vm& vm) {
  long pick = -1;
  bool pick_stays = false;
  double pick_free = 0;
  for (size_t h : hosts.site_hosts[site]) {
    const HostState& st = hosts.hosts[h];
    if (!fits(st, vm)) {
      continue;
    }
    const bool stays = !vm.host.empty() && vm.host == st.host->name;
    const double free = 1.0 - static_cast<double>(st.memory_mib + vm.memory_mib) /
                                  static_cast<double>(st.host->memory_mib);
    if (pick < 0 || (stays && !pick_stays) || (stays == pick_stays && free > pick_free + kEps)) {
      pick = static_cast<long>(h);
      pick_stays = stays;
      pick_free = free;
    }
  }
  return pick;
}

std::string closestShortfall(const Hosts& hosts, size_t site, const Vm& vm) {
  const HostState* closest = nullptr;
  for (size_t h : hosts.site_hosts[site]) {
    const HostState& st = hosts.hosts[h];
    auto free = [](const HostState& x) {
      return static_cast<int64_t>(x.host->memory_mib) - static_cast<int64_t>(x.memory_mib);
    };
    if (closest == nullptr || free(st) > free(*closest)) {
      closest = &st;
    }
  }
  return closest == nullptr ? "no hosts" : shortfall(*closest, vm);
}

const Link* findLink(const Fleet& f, const std::string& a, const std::string& b) {
  for (const auto& l : f.links) {
    if ((l.a == a && l.b == b) || (l.a == b && l.b == a)) {
      return &l;
    }
  }
  return nullptr;
}

}  // namespace vandra::placement::detail
