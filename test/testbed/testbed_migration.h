// The fixture of the testbed's live-migration tests (testbed_migration_test.cc: the
// end-to-end story and the caps; testbed_fault_test.cc: cancels, agents and QEMUs killed,
// links cut, refusals): a testbed with both agents and the test guest running at dc, a client
// connection to its service open, and the checks every such test ends with.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "test/support/require.h"
#include "testbed_support.h"
#include "vandra/agent/agent_client.h"
#include "vandra/agent/agent_service.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/agent/recovery.h"
#include "vandra/common/ethernet.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/guest_workload.h"
#include "vandra/testbed/testbed.h"
#include "vandra/testbed/wan_emulator.h"

namespace vandra::testbed {

using namespace support;  // NOLINT: the helpers every testbed test uses
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// ---- live migration between the testbed's sites (real agents, QEMU, tunnel, WAN) ----------

// Starts migrating @p vm from @p from to site @p to and follows it until it ends (long polls,
// no sleeps). Returns the final record.
inline nlohmann::json migrateAndWait(agent::AgentClient& from, const std::string& vm,
                                     const std::string& to,
                                     nlohmann::json extra = nlohmann::json::object()) {
  extra["to"] = to;
  auto begun = from.post("/v1/vms/" + vm + "/migrate", extra);
  if (!begun) {
    ADD_FAILURE() << "migrate: " << begun.error().describe();
    return {};
  }
  const std::string id = (*begun)["id"];
  const auto deadline = Clock::now() + 600s;
  while (Clock::now() < deadline) {
    auto m = from.get("/v1/migrations/" + id + "?wait_ms=5000");
    if (!m) {
      ADD_FAILURE() << "GET migration: " << m.error().describe();
      return {};
    }
    if ((*m)["ended"].get<bool>()) {
      return *m;
    }
  }
  ADD_FAILURE() << "migration " << id << " did not end";
  return {};
}

// A testbed with both agents and the test guest running at dc, a client connection to its
// service open: what every migration test starts from.
class TestbedMigration : public ::testing::Test {
 protected:
  // Skips (GTEST_SKIP in the caller's frame: check IsSkipped()) without root, namespaces or
  // a built guest.
  void bringUp(const std::string& profile, const std::string& ova_override = "") {
    if (const std::string why = cannotRun(); !why.empty()) {
      VANDRA_SKIP_OR_FAIL(why);
    }
    const char* guest = std::getenv("VANDRA_GUEST_DIR");
    if (guest == nullptr || !fs::exists(fs::path(guest) / "test-guest.ova")) {
      VANDRA_SKIP_OR_FAIL(
          "VANDRA_GUEST_DIR does not name a built test guest (tools/test.sh builds one)");
    }
    TestbedOptions o = agentOptionsFor(profile, dir_.path());
    o.peer_mbps = peer_mbps_;
    auto tb = up(o);
    ASSERT_TRUE(tb) << tb.error().describe();
    tb_ = *tb;
    dc_.emplace(clientFor(*tb_.site("dc"), *tb_.site("dc")));
    cloud_.emplace(clientFor(*tb_.site("cloud-eu"), *tb_.site("cloud-eu")));
    const std::string ova = ova_override.empty()
                                ? fs::absolute(fs::path(guest) / "test-guest.ova").string()
                                : ova_override;
    auto imported = importUploaded(*dc_, "web1", ova);
    ASSERT_TRUE(imported) << imported.error().describe();
    auto started = dc_->post("/v1/vms/web1/start", nlohmann::json::object());
    ASSERT_TRUE(started) << started.error().describe();
    qemu_ = (*started)["pid"].get<pid_t>();
    auto conn = GuestConnection::connect(tb_.client_netns, "10.10.0.10", 7000, Clock::now() + 300s);
    ASSERT_TRUE(conn) << conn.error().describe();
    conn_.emplace(std::move(*conn));
    ASSERT_TRUE(conn_->ping("boot", 30s));
  }
  // Starts a migration to cloud-eu capped at @p mbps (so the mirrors take long) and waits until
  // it is in @p phase. Returns its id.
  std::string beginCapped(double mbps, const std::string& phase,
                          nlohmann::json extra = nlohmann::json::object()) {
    extra["to"] = "cloud-eu";
    extra["bandwidth_mbps"] = mbps;
    auto begun = dc_->post("/v1/vms/web1/migrate", extra);
    if (!begun) {
      ADD_FAILURE() << begun.error().describe();
      return "";
    }
    const std::string id = (*begun)["id"];
    std::string now;
    for (int i = 0; i < 400 && now != phase; ++i) {
      auto m = dc_->get("/v1/migrations/" + id +
                        "?wait_ms=300");  // waits for the end, which does not come
      if (!m || (*m)["ended"].get<bool>()) {
        ADD_FAILURE() << "migration ended before " << phase << ": "
                      << (m ? m->dump(2) : m.error().describe());
        return id;
      }
      now = (*m)["phase"];
    }
    EXPECT_EQ(now, phase);
    return id;
  }
  // Follows migration @p id at dc to its end.
  nlohmann::json endOf(const std::string& id, agent::AgentClient& at) {
    for (int i = 0; i < 200; ++i) {
      auto m = at.get("/v1/migrations/" + id + "?wait_ms=5000");
      if (!m) {
        ADD_FAILURE() << m.error().describe();
        return {};
      }
      if ((*m)["ended"].get<bool>()) {
        return *m;
      }
    }
    ADD_FAILURE() << "migration " << id << " did not end";
    return {};
  }
  // Waits (the agent's event long poll, no sleeps) until cloud-eu has no VM web1.
  void expectCloudEmpty() {
    uint64_t since = 0;
    for (int i = 0; i < 40; ++i) {
      auto vm = cloud_->get("/v1/vms/web1");
      if (!vm && vm.error().code == ErrorCode::NotFound) {
        break;
      }
      auto ev = cloud_->get("/v1/vms/web1/events?wait_ms=5000&since=" + std::to_string(since));
      if (ev && !(*ev)["events"].empty()) {
        since = (*ev)["events"].back()["seq"].get<uint64_t>();
      }
    }
    EXPECT_EQ(cloud_->get("/v1/vms/web1").error().code, ErrorCode::NotFound);
    EXPECT_EQ(qemuProcessesIn(tb_.site("cloud-eu")->netns), 0U);
    EXPECT_EQ(migrationRunLeftovers(*tb_.site("cloud-eu")), 0U);
  }
  // Brings the testbed up and starts a migration that stays in the RAM pre-copy: a memory
  // pattern, a guest dirtying 64 MiB at 40 MB/s, a link capped at 80 Mbit/s (10 MB/s), no
  // auto-converge. Returns its id (call IsSkipped()/HasFatalFailure() after).
  std::string intoRamPrecopy() {
    bringUp("lan");
    if (IsSkipped() || HasFatalFailure()) {
      return "";
    }
    startOutpacingGuest();
    return beginCapped(80, "precopy_ram", {{"auto_converge", false}});
  }
  // The guest's memory pattern, and a workload dirtying 64 MiB at 40 MB/s: over a link capped
  // at 80 Mbit/s (10 MB/s) without auto-converge its pre-copy cannot converge.
  void startOutpacingGuest() {
    EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
    WorkloadOptions wo;
    wo.dirty_wss_mib = 64;
    wo.dirty_rate_mbps = 40;
    startWorkload(wo);
  }
  // The stamped dirtier and disk writer (testbed::GuestWorkload; the disk writer on the
  // last 8 MiB of the data disk, away from the tests' diskpat regions at 0..32 MiB).
  void startWorkload(const WorkloadOptions& o = {}) {
    auto w = GuestWorkload::start(*conn_, o);
    ASSERT_TRUE(w) << w.error().describe();
    workload_ = std::move(*w);
  }
  // Every page and block the workload wrote, wherever the guest ran, is there.
  void expectWorkloadIntact() {
    ASSERT_TRUE(workload_) << "no workload started";
    auto r = workload_->verify(*conn_);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_TRUE(r->pass()) << r->describe();
    std::cout << "workload: " << r->describe() << "\n";
  }
  void expectMemoryIntact() {
    auto mem = conn_->exec("vguest-mempat check", 120s);
    ASSERT_TRUE(mem) << mem.error().describe();
    EXPECT_EQ(mem->out.empty() ? "" : mem->out.back(), "PASS bytes=33554432 seed=9");
    if (workload_) {
      expectWorkloadIntact();
    }
  }
  // The VM runs on at dc, on the same QEMU, answers, and its disk pattern is intact.
  void expectRunningAtDc(const std::string& disk_check) {
    auto vm = dc_->get("/v1/vms/web1");
    ASSERT_TRUE(vm) << vm.error().describe();
    EXPECT_EQ((*vm)["state"], "running");
    EXPECT_EQ((*vm)["pid"].get<pid_t>(), qemu_);
    // dc's bridge sends the guest's frames to its own tap again (a switchover that began
    // had pointed them at the link; the resumed guest's RARPs point them back).
    auto mac = learnedMac(tb_.site("dc")->netns, agent::tapName("web1", 0));
    EXPECT_TRUE(mac) << mac.error().describe();
    ASSERT_TRUE(conn_->ping("after", 60s));
    if (!disk_check.empty()) {
      EXPECT_EQ(execOut(*conn_, "vguest-diskpat check /dev/vdb " + disk_check).rfind("PASS", 0),
                0U);
    }
    EXPECT_EQ(migrationRunLeftovers(*tb_.site("dc")), 0U);
  }

  // On a failure, what it takes to tell a guest that stopped from a network that lost it: the
  // VM at each site, its console's end, the bridges' forwarding entries and the client's
  // neighbour table. (The testbed itself is taken down by dir_.)
  void TearDown() override {
    if (!HasFailure() || !dc_) {
      return;
    }
    std::cout << "---- state at failure ----\n";
    for (auto* site : {&*dc_, &*cloud_}) {
      auto vm = site->get("/v1/vms/web1", 10s);
      std::cout << site->endpoint().netns << " vm: " << (vm ? vm->dump() : vm.error().describe())
                << "\n";
      if (vm) {
        auto console = site->getText("/v1/vms/web1/console", 10s);
        const std::string text = console ? *console : console.error().describe();
        // From the kernel's first complaint when there is one (the oops says what broke).
        size_t from = text.size() > 3000 ? text.size() - 3000 : 0;
        for (const char* mark :
             {"cut here", "BUG", "general protection", "Oops", "WARNING:", "Kernel panic"}) {
          from = std::min(from, text.find(mark) == std::string::npos
                                    ? from
                                    : text.rfind('\n', text.find(mark)));
        }
        from = from == std::string::npos ? 0 : from;
        std::cout << "console:\n" << text.substr(from, 12000) << "\n";
      }
    }
    for (const auto* site : {tb_.site("dc"), tb_.site("cloud-eu")}) {
      std::ifstream in(site->site_dir + "/agent.log", std::ios::binary);
      const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::cout << site->netns << " agent.log (end):\n"
                << log.substr(log.size() > 4000 ? log.size() - 4000 : 0) << "\n";
    }
    for (const auto& [label, argv] : std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"dc fdb",
              {"ip", "netns", "exec", tb_.site("dc")->netns, "bridge", "fdb", "show", "br", "br0",
               "dynamic"}},
             {"cloud-eu fdb",
              {"ip", "netns", "exec", tb_.site("cloud-eu")->netns, "bridge", "fdb", "show", "br",
               "br0", "dynamic"}},
             {"dc links",
              {"ip", "-n", tb_.site("dc")->netns, "-s", "-o", "link", "show", "master", "br0"}},
             {"client neigh", {"ip", "-n", tb_.client_netns, "neigh"}}}) {
      auto out = runCapture(argv);
      std::cout << label << ":\n" << (out ? *out : out.error().describe()) << "\n";
    }
  }

  // Restarts @p site's agent armed with @p failpoint, starts web1's migration to cloud-eu and
  // waits for the agent to die there; then starts it again (unless !restart). The id.
  std::string killedAt(const std::string& site, const std::string& failpoint, bool restart = true);
  // A migration of web1 (MAC @p mac) from the site in @p from_ns to the one in @p to_ns,
  // with a client probing it: the source's bridge sends web1's frames into the link (its LAN
  // tap, "vw..."), the target's to web1's tap, and the target delivered held frames.
  void expectLanSteered(const nlohmann::json& source_record, const nlohmann::json& target_record,
                        const std::string& from_ns, const std::string& to_ns,
                        const std::string& mac) {
    const auto& steer = source_record["report"]["lan_steer"];
    ASSERT_TRUE(steer.is_object()) << source_record["report"].dump(2);
    EXPECT_FALSE(steer.contains("error")) << steer.dump();
    EXPECT_EQ(steer.value("to", "").rfind("vw", 0), 0U) << steer.dump();
    EXPECT_EQ(bridgePortOf(from_ns, "br0", mac).value_or("none"), steer.value("to", ""));
    EXPECT_EQ(bridgePortOf(to_ns, "br0", mac).value_or("none"), agent::tapName("web1", 0));
    const auto& report = target_record["report"];
    ASSERT_TRUE(report.contains("lan_hold") && report.contains("lan_deliver")) << report.dump(2);
    EXPECT_FALSE(report["lan_hold"].contains("error")) << report.dump(2);
    EXPECT_FALSE(report["lan_deliver"].contains("error")) << report.dump(2);
    // The client sends every 10 ms; the guest was paused for far longer.
    EXPECT_GE(report["lan_deliver"].value("frames_delivered", uint64_t{0}), 1U) << report.dump(2);
  }
  // Migration @p id ended done at both sites: the VM runs at cloud-eu, answers through the
  // stretched LAN with its memory intact, and nothing of it is left at dc (never two copies).
  // @p end_out, when given, receives the source's final record.
  void expectFinishedAtCloud(const std::string& id, nlohmann::json* end_out = nullptr) {
    const auto end = endOf(id, *dc_);
    if (end_out != nullptr) {
      *end_out = end;
    }
    EXPECT_EQ(end.value("phase", ""), "done") << end.dump(2);
    auto theirs = cloud_->get("/v1/migrations/" + id);
    ASSERT_TRUE(theirs) << theirs.error().describe();
    EXPECT_EQ((*theirs)["phase"], "done");
    auto there = cloud_->get("/v1/vms/web1");
    ASSERT_TRUE(there) << there.error().describe();
    EXPECT_EQ((*there)["state"], "running");
    EXPECT_EQ(dc_->get("/v1/vms/web1").error().code, ErrorCode::NotFound);
    EXPECT_EQ(qemuProcessesIn(tb_.site("dc")->netns), 0U);
    auto pong = conn_->ping("cloud-eu", 60s);
    ASSERT_TRUE(pong) << pong.error().describe() << "\n" << end.dump(2);
    expectMemoryIntact();
    EXPECT_EQ(migrationRunLeftovers(*tb_.site("dc")), 0U);
  }

  // Post-copy (postcopy_testbed_test.cc): the test guest with PostCopy=allowed (its OVA made
  // in @p work) up at dc with a memory pattern and a workload dirtying 64 MiB at 40 MB/s,
  // migrating to cloud-eu over 10 MB/s without auto-converge: judged never to converge, it is
  // handed over in post-copy. Returns the id once the guest runs at cloud-eu (confirm).
  std::string postCopyFrom(const std::string& work) {
    const char* guest = std::getenv("VANDRA_GUEST_DIR");
    const std::string ova = work + "/post-copy.ova";
    if (guest != nullptr && fs::exists(fs::path(guest) / "test-guest.ova")) {
      fs::copy_file(fs::path(guest) / "test-guest.ova", ova);
      EXPECT_TRUE(runCapture({VANDRA_CLI_PATH, "ovf", "sla", "set", ova, "post-copy=allowed"}));
    }
    bringUp("lan", ova);
    if (IsSkipped() || HasFatalFailure()) {
      return "";
    }
    startOutpacingGuest();
    return beginCapped(
        80, "confirm",
        {{"auto_converge", false}, {"downtime_limit_ms", 300}, {"max_total_s", 600}});
  }
  // Post-copy migration @p id ended done at both sites after at least one recovery of its
  // stream; the one copy of the guest runs at cloud-eu with every page it and its workload
  // wrote.
  void expectPostCopyRecovered(const std::string& id) {
    nlohmann::json end;
    expectFinishedAtCloud(id, &end);
    if (HasFatalFailure()) {
      return;
    }
    const auto& report = end["report"];
    std::cout << "post-copy: " << report.value("post_copy", nlohmann::json()).dump()
              << " reason: " << report.value("post_copy_reason", "") << "\n";
    ASSERT_TRUE(report.contains("post_copy")) << report.dump(2);
    EXPECT_EQ(report["post_copy"].value("status", ""), "completed") << report.dump(2);
    EXPECT_GE(report["post_copy"].value("recoveries", 0), 1) << report.dump(2);
    auto theirs = cloud_->get("/v1/migrations/" + id);
    ASSERT_TRUE(theirs) << theirs.error().describe();
    const auto tries = (*theirs)["report"].value("post_copy_recoveries", nlohmann::json::array());
    std::cout << "target's recoveries: " << tries.dump() << "\n";
    EXPECT_GE(tries.size(), 1U) << theirs->dump(2);
  }

  double peer_mbps_ = 0;  // the site pair's cap (set before bringUp)
  StateDir dir_;
  TestbedInfo tb_;
  std::optional<agent::AgentClient> dc_;
  std::optional<agent::AgentClient> cloud_;
  std::optional<GuestConnection> conn_;
  std::optional<GuestWorkload> workload_;
  pid_t qemu_ = -1;
};

}  // namespace vandra::testbed
