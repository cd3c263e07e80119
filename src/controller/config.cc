#include "vandra/controller/config.h"

#include <fstream>
#include <sstream>

#include "vandra/controller/inventory_json.h"

namespace vandra::controller {
namespace {

using nlohmann::json;

constexpr size_t kMaxConfigBytes = 1 << 20;

Result<AgentAccess> agentFromJson(const json& j, const std::string& site, size_t index) {
  const std::string path = "sites." + site + ".agents[" + std::to_string(index) + "]";
  if (!j.is_object()) {
    return fail(ErrorCode::InvalidArgument, path + ": must be an object");
  }
  for (const auto& [k, v] : j.items()) {
    if (k != "host" && k != "endpoint" && k != "netns" && k != "ca" && k != "cert" && k != "key") {
      return fail(ErrorCode::InvalidArgument, path + "." + k + ": unknown field");
    }
    if (!v.is_string()) {
      return fail(ErrorCode::InvalidArgument, path + "." + k + ": must be a string");
    }
  }
  AgentAccess a;
  a.site = site;
  a.host = j.value("host", site + "-h" + std::to_string(index + 1));
  VANDRA_TRY(checkName(a.host, "Host"));
  VANDRA_TRY(agent::parseHostPort(j.value("endpoint", ""), a.endpoint));
  a.endpoint.netns = j.value("netns", "");
  a.endpoint.ca = j.value("ca", "");
  a.endpoint.cert = j.value("cert", "");
  a.endpoint.key = j.value("key", "");
  if (a.endpoint.ca.empty() || a.endpoint.cert.empty() || a.endpoint.key.empty()) {
    return fail(ErrorCode::InvalidArgument, path + ": needs ca, cert and key");
  }
  return a;
}

}  // namespace

Result<ControllerConfig> configFromJson(const json& j) {
  if (!j.is_object()) {
    return fail(ErrorCode::InvalidArgument, "The site file must hold one JSON object");
  }
  for (const auto& [k, v] : j.items()) {
    if (k != "sites" && k != "links" && k != "locations" && k != "networks") {
      return fail(ErrorCode::InvalidArgument, k + ": unknown field");
    }
    if (!v.is_array()) {
      return fail(ErrorCode::InvalidArgument, k + ": must be an array");
    }
  }
  ControllerConfig c;
  for (const auto& s : j.value("sites", json::array())) {
    if (!s.is_object()) {
      return fail(ErrorCode::InvalidArgument, "sites[]: must be objects");
    }
    json facts = s;
    facts.erase("agents");
    VANDRA_TRY_ASSIGN(auto site, siteFromJson(facts));
    SiteConfig sc{site, {}};
    const json agents = s.value("agents", json::array());
    if (!agents.is_array()) {
      return fail(ErrorCode::InvalidArgument, "sites." + site.name + ".agents: must be an array");
    }
    for (size_t i = 0; i < agents.size(); ++i) {
      VANDRA_TRY_ASSIGN(auto a, agentFromJson(agents[i], site.name, i));
      sc.agents.push_back(std::move(a));
    }
    for (const auto& other : c.sites) {
      if (other.site.name == site.name) {
        return fail(ErrorCode::InvalidArgument, "Site '" + site.name + "' is listed twice");
      }
    }
    c.sites.push_back(std::move(sc));
  }
  for (const auto& l : j.value("links", json::array())) {
    VANDRA_TRY_ASSIGN(auto link, linkFromJson(l));
    c.links.push_back(std::move(link));
  }
  for (const auto& l : j.value("locations", json::array())) {
    VANDRA_TRY_ASSIGN(auto loc, locationFromJson(l));
    c.locations.push_back(std::move(loc));
  }
  for (const auto& n : j.value("networks", json::array())) {
    VANDRA_TRY_ASSIGN(auto m, networkMappingFromJson(n));
    c.networks.push_back(std::move(m));
  }
  return c;
}

Result<ControllerConfig> loadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(ErrorCode::NotFound, "Cannot read the site file '" + path + "'");
  }
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxConfigBytes) {
    return fail(ErrorCode::LimitExceeded, "The site file '" + path + "' is larger than 1 MiB");
  }
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::InvalidArgument, "The site file '" + path + "' is not JSON");
  }
  auto c = configFromJson(j);
  if (!c) {
    Error e = c.error();
    e.message = path + ": " + e.message;
    return fail(std::move(e));
  }
  return c;
}

Result<void> seedFacts(Store& store, const ControllerConfig& config) {
  VANDRA_TRY_ASSIGN(auto links, store.links());
  for (const auto& l : config.links) {
    const bool known = std::any_of(links.begin(), links.end(), [&](const Link& k) {
      return (k.a == l.a && k.b == l.b) || (k.a == l.b && k.b == l.a);
    });
    if (!known) {
      VANDRA_TRY(store.putLink(l));
    }
  }
  VANDRA_TRY_ASSIGN(auto locations, store.locations());
  for (const auto& l : config.locations) {
    if (std::none_of(locations.begin(), locations.end(),
                     [&](const Location& k) { return k.name == l.name; })) {
      VANDRA_TRY(store.putLocation(l));
    }
  }
  VANDRA_TRY_ASSIGN(auto networks, store.networkMappings());
  for (const auto& n : config.networks) {
    if (std::none_of(networks.begin(), networks.end(),
                     [&](const NetworkMapping& k) { return k.name == n.name; })) {
      VANDRA_TRY(store.putNetworkMapping(n));
    }
  }
  return {};
}

}  // namespace vandra::controller
