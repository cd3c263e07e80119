// Internal to src/placement: hosts as the engine sees them (capacity, what runs there,
// anti-affinity groups), shared by the solver, PlacedFleet and the mobility planner so that
// the capacity rules exist once.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/placement/fleet.h"

namespace vandra::placement::detail {

constexpr double kEps = 1e-9;

// Money with two decimals; other quantities as short as they print ("%g").
std::string number(double v, bool money = true);
std::string listOf(const std::vector<std::string>& v);

// One host: what it offers and what is on it.
struct HostState {
  size_t site = 0;  // index in fleet.sites
  const Host* host = nullptr;
  double vcpu_cap = 0;
  double vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;
  std::unordered_map<std::string, int> groups;  // anti-affinity group -> VMs here
};

// Inline: the solver's and placeOne's inner loop.
inline bool fits(const HostState& h, const Vm& vm) {
  if (h.vcpus + vm.vcpus > h.vcpu_cap + kEps || h.memory_mib + vm.memory_mib > h.host->memory_mib ||
      h.disk_gib + vm.disk_gib > h.host->disk_gib) {
    return false;
  }
  const auto& g = vm.sla.anti_affinity_group;
  if (!g) {
    return true;
  }
  const auto it = h.groups.find(*g);
  return it == h.groups.end() || it->second == 0;
}
void add(HostState& h, const Vm& vm, int sign);
// What keeps @p vm off host @p h (capacity or anti-affinity), with the numbers.
std::string shortfall(const HostState& h, const Vm& vm);

// The fleet's sites and hosts, checked and indexed. HostState::host points into the Fleet
// it was built from, which must outlive it.
struct Hosts {
  std::unordered_map<std::string, size_t> site_of;
  std::unordered_map<std::string, size_t> host_of;
  std::vector<HostState> hosts;
  std::vector<std::vector<size_t>> site_hosts;  // per site: indexes into hosts
};

Unexpected invalid(const std::string& what);

/// InvalidArgument for duplicate site or host names, overcommit not above 0, empty hosts.
[[nodiscard]] Result<Hosts> indexHosts(const Fleet& fleet);
/// InvalidArgument for duplicate VM names, zero-sized VMs, unknown sites or hosts.
[[nodiscard]] Result<void> checkVms(const Fleet& fleet, const Hosts& hosts);

/// The host a running VM is on: its named host, else the first host of its site where it
/// fits, else the site's first host; -1 when the site has no hosts.
long runningHost(const Hosts& hosts, const Vm& vm);

/// The best host of @p site for @p vm: it fits, it is @p vm's own host when it can stay,
/// else the one left with the most free memory (the solver's spread). -1 when none fits.
long bestHost(const Hosts& hosts, size_t site, const Vm& vm);

/// Why no host of @p site takes @p vm: the host that comes closest (most memory free) says
/// what it lacks; "no hosts" for an empty site.
std::string closestShortfall(const Hosts& hosts, size_t site, const Vm& vm);

/// The link between two sites (either direction), or nullptr.
const Link* findLink(const Fleet& f, const std::string& a, const std::string& b);

}  // namespace vandra::placement::detail
