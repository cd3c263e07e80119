// The fleet file and the solution as JSON (docs/placement/fleet.md, fleet.schema.json).
// The file is hostile input: sizes bounded, every field type-checked, errors name the path
// ("vms[3].vcpus must be a whole number from 1 to 4096"). Unknown fields are ignored (the
// format grows).
#pragma once

#include <nlohmann/json.hpp>

#include "vandra/common/result.h"
#include "vandra/placement/fleet.h"

namespace vandra::placement {

inline constexpr size_t kMaxSites = 1000;
inline constexpr size_t kMaxHosts = 100000;  // over all sites
inline constexpr size_t kMaxVms = 1000000;
inline constexpr size_t kMaxLocations = 10000;
inline constexpr size_t kMaxLinks = 100000;
inline constexpr size_t kMaxName = 128;

[[nodiscard]] Result<Fleet> fleetFromJson(const nlohmann::json& j);
nlohmann::json toJson(const Solution& s);

}  // namespace vandra::placement
