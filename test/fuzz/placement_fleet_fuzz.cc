// libFuzzer target: arbitrary bytes as a fleet file (JSON) -> fleetFromJson -> solve, and
// mobilityPolicyFromJson -> planMobility and planDrain of the first site. A fleet that reads
// must solve or be refused as invalid, and a solution accounts for every VM once (placed or
// unplaced, never both). A plan moves each VM at most once, from where it runs to another
// site of the fleet, never a pinned VM, and never both moves and holds one. Small fleets only
// reach the engine, so that a run stays quick. Must not touch the file system or the network.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "vandra/placement/fleet_json.h"
#include "vandra/placement/mobility_json.h"
#include "vandra/placement/solver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vandra::placement;
  if (size > (64U << 10)) {
    return 0;
  }
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return 0;
  }
  auto fleet = fleetFromJson(j);
  if (!fleet) {
    return 0;
  }
  size_t hosts = 0;
  for (const auto& s : fleet->sites) {
    hosts += s.hosts.size();
  }
  if (fleet->vms.size() > 40 || hosts > 20) {
    return 0;
  }
  SolveOptions o;
  o.exact_limit = 2000;  // keep each input fast; larger searches take the greedy pass
  auto s = solve(*fleet, o);
  if (!s) {
    return 0;
  }
  std::set<std::string> seen;
  for (const auto& p : s->placements) {
    if (!seen.insert(p.vm).second) {
      std::abort();
    }
  }
  for (const auto& u : s->unplaced) {
    if (!seen.insert(u.vm).second || u.reasons.size() != fleet->sites.size()) {
      std::abort();
    }
  }
  if (seen.size() != fleet->vms.size()) {
    std::abort();
  }
  (void)toJson(*s).dump();

  auto policy = mobilityPolicyFromJson(j);
  if (!policy) {
    return 0;
  }
  std::set<std::string> sites;
  for (const auto& site : fleet->sites) {
    sites.insert(site.name);
  }
  auto check = [&](const MobilityPlan& plan, bool drain) {
    std::set<std::string> moved;
    for (const auto& m : plan.moves) {
      const auto vm = std::find_if(fleet->vms.begin(), fleet->vms.end(),
                                   [&](const Vm& v) { return v.name == m.vm; });
      if (vm == fleet->vms.end() || !moved.insert(m.vm).second || sites.count(m.to) == 0 ||
          m.from != vm->site || m.to == m.from ||
          vm->sla.mobility == vandra::ovf::Mobility::Pinned ||
          (!drain && vm->sla.mobility != vandra::ovf::Mobility::Automatic)) {
        std::abort();
      }
    }
    for (const auto& h : plan.held) {
      if (moved.count(h.vm) != 0) {
        std::abort();
      }
    }
    if (plan.before.size() != fleet->sites.size() || plan.after.size() != fleet->sites.size()) {
      std::abort();
    }
    (void)toJson(plan).dump();
  };
  if (auto plan = planMobility(*fleet, *policy)) {
    check(*plan, false);
  }
  if (!fleet->sites.empty()) {
    if (auto plan = planDrain(*fleet, fleet->sites[0].name, *policy)) {
      check(*plan, true);
    }
  }
  return 0;
}
