// The placement engine: pure (no sockets, files or clocks) and deterministic.
//
//   fleet ──► check names and references ──► per VM: sites its SLA allows (clauses)
//        ──► fixed VMs (pinned or on-request with a site) stay where they run
//        ──► the others: exhaustive branch and bound when the search is small, else one
//            greedy pass, most constrained VM first
//        ──► placements, unplaced with reasons, moves, cost
//
// Hard constraints, never traded for cost: host capacity (vCPUs x the site's overcommit;
// memory and disk never overcommitted), jurisdictions, max_rtt from the named location,
// anti-affinity (one group, one VM per host), max_cost_per_hour (and its currency), mobility
// (pinned never moves, on-request only by an operator: solve keeps both where they run), and
// for a live move the link: it must exist, carry more than the VM dirties, and leave room in
// the downtime budget for the switchover's round trips. Objective, in this order: as many VMs
// placed as possible, lowest total cost, fewest moves, spread over hosts.
#pragma once

#include <cstddef>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/placement/fleet.h"

namespace vandra::placement {

struct SolveOptions {
  /// Exhaustive search when the product of each movable VM's choices (hosts + unplaced) is
  /// at most this; the greedy pass otherwise.
  double exact_limit = 2e5;
};

/// InvalidArgument (naming the item) for a fleet that contradicts itself: duplicate names, a
/// VM on an unknown site or host, a host of another site, zero-sized VMs or hosts.
[[nodiscard]] Result<Solution> solve(const Fleet& fleet, const SolveOptions& options = {});

/// The clauses of @p vm's SLA that rule out @p site, whatever the capacity ("" when none):
/// jurisdiction, max_rtt, cost ceiling and currency, and for a VM running elsewhere the
/// live move over the link.
std::string slaClause(const Fleet& fleet, const Vm& vm, const Site& site);

}  // namespace vandra::placement
