// The fleet file: the issue's example reads and solves; hostile files are refused naming the
// path of what is wrong.
#include "vandra/placement/fleet_json.h"

#include <gtest/gtest.h>

#include <functional>

#include "vandra/placement/solver.h"

namespace vandra::placement {
namespace {

using nlohmann::json;

const char* const kExample = R"({
  "sites": [{"name": "dc", "jurisdictions": ["EU", "SE"], "vcpu_overcommit": 4.0,
             "price": {"currency": "EUR", "vcpu_hour": 0.03, "memory_gib_hour": 0.004},
             "hosts": [{"name": "dc-h1", "vcpus": 16, "memory_mib": 65536, "disk_gib": 500}]}],
  "locations": [{"name": "stockholm-office", "rtt_ms": {"dc": 4}}],
  "links": [{"a": "dc", "b": "cloud-eu", "rtt_ms": 50, "mbps": 1000}],
  "vms": [{"name": "web1", "vcpus": 2, "memory_mib": 4096, "disk_gib": 20,
           "site": "dc", "host": "dc-h1",
           "sla": {"jurisdictions": ["EU"], "max_rtt": {"location": "stockholm-office", "ms": 30},
                   "anti_affinity_group": "web", "max_cost_per_hour": 0.5, "mobility": "automatic"}}]
})";

TEST(FleetJson, TheIssuesExampleReadsAndSolves) {
  auto f = fleetFromJson(json::parse(kExample));
  ASSERT_TRUE(f) << f.error().describe();
  ASSERT_EQ(f->sites.size(), 1u);
  EXPECT_DOUBLE_EQ(f->sites[0].vcpu_overcommit, 4.0);
  EXPECT_EQ(f->sites[0].hosts[0].memory_mib, 65536u);
  ASSERT_EQ(f->vms.size(), 1u);
  EXPECT_EQ(f->vms[0].sla.mobility, ovf::Mobility::Automatic);
  EXPECT_EQ(f->vms[0].sla.max_rtt->ms, 30u);
  auto s = solve(*f);
  ASSERT_TRUE(s) << s.error().describe();
  const json out = toJson(*s);
  EXPECT_EQ(out["placements"], json::parse(R"([{"vm": "web1", "site": "dc", "host": "dc-h1"}])"));
  EXPECT_EQ(out["unplaced"], json::array());
  EXPECT_EQ(out["moves"], json::array());
  EXPECT_DOUBLE_EQ(out["cost_per_hour"].get<double>(), 2 * 0.03 + 4 * 0.004);
}

TEST(FleetJson, UnknownFieldsAreIgnoredForTheFormatToGrow) {
  json j = json::parse(kExample);
  j["owner"] = "ops";
  j["sites"][0]["region"] = "north";
  EXPECT_TRUE(fleetFromJson(j));
}

TEST(FleetJson, BadFilesNameThePath) {
  struct Case {
    std::function<void(json&)> spoil;
    std::string says;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j = json::array(); }, "fleet must be an object"},
      {[](json& j) { j["vms"][0]["vcpus"] = 0; }, "fleet.vms[0].vcpus must be a whole number"},
      {[](json& j) { j["vms"][0]["vcpus"] = "2"; }, "fleet.vms[0].vcpus must be a whole number"},
      {[](json& j) { j["vms"][0].erase("name"); }, "fleet.vms[0].name is missing"},
      {[](json& j) { j["vms"][0]["name"] = std::string(200, 'x'); }, "fleet.vms[0].name must be"},
      {[](json& j) { j["sites"][0]["hosts"][0]["memory_mib"] = -1; },
       "fleet.sites[0].hosts[0].memory_mib"},
      {[](json& j) { j["sites"][0]["price"]["vcpu_hour"] = -0.5; },
       "fleet.sites[0].price.vcpu_hour must be a number"},
      {[](json& j) { j["links"][0]["rtt_ms"] = 1e300; }, "fleet.links[0].rtt_ms"},
      {[](json& j) { j["locations"][0]["rtt_ms"]["dc"] = "near"; },
       "fleet.locations[0].rtt_ms must map"},
      {[](json& j) { j["vms"][0]["sla"]["mobility"] = "sometimes"; },
       "fleet.vms[0].sla is not a valid SLA"},
      {[](json& j) { j["vms"] = json::object(); }, "fleet.vms must be a list"},
  };
  for (const auto& c : cases) {
    json j = json::parse(kExample);
    c.spoil(j);
    auto f = fleetFromJson(j);
    ASSERT_FALSE(f) << c.says;
    EXPECT_EQ(f.error().code, ErrorCode::InvalidArgument);
    EXPECT_NE(f.error().message.find(c.says), std::string::npos) << f.error().message;
  }
}

}  // namespace
}  // namespace vandra::placement
