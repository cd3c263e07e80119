// The controller's site file: the sites it manages, each with its facts and the agents (one
// per host) it reaches over mutual TLS, and optionally the first links, locations and network
// mappings. Facts in the database win over the file's on later starts (an operator's PATCH
// stays); agents' addresses and credentials always come from the file.
//
//   {"sites": [{"name": "dc", "jurisdictions": ["EU"], ..., "agents": [{"host": "dc-h1",
//      "endpoint": "10.10.0.1:8443", "netns": "", "ca": "...", "cert": "...", "key": "..."}]}],
//    "links": [...], "locations": [...], "networks": [...]}
#pragma once

#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/controller/service.h"

namespace vandra::controller {

struct ControllerConfig {
  std::vector<SiteConfig> sites;
  std::vector<Link> links;
  std::vector<Location> locations;
  std::vector<NetworkMapping> networks;
};

/// Reads the site file (at most 1 MiB). Errors: NotFound, InvalidArgument naming the JSON path.
[[nodiscard]] Result<ControllerConfig> loadConfig(const std::string& path);
[[nodiscard]] Result<ControllerConfig> configFromJson(const nlohmann::json& j);

/// Puts the file's links, locations and networks in the store where it has none by that name.
[[nodiscard]] Result<void> seedFacts(Store& store, const ControllerConfig& config);

}  // namespace vandra::controller
