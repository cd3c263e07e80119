// One more VM into a placed fleet, without solving the fleet again: PlacedFleet is built once
// from a Fleet (and its Solution, or where the VMs run now) and keeps what each host has
// free, its anti-affinity groups and where each VM is. placeOne() then looks at each site
// once (SLA clauses, the VM's cost there) and at the hosts of the cheapest allowed sites
// only; commit() and remove() update the hosts one VM at a time.
//
//   Vm ──► per site: SLA clause? ──► cheapest allowed sites ──► best host that fits there
//                                                                (the solver's spread)
//      └─► none fits: every site with its clause or the shortfall of its closest host
//
// Same hard constraints and objective as solve()'s greedy pass (solver.h): the cheapest
// site whose clauses allow the VM and that has a host with room; within it, the VM's own
// host when it can stay, else the host left with the most free memory.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/placement/fleet.h"

namespace vandra::placement {

/// Where placeOne would put a VM: a site and host, or (host empty) why not, per site.
struct OnePlacement {
  std::string site;
  std::string host;
  double cost_per_hour = 0;     // at that site's prices
  std::vector<Reason> reasons;  // when not placed: one per site, in the fleet's site order
  bool placed() const { return !host.empty(); }
  bool operator==(const OnePlacement&) const = default;
};

class PlacedFleet {
 public:
  /// The fleet as @p solution places it (solution.placements; unplaced VMs are left out).
  /// InvalidArgument as solve() for a contradictory fleet, or for a placement naming an
  /// unknown VM or a host not at its site.
  [[nodiscard]] static Result<PlacedFleet> build(const Fleet& fleet, const Solution& solution);
  /// The fleet as it runs now: each VM with a site on its host (or, without one, the first
  /// host of its site where it fits); VMs without a site are left out.
  [[nodiscard]] static Result<PlacedFleet> build(const Fleet& fleet);

  PlacedFleet(PlacedFleet&&) noexcept;
  PlacedFleet& operator=(PlacedFleet&&) noexcept;
  ~PlacedFleet();

  /// Where @p vm would go. A VM that names a site runs there now: the live-move clauses
  /// from there apply, and a pinned or on-request one may only stay at its site.
  /// InvalidArgument for a zero-sized VM or one whose name is already in the fleet.
  [[nodiscard]] Result<OnePlacement> placeOne(const Vm& vm) const;
  /// Puts @p vm on @p host. InvalidArgument for an unknown host, a name already in the
  /// fleet, or a host without room (capacity or anti-affinity: the shortfall named).
  [[nodiscard]] Result<void> commit(const Vm& vm, const std::string& host);
  /// Takes VM @p name off its host. NotFound when it is not in the fleet.
  [[nodiscard]] Result<void> remove(const std::string& name);

  size_t vmCount() const;
  /// The host VM @p name is on, "" when it is not in the fleet.
  std::string hostOf(const std::string& name) const;

 private:
  struct State;
  explicit PlacedFleet(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace vandra::placement
