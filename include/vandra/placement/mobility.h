// The mobility planner: workloads that wander. Pure (no clocks, files or sockets: the time
// is a value) and deterministic. It reads a fleet as it runs and a policy (water marks per
// site, each VM's home and last move, moves in flight) and says which VMs should move now,
// where, and why; and which would have moved but may not, and why not.
//
//   a site's load (memory and vCPUs, each a share of capacity; vCPUs with the overcommit)
//
//   100% ┬──────────────────────────────────────────────────────────────────────────────
//        │ over high (either resource): automatic VMs leave, as few as get it under,
//        │ each to the cheapest site its SLA allows with room, that stays at or under
//        │ its own high mark after the move
//   high ┼ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─
//        │ hysteresis band: nobody leaves, nobody comes home
//   low  ┼ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─
//        │ under low (both resources): the VMs whose home it is come home, while it
//        │ stays at or under its high mark
//     0% ┴──────────────────────────────────────────────────────────────────────────────
//
//   every move: automatic VMs only (pinned never; on-request only by an operator, as in a
//   drain), not before min_stay_s since its last move, at most max_moves_per_link moves on a
//   link at once (those in flight count), each VM at most once per plan.
//
// Destinations pass the solver's hard constraints (slaClause: jurisdictions, max_rtt, cost
// ceiling, the live move over the link and the downtime budget; a host with room, with the
// overcommit; anti-affinity). Loads count moves in flight as arrived.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/placement/fleet.h"

namespace vandra::placement {

/// Shares of a site's capacity: over `high` VMs leave, under `low` they come home.
struct WaterMarks {
  double high = 0.85;
  double low = 0.60;
  bool operator==(const WaterMarks&) const = default;
};

struct SiteMarks {
  WaterMarks memory;
  WaterMarks vcpu;  // of the vCPUs the hosts offer with the site's overcommit
  bool operator==(const SiteMarks&) const = default;
};

/// A VM's home and when it last arrived where it runs (placed or moved), in seconds.
struct VmHistory {
  std::string home;                      // "" = where it runs now
  std::optional<int64_t> last_moved_at;  // none = long ago (no minimum stay to wait for)
  bool operator==(const VmHistory&) const = default;
};

/// A move already under way (the fleet still shows the VM at `from`).
struct InFlight {
  std::string vm;
  std::string from;
  std::string to;
  bool operator==(const InFlight&) const = default;
};

struct MobilityPolicy {
  std::map<std::string, SiteMarks> marks;    // per site; a site not named has the defaults
  std::map<std::string, VmHistory> history;  // per VM name
  int64_t now = 0;                           // seconds, same clock as last_moved_at
  int64_t min_stay_s = 1800;
  uint32_t max_moves_per_link = 2;  // moves at once on one link, in flight included
  uint32_t max_moves = 0;           // per plan; 0 = no cap
  std::vector<InFlight> in_flight;
  bool operator==(const MobilityPolicy&) const = default;
};

enum class MoveReason : uint8_t { OverHighWater, ComingHome, Drain };
std::string_view toString(MoveReason r);  // "over-high-water", "coming-home", "drain"

struct PlannedMove {
  std::string vm;
  std::string from;
  std::string from_host;
  std::string to;
  std::string to_host;
  MoveReason reason = MoveReason::OverHighWater;
  std::string why;  // "dc above its high water mark: memory 91% > 85%"
  double cost_per_hour_before = 0;
  double cost_per_hour_after = 0;
  bool operator==(const PlannedMove&) const = default;
};

enum class HoldReason : uint8_t { MinStay, LinkBudget, NoDestination, PlanCap, Pinned };
std::string_view toString(HoldReason r);  // "min-stay", "link-budget", "no-destination", ...

/// A VM that would have moved but does not. Leaving an over-full site, a VM held for want of
/// a destination or a link counts as gone when deciding whether more must go (the list names
/// the VMs that would have been needed); one held for its minimum stay does not (another
/// goes instead).
struct HeldVm {
  std::string vm;
  std::string site;  // where it runs
  MoveReason wanted = MoveReason::OverHighWater;
  HoldReason reason = HoldReason::NoDestination;
  std::string why;              // "moved 120 s ago, minimum stay 600 s"
  std::vector<Reason> reasons;  // no-destination, link-budget: each site looked at, its clause
  bool operator==(const HeldVm&) const = default;
};

struct SiteLoad {
  std::string site;
  double memory_mib = 0;  // used
  double memory_capacity_mib = 0;
  double vcpus = 0;            // used
  double vcpu_capacity = 0;    // with the overcommit
  double memoryShare() const;  // 0 for a site without hosts
  double vcpuShare() const;
  bool operator==(const SiteLoad&) const = default;
};

struct MobilityPlan {
  std::vector<PlannedMove> moves;  // in the order decided
  std::vector<HeldVm> held;
  std::vector<SiteLoad> before;  // per site, in the fleet's order
  std::vector<SiteLoad> after;   // with every move applied
  bool operator==(const MobilityPlan&) const = default;
};

/// What the planner would do now: VMs leave sites over their high mark, VMs come home to
/// sites under their low mark. InvalidArgument (naming it) for a contradictory fleet (as
/// solve()), water marks out of order (0 <= low < high <= 1) or naming an unknown site, a
/// home that is not a site, history of an unknown VM, a move in flight between unknown sites.
[[nodiscard]] Result<MobilityPlan> planMobility(const Fleet& fleet, const MobilityPolicy& policy);

/// Empties @p site (an operator asked): every VM there that may leave (automatic and
/// on-request) moves, largest first, each to the cheapest site its hard constraints allow,
/// among equals the one with the most room left: preferring sites that stay at or under
/// their high mark, else any with room. Pinned VMs are held ("mobility pinned"), and so is a
/// VM that fits nowhere, with each other site's clause. A drain ignores min_stay_s and max_moves
/// (the operator asked) and lists every move even beyond max_moves_per_link: whoever runs it keeps
/// to that bound per link. NotFound for an unknown site; otherwise the errors of planMobility.
[[nodiscard]] Result<MobilityPlan> planDrain(const Fleet& fleet, const std::string& site,
                                             const MobilityPolicy& policy);

}  // namespace vandra::placement
