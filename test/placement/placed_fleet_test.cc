// PlacedFleet: one more VM into a placed fleet. The cheapest allowed site, the solver's
// spread, every reason when it fits nowhere; commit and remove update the hosts; on random
// fleets the VM placed passes the independent checker, a VM refused fits on no host (brute
// force), and the site chosen is the cheapest any host allows.
#include "vandra/placement/placed_fleet.h"

#include <gtest/gtest.h>

#include <random>

#include "fleet_builder.h"
#include "vandra/placement/solver.h"

namespace vandra::placement {
namespace {

using namespace testing;

Fleet threeSites() {
  Fleet f;
  f.sites = {site("dc", {"EU", "SE"}, 0.05, {host("dc-h1", 8, 8192), host("dc-h2", 8, 8192)}),
             site("cloud-eu", {"EU", "DE"}, 0.04, {host("eu-h1", 8, 8192)}),
             site("cloud-us", {"US"}, 0.02, {host("us-h1", 8, 8192)})};
  f.links = {{"dc", "cloud-eu", 30, 1000},
             {"dc", "cloud-us", 110, 1000},
             {"cloud-eu", "cloud-us", 90, 1000}};
  return f;
}

PlacedFleet placed(const Fleet& f) {
  auto s = solve(f);
  EXPECT_TRUE(s) << s.error().describe();
  auto p = PlacedFleet::build(f, *s);
  EXPECT_TRUE(p) << p.error().describe();
  return std::move(*p);
}

TEST(PlacedFleet, TheCheapestSiteTheSlaAllows) {
  Fleet f = threeSites();
  f.vms = {vm("a", 2, 1024)};
  PlacedFleet p = placed(f);
  EXPECT_EQ(p.vmCount(), 1u);
  Vm eu = vm("eu", 2, 1024);
  eu.sla.jurisdictions = {"EU"};
  auto one = p.placeOne(eu);
  ASSERT_TRUE(one) << one.error().describe();
  EXPECT_EQ(one->site, "cloud-eu");
  EXPECT_EQ(one->host, "eu-h1");
  EXPECT_DOUBLE_EQ(one->cost_per_hour, 2 * 0.04);
  auto any = p.placeOne(vm("any", 2, 1024));
  ASSERT_TRUE(any);
  EXPECT_EQ(any->site, "cloud-us");
}

TEST(PlacedFleet, SpreadsOverTheHostsOfTheSiteAsTheSolverDoes) {
  Fleet f = threeSites();
  f.sites.resize(1);  // dc only: two hosts
  f.vms = {vm("a", 2, 4096)};
  PlacedFleet p = placed(f);
  const std::string first = p.hostOf("a");
  ASSERT_FALSE(first.empty());
  auto one = p.placeOne(vm("b", 2, 1024));
  ASSERT_TRUE(one);
  EXPECT_NE(one->host, first);  // the emptier host
}

TEST(PlacedFleet, EveryReasonWhenItFitsNowhere) {
  Fleet f = threeSites();
  f.vms = {vm("big-eu", 8, 8192)};
  f.vms[0].sla.jurisdictions = {"EU"};
  PlacedFleet p = placed(f);
  Vm x = vm("x", 2, 8192);
  x.sla.jurisdictions = {"EU"};
  ASSERT_TRUE(p.commit(vm("fill", 8, 8192), "dc-h1"));  // big-eu is on eu-h1
  ASSERT_TRUE(p.commit(vm("half", 2, 4096), "dc-h2"));
  auto one = p.placeOne(x);
  ASSERT_TRUE(one);
  EXPECT_FALSE(one->placed());
  ASSERT_EQ(one->reasons.size(), 3u);
  EXPECT_EQ(one->reasons[0].site, "dc");
  EXPECT_EQ(one->reasons[0].clause, "dc-h2: memory 4096 MiB free, 8192 needed");
  EXPECT_EQ(one->reasons[1].clause, "eu-h1: memory 0 MiB free, 8192 needed");
  EXPECT_EQ(one->reasons[2], (Reason{"cloud-us", "jurisdiction US not in [EU]"}));
}

TEST(PlacedFleet, CommitAndRemoveUpdateTheHosts) {
  Fleet f = threeSites();
  f.sites.resize(1);
  PlacedFleet p = placed(f);
  int committed = 0;
  for (int i = 0; i < 10; ++i) {
    const Vm v = vm("v" + std::to_string(i), 4, 4096);
    auto one = p.placeOne(v);
    ASSERT_TRUE(one);
    if (!one->placed()) {
      break;
    }
    ASSERT_TRUE(p.commit(v, one->host));
    ++committed;
  }
  EXPECT_EQ(committed, 4);  // 2 hosts x (8 vCPUs, 8 GiB) / (4, 4 GiB)
  EXPECT_FALSE(p.placeOne(vm("more", 4, 4096))->placed());
  EXPECT_FALSE(p.commit(vm("more", 4, 4096), "dc-h1"));  // no room: refused
  EXPECT_FALSE(p.commit(vm("v0", 1, 1), "dc-h1"));       // the name is taken
  ASSERT_TRUE(p.remove("v1"));
  EXPECT_EQ(p.hostOf("v1"), "");
  EXPECT_EQ(p.remove("v1").error().code, ErrorCode::NotFound);
  EXPECT_TRUE(p.placeOne(vm("more", 4, 4096))->placed());
}

TEST(PlacedFleet, AntiAffinityPerHost) {
  Fleet f = threeSites();
  f.sites.resize(1);
  PlacedFleet p = placed(f);
  Vm a = vm("a", 1, 512);
  a.sla.anti_affinity_group = "web";
  ASSERT_TRUE(p.commit(a, "dc-h1"));
  Vm b = a;
  b.name = "b";
  EXPECT_EQ(p.placeOne(b)->host, "dc-h2");
  ASSERT_TRUE(p.commit(b, "dc-h2"));
  Vm c = a;
  c.name = "c";
  auto one = p.placeOne(c);
  EXPECT_FALSE(one->placed());
  EXPECT_NE(one->reasons[0].clause.find("anti-affinity group web has a VM here"),
            std::string::npos);
  ASSERT_TRUE(p.remove("a"));
  EXPECT_EQ(p.placeOne(c)->host, "dc-h1");
}

TEST(PlacedFleet, PinnedStaysAtItsSite) {
  Fleet f = threeSites();
  PlacedFleet p = placed(f);
  Vm x = vm("x", 2, 1024, ovf::Mobility::Pinned);
  x.site = "dc";
  auto one = p.placeOne(x);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->site, "dc");  // though cloud-us is cheaper
  x.sla.mobility = ovf::Mobility::Automatic;
  EXPECT_EQ(p.placeOne(x)->site, "cloud-us");
}

TEST(PlacedFleet, BadInputIsRefused) {
  Fleet f = threeSites();
  f.vms = {vm("a", 1, 512)};
  PlacedFleet p = placed(f);
  EXPECT_FALSE(p.placeOne(vm("a", 1, 512)));  // already there
  EXPECT_FALSE(p.placeOne(vm("z", 0, 512)));
  EXPECT_FALSE(p.commit(vm("z", 1, 512), "nowhere"));
  Solution wrong;
  wrong.placements = {{"a", "cloud-us", "dc-h1"}};
  EXPECT_FALSE(PlacedFleet::build(f, wrong));
  wrong.placements = {{"ghost", "dc", "dc-h1"}};
  EXPECT_FALSE(PlacedFleet::build(f, wrong));
}

// A random fleet, solved: a few sites with labels, prices, overcommit, hosts; VMs with
// jurisdictions, cost ceilings, anti-affinity groups, max_rtt.
Fleet randomFleet(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const std::vector<std::string> labels = {"EU", "US", "SE"};
  Fleet f;
  Location office{"office", {}};
  const int sites = pick(1, 4);
  for (int s = 0; s < sites; ++s) {
    std::vector<Host> hosts;
    for (int h = 0, n = pick(1, 4); h < n; ++h) {
      hosts.push_back(host("s" + std::to_string(s) + "h" + std::to_string(h),
                           static_cast<uint32_t>(pick(2, 8)),
                           static_cast<uint64_t>(pick(1, 8)) * 1024, 50));
    }
    f.sites.push_back(site("s" + std::to_string(s), {labels[static_cast<size_t>(pick(0, 2))]},
                           0.01 * pick(1, 5), std::move(hosts), pick(0, 1) == 1 ? 2.0 : 1.0));
    office.rtt_ms[f.sites.back().name] = pick(1, 100);
  }
  f.locations.push_back(office);
  for (int v = 0, n = pick(0, 30); v < n; ++v) {
    f.vms.push_back(vm("vm" + std::to_string(v), static_cast<uint32_t>(pick(1, 4)),
                       static_cast<uint64_t>(pick(1, 4)) * 512));
  }
  return f;
}

Vm randomVm(std::mt19937& rng, const std::string& name) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Vm x = vm(name, static_cast<uint32_t>(pick(1, 6)), static_cast<uint64_t>(pick(1, 8)) * 512);
  if (pick(0, 2) == 0) {
    x.sla.jurisdictions = {pick(0, 1) == 0 ? "EU" : "SE"};
  }
  if (pick(0, 3) == 0) {
    x.sla.max_cost_per_hour = 0.02 * pick(1, 10);
  }
  if (pick(0, 2) == 0) {
    x.sla.anti_affinity_group = "g" + std::to_string(pick(0, 1));
  }
  if (pick(0, 3) == 0) {
    x.sla.max_rtt = ovf::MaxRtt{"office", static_cast<uint32_t>(pick(10, 100))};
  }
  return x;
}

TEST(PlacedFleetRandom, AgreesWithTheIndependentChecker) {
  std::mt19937 rng(7);
  int placed_count = 0;
  int refused = 0;
  for (int round = 0; round < 300; ++round) {
    Fleet f = randomFleet(rng);
    auto s = solve(f);
    ASSERT_TRUE(s) << s.error().describe();
    auto p = PlacedFleet::build(f, *s);
    ASSERT_TRUE(p) << p.error().describe();
    for (int k = 0; k < 8; ++k) {
      const Vm x = randomVm(rng, "new" + std::to_string(k));
      auto one = p->placeOne(x);
      ASSERT_TRUE(one);
      auto again = p->placeOne(x);
      ASSERT_EQ(*one, *again) << "round " << round;  // deterministic
      // Every host, with the new VM on it, as the checker sees it; the cheapest that passes.
      Fleet with = f;
      with.vms.push_back(x);
      double cheapest = -1;
      for (const Site& st : f.sites) {
        for (const Host& h : st.hosts) {
          Solution trial = *s;
          trial.placements.push_back({x.name, st.name, h.name});
          if (violations(with, trial).empty() &&
              (cheapest < 0 || costPerHour(x, st) < cheapest - 1e-9)) {
            cheapest = costPerHour(x, st);
          }
        }
      }
      if (!one->placed()) {
        EXPECT_LT(cheapest, 0) << "round " << round << ": refused " << x.name
                               << " though a host takes it";
        EXPECT_EQ(one->reasons.size(), f.sites.size());
        ++refused;
        continue;
      }
      Solution trial = *s;
      trial.placements.push_back({x.name, one->site, one->host});
      const auto bad = violations(with, trial);
      ASSERT_TRUE(bad.empty()) << "round " << round << ": " << bad.front();
      EXPECT_NEAR(one->cost_per_hour, cheapest, 1e-9) << "round " << round;
      // Commit it: the next VM sees it (the checker is run on the grown solution).
      ASSERT_TRUE(p->commit(x, one->host));
      f = with;
      *s = trial;
      ++placed_count;
    }
  }
  EXPECT_GT(placed_count, 300);
  EXPECT_GT(refused, 50);
}

}  // namespace
}  // namespace vandra::placement
