// Random fleets: every solution obeys every hard constraint (an independent checker,
// fleet_builder.h); on small fleets the solver places as many VMs as exhaustive search does,
// at no higher cost.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "fleet_builder.h"
#include "vandra/placement/solver.h"

namespace vandra::placement {
namespace {

using namespace testing;

// A fleet from @p seed: a few sites with labels, prices and hosts; VMs with jurisdictions,
// cost ceilings, anti-affinity groups, max_rtt; some fixed where they fit.
Fleet randomFleet(uint32_t seed, int max_vms, int max_hosts_per_site) {
  std::mt19937 rng(seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const std::vector<std::string> labels = {"EU", "US", "SE", "DE"};
  Fleet f;
  const int sites = pick(1, 4);
  Location office{"office", {}};
  for (int s = 0; s < sites; ++s) {
    std::vector<Host> hosts;
    const int n = pick(1, max_hosts_per_site);
    for (int h = 0; h < n; ++h) {
      hosts.push_back(host("s" + std::to_string(s) + "h" + std::to_string(h),
                           static_cast<uint32_t>(pick(2, 8)),
                           static_cast<uint64_t>(pick(1, 8)) * 1024, 50));
    }
    Site st = site("s" + std::to_string(s), {labels[static_cast<size_t>(pick(0, 3))]},
                   0.01 * pick(1, 5), std::move(hosts), pick(0, 1) == 1 ? 2.0 : 1.0);
    st.price.memory_gib_hour = 0.001 * pick(0, 3);
    f.sites.push_back(std::move(st));
    office.rtt_ms[f.sites.back().name] = pick(1, 100);
  }
  f.locations.push_back(office);
  const int vms = pick(1, max_vms);
  std::map<std::string, std::pair<double, uint64_t>> used;  // host -> vcpus, memory of fixed VMs
  for (int v = 0; v < vms; ++v) {
    Vm x = vm("vm" + std::to_string(v), static_cast<uint32_t>(pick(1, 4)),
              static_cast<uint64_t>(pick(1, 4)) * 512);
    if (pick(0, 3) == 0) {
      x.sla.jurisdictions = {labels[static_cast<size_t>(pick(0, 3))]};
    }
    if (pick(0, 3) == 0) {
      x.sla.max_cost_per_hour = 0.02 * pick(1, 10);
    }
    if (pick(0, 3) == 0) {
      x.sla.anti_affinity_group = "g" + std::to_string(pick(0, 1));
    }
    if (pick(0, 4) == 0) {
      x.sla.max_rtt = ovf::MaxRtt{"office", static_cast<uint32_t>(pick(10, 100))};
    }
    if (pick(0, 4) == 0 && !x.sla.anti_affinity_group) {  // fixed where it fits
      const Site& st = f.sites[static_cast<size_t>(pick(0, sites - 1))];
      const Host& h = st.hosts[static_cast<size_t>(pick(0, static_cast<int>(st.hosts.size()) - 1))];
      auto& u = used[h.name];
      if (u.first + x.vcpus <= h.vcpus * st.vcpu_overcommit &&
          u.second + x.memory_mib <= h.memory_mib) {
        u.first += x.vcpus;
        u.second += x.memory_mib;
        x.site = st.name;
        x.host = h.name;
        x.sla.mobility = pick(0, 1) == 0 ? ovf::Mobility::Pinned : ovf::Mobility::OnRequest;
      }
    }
    f.vms.push_back(std::move(x));
  }
  return f;
}

TEST(PlacementRandom, EverySolutionObeysEveryHardConstraint) {
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    const Fleet f = randomFleet(seed, 60, 5);
    auto s = solve(f);
    ASSERT_TRUE(s) << "seed " << seed << ": " << s.error().describe();
    const auto bad = violations(f, *s);
    ASSERT_TRUE(bad.empty()) << "seed " << seed << ": " << bad.front();
    auto again = solve(f);
    ASSERT_TRUE(again);
    EXPECT_EQ(s->placements, again->placements) << "seed " << seed;
  }
}

// The best (placed, cost) over every assignment of the movable VMs to a host or to none.
std::pair<size_t, double> exhaustive(const Fleet& f) {
  std::vector<size_t> movable;
  for (size_t v = 0; v < f.vms.size(); ++v) {
    if (f.vms[v].site.empty() || f.vms[v].sla.mobility == ovf::Mobility::Automatic) {
      movable.push_back(v);
    }
  }
  std::vector<std::pair<std::string, std::string>> hosts;  // site, host
  for (const auto& s : f.sites) {
    for (const auto& h : s.hosts) {
      hosts.emplace_back(s.name, h.name);
    }
  }
  std::pair<size_t, double> best{0, 0};
  bool any = false;
  std::vector<int> at(movable.size(), -1);
  std::function<void(size_t)> go = [&](size_t i) {
    if (i == movable.size()) {
      Solution s;
      for (size_t v = 0; v < f.vms.size(); ++v) {
        const Vm& x = f.vms[v];
        const auto m = std::find(movable.begin(), movable.end(), v);
        if (m == movable.end()) {
          s.placements.push_back({x.name, x.site, x.host});
          s.cost_per_hour +=
              costPerHour(x, *std::find_if(f.sites.begin(), f.sites.end(),
                                           [&](auto& st) { return st.name == x.site; }));
          continue;
        }
        const int h = at[static_cast<size_t>(m - movable.begin())];
        if (h < 0) {
          s.unplaced.push_back({x.name, {}});
          continue;
        }
        const auto& [site_name, host_name] = hosts[static_cast<size_t>(h)];
        s.placements.push_back({x.name, site_name, host_name});
        s.cost_per_hour +=
            costPerHour(x, *std::find_if(f.sites.begin(), f.sites.end(),
                                         [&](auto& st) { return st.name == site_name; }));
      }
      if (!violations(f, s).empty()) {
        return;
      }
      const std::pair<size_t, double> score{s.placements.size(), s.cost_per_hour};
      if (!any || score.first > best.first ||
          (score.first == best.first && score.second < best.second - 1e-9)) {
        best = score;
        any = true;
      }
      return;
    }
    for (int h = -1; h < static_cast<int>(hosts.size()); ++h) {
      at[i] = h;
      go(i + 1);
    }
  };
  go(0);
  return best;
}

TEST(PlacementRandom, SmallFleetsMatchExhaustiveSearch) {
  int compared = 0;
  for (uint32_t seed = 1000; seed < 1250; ++seed) {
    const Fleet f = randomFleet(seed, 5, 2);
    size_t hosts = 0;
    for (const auto& s : f.sites) {
      hosts += s.hosts.size();
    }
    if (hosts > 5) {
      continue;  // keep the brute force small: at most 6^5 assignments
    }
    auto s = solve(f);
    ASSERT_TRUE(s) << "seed " << seed;
    const auto [placed, cost] = exhaustive(f);
    EXPECT_EQ(s->placements.size(), placed) << "seed " << seed;
    EXPECT_LE(s->cost_per_hour, cost + 1e-9) << "seed " << seed;
    ++compared;
  }
  EXPECT_GT(compared, 50);
}

}  // namespace
}  // namespace vandra::placement
