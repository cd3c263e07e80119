#include "vandra/placement/mobility_json.h"

#include <limits>

#include "json_fields.h"

namespace vandra::placement {
namespace {

using detail::bad;
using detail::Fields;
using nlohmann::json;

constexpr uint64_t kMaxSeconds = uint64_t{1} << 62;  // fits int64_t with room to subtract

Result<void> readMarks(const Fields& f, const char* key, WaterMarks& out) {
  if (const json* m = f.find(key)) {
    Fields w(*m, f.at(key));
    VANDRA_TRY(w.object());
    VANDRA_TRY(w.real("high", out.high, 0, 1, false));
    VANDRA_TRY(w.real("low", out.low, 0, 1, false));
    if (!(out.low < out.high)) {
      return bad(f.at(key), "must have low below high");
    }
  }
  return {};
}

// "water_marks": {"high": 0.85, "low": 0.6} for both resources, then optionally
// "memory": {...} and "vcpu": {...} for each on its own.
Result<void> readSiteMarks(const json& j, const std::string& path, SiteMarks& out) {
  Fields f(j, path);
  VANDRA_TRY(f.object());
  WaterMarks both;
  VANDRA_TRY(f.real("high", both.high, 0, 1, false));
  VANDRA_TRY(f.real("low", both.low, 0, 1, false));
  if (!(both.low < both.high)) {
    return bad(path, "must have low below high");
  }
  out.memory = both;
  out.vcpu = both;
  VANDRA_TRY(readMarks(f, "memory", out.memory));
  VANDRA_TRY(readMarks(f, "vcpu", out.vcpu));
  return {};
}

json loadJson(const SiteLoad& l) {
  auto share = [](double x) { return std::round(x * 1e4) / 1e4; };
  return {{"memory", share(l.memoryShare())},
          {"vcpu", share(l.vcpuShare())},
          {"memory_mib", l.memory_mib},
          {"memory_capacity_mib", l.memory_capacity_mib},
          {"vcpus", l.vcpus},
          {"vcpu_capacity", l.vcpu_capacity}};
}

json reasonsJson(const std::vector<Reason>& reasons) {
  json out = json::array();
  for (const auto& r : reasons) {
    out.push_back({{"site", r.site}, {"clause", r.clause}});
  }
  return out;
}

}  // namespace

Result<MobilityPolicy> mobilityPolicyFromJson(const json& j) {
  Fields top(j, "fleet");
  VANDRA_TRY(top.object());
  MobilityPolicy p;
  VANDRA_TRY(
      top.list("sites", kMaxSites, [&](const json& e, const std::string& path) -> Result<void> {
        Fields s(e, path);
        VANDRA_TRY(s.object());
        if (const json* m = s.find("water_marks")) {
          std::string name;
          VANDRA_TRY(s.name("name", name, true));
          SiteMarks marks;
          VANDRA_TRY(readSiteMarks(*m, s.at("water_marks"), marks));
          p.marks[name] = marks;
        }
        return {};
      }));
  VANDRA_TRY(top.list("vms", kMaxVms, [&](const json& e, const std::string& path) -> Result<void> {
    Fields v(e, path);
    VANDRA_TRY(v.object());
    VmHistory h;
    VANDRA_TRY(v.name("home", h.home, false));
    if (v.find("last_moved_at") != nullptr) {
      int64_t at = 0;
      VANDRA_TRY(v.whole("last_moved_at", at, 0, kMaxSeconds, true));
      h.last_moved_at = at;
    }
    if (!h.home.empty() || h.last_moved_at) {
      std::string name;
      VANDRA_TRY(v.name("name", name, true));
      p.history[name] = std::move(h);
    }
    return {};
  }));
  if (const json* m = top.find("mobility")) {
    Fields f(*m, top.at("mobility"));
    VANDRA_TRY(f.object());
    VANDRA_TRY(f.whole("now", p.now, 0, kMaxSeconds, false));
    VANDRA_TRY(f.whole("min_stay_s", p.min_stay_s, 0, kMaxSeconds, false));
    VANDRA_TRY(f.whole("max_moves_per_link", p.max_moves_per_link, 1, 100000, false));
    VANDRA_TRY(f.whole("max_moves", p.max_moves, 0, kMaxVms, false));
    VANDRA_TRY(f.list("in_flight", kMaxInFlight,
                      [&](const json& e, const std::string& path) -> Result<void> {
                        Fields r(e, path);
                        VANDRA_TRY(r.object());
                        InFlight x;
                        VANDRA_TRY(r.name("vm", x.vm, true));
                        VANDRA_TRY(r.name("from", x.from, true));
                        VANDRA_TRY(r.name("to", x.to, true));
                        p.in_flight.push_back(std::move(x));
                        return {};
                      }));
  }
  return p;
}

json toJson(const MobilityPlan& plan) {
  auto money = [](double x) { return std::round(x * 1e6) / 1e6; };
  json moves = json::array();
  for (const auto& m : plan.moves) {
    moves.push_back({{"vm", m.vm},
                     {"from", m.from},
                     {"from_host", m.from_host},
                     {"to", m.to},
                     {"to_host", m.to_host},
                     {"reason", std::string(toString(m.reason))},
                     {"why", m.why},
                     {"cost_per_hour_before", money(m.cost_per_hour_before)},
                     {"cost_per_hour_after", money(m.cost_per_hour_after)}});
  }
  json held = json::array();
  for (const auto& h : plan.held) {
    held.push_back({{"vm", h.vm},
                    {"site", h.site},
                    {"wanted", std::string(toString(h.wanted))},
                    {"reason", std::string(toString(h.reason))},
                    {"why", h.why},
                    {"reasons", reasonsJson(h.reasons)}});
  }
  json sites = json::array();
  for (size_t i = 0; i < plan.before.size() && i < plan.after.size(); ++i) {
    sites.push_back({{"site", plan.before[i].site},
                     {"before", loadJson(plan.before[i])},
                     {"after", loadJson(plan.after[i])}});
  }
  return {{"moves", std::move(moves)}, {"held", std::move(held)}, {"sites", std::move(sites)}};
}

}  // namespace vandra::placement
