#include "vandra/placement/fleet_json.h"

#include <cmath>

#include "json_fields.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::placement {
namespace {

using detail::bad;
using detail::Fields;
using nlohmann::json;

constexpr double kMaxPrice = 1e6;
constexpr double kMaxMs = 1e6;

}  // namespace

Result<Fleet> fleetFromJson(const json& j) {
  Fields top(j, "fleet");
  VANDRA_TRY(top.object());
  Fleet f;
  size_t host_total = 0;
  VANDRA_TRY(
      top.list("sites", kMaxSites, [&](const json& e, const std::string& path) -> Result<void> {
        Fields r(e, path);
        VANDRA_TRY(r.object());
        Site s;
        VANDRA_TRY(r.name("name", s.name, true));
        VANDRA_TRY(r.names("jurisdictions", s.jurisdictions));
        VANDRA_TRY(r.real("vcpu_overcommit", s.vcpu_overcommit, 0.01, 1000, false));
        if (const json* p = r.find("price")) {
          Fields pr(*p, r.at("price"));
          VANDRA_TRY(pr.object());
          VANDRA_TRY(pr.name("currency", s.price.currency, false));
          VANDRA_TRY(pr.real("vcpu_hour", s.price.vcpu_hour, 0, kMaxPrice, false));
          VANDRA_TRY(pr.real("memory_gib_hour", s.price.memory_gib_hour, 0, kMaxPrice, false));
        }
        VANDRA_TRY(
            r.list("hosts", kMaxHosts, [&](const json& he, const std::string& hp) -> Result<void> {
              if (++host_total > kMaxHosts) {
                return bad(hp, "is one host too many (at most " + std::to_string(kMaxHosts) + ")");
              }
              Fields h(he, hp);
              VANDRA_TRY(h.object());
              Host host;
              VANDRA_TRY(h.name("name", host.name, true));
              VANDRA_TRY(h.whole("vcpus", host.vcpus, 1, 1u << 20, true));
              VANDRA_TRY(h.whole("memory_mib", host.memory_mib, 1, 1ULL << 40, true));
              VANDRA_TRY(h.whole("disk_gib", host.disk_gib, 0, 1ULL << 40, false));
              s.hosts.push_back(std::move(host));
              return {};
            }));
        f.sites.push_back(std::move(s));
        return {};
      }));
  VANDRA_TRY(top.list(
      "locations", kMaxLocations, [&](const json& e, const std::string& path) -> Result<void> {
        Fields r(e, path);
        VANDRA_TRY(r.object());
        Location l;
        VANDRA_TRY(r.name("name", l.name, true));
        if (const json* rtt = r.find("rtt_ms")) {
          if (!rtt->is_object() || rtt->size() > kMaxSites) {
            return bad(r.at("rtt_ms"), "must be an object of site: milliseconds");
          }
          for (const auto& [site, ms] : rtt->items()) {
            if (site.empty() || site.size() > kMaxName || !ms.is_number() ||
                !std::isfinite(ms.get<double>()) || ms.get<double>() < 0 ||
                ms.get<double>() > kMaxMs) {
              return bad(r.at("rtt_ms"), "must map site names to milliseconds from 0 to 1000000");
            }
            l.rtt_ms[site] = ms.get<double>();
          }
        }
        f.locations.push_back(std::move(l));
        return {};
      }));
  VANDRA_TRY(
      top.list("links", kMaxLinks, [&](const json& e, const std::string& path) -> Result<void> {
        Fields r(e, path);
        VANDRA_TRY(r.object());
        Link l;
        VANDRA_TRY(r.name("a", l.a, true));
        VANDRA_TRY(r.name("b", l.b, true));
        VANDRA_TRY(r.real("rtt_ms", l.rtt_ms, 0, kMaxMs, true));
        VANDRA_TRY(r.real("mbps", l.mbps, 0, 1e7, true));
        f.links.push_back(std::move(l));
        return {};
      }));
  VANDRA_TRY(top.list("vms", kMaxVms, [&](const json& e, const std::string& path) -> Result<void> {
    Fields r(e, path);
    VANDRA_TRY(r.object());
    Vm vm;
    VANDRA_TRY(r.name("name", vm.name, true));
    VANDRA_TRY(r.whole("vcpus", vm.vcpus, 1, 4096, true));
    VANDRA_TRY(r.whole("memory_mib", vm.memory_mib, 1, 1ULL << 32, true));
    VANDRA_TRY(r.whole("disk_gib", vm.disk_gib, 0, 1ULL << 32, false));
    VANDRA_TRY(r.name("site", vm.site, false));
    VANDRA_TRY(r.name("host", vm.host, false));
    if (const json* d = r.find("dirty_rate_mbps")) {
      double rate = 0;
      VANDRA_TRY(r.real("dirty_rate_mbps", rate, 0, 1e7, true));
      vm.dirty_rate_mbps = rate;
      (void)d;
    }
    if (const json* s = r.find("sla")) {
      auto sla = ovf::slaFromJson(*s);
      if (!sla) {
        return bad(r.at("sla"), "is not a valid SLA: " + sla.error().message);
      }
      vm.sla = std::move(*sla);
    }
    f.vms.push_back(std::move(vm));
    return {};
  }));
  return f;
}

json toJson(const Solution& s) {
  json placements = json::array();
  for (const auto& p : s.placements) {
    placements.push_back({{"vm", p.vm}, {"site", p.site}, {"host", p.host}});
  }
  json unplaced = json::array();
  for (const auto& u : s.unplaced) {
    json reasons = json::array();
    for (const auto& r : u.reasons) {
      reasons.push_back({{"site", r.site}, {"clause", r.clause}});
    }
    unplaced.push_back({{"vm", u.vm}, {"reasons", std::move(reasons)}});
  }
  json moves = json::array();
  for (const auto& m : s.moves) {
    moves.push_back({{"vm", m.vm},
                     {"from", m.from},
                     {"to", m.to},
                     {"from_host", m.from_host},
                     {"to_host", m.to_host}});
  }
  // Cents of a cent: the sum of doubles is not exact, and the output must be stable.
  const double cost = std::round(s.cost_per_hour * 1e6) / 1e6;
  return {{"placements", std::move(placements)},
          {"unplaced", std::move(unplaced)},
          {"moves", std::move(moves)},
          {"cost_per_hour", cost},
          {"exact", s.exact}};
}

}  // namespace vandra::placement
