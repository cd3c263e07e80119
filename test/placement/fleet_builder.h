// Test-only: small fleets written as code, and an independent check of a solution's hard
// constraints (written apart from the solver: it must not share its mistakes).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "vandra/placement/fleet.h"

namespace vandra::placement::testing {

inline Site site(std::string name, std::vector<std::string> jurisdictions, double vcpu_hour,
                 std::vector<Host> hosts, double overcommit = 1.0) {
  Site s;
  s.name = std::move(name);
  s.jurisdictions = std::move(jurisdictions);
  s.price.vcpu_hour = vcpu_hour;
  s.price.memory_gib_hour = 0;
  s.vcpu_overcommit = overcommit;
  s.hosts = std::move(hosts);
  return s;
}

inline Host host(std::string name, uint32_t vcpus, uint64_t memory_mib, uint64_t disk_gib = 100) {
  return {std::move(name), vcpus, memory_mib, disk_gib};
}

inline Vm vm(std::string name, uint32_t vcpus, uint64_t memory_mib,
             ovf::Mobility mobility = ovf::Mobility::Automatic) {
  Vm v;
  v.name = std::move(name);
  v.vcpus = vcpus;
  v.memory_mib = memory_mib;
  v.disk_gib = 1;
  v.sla.mobility = mobility;
  return v;
}

/// Every violated hard constraint of @p s for @p f, one line each ("" when none).
inline std::vector<std::string> violations(const Fleet& f, const Solution& s) {
  std::vector<std::string> out;
  std::map<std::string, const Site*> sites;
  std::map<std::string, std::pair<const Site*, const Host*>> hosts;
  for (const auto& st : f.sites) {
    sites[st.name] = &st;
    for (const auto& h : st.hosts) {
      hosts[h.name] = {&st, &h};
    }
  }
  std::map<std::string, const Vm*> vms;
  for (const auto& v : f.vms) {
    vms[v.name] = &v;
  }
  struct Load {
    double vcpus = 0;
    uint64_t memory = 0;
    uint64_t disk = 0;
    std::multiset<std::string> groups;
  };
  std::map<std::string, Load> load;
  std::set<std::string> seen;
  for (const auto& p : s.placements) {
    if (!seen.insert(p.vm).second) {
      out.push_back(p.vm + " placed twice");
    }
    const Vm& v = *vms.at(p.vm);
    const auto [st, h] = hosts.at(p.host);
    if (st->name != p.site) {
      out.push_back(p.vm + ": host " + p.host + " is not at " + p.site);
    }
    Load& l = load[p.host];
    l.vcpus += v.vcpus;
    l.memory += v.memory_mib;
    l.disk += v.disk_gib;
    if (v.sla.anti_affinity_group) {
      l.groups.insert(*v.sla.anti_affinity_group);
    }
    const bool fixed = !v.site.empty() && v.sla.mobility != ovf::Mobility::Automatic;
    if (fixed && (p.site != v.site || (!v.host.empty() && p.host != v.host))) {
      out.push_back(p.vm + " is " + std::string(ovf::toString(v.sla.mobility)) + " but was moved");
    }
    if (fixed) {
      continue;  // it runs where it runs
    }
    if (!v.sla.jurisdictions.empty()) {
      bool ok = false;
      for (const auto& j : st->jurisdictions) {
        for (const auto& want : v.sla.jurisdictions) {
          ok = ok || j == want;
        }
      }
      if (!ok) {
        out.push_back(p.vm + ": jurisdiction of " + p.site);
      }
    }
    if (v.sla.max_cost_per_hour &&
        static_cast<double>(v.vcpus) * st->price.vcpu_hour +
                static_cast<double>(v.memory_mib) / 1024.0 * st->price.memory_gib_hour >
            *v.sla.max_cost_per_hour + 1e-9) {
      out.push_back(p.vm + ": cost at " + p.site);
    }
    if (v.sla.max_rtt) {
      bool ok = false;
      for (const auto& loc : f.locations) {
        if (loc.name == v.sla.max_rtt->location) {
          auto it = loc.rtt_ms.find(p.site);
          ok = it != loc.rtt_ms.end() && it->second <= v.sla.max_rtt->ms;
        }
      }
      if (!ok) {
        out.push_back(p.vm + ": max_rtt at " + p.site);
      }
    }
  }
  for (const auto& [name, l] : load) {
    const auto [st, h] = hosts.at(name);
    if (l.vcpus > h->vcpus * st->vcpu_overcommit + 1e-9 || l.memory > h->memory_mib ||
        l.disk > h->disk_gib) {
      out.push_back(name + " over capacity");
    }
    for (const auto& g : l.groups) {
      if (l.groups.count(g) > 1) {
        out.push_back(name + " holds group " + g + " twice");
        break;
      }
    }
  }
  for (const auto& v : f.vms) {
    const bool placed = seen.count(v.name) != 0;
    const bool unplaced = std::any_of(s.unplaced.begin(), s.unplaced.end(),
                                      [&](const Unplaced& u) { return u.vm == v.name; });
    if (placed == unplaced) {
      out.push_back(v.name +
                    (placed ? " both placed and unplaced" : " neither placed nor unplaced"));
    }
  }
  return out;
}

}  // namespace vandra::placement::testing
