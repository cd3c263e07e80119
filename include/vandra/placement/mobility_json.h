// The mobility fields of the fleet file and the plan as JSON (docs/placement/fleet.md,
// "Mobility"). The fields are optional and sit beside the fleet's own: per site
// "water_marks", per VM "home" and "last_moved_at", a top-level "mobility" object. A file
// without them reads as the default policy. Hostile input: bounded, type-checked, errors
// name the path; unknown fields are ignored.
#pragma once

#include <nlohmann/json.hpp>

#include "vandra/common/result.h"
#include "vandra/placement/mobility.h"

namespace vandra::placement {

inline constexpr size_t kMaxInFlight = 100000;

/// The policy in a fleet file (the same JSON fleetFromJson reads).
[[nodiscard]] Result<MobilityPolicy> mobilityPolicyFromJson(const nlohmann::json& fleet);

/// The plan for `vandra mobility plan --json` and the controller: moves with their reasons,
/// held VMs with theirs, and each site's load before and after.
nlohmann::json toJson(const MobilityPlan& plan);

}  // namespace vandra::placement
