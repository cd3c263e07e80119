// The mobility planner on random fleets, checked independently: every planned move passes
// the hard-constraint checker (fleet_builder.h) and the planner's own rules (automatic only,
// min stay, per-link bound with moves in flight, no destination over its high mark, each
// VM once, the fewest moves); a drain empties the site but for the pinned. And over a time
// series of load around the high mark: no VM flaps.
#include <gtest/gtest.h>

#include <random>

#include "fleet_builder.h"
#include "vandra/placement/mobility.h"
#include "vandra/placement/solver.h"

namespace vandra::placement {
namespace {

using namespace testing;

struct Case {
  Fleet fleet;
  MobilityPolicy policy;
};

// A random fleet as the solver placed it, links between all sites, and a random policy.
Case randomCase(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const std::vector<std::string> labels = {"EU", "US", "SE"};
  Case c;
  Fleet& f = c.fleet;
  Location office{"office", {}};
  const int sites = pick(2, 4);
  for (int s = 0; s < sites; ++s) {
    std::vector<Host> hosts;
    for (int h = 0, n = pick(1, 4); h < n; ++h) {
      hosts.push_back(host("s" + std::to_string(s) + "h" + std::to_string(h),
                           static_cast<uint32_t>(pick(4, 8)),
                           static_cast<uint64_t>(pick(2, 8)) * 1024, 100));
    }
    f.sites.push_back(site("s" + std::to_string(s), {labels[static_cast<size_t>(pick(0, 2))]},
                           0.01 * pick(1, 5), std::move(hosts), pick(0, 1) == 1 ? 2.0 : 1.0));
    office.rtt_ms[f.sites.back().name] = pick(1, 100);
  }
  f.locations.push_back(office);
  for (int a = 0; a < sites; ++a) {
    for (int b = a + 1; b < sites; ++b) {
      if (pick(0, 5) != 0) {  // now and then no link
        f.links.push_back({f.sites[static_cast<size_t>(a)].name,
                           f.sites[static_cast<size_t>(b)].name, 1.0 * pick(5, 120),
                           100.0 * pick(1, 10)});
      }
    }
  }
  for (int v = 0, n = pick(4, 40); v < n; ++v) {
    Vm x = vm("vm" + std::to_string(v), static_cast<uint32_t>(pick(1, 3)),
              static_cast<uint64_t>(pick(1, 4)) * 512,
              pick(0, 4) == 0   ? ovf::Mobility::Pinned
              : pick(0, 4) == 0 ? ovf::Mobility::OnRequest
                                : ovf::Mobility::Automatic);
    if (pick(0, 3) == 0) {
      x.sla.jurisdictions = {labels[static_cast<size_t>(pick(0, 2))]};
    }
    if (pick(0, 4) == 0) {
      x.sla.max_cost_per_hour = 0.02 * pick(1, 10);
    }
    if (pick(0, 3) == 0) {
      x.sla.anti_affinity_group = "g" + std::to_string(pick(0, 1));
    }
    if (pick(0, 4) == 0) {
      x.sla.max_rtt = ovf::MaxRtt{"office", static_cast<uint32_t>(pick(20, 100))};
    }
    if (pick(0, 3) == 0) {
      x.dirty_rate_mbps = 50.0 * pick(1, 12);
    }
    if (pick(0, 3) == 0) {
      x.sla.downtime_budget_ms = static_cast<uint32_t>(pick(100, 3000));
    }
    f.vms.push_back(std::move(x));
  }
  // Where they run: as solve() put them (all as automatic, so the pinned land somewhere).
  Fleet all = f;
  for (auto& v : all.vms) {
    v.sla.mobility = ovf::Mobility::Automatic;
  }
  const Solution s = *solve(all);
  for (const Placement& p : s.placements) {
    for (auto& v : f.vms) {
      if (v.name == p.vm) {
        v.site = p.site;
        v.host = p.host;
      }
    }
  }
  MobilityPolicy& pol = c.policy;
  for (const Site& st : f.sites) {
    if (pick(0, 1) == 0) {
      const double high = 0.05 * pick(10, 19);
      pol.marks[st.name].memory = {high, high - 0.05 * pick(1, 6)};
      pol.marks[st.name].vcpu = {0.95, 0.5};
    }
  }
  pol.now = 100000;
  pol.min_stay_s = 600;
  pol.max_moves_per_link = static_cast<uint32_t>(pick(1, 3));
  pol.max_moves = pick(0, 3) == 0 ? static_cast<uint32_t>(pick(1, 4)) : 0;
  for (const Vm& v : f.vms) {
    if (v.site.empty()) {
      continue;
    }
    if (pick(0, 2) == 0) {
      pol.history[v.name].home = f.sites[static_cast<size_t>(pick(0, sites - 1))].name;
    }
    if (pick(0, 2) == 0) {
      pol.history[v.name].last_moved_at = pol.now - pick(0, 1200);
    }
    if (pick(0, 9) == 0) {
      const std::string& to = f.sites[static_cast<size_t>(pick(0, sites - 1))].name;
      if (to != v.site) {
        pol.in_flight.push_back({v.name, v.site, to});
      }
    }
  }
  return c;
}

const Vm& vmNamed(const Fleet& f, const std::string& name) {
  return *std::find_if(f.vms.begin(), f.vms.end(), [&](const Vm& v) { return v.name == name; });
}

// The fleet with the plan's moves applied, as a Solution the checker reads.
Solution applied(const Fleet& f, const MobilityPlan& p) {
  Solution s;
  for (const Vm& v : f.vms) {
    if (v.site.empty()) {
      s.unplaced.push_back({v.name, {}});
      continue;
    }
    Placement pl{v.name, v.site, v.host};
    for (const auto& m : p.moves) {
      if (m.vm == v.name) {
        pl = {v.name, m.to, m.to_host};
      }
    }
    s.placements.push_back(pl);
  }
  return s;
}

// Memory and vCPU shares per site, computed here from placements and moves in flight.
std::map<std::string, std::pair<double, double>> shares(const Fleet& f, const Solution& s,
                                                        const MobilityPolicy& pol) {
  std::map<std::string, std::pair<double, double>> used, cap;
  for (const Site& st : f.sites) {
    for (const Host& h : st.hosts) {
      cap[st.name].first += static_cast<double>(h.memory_mib);
      cap[st.name].second += h.vcpus * st.vcpu_overcommit;
    }
  }
  for (const Placement& p : s.placements) {
    const Vm& v = vmNamed(f, p.vm);
    std::string at = p.site;
    for (const InFlight& m : pol.in_flight) {
      if (m.vm == v.name && m.from == v.site && p.site == v.site) {
        at = m.to;
      }
    }
    used[at].first += static_cast<double>(v.memory_mib);
    used[at].second += v.vcpus;
  }
  std::map<std::string, std::pair<double, double>> out;
  for (const auto& [site, c] : cap) {
    out[site] = {used[site].first / c.first, used[site].second / c.second};
  }
  return out;
}

SiteMarks marksOf(const MobilityPolicy& p, const std::string& site) {
  const auto it = p.marks.find(site);
  return it == p.marks.end() ? SiteMarks{} : it->second;
}

TEST(MobilityRandom, EveryPlannedMoveKeepsEveryRule) {
  std::mt19937 rng(11);
  size_t moves = 0;
  size_t relief = 0;
  size_t home = 0;
  size_t drained = 0;
  for (int round = 0; round < 400; ++round) {
    const Case c = randomCase(rng);
    const Fleet& f = c.fleet;
    const MobilityPolicy& pol = c.policy;
    auto p = planMobility(f, pol);
    ASSERT_TRUE(p) << "round " << round << ": " << p.error().describe();
    auto again = planMobility(f, pol);
    ASSERT_EQ(*p, *again) << "round " << round;
    const Solution s = applied(f, *p);
    const auto bad = violations(f, s);
    ASSERT_TRUE(bad.empty()) << "round " << round << ": " << bad.front();
    const auto after = shares(f, s, pol);
    std::set<std::string> seen;
    std::map<std::pair<std::string, std::string>, int> per_link;
    for (const InFlight& m : pol.in_flight) {
      ++per_link[std::minmax(m.from, m.to)];
    }
    for (const PlannedMove& m : p->moves) {
      SCOPED_TRACE("round " + std::to_string(round) + ", " + m.vm);
      const Vm& v = vmNamed(f, m.vm);
      EXPECT_TRUE(seen.insert(m.vm).second) << "moved twice";
      EXPECT_EQ(v.sla.mobility, ovf::Mobility::Automatic);
      EXPECT_EQ(m.from, v.site);
      EXPECT_EQ(m.from_host, v.host);
      EXPECT_NE(m.to, m.from);
      EXPECT_EQ(slaClause(f, v,
                          *std::find_if(f.sites.begin(), f.sites.end(),
                                        [&](auto& st) { return st.name == m.to; })),
                "");  // the link, the dirty rate, the downtime budget
      for (const InFlight& x : pol.in_flight) {
        EXPECT_NE(x.vm, m.vm) << "in flight already";
      }
      const auto h = pol.history.find(m.vm);
      if (h != pol.history.end() && h->second.last_moved_at) {
        EXPECT_GE(pol.now - *h->second.last_moved_at, pol.min_stay_s);
      }
      const SiteMarks mk = marksOf(pol, m.to);
      EXPECT_LE(after.at(m.to).first, mk.memory.high + 1e-9);
      EXPECT_LE(after.at(m.to).second, mk.vcpu.high + 1e-9);
      ++per_link[std::minmax(m.from, m.to)];
      EXPECT_LE(per_link[std::minmax(m.from, m.to)], static_cast<int>(pol.max_moves_per_link));
      if (m.reason == MoveReason::ComingHome) {
        EXPECT_EQ(m.to, pol.history.at(m.vm).home);
        ++home;
      } else {
        ++relief;
      }
      ++moves;
    }
    if (pol.max_moves != 0) {
      EXPECT_LE(p->moves.size(), pol.max_moves);
    }
    for (const HeldVm& h : p->held) {
      EXPECT_EQ(seen.count(h.vm), 0u) << "round " << round << ": both moved and held";
    }
    // The fewest: a site left over high stays over without its last VM out.
    std::map<std::string, const PlannedMove*> last_out;
    for (const PlannedMove& m : p->moves) {
      if (m.reason == MoveReason::OverHighWater) {
        last_out[m.from] = &m;
      }
    }
    for (const auto& [site, m] : last_out) {
      // Only where nothing else changed the load afterwards (a VM coming home, one arriving).
      const bool other = std::any_of(p->moves.begin(), p->moves.end(), [&](const PlannedMove& x) {
        return x.to == site || (x.from == site && x.reason != MoveReason::OverHighWater);
      });
      if (other) {
        continue;
      }
      const Vm& v = vmNamed(f, m->vm);
      double cap_mem = 0;
      double cap_cpu = 0;
      for (const Site& st : f.sites) {
        if (st.name == site) {
          for (const Host& h : st.hosts) {
            cap_mem += static_cast<double>(h.memory_mib);
            cap_cpu += h.vcpus * st.vcpu_overcommit;
          }
        }
      }
      const SiteMarks mk = marksOf(pol, site);
      const bool was_over =
          after.at(site).first + static_cast<double>(v.memory_mib) / cap_mem > mk.memory.high ||
          after.at(site).second + v.vcpus / cap_cpu > mk.vcpu.high;
      EXPECT_TRUE(was_over) << "round " << round << ": " << m->vm << " left " << site
                            << " though it was under its mark already";
    }
    // Drain of the first site: all but the pinned (and those in flight) move or are held.
    auto d = planDrain(f, f.sites[0].name, pol);
    ASSERT_TRUE(d) << d.error().describe();
    // An on-request VM may leave in a drain: the checker then judges its SLA where it goes.
    Fleet judged = f;
    for (auto& v : judged.vms) {
      if (std::any_of(d->moves.begin(), d->moves.end(),
                      [&](const PlannedMove& m) { return m.vm == v.name; })) {
        v.sla.mobility = ovf::Mobility::Automatic;
      }
    }
    const Solution ds = applied(f, *d);
    const auto dbad = violations(judged, ds);
    ASSERT_TRUE(dbad.empty()) << "round " << round << " drain: " << dbad.front();
    for (const Vm& v : f.vms) {
      if (v.site != f.sites[0].name ||
          std::any_of(pol.in_flight.begin(), pol.in_flight.end(),
                      [&](const InFlight& x) { return x.vm == v.name; })) {
        continue;
      }
      const bool moved = std::any_of(d->moves.begin(), d->moves.end(),
                                     [&](const PlannedMove& m) { return m.vm == v.name; });
      const auto held = std::find_if(d->held.begin(), d->held.end(),
                                     [&](const HeldVm& h) { return h.vm == v.name; });
      EXPECT_NE(moved, held != d->held.end()) << "round " << round << ": " << v.name;
      if (v.sla.mobility == ovf::Mobility::Pinned) {
        EXPECT_FALSE(moved);
      } else if (held != d->held.end()) {
        EXPECT_EQ(held->reasons.size(), f.sites.size() - 1);
      }
      drained += moved ? 1 : 0;
    }
  }
  // The rounds exercised what they check.
  EXPECT_GT(relief, 100u);
  EXPECT_GT(home, 20u);
  EXPECT_GT(drained, 200u);
  EXPECT_GT(moves, relief);
}

// dc holds 20 automatic VMs of 2 GiB whose home it is, and pinned background load that
// changes every minute; two clouds take who leaves. Each step: plan, apply, advance.
struct Simulation {
  Fleet fleet;
  MobilityPolicy policy;
  std::map<std::string, int> moves;  // per VM

  explicit Simulation(WaterMarks memory) {
    fleet.sites = {site("dc", {"EU"}, 0.05, {host("dc-h1", 64, 32768), host("dc-h2", 64, 32768)}),
                   site("cloud-eu", {"EU"}, 0.04, {host("eu-h1", 64, 65536)}),
                   site("cloud-us", {"US"}, 0.02, {host("us-h1", 64, 65536)})};
    fleet.links = {{"dc", "cloud-eu", 20, 1000},
                   {"dc", "cloud-us", 100, 1000},
                   {"cloud-eu", "cloud-us", 90, 1000}};
    fleet.vms = {vm("bg1", 1, 1, ovf::Mobility::Pinned), vm("bg2", 1, 1, ovf::Mobility::Pinned)};
    fleet.vms[0].site = fleet.vms[1].site = "dc";
    fleet.vms[0].host = "dc-h1";
    fleet.vms[1].host = "dc-h2";
    for (int i = 0; i < 20; ++i) {
      Vm v = vm("app" + std::to_string(10 + i), 1, 2048);
      v.site = "dc";
      v.host = i % 2 == 0 ? "dc-h1" : "dc-h2";
      policy.history[v.name].home = "dc";
      fleet.vms.push_back(std::move(v));
    }
    policy.marks["dc"].memory = memory;
    policy.min_stay_s = 600;
    policy.max_moves_per_link = 3;
  }

  // dc's memory with every app home is @p share of 64 GiB: the rest is background.
  void step(double share) {
    const uint64_t bg = static_cast<uint64_t>(share * 65536) - 20 * 2048;
    fleet.vms[0].memory_mib = bg / 2;
    fleet.vms[1].memory_mib = bg - bg / 2;
    auto p = planMobility(fleet, policy);
    ASSERT_TRUE(p) << p.error().describe();
    for (const PlannedMove& m : p->moves) {
      for (auto& v : fleet.vms) {
        if (v.name == m.vm) {
          v.site = m.to;
          v.host = m.to_host;
        }
      }
      policy.history[m.vm].last_moved_at = policy.now;
      ++moves[m.vm];
    }
    for (const SiteLoad& l : p->after) {  // never pushed over by a move
      const bool received = std::any_of(p->moves.begin(), p->moves.end(),
                                        [&](const PlannedMove& m) { return m.to == l.site; });
      if (received) {
        EXPECT_LE(l.memoryShare(), marksOf(policy, l.site).memory.high + 1e-9) << l.site;
      }
    }
    policy.now += 60;
  }

  int most() const {
    int m = 0;
    for (const auto& [vm, n] : moves) {
      m = std::max(m, n);
    }
    return m;
  }
  int total() const {
    int t = 0;
    for (const auto& [vm, n] : moves) {
      t += n;
    }
    return t;
  }
};

TEST(MobilitySimulation, LoadAroundTheHighMarkDoesNotMakeVmsFlap) {
  // Five hours, a minute a step, dc's load (all apps home) wandering 80–92%.
  Simulation sim(WaterMarks{0.85, 0.60});
  std::mt19937 rng(3);
  for (int t = 0; t < 300; ++t) {
    sim.step(0.80 + 0.12 * std::uniform_real_distribution<double>(0, 1)(rng));
  }
  EXPECT_GT(sim.total(), 0);  // some had to leave
  EXPECT_LE(sim.most(), 1);   // and none came back to leave again
}

TEST(MobilitySimulation, WithoutTheHysteresisBandOnlyTheMinimumStayBoundsIt) {
  // The same load, a narrow band: VMs come back as soon as dc dips, and leave again.
  Simulation narrow(WaterMarks{0.85, 0.84});
  Simulation wide(WaterMarks{0.85, 0.60});
  std::mt19937 rng(3);
  for (int t = 0; t < 300; ++t) {
    const double load = 0.80 + 0.12 * std::uniform_real_distribution<double>(0, 1)(rng);
    narrow.step(load);
    wide.step(load);
  }
  EXPECT_GT(narrow.total(), 3 * wide.total());
  // Each move waits out the minimum stay: at most one per 600 s of the 18 000.
  EXPECT_LE(narrow.most(), 18000 / 600 + 1);
  EXPECT_GT(narrow.most(), 2);
}

TEST(MobilitySimulation, DeepSwingsBringVmsHomeButNoFasterThanTheMinimumStay) {
  // Busy for 10 minutes, quiet for 10: they leave and come home, each move after 600 s.
  Simulation sim(WaterMarks{0.85, 0.60});
  for (int t = 0; t < 300; ++t) {
    sim.step((t / 10) % 2 == 0 ? 0.95 : 0.70);
  }
  EXPECT_GT(sim.most(), 4);
  EXPECT_LE(sim.most(), 18000 / 600 + 1);
}

}  // namespace
}  // namespace vandra::placement
