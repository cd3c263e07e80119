// `vandra bench soak --migrations N`: the test guest imported at dc and moved by vandra
// dc -> cloud-eu -> dc -> ... N times over the testbed's link, its verifying workload (a disk
// pattern, the stamped dirtier and disk writer) running throughout:
//
//   move i:  migrate (client session watched) -> data checks where it runs now -> sample both
//            agents -> the guest runs between_s there -> move i+1 the other way
//
// A move fails when it does not complete, the client loses a TCP byte, or a check fails; the
// soak stops at the first. After every move both agents are sampled: resident memory, file
// descriptors, threads, QEMU processes in the site, kept images (ADR 0027), files and bytes
// under the agent's images and run folders, and the longest backing chain of a VM disk. The
// guest alternates sites, so samples are compared with those of the same parity, after a
// warm-up of two round trips (kept images build up over the first trips): nothing countable
// may rise, and memory's median over the last third may exceed the middle third's by at most
// 5 % + 4 MiB (soak_growth.h). --json: one object per move, then a summary.
#include "bench_soak.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench_internal.h"
#include "cli_support.h"
#include "soak_growth.h"
#include "vandra/agent/agent_client.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/testbed/testbed.h"

namespace vandra::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace bench;
using namespace soak;

const std::vector<std::string> kSites = {"dc", "cloud-eu"};

uint64_t statusField(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) == 0) {
      return std::strtoull(line.c_str() + name.size() + 1, nullptr, 10);
    }
  }
  return 0;
}

uint64_t chainLength(const std::string& image) {
  auto info = runCapture({"qemu-img", "info", "--backing-chain", "--output=json", "-U", image});
  const json j = info ? json::parse(*info, nullptr, false) : json();
  return j.is_array() && !j.empty() ? j.size() - 1 : 0;
}

AgentSample sampleAgent(const testbed::SiteInfo& site) {
  AgentSample s;
  s.rss_kib = statusField(site.agent_pid, "VmRSS");
  s.threads = statusField(site.agent_pid, "Threads");
  s.fds = numericEntries("/proc/" + std::to_string(site.agent_pid) + "/fd").size();
  const uint64_t ns = netnsInode("/run/netns/" + site.netns);
  for (const auto& p : numericEntries("/proc")) {
    if (ns != 0 && netnsInode("/proc/" + p + "/ns/net") == ns) {
      std::ifstream comm("/proc/" + p + "/comm");
      std::string name;
      std::getline(comm, name);
      s.qemus += name.rfind("qemu-system", 0) == 0 ? 1U : 0U;
    }
  }
  const fs::path state = fs::path(site.site_dir) / "agent";
  std::error_code ec;
  for (const char* dir : {"images", "run"}) {
    for (auto it = fs::recursive_directory_iterator(state / dir, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      std::error_code fec;
      if (!it->is_regular_file(fec)) {
        continue;
      }
      ++s.files;
      struct stat st {};
      if (std::string(dir) == "images" && ::stat(it->path().c_str(), &st) == 0) {
        s.image_bytes += static_cast<uint64_t>(st.st_blocks) * 512;
      }
      if (it->path().filename() == "retained.json") {
        ++s.kept_images;
      }
      const fs::path rel = it->path().lexically_relative(state / "images");
      if (it->path().extension() == ".qcow2" && !rel.empty() && *rel.begin() == "vms") {
        s.max_chain = std::max(s.max_chain, chainLength(it->path().string()));
      }
    }
  }
  return s;
}

void printMove(const MigrateRun& r, int n, int total, const std::string& from,
               const std::string& to, const std::map<std::string, AgentSample>& samples) {
  std::printf(
      "move %3d/%d %-8s -> %-8s %-6s total %6.2f s  downtime %4llu ms  gap %6.1f ms  "
      "lost %llu B  WAN %7.1f MB\n",
      n, total, from.c_str(), to.c_str(), r.result == "ok" ? "ok" : "FAILED", r.total_s,
      static_cast<unsigned long long>(r.downtime_ms), r.client_max_gap_ms,
      static_cast<unsigned long long>(r.tcp_bytes_lost), static_cast<double>(r.wan_bytes) / 1e6);
  for (const auto& [site, s] : samples) {
    std::printf(
        "           %-8s rss %6.1f MiB  fds %3llu  threads %3llu  qemu %llu  kept %llu  "
        "files %3llu  images %7.1f MB  chain %llu\n",
        site.c_str(), static_cast<double>(s.rss_kib) / 1024.0,
        static_cast<unsigned long long>(s.fds), static_cast<unsigned long long>(s.threads),
        static_cast<unsigned long long>(s.qemus), static_cast<unsigned long long>(s.kept_images),
        static_cast<unsigned long long>(s.files), static_cast<double>(s.image_bytes) / 1e6,
        static_cast<unsigned long long>(s.max_chain));
  }
  if (r.result != "ok") {
    std::printf("           %s\n", r.result.c_str());
  }
  std::fflush(stdout);
}

}  // namespace

int benchSoak(const BenchSoakOptions& options) {
  const std::string ova = fs::absolute(fs::path(options.guest_dir) / "test-guest.ova").string();
  if (!fs::exists(ova)) {
    return reportError("bench soak",
                       Error(ErrorCode::NotFound, "No test guest at " + ova + " (guest/build.sh)"));
  }
  BenchMigrateOptions o;
  o.guest_dir = options.guest_dir;
  o.profile = options.profile;
  o.disk_data_mib = options.disk_data_mib;
  o.wss_mib = options.wss_mib;
  o.dirty_mbps = options.dirty_mbps;
  o.max_total_s = options.max_total_s;

  auto made = makeWorkDir("vandra-benchsoak");
  if (!made) {
    return reportError("bench soak", made.error());
  }
  const std::string work = *made;
  auto rm = defer([&] {
    std::error_code ec;
    fs::remove_all(work, ec);
  });
  testbed::TestbedOptions to = benchTestbed(work, o.profile, defaultCongestion(o.profile));
  to.agent_args = {"--stop-timeout", "3"};
  if (!options.json) {
    std::fprintf(stderr, "bench soak: building the testbed (%s)...\n", o.profile.c_str());
  }
  auto tb = testbed::up(to);
  if (!tb) {
    return reportError("bench soak", tb.error());
  }
  auto down = defer([&] { (void)testbed::down(to.state_dir); });
  std::map<std::string, agent::AgentClient> agents;
  for (const auto& s : kSites) {
    agents.emplace(s, agentClient(*tb->site(s)));
  }
  const std::string id = "soak";
  auto cleanup = defer([&] {
    for (auto& [site, a] : agents) {
      (void)a.post("/v1/vms/" + id + "/kill", json::object());
      (void)a.del("/v1/vms/" + id);
    }
  });
  auto setUp = [&]() -> Result<testbed::GuestConnection> {
    VANDRA_TRY(agents.at("dc").post("/v1/peers/cloud-eu/connect", json::object()));
    const std::string upload = fs::path(ova).filename().string();
    VANDRA_TRY(agents.at("dc").uploadPackage(ova, upload));
    VANDRA_TRY(agents.at("dc").post("/v1/vms", {{"id", id}, {"upload", upload}}));
    VANDRA_TRY(agents.at("dc").post("/v1/vms/" + id + "/start", json::object()));
    return startWorkload(*tb, o);
  };
  if (!options.json) {
    std::fprintf(stderr, "bench soak: importing and starting the guest at dc...\n");
  }
  auto conn = setUp();
  if (!conn) {
    return reportError("bench soak", conn.error());
  }

  std::map<std::string, std::vector<AgentSample>> samples;
  int failed = 0;
  uint64_t lost = 0;
  uint64_t max_chain = 0;
  int done = 0;
  for (int i = 1; i <= options.migrations && failed == 0; ++i) {
    const std::string& from = kSites[static_cast<size_t>(i - 1) % 2];
    const std::string& to_site = kSites[static_cast<size_t>(i) % 2];
    auto r = moveVandra(*tb, agents.at(from), to_site, id, *conn, o, "vandra");
    MigrateRun run = r ? *r : MigrateRun{};
    if (!r) {
      run.system = "vandra";
      run.profile = o.profile;
      run.result = r.error().describe();
    }
    ++done;
    failed += run.result == "ok" ? 0 : 1;
    lost += run.tcp_bytes_lost;
    std::map<std::string, AgentSample> now;
    for (const auto& s : kSites) {
      now[s] = sampleAgent(*tb->site(s));
      samples[s].push_back(now[s]);
      max_chain = std::max(max_chain, now[s].max_chain);
    }
    if (options.json) {
      json sites = json::object();
      for (const auto& [s, a] : now) {
        sites[s] = toJson(a);
      }
      std::cout << json{{"kind", "move"},     {"n", i},        {"from", from}, {"to", to_site},
                        {"run", toJson(run)}, {"sites", sites}}
                       .dump()
                << "\n"
                << std::flush;
    } else {
      printMove(run, i, options.migrations, from, to_site, now);
    }
    if (failed == 0 && i < options.migrations) {
      std::this_thread::sleep_for(std::chrono::seconds(options.between_s));
    }
  }
  // Two round trips of warm-up, fewer on a short soak (at least one sample of each parity
  // is left to compare with).
  const size_t warm_up = std::min<size_t>(4, done > 2 ? static_cast<size_t>(done - 2) & ~1U : 0);
  json growth = json::object();
  bool any_growth = false;
  for (const auto& s : kSites) {
    const Growth g = growthOf(samples[s], warm_up);
    any_growth = any_growth || grew(g);
    growth[s] = toJson(g);
  }
  const bool ok = failed == 0 && done == options.migrations && !any_growth;
  const json summary = {{"kind", "summary"},
                        {"profile", o.profile},
                        {"migrations", done},
                        {"failed", failed},
                        {"tcp_bytes_lost", lost},
                        {"warm_up", warm_up},
                        {"max_chain", max_chain},
                        {"growth", growth},
                        {"result", ok ? "ok" : (failed > 0 ? "a move failed" : "an agent grew")}};
  if (options.json) {
    std::cout << summary.dump() << "\n" << std::flush;
  } else {
    std::printf("soak: %d of %d moves, %d failed, %llu TCP bytes lost, longest chain %llu\n", done,
                options.migrations, failed, static_cast<unsigned long long>(lost),
                static_cast<unsigned long long>(max_chain));
    for (const auto& s : kSites) {
      std::printf("  %-8s growth after %zu moves of warm-up: %s\n", s.c_str(), warm_up,
                  growth[s].dump().c_str());
    }
    std::printf("result: %s\n", summary["result"].get<std::string>().c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace vandra::cli
