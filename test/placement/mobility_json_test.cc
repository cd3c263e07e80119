// The mobility fields of the fleet file: they read into the policy, a file without them is
// the default policy, bad values are refused naming the path; the plan's JSON carries every
// move with its reason.
#include "vandra/placement/mobility_json.h"

#include <gtest/gtest.h>

#include <functional>

#include "vandra/placement/fleet_json.h"

namespace vandra::placement {
namespace {

using nlohmann::json;

const char* const kFleet = R"({
  "sites": [{"name": "dc", "jurisdictions": ["EU"], "price": {"vcpu_hour": 0.05},
             "water_marks": {"high": 0.8, "low": 0.5, "vcpu": {"high": 0.9}},
             "hosts": [{"name": "dc-h1", "vcpus": 8, "memory_mib": 8192}]},
            {"name": "cloud", "jurisdictions": ["EU"], "price": {"vcpu_hour": 0.02},
             "hosts": [{"name": "c-h1", "vcpus": 8, "memory_mib": 8192}]}],
  "links": [{"a": "dc", "b": "cloud", "rtt_ms": 20, "mbps": 1000}],
  "vms": [{"name": "a", "vcpus": 1, "memory_mib": 3072, "site": "dc", "host": "dc-h1",
           "home": "dc", "last_moved_at": 1000, "sla": {"mobility": "automatic"}},
          {"name": "b", "vcpus": 1, "memory_mib": 4096, "site": "dc", "host": "dc-h1",
           "sla": {"mobility": "automatic"}},
          {"name": "web", "vcpus": 1, "memory_mib": 1024, "site": "cloud", "home": "dc",
           "sla": {"mobility": "automatic"}}],
  "mobility": {"now": 5000, "min_stay_s": 7200, "max_moves_per_link": 2, "max_moves": 5,
               "in_flight": [{"vm": "x", "from": "dc", "to": "cloud"}], "future": true}
})";

TEST(MobilityJson, TheFieldsReadIntoThePolicy) {
  auto p = mobilityPolicyFromJson(json::parse(kFleet));
  ASSERT_TRUE(p) << p.error().describe();
  ASSERT_EQ(p->marks.size(), 1u);
  EXPECT_EQ(p->marks.at("dc").memory, (WaterMarks{0.8, 0.5}));
  EXPECT_EQ(p->marks.at("dc").vcpu, (WaterMarks{0.9, 0.5}));
  EXPECT_EQ(p->history.at("a"), (VmHistory{"dc", 1000}));
  EXPECT_EQ(p->history.at("web"), (VmHistory{"dc", std::nullopt}));
  EXPECT_EQ(p->history.count("b"), 0u);
  EXPECT_EQ(p->now, 5000);
  EXPECT_EQ(p->min_stay_s, 7200);
  EXPECT_EQ(p->max_moves_per_link, 2u);
  EXPECT_EQ(p->max_moves, 5u);
  EXPECT_EQ(p->in_flight, (std::vector<InFlight>{{"x", "dc", "cloud"}}));
}

TEST(MobilityJson, AFleetWithoutThemIsTheDefaultPolicy) {
  auto p = mobilityPolicyFromJson(json::parse(R"({"sites": [], "vms": []})"));
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, MobilityPolicy{});
}

TEST(MobilityJson, BadValuesAreRefusedNamingThePath) {
  auto refused = [](const std::function<void(json&)>& edit, const std::string& says) {
    json j = json::parse(kFleet);
    edit(j);
    auto p = mobilityPolicyFromJson(j);
    ASSERT_FALSE(p) << says;
    EXPECT_NE(p.error().message.find(says), std::string::npos) << p.error().message;
  };
  refused([](json& j) { j["sites"][0]["water_marks"]["high"] = 1.5; },
          "fleet.sites[0].water_marks.high must be a number from 0");
  refused([](json& j) { j["sites"][0]["water_marks"]["low"] = 0.9; },
          "fleet.sites[0].water_marks must have low below high");
  refused(
      [](json& j) {
        j["sites"][0]["water_marks"]["vcpu"] = {{"low", 0.95}};
      },
      "fleet.sites[0].water_marks.vcpu must have low below high");
  refused([](json& j) { j["sites"][0]["water_marks"] = 3; },
          "fleet.sites[0].water_marks must be an object");
  refused([](json& j) { j["vms"][0]["home"] = ""; }, "fleet.vms[0].home must be a name");
  refused([](json& j) { j["vms"][0]["last_moved_at"] = -5; },
          "fleet.vms[0].last_moved_at must be a whole number");
  refused([](json& j) { j["mobility"]["now"] = "soon"; }, "fleet.mobility.now must be");
  refused([](json& j) { j["mobility"]["max_moves_per_link"] = 0; },
          "fleet.mobility.max_moves_per_link must be a whole number from 1");
  refused([](json& j) { j["mobility"]["in_flight"][0].erase("to"); },
          "fleet.mobility.in_flight[0].to is missing");
  refused([](json& j) { j["mobility"]["in_flight"] = json::array({1}); },
          "fleet.mobility.in_flight[0] must be an object");
  refused([](json& j) { j["mobility"] = json::array(); }, "fleet.mobility must be an object");
}

TEST(MobilityJson, ThePlanCarriesEveryMoveWithItsReason) {
  const json j = json::parse(kFleet);
  auto f = fleetFromJson(j);
  ASSERT_TRUE(f) << f.error().describe();
  auto pol = mobilityPolicyFromJson(j);
  ASSERT_TRUE(pol);
  auto plan = planMobility(*f, *pol);
  ASSERT_TRUE(plan) << plan.error().describe();
  const json out = toJson(*plan);
  // dc: 7 of 8 GiB (87.5% > 80%). a, the smallest that is enough, moved 4000 s ago, under
  // the 2 h stay: b goes. Then dc is under its low mark, but web cannot come home: the
  // link has x in flight and b planned, its bound.
  ASSERT_EQ(out["moves"].size(), 1u);
  EXPECT_EQ(out["moves"][0], json::parse(R"({"vm": "b", "from": "dc", "from_host": "dc-h1",
      "to": "cloud", "to_host": "c-h1", "reason": "over-high-water",
      "why": "dc above its high water mark: memory 87.5% > 80%",
      "cost_per_hour_before": 0.05, "cost_per_hour_after": 0.02})"));
  ASSERT_EQ(out["held"].size(), 2u);
  EXPECT_EQ(out["held"][0]["vm"], "a");
  EXPECT_EQ(out["held"][0]["reason"], "min-stay");
  EXPECT_EQ(out["held"][0]["wanted"], "over-high-water");
  EXPECT_EQ(out["held"][0]["why"], "moved 4000 s ago, minimum stay 7200 s");
  EXPECT_EQ(out["held"][1]["vm"], "web");
  EXPECT_EQ(out["held"][1]["wanted"], "coming-home");
  EXPECT_EQ(out["held"][1]["reason"], "link-budget");
  EXPECT_EQ(out["held"][1]["reasons"], json::parse(R"([{"site": "dc",
      "clause": "link from cloud: 2 moves in flight or planned, at most 2"}])"));
  ASSERT_EQ(out["sites"].size(), 2u);
  EXPECT_EQ(out["sites"][0]["site"], "dc");
  EXPECT_DOUBLE_EQ(out["sites"][0]["before"]["memory"].get<double>(), 0.875);
  EXPECT_DOUBLE_EQ(out["sites"][0]["after"]["memory"].get<double>(), 0.375);
  EXPECT_DOUBLE_EQ(out["sites"][0]["after"]["vcpu_capacity"].get<double>(), 8);
}

}  // namespace
}  // namespace vandra::placement
