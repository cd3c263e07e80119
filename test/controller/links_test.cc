// Links measured by the agents (measured_links.h): how both ends' reports fold into the
// inventory's Link (fresh measured values win, stale ones give way to the configured ones),
// what an agent's GET /v1/links may say (hostile input), and the refresh loop against fake
// agents: the inventory updated, and a link that no longer carries a VM's downtime budget
// named in its SLA verdict.
#include <gtest/gtest.h>

#include "test/controller/controller_fixture.h"
#include "vandra/controller/inventory_json.h"
#include "vandra/controller/measured_links.h"

namespace vandra::controller::testing {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'700'000'000'000;
constexpr int64_t kMaxAge = 15 * 60 * 1000;

LinkMeasurement measured(const std::string& peer, std::optional<double> rtt, int64_t rtt_at,
                         std::optional<double> mbps = std::nullopt, int64_t mbps_at = 0,
                         ThroughputMethod how = ThroughputMethod::Probe) {
  LinkMeasurement m;
  m.peer = peer;
  m.connected = true;
  m.rtt_ms = rtt;
  m.rtt_at_ms = rtt ? rtt_at : 0;
  m.throughput_mbps = mbps;
  m.throughput_method = how;
  m.throughput_at_ms = mbps ? mbps_at : 0;
  m.measured_at_ms = std::max(m.rtt_at_ms, m.throughput_at_ms);
  return m;
}

Link configured(double rtt, double mbps) {
  Link l{"cloud-eu", "dc", rtt, mbps, kNow - 3'600'000};
  l.configured_rtt_ms = rtt;
  l.configured_mbps = mbps;
  return l;
}

TEST(MeasuredLinks, NothingMeasuredKeepsTheConfiguredValues) {
  const Link l = configured(20, 1000);
  const Link n = applyLinkMeasurements(l, {measured("dc", std::nullopt, 0)}, kNow, kMaxAge);
  EXPECT_EQ(toJson(n), toJson(l));
  EXPECT_EQ(n.rtt_source, kConfigured);
  EXPECT_EQ(n.mbps_source, kConfigured);
}

TEST(MeasuredLinks, FreshMeasurementsWinPerValueAndTheNewestEndCounts) {
  const Link l = configured(20, 1000);
  const Link n = applyLinkMeasurements(
      l,
      {measured("dc", 48.0, kNow - 5000, 300.0, kNow - 60'000, ThroughputMethod::Migration),
       measured("cloud-eu", 52.0, kNow - 1000)},
      kNow, kMaxAge);
  EXPECT_DOUBLE_EQ(n.rtt_ms, 52.0);  // the newer of the two ends
  EXPECT_EQ(n.rtt_source, kMeasured);
  EXPECT_EQ(n.rtt_measured_at_ms, kNow - 1000);
  EXPECT_DOUBLE_EQ(n.mbps, 300.0);
  EXPECT_EQ(n.mbps_source, kMeasured);
  EXPECT_EQ(n.mbps_method, "migration");
  EXPECT_EQ(n.mbps_measured_at_ms, kNow - 60'000);
  EXPECT_EQ(n.measured_at_ms, kNow - 1000);
  EXPECT_DOUBLE_EQ(n.configured_rtt_ms, 20.0);  // kept as the fallback
  EXPECT_DOUBLE_EQ(n.configured_mbps, 1000.0);
}

TEST(MeasuredLinks, AStaleMeasurementGivesWayToTheConfiguredValue) {
  Link l = applyLinkMeasurements(
      configured(20, 1000), {measured("dc", 48.0, kNow - 1000, 300.0, kNow - 1000)}, kNow, kMaxAge);
  ASSERT_EQ(l.rtt_source, kMeasured);
  // The same reports a quarter of an hour later: too old.
  const int64_t later = kNow + kMaxAge;
  const Link n = applyLinkMeasurements(l, {measured("dc", 48.0, kNow - 1000, 300.0, kNow - 1000)},
                                       later, kMaxAge);
  EXPECT_EQ(n.rtt_source, kConfigured);
  EXPECT_DOUBLE_EQ(n.rtt_ms, 20.0);
  EXPECT_EQ(n.mbps_source, kConfigured);
  EXPECT_DOUBLE_EQ(n.mbps, 1000.0);
  EXPECT_EQ(n.mbps_method, "");
  EXPECT_EQ(n.rtt_measured_at_ms, 0);
  EXPECT_EQ(n.measured_at_ms, later);
  // One value fresh, the other stale: each on its own.
  const Link half = applyLinkMeasurements(l, {measured("dc", 49.0, later - 10, 300.0, kNow - 1000)},
                                          later, kMaxAge);
  EXPECT_EQ(half.rtt_source, kMeasured);
  EXPECT_DOUBLE_EQ(half.rtt_ms, 49.0);
  EXPECT_EQ(half.mbps_source, kConfigured);
}

TEST(MeasuredLinks, ImplausibleTimesAndValuesAreNotUsed) {
  const Link l = configured(20, 1000);
  const Link n = applyLinkMeasurements(
      l,
      {measured("dc", 5.0, kNow + 2 * kLinkClockSkewMs),  // from the future
       measured("dc", 0.0, kNow - 10, 0.0, kNow - 10)},   // nothing measured is 0
      kNow, kMaxAge);
  EXPECT_EQ(n.rtt_source, kConfigured);
  EXPECT_EQ(n.mbps_source, kConfigured);
}

TEST(MeasuredLinks, AnAgentsLinkListIsCheckedBeforeItIsBelieved) {
  const json good = {{"links",
                      {{{"peer", "cloud-eu"},
                        {"connected", true},
                        {"measured_at_ms", 5},
                        {"rtt_ms", 50.5},
                        {"rtt_at_ms", 5},
                        {"throughput_mbps", 12.5},
                        {"throughput_method", "probe"},
                        {"throughput_at_ms", 4}},
                       {{"peer", "cloud-us"}, {"connected", false}, {"measured_at_ms", 0}}}}};
  auto ok = linkMeasurementsFromJson(good);
  ASSERT_TRUE(ok) << ok.error().describe();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_DOUBLE_EQ(*(*ok)[0].rtt_ms, 50.5);
  EXPECT_EQ((*ok)[0].throughput_method, ThroughputMethod::Probe);
  EXPECT_FALSE((*ok)[1].rtt_ms);

  auto with = [&](const char* key, json v) {
    json j = good;
    j["links"][0][key] = std::move(v);
    return linkMeasurementsFromJson(j);
  };
  EXPECT_FALSE(with("peer", "Cloud EU"));
  EXPECT_FALSE(with("peer", std::string(65, 'a')));
  EXPECT_FALSE(with("rtt_ms", -1));
  EXPECT_FALSE(with("rtt_ms", 1e300));
  EXPECT_FALSE(with("rtt_ms", "50"));
  EXPECT_FALSE(with("throughput_mbps", 1e12));
  EXPECT_FALSE(with("throughput_method", "guess"));
  EXPECT_FALSE(with("rtt_at_ms", -5));
  EXPECT_FALSE(with("measured_at_ms", 1.5));
  EXPECT_FALSE(linkMeasurementsFromJson(json::array()));
  json many = {{"links", json::array()}};
  for (size_t i = 0; i <= kMaxAgentLinks; ++i) {
    many["links"].push_back(good["links"][1]);
  }
  EXPECT_FALSE(linkMeasurementsFromJson(many));
}

TEST(MeasuredLinks, AStoredLinkFromBeforeMeasurementsReadsAsConfigured) {
  auto l = linkFromJson({{"a", "dc"}, {"b", "cloud-eu"}, {"rtt_ms", 20}, {"mbps", 1000}});
  ASSERT_TRUE(l) << l.error().describe();
  EXPECT_EQ(l->rtt_source, kConfigured);
  EXPECT_DOUBLE_EQ(l->configured_rtt_ms, 20.0);
  EXPECT_DOUBLE_EQ(l->configured_mbps, 1000.0);
  EXPECT_FALSE(linkFromJson(
      {{"a", "dc"}, {"b", "cloud-eu"}, {"rtt_ms", 20}, {"mbps", 1000}, {"rtt_source", "guessed"}}));
}

using LinksTest = ControllerFixture;

std::optional<Link> linkBetween(Store& store, const std::string& a, const std::string& b) {
  auto all = store.links();
  if (!all) {
    return std::nullopt;
  }
  for (const auto& l : *all) {
    if ((l.a == a && l.b == b) || (l.a == b && l.b == a)) {
      return l;
    }
  }
  return std::nullopt;
}

TEST_F(LinksTest, EachRefreshPutsTheAgentsMeasurementsInTheInventory) {
  const int64_t t = now_.load();
  agents_["dc"]->links = std::vector{
      measured("cloud-eu", 51.0, t - 2000, 420.0, t - 30'000, ThroughputMethod::Migration),
      measured("cloud-us", std::nullopt, 0)};
  agents_["cloud-eu"]->links = std::vector{measured("dc", 49.0, t - 4000)};
  // cloud-us is an agent without the route: its links stay as configured.
  service_->refreshOnce();
  EXPECT_EQ(agents_["dc"]->links_calls, 1);
  auto eu = linkBetween(*store_, "dc", "cloud-eu");
  ASSERT_TRUE(eu);
  EXPECT_DOUBLE_EQ(eu->rtt_ms, 51.0);
  EXPECT_EQ(eu->rtt_source, kMeasured);
  EXPECT_DOUBLE_EQ(eu->mbps, 420.0);
  EXPECT_EQ(eu->mbps_method, "migration");
  EXPECT_DOUBLE_EQ(eu->configured_rtt_ms, 20.0);
  EXPECT_DOUBLE_EQ(eu->configured_mbps, 1000.0);
  auto us = linkBetween(*store_, "dc", "cloud-us");
  ASSERT_TRUE(us);
  EXPECT_EQ(us->rtt_source, kConfigured);
  EXPECT_DOUBLE_EQ(us->rtt_ms, 90.0);
  // What placement sees is the measured link.
  auto f = service_->fleet();
  ASSERT_TRUE(f);
  bool seen = false;
  for (const auto& l : f->links) {
    if ((l.a == "dc" && l.b == "cloud-eu") || (l.a == "cloud-eu" && l.b == "dc")) {
      seen = true;
      EXPECT_DOUBLE_EQ(l.rtt_ms, 51.0);
      EXPECT_DOUBLE_EQ(l.mbps, 420.0);
    }
  }
  EXPECT_TRUE(seen);

  // An agent that stops answering: nothing more is measured; once the measurement is older
  // than the limit the configured values are back.
  agents_["dc"]->down = true;
  agents_["cloud-eu"]->links = std::vector<LinkMeasurement>{};
  now_ += 16 * 60 * 1000;
  service_->refreshOnce();
  eu = linkBetween(*store_, "dc", "cloud-eu");
  ASSERT_TRUE(eu);
  EXPECT_EQ(eu->rtt_source, kConfigured);
  EXPECT_DOUBLE_EQ(eu->rtt_ms, 20.0);
  EXPECT_DOUBLE_EQ(eu->mbps, 1000.0);
  EXPECT_EQ(agents_["dc"]->links_calls, 1) << "an unreachable agent is not asked again";
}

TEST_F(LinksTest, AMeasuredRttThatBreaksTheDowntimeBudgetIsNamedInTheSlaVerdict) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});  // budget 500 ms
  service_->refreshOnce();
  auto before = service_->slaStatus();
  ASSERT_TRUE(before);
  ASSERT_EQ(before->size(), 1u);
  EXPECT_TRUE(before->front().link_violations.empty()) << before->front().link_violations[0];

  // dc~cloud-eu now measures 200 ms: two round trips and the switchover's local work alone
  // are over the 500 ms budget.
  agents_["dc"]->links = std::vector{measured("cloud-eu", 200.0, now_.load() - 1000)};
  service_->refreshOnce();
  auto after = service_->slaStatus();
  ASSERT_TRUE(after);
  const auto& v = after->front();
  EXPECT_TRUE(v.ok) << "it may still run where it is";
  ASSERT_EQ(v.link_violations.size(), 1u);
  EXPECT_NE(v.link_violations[0].find("live move to cloud-eu"), std::string::npos)
      << v.link_violations[0];
  EXPECT_NE(v.link_violations[0].find("downtime_budget_ms"), std::string::npos)
      << v.link_violations[0];
  EXPECT_NE(v.link_violations[0].find("200 ms"), std::string::npos) << v.link_violations[0];
  // cloud-us is out of its jurisdictions: no link of its is its business.
  bool event = false;
  const auto events = store_->events(0, 100);
  ASSERT_TRUE(events);
  for (const auto& e : *events) {
    event = event || (e.kind == "sla" && e.subject == "web1" &&
                      e.message.find("live move to cloud-eu") != std::string::npos);
  }
  EXPECT_TRUE(event);
  // The preflight of a move there refuses it for the same reason.
  auto pre = service_->preflight("web1", "cloud-eu", MoveReason::Operator);
  ASSERT_TRUE(pre);
  bool refused = false;
  for (const auto& r : *pre) {
    refused = refused || r.clause.find("downtime_budget_ms") != std::string::npos;
  }
  EXPECT_TRUE(refused);

  // The link recovers: the verdict is clean again.
  agents_["dc"]->links = std::vector{measured("cloud-eu", 25.0, now_.load() - 500)};
  service_->refreshOnce();
  auto again = service_->slaStatus();
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->front().link_violations.empty());
}

TEST_F(LinksTest, AMeasuredThroughputBelowTheDirtyRateIsNamedToo) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  auto vm = store_->vm("web1");
  ASSERT_TRUE(vm);
  vm->dirty_rate_mbps = 80;
  ASSERT_TRUE(store_->putVm(*vm));
  agents_["dc"]->links = std::vector{measured("cloud-eu", 20.0, now_.load() - 1000, 50.0,
                                              now_.load() - 1000, ThroughputMethod::Probe)};
  service_->refreshOnce();
  auto after = service_->slaStatus();
  ASSERT_TRUE(after);
  ASSERT_EQ(after->front().link_violations.size(), 1u);
  EXPECT_NE(after->front().link_violations[0].find("carries 50"), std::string::npos)
      << after->front().link_violations[0];
}

}  // namespace
}  // namespace vandra::controller::testing
