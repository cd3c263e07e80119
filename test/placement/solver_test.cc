// The placement engine's constraints one by one and together, with the clause each refusal
// names; the objective's order (placed, cost, moves, spread); determinism.
#include "vandra/placement/solver.h"

#include <gtest/gtest.h>

#include "fleet_builder.h"

namespace vandra::placement {
namespace {

using namespace testing;

const Placement* where(const Solution& s, const std::string& vm) {
  for (const auto& p : s.placements) {
    if (p.vm == vm) {
      return &p;
    }
  }
  return nullptr;
}

const Unplaced* whyNot(const Solution& s, const std::string& vm) {
  for (const auto& u : s.unplaced) {
    if (u.vm == vm) {
      return &u;
    }
  }
  return nullptr;
}

Fleet threeSites() {
  Fleet f;
  f.sites = {site("dc", {"EU", "SE"}, 0.05, {host("dc-h1", 8, 8192)}),
             site("cloud-eu", {"EU", "DE"}, 0.04, {host("eu-h1", 8, 8192)}),
             site("cloud-us", {"US"}, 0.02, {host("us-h1", 8, 8192)})};
  f.locations = {{"stockholm-office", {{"dc", 4}, {"cloud-eu", 25}, {"cloud-us", 110}}}};
  f.links = {{"dc", "cloud-eu", 30, 1000},
             {"dc", "cloud-us", 110, 1000},
             {"cloud-eu", "cloud-us", 90, 1000}};
  return f;
}

Solution solved(const Fleet& f) {
  auto s = solve(f);
  EXPECT_TRUE(s) << s.error().describe();
  if (!s) {
    return {};
  }
  const auto bad = violations(f, *s);
  EXPECT_TRUE(bad.empty()) << bad.front();
  return *s;
}

TEST(PlacementSolve, TheCheapestSiteWithoutConstraints) {
  Fleet f = threeSites();
  f.vms = {vm("a", 2, 1024)};
  const Solution s = solved(f);
  ASSERT_NE(where(s, "a"), nullptr);
  EXPECT_EQ(where(s, "a")->site, "cloud-us");
  EXPECT_DOUBLE_EQ(s.cost_per_hour, 2 * 0.02);
  EXPECT_TRUE(s.moves.empty());
}

TEST(PlacementSolve, JurisdictionsRuleOutSitesAndSaySo) {
  Fleet f = threeSites();
  f.vms = {vm("eu-only", 2, 1024)};
  f.vms[0].sla.jurisdictions = {"EU"};
  Solution s = solved(f);
  EXPECT_EQ(where(s, "eu-only")->site, "cloud-eu");  // cheapest of the EU sites
  f.vms[0].sla.jurisdictions = {"JP"};
  s = solved(f);
  const Unplaced* u = whyNot(s, "eu-only");
  ASSERT_NE(u, nullptr);
  ASSERT_EQ(u->reasons.size(), 3u);
  EXPECT_EQ(u->reasons[0], (Reason{"dc", "jurisdictions EU, SE not in [JP]"}));
  EXPECT_EQ(u->reasons[2], (Reason{"cloud-us", "jurisdiction US not in [JP]"}));
}

TEST(PlacementSolve, MaxRttFromTheNamedLocation) {
  Fleet f = threeSites();
  f.vms = {vm("near", 2, 1024)};
  f.vms[0].sla.max_rtt = ovf::MaxRtt{"stockholm-office", 30};
  EXPECT_EQ(where(solved(f), "near")->site, "cloud-eu");
  f.vms[0].sla.max_rtt->ms = 2;
  const Solution s = solved(f);
  ASSERT_NE(whyNot(s, "near"), nullptr);
  EXPECT_EQ(whyNot(s, "near")->reasons[0].clause, "max_rtt: 4 ms from stockholm-office, over 2");
  f.vms[0].sla.max_rtt->location = "mars-base";
  EXPECT_EQ(whyNot(solved(f), "near")->reasons[1].clause,
            "max_rtt: location mars-base is not in the fleet");
}

TEST(PlacementSolve, CostCeilingAndItsCurrency) {
  Fleet f = threeSites();
  f.vms = {vm("thrifty", 4, 1024)};
  f.vms[0].sla.jurisdictions = {"EU"};
  f.vms[0].sla.max_cost_per_hour = 0.15;  // dc 0.20, cloud-eu 0.16
  const Solution s = solved(f);
  ASSERT_NE(whyNot(s, "thrifty"), nullptr);
  EXPECT_EQ(whyNot(s, "thrifty")->reasons[1].clause,
            "max_cost_per_hour: 0.16 EUR/h here, over 0.15");
  f.vms[0].sla.max_cost_per_hour = 0.5;
  f.vms[0].sla.currency = "USD";
  EXPECT_EQ(whyNot(solved(f), "thrifty")->reasons[0].clause,
            "max_cost_per_hour: prices here in EUR, the ceiling in USD");
}

TEST(PlacementSolve, CapacityWithOvercommitAndTheShortfallNamed) {
  Fleet f;
  f.sites = {site("dc", {"EU"}, 0.01, {host("dc-h1", 4, 4096)}, 2.0)};
  f.vms = {vm("a", 4, 1024), vm("b", 4, 1024), vm("c", 1, 1024)};  // 8 vCPUs of 4 x 2
  Solution s = solved(f);
  EXPECT_EQ(s.placements.size(), 2u);
  ASSERT_EQ(s.unplaced.size(), 1u);
  EXPECT_NE(s.unplaced[0].reasons[0].clause.find("dc-h1: vCPUs"), std::string::npos)
      << s.unplaced[0].reasons[0].clause;
  f.vms = {vm("big", 1, 8192)};  // memory is never overcommitted
  s = solved(f);
  ASSERT_EQ(s.unplaced.size(), 1u);
  EXPECT_EQ(s.unplaced[0].reasons[0].clause, "dc-h1: memory 4096 MiB free, 8192 needed");
}

TEST(PlacementSolve, AntiAffinityNeverSharesAHost) {
  Fleet f;
  f.sites = {site("dc", {"EU"}, 0.01, {host("h1", 8, 8192), host("h2", 8, 8192)})};
  f.vms = {vm("web1", 1, 512), vm("web2", 1, 512), vm("web3", 1, 512)};
  for (auto& v : f.vms) {
    v.sla.anti_affinity_group = "web";
  }
  const Solution s = solved(f);
  EXPECT_EQ(s.placements.size(), 2u);
  ASSERT_EQ(s.unplaced.size(), 1u);
  EXPECT_NE(s.unplaced[0].reasons[0].clause.find("anti-affinity group web has a VM here"),
            std::string::npos)
      << s.unplaced[0].reasons[0].clause;
}

TEST(PlacementSolve, MobilityPinnedAndOnRequestStayAutomaticMovesToTheCheaperSite) {
  Fleet f = threeSites();
  f.vms = {vm("pinned", 2, 1024, ovf::Mobility::Pinned),
           vm("asked", 2, 1024, ovf::Mobility::OnRequest),
           vm("free", 2, 1024, ovf::Mobility::Automatic)};
  for (auto& v : f.vms) {
    v.site = "dc";
    v.host = "dc-h1";
    v.sla.jurisdictions = {"EU"};
  }
  const Solution s = solved(f);
  EXPECT_EQ(where(s, "pinned")->site, "dc");
  EXPECT_EQ(where(s, "asked")->site, "dc");
  EXPECT_EQ(where(s, "free")->site, "cloud-eu");
  ASSERT_EQ(s.moves.size(), 1u);
  EXPECT_EQ(s.moves[0].vm, "free");
  EXPECT_EQ(s.moves[0].from, "dc");
  EXPECT_EQ(s.moves[0].to, "cloud-eu");
}

TEST(PlacementSolve, ALiveMoveNeedsALinkFasterThanTheGuestAndRoomInTheBudget) {
  Fleet f = threeSites();
  f.links = {{"dc", "cloud-eu", 30, 100}};  // no link to cloud-us
  f.vms = {vm("busy", 2, 1024)};
  f.vms[0].site = "dc";
  f.vms[0].dirty_rate_mbps = 400;
  Solution s = solved(f);
  EXPECT_EQ(where(s, "busy")->site, "dc");  // it cannot leave: it stays, no move
  EXPECT_TRUE(s.moves.empty());
  EXPECT_EQ(slaClause(f, f.vms[0], f.sites[1]),
            "live move: the VM dirties 400 Mbit/s, the link from dc carries 100");
  EXPECT_EQ(slaClause(f, f.vms[0], f.sites[2]), "live move: no link from dc");
  f.vms[0].dirty_rate_mbps = 10;
  f.vms[0].sla.downtime_budget_ms = 100;  // 2 round trips of 30 ms and the local work do not fit
  EXPECT_NE(slaClause(f, f.vms[0], f.sites[1]).find("downtime_budget_ms over the link from dc"),
            std::string::npos)
      << slaClause(f, f.vms[0], f.sites[1]);
  f.vms[0].sla.downtime_budget_ms = 2000;
  EXPECT_EQ(slaClause(f, f.vms[0], f.sites[1]), "");
  EXPECT_EQ(where(solved(f), "busy")->site, "cloud-eu");
}

TEST(PlacementSolve, AsManyPlacedAsPossibleBeforeCost) {
  // Greedy by cost would put "small" on the cheap host and leave "large" out.
  Fleet f;
  f.sites = {site("cheap", {"EU"}, 0.01, {host("c1", 4, 4096)}),
             site("dear", {"EU"}, 0.10, {host("d1", 4, 2048)})};
  f.vms = {vm("large", 2, 4096), vm("small", 2, 2048)};
  const Solution s = solved(f);
  EXPECT_TRUE(s.exact);
  EXPECT_EQ(s.placements.size(), 2u);
  EXPECT_EQ(where(s, "large")->site, "cheap");
  EXPECT_EQ(where(s, "small")->site, "dear");
}

TEST(PlacementSolve, FewestMovesAmongEqualCostsThenSpread) {
  Fleet f;
  f.sites = {site("a", {"EU"}, 0.01, {host("a1", 8, 8192), host("a2", 8, 8192)}),
             site("b", {"EU"}, 0.01, {host("b1", 8, 8192)})};
  f.vms = {vm("stay", 1, 1024), vm("new1", 1, 1024), vm("new2", 1, 1024)};
  f.vms[0].site = "b";
  f.vms[0].host = "b1";
  const Solution s = solved(f);
  EXPECT_EQ(where(s, "stay")->host, "b1");
  EXPECT_TRUE(s.moves.empty());
  // The new ones spread: not both on one host.
  EXPECT_NE(where(s, "new1")->host, where(s, "new2")->host);
}

TEST(PlacementSolve, BadFleetsAreRefusedNamingWhat) {
  Fleet f = threeSites();
  f.vms = {vm("a", 1, 512), vm("a", 1, 512)};
  EXPECT_EQ(solve(f).error().message, "VM 'a' is named twice");
  f.vms = {vm("a", 1, 512)};
  f.vms[0].site = "moon";
  EXPECT_NE(solve(f).error().message.find("site 'moon'"), std::string::npos);
  f.vms[0].site = "dc";
  f.vms[0].host = "eu-h1";
  EXPECT_NE(solve(f).error().message.find("not a host of site 'dc'"), std::string::npos);
  f.vms[0] = vm("zero", 0, 512);
  EXPECT_EQ(solve(f).error().code, ErrorCode::InvalidArgument);
}

TEST(PlacementSolve, TheSameFleetGivesTheSameAnswer) {
  Fleet f = threeSites();
  for (uint32_t i = 0; i < 30; ++i) {
    f.vms.push_back(vm("vm" + std::to_string(i), 1 + i % 3, 256u * (1 + i % 4)));
  }
  const Solution a = solved(f);
  const Solution b = solved(f);
  EXPECT_FALSE(a.exact);
  EXPECT_EQ(a.placements, b.placements);
  EXPECT_DOUBLE_EQ(a.cost_per_hour, b.cost_per_hour);
}

}  // namespace
}  // namespace vandra::placement
