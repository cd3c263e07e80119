// libFuzzer target: arbitrary bytes as the JSON the controller reads from outside: request
// bodies (a site, a PATCH of one, a link, a location, a network mapping, an import), the site
// file, and the agents' answers (host, VM, migration record); and as the text a browser sends
// (its Cookie header) and a stored password hash. Each reader must refuse or succeed;
// what it accepts must survive its own JSON form unchanged (a site, a link, a location, a mapping),
// and a PATCH that is refused must leave the site as it was. Must not touch files or network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "vandra/controller/agent_link.h"
#include "vandra/controller/config.h"
#include "vandra/controller/console_auth.h"
#include "vandra/controller/http_api.h"
#include "vandra/controller/inventory_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vandra::controller;
  if (size > (64U << 10)) {
    return 0;
  }
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Text from outside that is not JSON: a browser's Cookie header, a stored password hash.
  if (cookieValue(std::string(text), "vandra_session").size() > 256) {
    std::abort();  // a session token longer than any we make is never looked up
  }
  if (auto h = parsePasswordHash(std::string(text))) {
    if (128 * h->r * h->n > (64u << 20) || h->hash.empty()) {
      std::abort();  // a cost that would make a sign-in hold more memory than allowed
    }
  }
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return 0;
  }
  if (auto s = siteFromJson(j)) {
    auto again = siteFromJson(toJson(*s));
    if (!again || !(*again == *s)) {
      std::abort();
    }
  }
  Site site;
  site.name = "dc";
  site.networks = {"lan"};
  const Site before = site;
  if (!patchSite(site, j) && !(site == before)) {
    std::abort();  // a refused PATCH changed the site
  }
  if (auto l = linkFromJson(j)) {
    auto again = linkFromJson(toJson(*l));
    if (!again || again->a != l->a || again->b != l->b || again->rtt_ms != l->rtt_ms) {
      std::abort();
    }
  }
  if (auto l = locationFromJson(j)) {
    auto again = locationFromJson(toJson(*l));
    if (!again || again->rtt_ms != l->rtt_ms) {
      std::abort();
    }
  }
  if (auto m = networkMappingFromJson(j)) {
    auto again = networkMappingFromJson(toJson(*m));
    if (!again || again->members != m->members) {
      std::abort();
    }
  }
  (void)configFromJson(j);
  if (auto r = importRequestFromJson(std::string(text))) {
    // What it accepts is what the service may act on: a VM name, an upload's name.
    if (!checkName(r->id, "VM") || !vandra::agent::validUploadName(r->package) ||
        r->network_map.size() > 64) {
      std::abort();
    }
  }
  (void)agentCapacityFromJson(j);
  (void)agentVmFromJson(j);
  (void)agentMigrationFromJson(j);
  (void)vmFromJson(j);
  (void)migrationFromJson(j);
  return 0;
}
