// placement_bench: the placement engine's greedy pass on a large fleet (20 sites, 1 000 hosts,
// 100 000 VMs, a quarter of them limited to EU sites, some with cost ceilings and
// anti-affinity groups) beside a naive first-fit that honours the same hard constraints (each
// VM on the first host, in fleet order, whose site its SLA allows and that has room).
// Reports VMs placed per second and, as counters, how many were placed and the cost per hour.
// Then one more VM into that placed fleet: PlacedFleet::placeOne (alone, and with commit and
// remove) beside a first fit over the same per-host loads, and beside rebuilding the
// PlacedFleet for every VM (what incremental state saves).
#include <benchmark/benchmark.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "vandra/placement/mobility.h"
#include "vandra/placement/placed_fleet.h"
#include "vandra/placement/solver.h"

namespace {

using namespace vandra::placement;

Fleet bigFleet(int sites, int hosts_per_site, int vms) {
  std::mt19937 rng(42);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Fleet f;
  for (int s = 0; s < sites; ++s) {
    Site site;
    site.name = "site" + std::to_string(s);
    site.jurisdictions = {s % 2 == 0 ? "EU" : "US"};
    site.vcpu_overcommit = 4;
    site.price.vcpu_hour = 0.01 + 0.002 * s;
    site.price.memory_gib_hour = 0.002;
    for (int h = 0; h < hosts_per_site; ++h) {
      site.hosts.push_back({site.name + "-h" + std::to_string(h), 64, 512 * 1024, 4000});
    }
    f.sites.push_back(std::move(site));
  }
  for (int v = 0; v < vms; ++v) {
    Vm vm;
    vm.name = "vm" + std::to_string(v);
    vm.vcpus = static_cast<uint32_t>(pick(1, 8));
    vm.memory_mib = static_cast<uint64_t>(pick(1, 16)) * 1024;
    vm.disk_gib = static_cast<uint64_t>(pick(10, 40));
    vm.sla.mobility = vandra::ovf::Mobility::Automatic;
    if (v % 4 == 0) {
      vm.sla.jurisdictions = {"EU"};
    }
    if (v % 7 == 0) {
      vm.sla.max_cost_per_hour = 0.2;
    }
    if (v % 50 == 0) {
      vm.sla.anti_affinity_group = "g" + std::to_string(v % 500);
    }
    f.vms.push_back(std::move(vm));
  }
  return f;
}

const Fleet& fleet() {
  static const Fleet f = bigFleet(20, 50, 100000);
  return f;
}

void BM_PlacementGreedy(benchmark::State& state) {
  const Fleet& f = fleet();
  size_t placed = 0;
  double cost = 0;
  for (auto _ : state) {
    auto s = solve(f);
    if (!s) {
      state.SkipWithError(s.error().describe().c_str());
      return;
    }
    placed = s->placements.size();
    cost = s->cost_per_hour;
    benchmark::DoNotOptimize(s->placements.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(f.vms.size()));
  state.counters["placed"] = static_cast<double>(placed);
  state.counters["cost_per_hour"] = cost;
}
BENCHMARK(BM_PlacementGreedy)->Unit(benchmark::kMillisecond)->UseRealTime();

// The baseline: first fit in fleet order, the same hard constraints (slaClause, capacity,
// anti-affinity), no objective.
void BM_FirstFit(benchmark::State& state) {
  const Fleet& f = fleet();
  size_t placed = 0;
  double cost = 0;
  for (auto _ : state) {
    struct Load {
      double vcpus = 0;
      uint64_t memory = 0;
      uint64_t disk = 0;
      std::set<std::string> groups;
    };
    std::vector<std::vector<Load>> load(f.sites.size());
    for (size_t s = 0; s < f.sites.size(); ++s) {
      load[s].resize(f.sites[s].hosts.size());
    }
    placed = 0;
    cost = 0;
    for (const Vm& vm : f.vms) {
      bool done = false;
      for (size_t s = 0; s < f.sites.size() && !done; ++s) {
        const Site& site = f.sites[s];
        if (!slaClause(f, vm, site).empty()) {
          continue;
        }
        for (size_t h = 0; h < site.hosts.size() && !done; ++h) {
          Load& l = load[s][h];
          const Host& host = site.hosts[h];
          if (l.vcpus + vm.vcpus > host.vcpus * site.vcpu_overcommit ||
              l.memory + vm.memory_mib > host.memory_mib || l.disk + vm.disk_gib > host.disk_gib ||
              (vm.sla.anti_affinity_group && l.groups.count(*vm.sla.anti_affinity_group) != 0)) {
            continue;
          }
          l.vcpus += vm.vcpus;
          l.memory += vm.memory_mib;
          l.disk += vm.disk_gib;
          if (vm.sla.anti_affinity_group) {
            l.groups.insert(*vm.sla.anti_affinity_group);
          }
          ++placed;
          cost += costPerHour(vm, site);
          done = true;
        }
      }
    }
    benchmark::DoNotOptimize(placed);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(f.vms.size()));
  state.counters["placed"] = static_cast<double>(placed);
  state.counters["cost_per_hour"] = cost;
}
BENCHMARK(BM_FirstFit)->Unit(benchmark::kMillisecond)->UseRealTime();

// The placed fleet (solve() once) and 64 new VMs drawn like the fleet's, for one-VM inserts.
struct Placed {
  Solution solution;
  std::vector<Vm> extra;
};

const Placed& placedFleet() {
  static const Placed p = [] {
    Placed out;
    out.solution = *solve(fleet());
    std::mt19937 rng(7);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    for (int v = 0; v < 64; ++v) {
      Vm vm;
      vm.name = "new" + std::to_string(v);
      vm.vcpus = static_cast<uint32_t>(pick(1, 8));
      vm.memory_mib = static_cast<uint64_t>(pick(1, 16)) * 1024;
      vm.disk_gib = static_cast<uint64_t>(pick(10, 40));
      vm.sla.mobility = vandra::ovf::Mobility::Automatic;
      if (v % 4 == 0) {
        vm.sla.jurisdictions = {"EU"};
      }
      if (v % 7 == 0) {
        vm.sla.max_cost_per_hour = 0.2;
      }
      if (v % 5 == 0) {
        vm.sla.anti_affinity_group = "g" + std::to_string(v % 500);
      }
      out.extra.push_back(std::move(vm));
    }
    return out;
  }();
  return p;
}

void BM_PlaceOne(benchmark::State& state) {
  const Placed& p = placedFleet();
  auto placed = PlacedFleet::build(fleet(), p.solution);
  if (!placed) {
    state.SkipWithError(placed.error().describe().c_str());
    return;
  }
  const bool update = state.range(0) != 0;
  size_t i = 0;
  size_t ok = 0;
  for (auto _ : state) {
    const Vm& vm = p.extra[i++ % p.extra.size()];
    auto one = placed->placeOne(vm);
    if (one && one->placed()) {
      ++ok;
      if (update) {  // commit and take it off again: the fleet stays as it was
        (void)placed->commit(vm, one->host);
        (void)placed->remove(vm.name);
      }
    }
    benchmark::DoNotOptimize(one);
  }
  state.counters["placed_share"] = static_cast<double>(ok) / static_cast<double>(i);
}
BENCHMARK(BM_PlaceOne)->Arg(0)->Arg(1)->ArgName("commit_remove")->Unit(benchmark::kMicrosecond);

// The baseline for one insert: first fit over per-host loads computed once from the same
// solution (each VM on the first host, in fleet order, its SLA allows and with room).
void BM_FirstFitOne(benchmark::State& state) {
  const Fleet& f = fleet();
  const Placed& p = placedFleet();
  struct Load {
    double vcpus = 0;
    uint64_t memory = 0;
    uint64_t disk = 0;
    std::set<std::string> groups;
  };
  std::vector<std::vector<Load>> load(f.sites.size());
  std::map<std::string, std::pair<size_t, size_t>> where;
  for (size_t s = 0; s < f.sites.size(); ++s) {
    load[s].resize(f.sites[s].hosts.size());
    for (size_t h = 0; h < f.sites[s].hosts.size(); ++h) {
      where[f.sites[s].hosts[h].name] = {s, h};
    }
  }
  std::map<std::string, const Vm*> vms;
  for (const Vm& vm : f.vms) {
    vms[vm.name] = &vm;
  }
  for (const Placement& pl : p.solution.placements) {
    const auto [s, h] = where.at(pl.host);
    const Vm& vm = *vms.at(pl.vm);
    Load& l = load[s][h];
    l.vcpus += vm.vcpus;
    l.memory += vm.memory_mib;
    l.disk += vm.disk_gib;
    if (vm.sla.anti_affinity_group) {
      l.groups.insert(*vm.sla.anti_affinity_group);
    }
  }
  size_t i = 0;
  size_t ok = 0;
  for (auto _ : state) {
    const Vm& vm = p.extra[i++ % p.extra.size()];
    long found = -1;
    for (size_t s = 0; s < f.sites.size() && found < 0; ++s) {
      const Site& site = f.sites[s];
      if (!slaClause(f, vm, site).empty()) {
        continue;
      }
      for (size_t h = 0; h < site.hosts.size(); ++h) {
        const Load& l = load[s][h];
        const Host& host = site.hosts[h];
        if (l.vcpus + vm.vcpus > host.vcpus * site.vcpu_overcommit ||
            l.memory + vm.memory_mib > host.memory_mib || l.disk + vm.disk_gib > host.disk_gib ||
            (vm.sla.anti_affinity_group && l.groups.count(*vm.sla.anti_affinity_group) != 0)) {
          continue;
        }
        found = static_cast<long>(h);
        break;
      }
    }
    ok += found >= 0 ? 1 : 0;
    benchmark::DoNotOptimize(found);
  }
  state.counters["placed_share"] = static_cast<double>(ok) / static_cast<double>(i);
}
BENCHMARK(BM_FirstFitOne)->Unit(benchmark::kMicrosecond);

// What incremental state saves: the PlacedFleet built again from the solution for each VM.
void BM_PlaceOneRebuilding(benchmark::State& state) {
  const Placed& p = placedFleet();
  size_t i = 0;
  for (auto _ : state) {
    auto placed = PlacedFleet::build(fleet(), p.solution);
    auto one = placed->placeOne(p.extra[i++ % p.extra.size()]);
    benchmark::DoNotOptimize(one);
  }
}
BENCHMARK(BM_PlaceOneRebuilding)->Unit(benchmark::kMillisecond);

// The mobility planner on the placed fleet as it runs: solve() packs the cheapest sites, so
// most sites are over the default high mark (85%) and few have room: the planner's worst
// case, every automatic VM of an over-full site tried. And the drain of the first site.
const Fleet& runningFleet() {
  static const Fleet f = [] {
    Fleet out = fleet();
    std::map<std::string, const Placement*> at;
    for (const Placement& p : placedFleet().solution.placements) {
      at[p.vm] = &p;
    }
    for (Vm& vm : out.vms) {
      if (const auto it = at.find(vm.name); it != at.end()) {
        vm.site = it->second->site;
        vm.host = it->second->host;
      }
    }
    for (size_t a = 0; a < out.sites.size(); ++a) {
      for (size_t b = a + 1; b < out.sites.size(); ++b) {
        out.links.push_back({out.sites[a].name, out.sites[b].name, 20, 10000});
      }
    }
    return out;
  }();
  return f;
}

void BM_MobilityPlan(benchmark::State& state) {
  const Fleet& f = runningFleet();
  size_t moves = 0;
  size_t held = 0;
  for (auto _ : state) {
    auto p = planMobility(f, {});
    if (!p) {
      state.SkipWithError(p.error().describe().c_str());
      return;
    }
    moves = p->moves.size();
    held = p->held.size();
    benchmark::DoNotOptimize(p->moves.data());
  }
  state.counters["moves"] = static_cast<double>(moves);
  state.counters["held"] = static_cast<double>(held);
}
BENCHMARK(BM_MobilityPlan)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_MobilityDrain(benchmark::State& state) {
  const Fleet& f = runningFleet();
  size_t moves = 0;
  size_t held = 0;
  for (auto _ : state) {
    auto p = planDrain(f, f.sites[0].name, {});
    if (!p) {
      state.SkipWithError(p.error().describe().c_str());
      return;
    }
    moves = p->moves.size();
    held = p->held.size();
    benchmark::DoNotOptimize(p->moves.data());
  }
  state.counters["moves"] = static_cast<double>(moves);
  state.counters["held"] = static_cast<double>(held);
}
BENCHMARK(BM_MobilityDrain)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
