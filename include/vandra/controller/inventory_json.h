// JSON form of the inventory (the controller API's bodies; docs/controller/openapi.json is the
// contract). Readers used on requests are strict: unknown members are refused by name, sizes
// and counts are bounded, and the error (InvalidArgument) names the JSON path.
#pragma once

#include <nlohmann/json.hpp>

#include "vandra/common/result.h"
#include "vandra/controller/inventory.h"
#include "vandra/controller/store.h"

namespace vandra::controller {

nlohmann::json toJson(const Site& s);
nlohmann::json toJson(const Host& h);
nlohmann::json toJson(const Link& l);
nlohmann::json toJson(const Location& l);
nlohmann::json toJson(const NetworkMapping& m);
nlohmann::json toJson(const Vm& v);
nlohmann::json toJson(const Migration& m);
nlohmann::json toJson(const AuditEntry& e);
nlohmann::json toJson(const ControllerEvent& e);

/// Whole records (the store's documents and the controller's site file).
[[nodiscard]] Result<Site> siteFromJson(const nlohmann::json& j);
[[nodiscard]] Result<Host> hostFromJson(const nlohmann::json& j);
[[nodiscard]] Result<Link> linkFromJson(const nlohmann::json& j);
[[nodiscard]] Result<Location> locationFromJson(const nlohmann::json& j);
[[nodiscard]] Result<NetworkMapping> networkMappingFromJson(const nlohmann::json& j);
[[nodiscard]] Result<Vm> vmFromJson(const nlohmann::json& j);
[[nodiscard]] Result<Migration> migrationFromJson(const nlohmann::json& j);

/// A PATCH of a site's facts onto @p site: any of jurisdictions, vcpu_overcommit, price,
/// water_marks, networks, default_network; nothing else (the name and agents stay).
[[nodiscard]] Result<void> patchSite(Site& site, const nlohmann::json& patch);

/// Names of sites, hosts, VMs, networks and locations: 1..64 of [A-Za-z0-9._-], not
/// starting with '.' or '-' (they appear in URLs and logs). Errors: InvalidArgument naming
/// @p what.
[[nodiscard]] Result<void> checkName(const std::string& name, const char* what);

/// A site's network as its hypervisor names it (a NIC's network in an OVF): 1..64 printable
/// ASCII characters, spaces inside allowed ("VM Network", VMware's default port group), not
/// starting or ending with a space. Errors: InvalidArgument.
[[nodiscard]] Result<void> checkNetworkName(const std::string& name);

}  // namespace vandra::controller
