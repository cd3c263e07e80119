// The mobility planner rule by rule: over the high mark the fewest moves to the cheapest
// site the SLA allows; pinned and on-request stay; min stay; the per-link bound with moves
// in flight; no destination pushed over its high mark; spreading; coming home under the low
// mark and not in the hysteresis band; drain; bad policies refused naming what.
#include "vandra/placement/mobility.h"

#include <gtest/gtest.h>

#include <limits>

#include "fleet_builder.h"

namespace vandra::placement {
namespace {

using namespace testing;

// dc: 2 hosts of 8 vCPUs and 8 GiB (16 GiB); cloud-eu and cloud-us: one host of 16 vCPUs and
// 16 GiB each, cloud-us the cheapest, dc the dearest. Links between all.
Fleet threeSites() {
  Fleet f;
  f.sites = {site("dc", {"EU", "SE"}, 0.05, {host("dc-h1", 8, 8192), host("dc-h2", 8, 8192)}),
             site("cloud-eu", {"EU", "DE"}, 0.04, {host("eu-h1", 16, 16384)}),
             site("cloud-us", {"US"}, 0.02, {host("us-h1", 16, 16384)})};
  f.links = {{"dc", "cloud-eu", 30, 1000},
             {"dc", "cloud-us", 110, 1000},
             {"cloud-eu", "cloud-us", 90, 1000}};
  return f;
}

Vm at(Vm v, const std::string& site, const std::string& host) {
  v.site = site;
  v.host = host;
  return v;
}

MobilityPlan plan(const Fleet& f, const MobilityPolicy& p = {}) {
  auto out = planMobility(f, p);
  EXPECT_TRUE(out) << out.error().describe();
  return out ? *out : MobilityPlan{};
}

const SiteLoad& load(const std::vector<SiteLoad>& l, const std::string& site) {
  return *std::find_if(l.begin(), l.end(), [&](const SiteLoad& x) { return x.site == site; });
}

// dc at 15 of 16 GiB (93.75%): 1.4 GiB over 85%.
Fleet overloadedDc() {
  Fleet f = threeSites();
  f.vms = {at(vm("a", 1, 4096), "dc", "dc-h1"), at(vm("b", 1, 4096), "dc", "dc-h2"),
           at(vm("c", 1, 3072), "dc", "dc-h1"), at(vm("d", 1, 2048), "dc", "dc-h2"),
           at(vm("e", 1, 1024), "dc", "dc-h1"), at(vm("f", 1, 1024), "dc", "dc-h2")};
  return f;
}

TEST(Mobility, OverTheHighMarkTheFewestMovesToTheCheapestSite) {
  const MobilityPlan p = plan(overloadedDc());
  ASSERT_EQ(p.moves.size(), 1u);
  EXPECT_EQ(p.moves[0].vm, "d");  // the smallest that alone gets dc under 85%
  EXPECT_EQ(p.moves[0].from, "dc");
  EXPECT_EQ(p.moves[0].to, "cloud-us");
  EXPECT_EQ(p.moves[0].to_host, "us-h1");
  EXPECT_EQ(p.moves[0].reason, MoveReason::OverHighWater);
  EXPECT_EQ(p.moves[0].why, "dc above its high water mark: memory 93.8% > 85%");
  EXPECT_DOUBLE_EQ(p.moves[0].cost_per_hour_before, 0.05);
  EXPECT_DOUBLE_EQ(p.moves[0].cost_per_hour_after, 0.02);
  EXPECT_GT(load(p.before, "dc").memoryShare(), 0.85);
  EXPECT_LE(load(p.after, "dc").memoryShare(), 0.85);
  EXPECT_TRUE(p.held.empty());
}

TEST(Mobility, UnderTheHighMarkNothingMoves) {
  Fleet f = overloadedDc();
  f.vms.pop_back();  // 14 of 16 GiB: 87.5%
  f.vms.pop_back();  // 13 GiB: 81%
  const MobilityPlan p = plan(f);
  EXPECT_TRUE(p.moves.empty());
  EXPECT_TRUE(p.held.empty());
}

TEST(Mobility, AnEuOnlyVmNeverGoesToTheCheaperUsSite) {
  Fleet f = overloadedDc();
  for (auto& v : f.vms) {
    v.sla.jurisdictions = {"EU"};
  }
  MobilityPlan p = plan(f);
  ASSERT_EQ(p.moves.size(), 1u);
  EXPECT_EQ(p.moves[0].to, "cloud-eu");
  // cloud-eu full: nowhere to go, and the reasons say why per site.
  f.vms.push_back(at(vm("big", 16, 16384, ovf::Mobility::Pinned), "cloud-eu", "eu-h1"));
  p = plan(f);
  EXPECT_TRUE(p.moves.empty());
  ASSERT_EQ(p.held.size(), 1u);  // d alone would have been enough: the one that would go
  const HeldVm& h = p.held[0];
  EXPECT_EQ(h.vm, "d");
  EXPECT_EQ(h.reason, HoldReason::NoDestination);
  EXPECT_EQ(h.wanted, MoveReason::OverHighWater);
  ASSERT_EQ(h.reasons.size(), 2u);
  EXPECT_EQ(h.reasons[0], (Reason{"cloud-eu",
                                  "would pass its high water mark: memory 112.5% > 85%, "
                                  "vCPUs 106.3% > 85%"}));
  EXPECT_EQ(h.reasons[1], (Reason{"cloud-us", "jurisdiction US not in [EU]"}));
}

TEST(Mobility, PinnedAndOnRequestNeverMoveByThemselves) {
  Fleet f = overloadedDc();
  for (auto& v : f.vms) {
    v.sla.mobility = v.name == "e" ? ovf::Mobility::Pinned : ovf::Mobility::OnRequest;
  }
  EXPECT_TRUE(plan(f).moves.empty());
  f.vms[4].sla.mobility = ovf::Mobility::Automatic;  // e: 1 GiB, not enough alone
  const MobilityPlan p = plan(f);
  ASSERT_EQ(p.moves.size(), 1u);
  EXPECT_EQ(p.moves[0].vm, "e");
  EXPECT_GT(load(p.after, "dc").memoryShare(), 0.85);  // still over: nobody else may go
}

TEST(Mobility, NotBeforeTheMinimumStay) {
  Fleet f = overloadedDc();
  MobilityPolicy pol;
  pol.now = 10000;
  pol.min_stay_s = 600;
  pol.history["d"].last_moved_at = 9900;
  MobilityPlan p = plan(f, pol);
  ASSERT_EQ(p.held.size(), 1u);
  EXPECT_EQ(p.held[0].vm, "d");
  EXPECT_EQ(p.held[0].reason, HoldReason::MinStay);
  EXPECT_EQ(p.held[0].why, "moved 100 s ago, minimum stay 600 s");
  ASSERT_EQ(p.moves.size(), 1u);
  EXPECT_EQ(p.moves[0].vm, "c");  // the next smallest that is enough alone
  pol.now = 10500;                // 600 s: the stay is over
  p = plan(f, pol);
  ASSERT_EQ(p.moves.size(), 1u);
  EXPECT_EQ(p.moves[0].vm, "d");
  // A last move "in the future" (clocks disagree) counts as just now; extremes do not wrap.
  pol.history["d"].last_moved_at = 20000;
  p = plan(f, pol);
  ASSERT_EQ(p.held.size(), 1u);
  EXPECT_EQ(p.held[0].why, "moved 0 s ago, minimum stay 600 s");
  pol.history["d"].last_moved_at = std::numeric_limits<int64_t>::min();
  pol.now = std::numeric_limits<int64_t>::max();
  p = plan(f, pol);
  ASSERT_EQ(p.moves.size(), 1u);
  EXPECT_EQ(p.moves[0].vm, "d");
}

TEST(Mobility, AtMostSoManyMovesPerLinkCountingThoseInFlight) {
  Fleet f = threeSites();
  for (int i = 0; i < 16; ++i) {  // dc full: 3 moves of 1 GiB get it under 85%
    const std::string n = "v" + std::to_string(i < 10 ? 0 : 1) + std::to_string(i % 10);
    f.vms.push_back(at(vm(n, 1, 1024), "dc", i % 2 == 0 ? "dc-h1" : "dc-h2"));
  }
  MobilityPolicy pol;
  pol.max_moves_per_link = 2;
  MobilityPlan p = plan(f, pol);
  ASSERT_EQ(p.moves.size(), 3u);
  EXPECT_EQ(p.moves[0].to, "cloud-us");
  EXPECT_EQ(p.moves[1].to, "cloud-us");
  EXPECT_EQ(p.moves[2].to, "cloud-eu");  // dc–cloud-us at its bound
  // One move already in flight on dc–cloud-us (counted as gone from dc), a bound of 1.
  pol.max_moves_per_link = 1;
  pol.in_flight = {{"v00", "dc", "cloud-us"}};
  p = plan(f, pol);
  ASSERT_EQ(p.moves.size(), 1u);
  EXPECT_EQ(p.moves[0].to, "cloud-eu");
  EXPECT_NE(p.moves[0].vm, "v00");  // in flight: not planned again
  // dc still needs 0.4 GiB and 0.4 vCPUs to go: the one VM that would have gone, held.
  ASSERT_EQ(p.held.size(), 1u);
  EXPECT_EQ(p.held[0].reason, HoldReason::LinkBudget);
  EXPECT_EQ(p.held[0].reasons[0].clause, "link from dc: 1 moves in flight or planned, at most 1");
}

TEST(Mobility, NoDestinationIsPushedOverItsHighMarkSoTheMovesSpread) {
  Fleet f = threeSites();
  f.sites[2].hosts[0].memory_mib = 4096;  // cloud-us: 4 GiB, half used by a pinned VM
  f.vms = {at(vm("pin", 1, 2048, ovf::Mobility::Pinned), "cloud-us", "us-h1")};
  for (int i = 0; i < 16; ++i) {
    f.vms.push_back(at(vm("v" + std::to_string(10 + i), 1, 1024), "dc", i % 2 ? "dc-h1" : "dc-h2"));
  }
  const MobilityPlan p = plan(f);
  ASSERT_EQ(p.moves.size(), 3u);
  EXPECT_EQ(p.moves[0].to, "cloud-us");  // 3 of 4 GiB: 75%
  EXPECT_EQ(p.moves[1].to, "cloud-eu");  // cloud-us would be at 100%
  EXPECT_EQ(p.moves[2].to, "cloud-eu");
  for (const SiteLoad& l : p.after) {
    if (l.site != "dc") {
      EXPECT_LE(l.memoryShare(), 0.85) << l.site;
    }
  }
}

TEST(Mobility, EquallyCheapDestinationsShareTheLoad) {
  Fleet f = threeSites();
  f.sites[2].jurisdictions = {"EU"};
  f.sites[1].price.vcpu_hour = f.sites[2].price.vcpu_hour;  // two equally cheap clouds
  for (int i = 0; i < 16; ++i) {
    f.vms.push_back(at(vm("v" + std::to_string(10 + i), 1, 1024), "dc", i % 2 ? "dc-h1" : "dc-h2"));
  }
  const MobilityPlan p = plan(f);
  ASSERT_EQ(p.moves.size(), 3u);
  std::set<std::string> to;
  for (const auto& m : p.moves) {
    to.insert(m.to);
  }
  EXPECT_EQ(to.size(), 2u);  // the most room left among equals: alternates
}

// web runs at cloud-us, home dc; dc's own load set by two pinned VMs of @p dc_mib together.
Fleet awayFromHome(uint64_t dc_mib) {
  Fleet f = threeSites();
  f.vms = {at(vm("base1", 1, dc_mib / 2, ovf::Mobility::Pinned), "dc", "dc-h1"),
           at(vm("base2", 1, dc_mib - dc_mib / 2, ovf::Mobility::Pinned), "dc", "dc-h2"),
           at(vm("web", 2, 2048), "cloud-us", "us-h1")};
  return f;
}

TEST(Mobility, ComingHomeUnderTheLowMark) {
  MobilityPolicy pol;
  pol.history["web"].home = "dc";
  const MobilityPlan p = plan(awayFromHome(4096), pol);  // dc: 25% memory, 12.5% vCPUs
  ASSERT_EQ(p.moves.size(), 1u);
  EXPECT_EQ(p.moves[0].vm, "web");
  EXPECT_EQ(p.moves[0].to, "dc");
  EXPECT_EQ(p.moves[0].reason, MoveReason::ComingHome);
  EXPECT_EQ(p.moves[0].why,
            "home dc below its low water mark: memory 25% < 60%, vCPUs 12.5% < 60%, coming home");
}

TEST(Mobility, NotHomeInTheHysteresisBandNorOverTheHighMark) {
  MobilityPolicy pol;
  pol.history["web"].home = "dc";
  // 70%: between low and high, stays away (it would come home only under 60%).
  EXPECT_TRUE(plan(awayFromHome(11469), pol).moves.empty());
  EXPECT_TRUE(plan(awayFromHome(11469), pol).held.empty());
  // Under low, but coming home would pass the high mark: held, saying so.
  pol.marks["dc"].memory = {0.85, 0.75};
  const MobilityPlan p = plan(awayFromHome(11264), pol);  // 68.75% + 12.5%: fine
  ASSERT_EQ(p.moves.size(), 1u);
  pol.marks["dc"].memory = {0.75, 0.70};
  const MobilityPlan q = plan(awayFromHome(11264), pol);  // 81.25% > 75%
  EXPECT_TRUE(q.moves.empty());
  ASSERT_EQ(q.held.size(), 1u);
  EXPECT_EQ(q.held[0].wanted, MoveReason::ComingHome);
  EXPECT_EQ(q.held[0].why, "home dc cannot take it");
  EXPECT_EQ(q.held[0].reasons[0].clause, "would pass its high water mark: memory 81.3% > 75%");
}

TEST(Mobility, DrainMovesEveryoneWhoMayLeaveAndSaysWhoCannot) {
  Fleet f = threeSites();
  f.sites[1].hosts[0].memory_mib = 8192;  // cloud-eu: 8 GiB
  f.sites[2].hosts[0].memory_mib = 8192;  // cloud-us: 8 GiB
  f.vms = {at(vm("pin", 1, 1024, ovf::Mobility::Pinned), "dc", "dc-h1"),
           at(vm("req", 1, 4096, ovf::Mobility::OnRequest), "dc", "dc-h1"),
           at(vm("auto1", 1, 4096), "dc", "dc-h2"), at(vm("auto2", 1, 2048), "dc", "dc-h2"),
           at(vm("eu", 1, 2048), "dc", "dc-h1")};
  f.vms.back().sla.jurisdictions = {"EU"};
  auto p = planDrain(f, "dc", {});
  ASSERT_TRUE(p) << p.error().describe();
  ASSERT_EQ(p->held.size(), 1u);
  EXPECT_EQ(p->held[0].vm, "pin");
  EXPECT_EQ(p->held[0].reason, HoldReason::Pinned);
  EXPECT_EQ(p->held[0].why, "mobility pinned");
  ASSERT_EQ(p->moves.size(), 4u);
  std::set<std::string> to;
  for (const auto& m : p->moves) {
    EXPECT_EQ(m.reason, MoveReason::Drain);
    EXPECT_EQ(m.why, "drain of dc");
    to.insert(m.to);
    if (m.vm == "eu") {
      EXPECT_EQ(m.to, "cloud-eu");
    }
  }
  EXPECT_EQ(to.size(), 2u);  // 12 GiB do not fit in cloud-us's 8
  EXPECT_DOUBLE_EQ(load(p->after, "dc").memory_mib, 1024);
  EXPECT_EQ(planDrain(f, "nowhere", {}).error().code, ErrorCode::NotFound);
}

TEST(Mobility, DrainFillsPastHighMarksOnlyWhenItMust) {
  Fleet f = threeSites();
  f.sites.resize(2);  // dc and cloud-eu (16 GiB)
  f.vms = {at(vm("a", 1, 8192), "dc", "dc-h1"), at(vm("b", 1, 6144), "dc", "dc-h2")};
  auto p = planDrain(f, "dc", {});
  ASSERT_TRUE(p);
  ASSERT_EQ(p->moves.size(), 2u);  // 14 of 16 GiB: 87.5%, past 85%, but dc must empty
  EXPECT_GT(load(p->after, "cloud-eu").memoryShare(), 0.85);
}

TEST(Mobility, TheSamePlanEveryTime) {
  Fleet f = overloadedDc();
  MobilityPolicy pol;
  pol.history["a"].home = "cloud-eu";
  const MobilityPlan a = plan(f, pol);
  const MobilityPlan b = plan(f, pol);
  EXPECT_EQ(a, b);
  EXPECT_FALSE(a.moves.empty());
}

TEST(Mobility, BadPoliciesAreRefusedNamingWhat) {
  const Fleet f = overloadedDc();
  auto refused = [&](const MobilityPolicy& p, const std::string& says) {
    auto out = planMobility(f, p);
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code, ErrorCode::InvalidArgument);
    EXPECT_NE(out.error().message.find(says), std::string::npos) << out.error().message;
  };
  MobilityPolicy p;
  p.marks["dc"].memory = {0.5, 0.6};
  refused(p, "Water marks of site 'dc': memory needs 0 <= low (0.6) < high (0.5) <= 1");
  p = {};
  p.marks["mars"] = {};
  refused(p, "site 'mars'");
  p = {};
  p.history["a"].home = "mars";
  refused(p, "VM 'a' has home 'mars'");
  p = {};
  p.history["ghost"] = {};
  refused(p, "VM 'ghost'");
  p = {};
  p.in_flight = {{"a", "dc", "mars"}};
  refused(p, "Move in flight of VM 'a'");
}

}  // namespace
}  // namespace vandra::placement
