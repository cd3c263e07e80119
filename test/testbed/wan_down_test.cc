// A site whose WAN side is gone, on the real testbed (agents, QEMU, tunnel, WAN emulator):
//  - dc's agent restarted to listen on its end of the dc-cloud-eu link (the testbed's agents
//    listen on 0.0.0.0) while that device (wan-eu) and address are missing: it starts,
//    serves its API and its running VM, reports the tunnel listener retrying and the link
//    down, stops promptly while retrying, and binds (a link then comes up) once wan-eu is back;
//  - a switchover whose target never comes back: cloud-eu's agent dies at the switchover and
//    stays down, dc keeps the guest paused and says what it waits for and since when, and the
//    operator resolves it (resume-source): the guest runs on at dc, the decision recorded;
//  - the same after the target started the guest: the operator lets the source's copy go
//    (abandon-source).
// Needs root, network namespaces and a built test guest (VANDRA_GUEST_DIR); skipped otherwise.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "test/support/require.h"
#include "testbed_support.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/agent/recovery.h"
#include "vandra/common/scope_guard.h"

namespace vandra::testbed {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace support;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kParkedWan = "vtbwanoff";  // wan-eu renamed away: no device "wan-eu"

class WanDown : public ::testing::Test {
 protected:
  // Both agents and the test guest running at dc, a client session to its service open.
  void bringUp() {
    if (const std::string why = cannotRun(); !why.empty()) {
      VANDRA_SKIP_OR_FAIL(why);
    }
    const char* guest = std::getenv("VANDRA_GUEST_DIR");
    if (guest == nullptr || !fs::exists(fs::path(guest) / "test-guest.ova")) {
      VANDRA_SKIP_OR_FAIL("VANDRA_GUEST_DIR does not name a built test guest");
    }
    auto tb = up(agentOptionsFor("lan", dir_.path()));
    ASSERT_TRUE(tb) << tb.error().describe();
    tb_ = *tb;
    dc_.emplace(clientFor(*tb_.site("dc"), *tb_.site("dc")));
    cloud_.emplace(clientFor(*tb_.site("cloud-eu"), *tb_.site("cloud-eu")));
    const std::string ova = fs::absolute(fs::path(guest) / "test-guest.ova").string();
    auto imported = importUploaded(*dc_, "web1", ova);
    ASSERT_TRUE(imported) << imported.error().describe();
    auto started = dc_->post("/v1/vms/web1/start", json::object());
    ASSERT_TRUE(started) << started.error().describe();
    qemu_ = (*started)["pid"].get<pid_t>();
    auto conn = GuestConnection::connect(tb_.client_netns, "10.10.0.10", 7000, Clock::now() + 300s);
    ASSERT_TRUE(conn) << conn.error().describe();
    conn_.emplace(std::move(*conn));
    ASSERT_TRUE(conn_->ping("boot", 30s));
  }

  Result<std::string> ipDc(std::vector<std::string> args) {
    args.insert(args.begin(), {"ip", "-n", tb_.site("dc")->netns});
    return runCapture(args);
  }
  // dc's end of the link to cloud-eu.
  const WanEnd& dcWan() { return *tb_.site("dc")->wanTo("cloud-eu"); }
  // The same agent, told to listen on that end only (an option given again replaces the
  // recorded one).
  Result<pid_t> restartDcOnItsWan() {
    return restartAgent(tb_.state_dir, "dc", /*crash=*/false,
                        {"--tunnel-listen", dcWan().address + ":" + std::to_string(kTunnelPort)});
  }
  // dc's WAN gone: wan-eu down, its address and route gone, and renamed away.
  void removeDcWan() {
    ASSERT_TRUE(ipDc({"link", "set", dcWan().device, "down"}));
    ASSERT_TRUE(ipDc({"addr", "flush", "dev", dcWan().device}));
    ASSERT_TRUE(ipDc({"link", "set", dcWan().device, "name", kParkedWan}));
    wan_removed_ = true;
  }
  // ... and back as testbed up made it.
  void restoreDcWan() {
    if (!wan_removed_) {
      return;
    }
    wan_removed_ = false;
    const WanEnd& w = dcWan();
    ASSERT_TRUE(ipDc({"link", "set", kParkedWan, "name", w.device}));
    ASSERT_TRUE(
        ipDc({"addr", "add", w.address + "/32", "peer", w.peer_address + "/32", "dev", w.device}));
    ASSERT_TRUE(ipDc({"link", "set", w.device, "up"}));
    ASSERT_TRUE(ipDc({"route", "add", tb_.site("cloud-eu")->lan, "dev", w.device}));
  }
  void TearDown() override {
    if (wan_removed_) {
      restoreDcWan();
    }
    if (HasFailure() && dc_) {
      for (const auto* site : {tb_.site("dc"), tb_.site("cloud-eu")}) {
        const std::string log = agentLog(*site);
        std::cout << site->netns << " agent.log (end):\n"
                  << log.substr(log.size() > 4000 ? log.size() - 4000 : 0) << "\n";
      }
    }
  }
  uint64_t lastEventSeq(agent::AgentClient& at) {
    auto page = at.get("/v1/events?since=0&max=1");
    EXPECT_TRUE(page) << page.error().describe();
    return page ? (*page).value("last_seq", uint64_t{0}) : 0;
  }
  json peersAt(agent::AgentClient& at) {
    auto p = at.get("/v1/peers");
    EXPECT_TRUE(p) << p.error().describe();
    return p ? *p : json::object();
  }
  static json peerEntry(const json& peers, const std::string& site) {
    for (const auto& p : peers.value("peers", json::array())) {
      if (p.value("site", "") == site) {
        return p;
      }
    }
    return json::object();
  }
  // The VM runs on at dc on the same QEMU and answers its client.
  void expectRunningAtDc() {
    auto vm = dc_->get("/v1/vms/web1");
    ASSERT_TRUE(vm) << vm.error().describe();
    EXPECT_EQ((*vm)["state"], "running");
    EXPECT_EQ((*vm)["pid"].get<pid_t>(), qemu_);
    auto pong = conn_->ping("alive", 60s);
    EXPECT_TRUE(pong) << pong.error().describe();
  }

  StateDir dir_;
  TestbedInfo tb_;
  std::optional<agent::AgentClient> dc_;
  std::optional<agent::AgentClient> cloud_;
  std::optional<GuestConnection> conn_;
  pid_t qemu_ = -1;
  bool wan_removed_ = false;
};

TEST_F(WanDown, AnAgentRestartedWithoutItsWanServesItsVmsAndListensOnceTheWanIsBack) {
  bringUp();
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  removeDcWan();
  ASSERT_FALSE(HasFatalFailure());
  // The agent comes up (restartAgent waits for its API) though its tunnel address is gone.
  auto restarted = restartDcOnItsWan();
  ASSERT_TRUE(restarted) << restarted.error().describe();
  auto vms = dc_->get("/v1/vms");
  ASSERT_TRUE(vms) << vms.error().describe();
  ASSERT_EQ((*vms)["vms"].size(), 1U) << vms->dump();
  expectRunningAtDc();
  json peers = peersAt(*dc_);
  EXPECT_EQ(peers["listener"].value("state", ""), "retrying") << peers.dump(2);
  EXPECT_NE(peers["listener"].value("last_error", "").find("Cannot assign requested address"),
            std::string::npos)
      << peers.dump(2);
  EXPECT_GT(peers["listener"].value("since_us", int64_t{0}), 0) << peers.dump(2);
  EXPECT_EQ(peers.value("site_tunnel_port", -1), 0) << peers.dump(2);
  EXPECT_EQ(peerEntry(peers, "cloud-eu").value("link", ""), "down") << peers.dump(2);
  EXPECT_NE(agentLog(*tb_.site("dc")).find("the site tunnel cannot listen yet"), std::string::npos);
  const CliRun shown =
      runCli(VANDRA_CLI_PATH, {"vm", "peers", "--site", "dc", "--testbed", tb_.state_dir});
  EXPECT_EQ(shown.code, 0) << shown.out;
  EXPECT_NE(shown.out.find("listener " + dcWan().address + ":9443: retrying since "),
            std::string::npos)
      << shown.out;
  EXPECT_NE(shown.out.find("peer cloud-eu: link down"), std::string::npos) << shown.out;

  // Stopping it while it retries is prompt (SIGTERM; the testbed would SIGKILL after 3 s).
  const agent::QemuPid agent_pid{*restarted, agent::processStartTime(*restarted)};
  const auto t_stop = Clock::now();
  ASSERT_TRUE(agent::signalProcess(agent_pid, SIGTERM));
  auto gone = agent::waitForExit(agent_pid, 10s);
  ASSERT_TRUE(gone) << gone.error().describe();
  const double stop_s = std::chrono::duration<double>(Clock::now() - t_stop).count();
  std::printf("[ measured ] agent stop while its listener retries: %.2f s\n", stop_s);
  EXPECT_LT(stop_s, 2.5);
  restarted = restartDcOnItsWan();
  ASSERT_TRUE(restarted) << restarted.error().describe();
  expectRunningAtDc();
  const uint64_t since = lastEventSeq(*dc_);
  ASSERT_EQ(peersAt(*dc_)["listener"].value("state", ""), "retrying");

  // wan-eu back: the listener binds on its own (its event), and cloud-eu's dial is accepted.
  const auto t_back = Clock::now();
  restoreDcWan();
  ASSERT_FALSE(HasFatalFailure());
  auto listening = waitForEvent(*dc_, "tunnel-listening", since, Clock::now() + 60s);
  ASSERT_TRUE(listening) << "the listener did not bind once wan-eu was back";
  std::printf("[ measured ] wan-eu back -> listener bound: %.2f s\n",
              std::chrono::duration<double>(Clock::now() - t_back).count());
  peers = peersAt(*dc_);
  EXPECT_EQ(peers["listener"].value("state", ""), "listening") << peers.dump(2);
  EXPECT_EQ(peers.value("site_tunnel_port", 0), kTunnelPort) << peers.dump(2);
  auto linked = cloud_->post("/v1/peers/dc/connect", json::object());
  ASSERT_TRUE(linked) << linked.error().describe();
  EXPECT_EQ(linked->value("link", ""), "up") << linked->dump(2);
  auto accepted = waitForEvent(*dc_, "peer-link-up", since, Clock::now() + 30s, "peer", "cloud-eu");
  ASSERT_TRUE(accepted) << "dc never accepted cloud-eu's link";
  EXPECT_EQ((*accepted)["data"].value("by", ""), "accepted");
  EXPECT_EQ(peerEntry(peersAt(*dc_), "cloud-eu").value("link", ""), "up");
  expectRunningAtDc();
}

TEST_F(WanDown, ASwitchoverWhosePeerNeverComesBackIsResolvedByTheOperator) {
  bringUp();
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 16"));
  // cloud-eu's agent kills itself once it has written switchover, before it starts the guest,
  // and is not started again.
  auto armed = restartAgent(tb_.state_dir, "cloud-eu", /*crash=*/true,
                            {"--failpoint", "target-before-start"});
  ASSERT_TRUE(armed) << armed.error().describe();
  const agent::QemuPid dying{*armed, agent::processStartTime(*armed)};
  auto begun = dc_->post("/v1/vms/web1/migrate", {{"to", "cloud-eu"}});
  ASSERT_TRUE(begun) << begun.error().describe();
  const std::string id = (*begun)["id"];
  // Not waiting for the peer (it runs): a resolve is refused and changes nothing.
  auto early = dc_->post("/v1/migrations/" + id + "/resolve",
                         {{"action", "resume-source"}, {"reason", "too early"}});
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, ErrorCode::IllegalTransition) << early.error().describe();
  auto gone = agent::waitForExit(dying, 300s);
  ASSERT_TRUE(gone) << "cloud-eu's agent did not reach its failpoint: " << gone.error().describe();
  const auto t_gone = Clock::now();
  const int64_t gone_us = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  EXPECT_NE(agentLog(*tb_.site("cloud-eu")).find("failpoint target-before-start reached"),
            std::string::npos);

  // dc keeps the guest paused and says what it waits for (long polls, no sleeps).
  json waiting;
  for (const auto until = Clock::now() + 180s; Clock::now() < until;) {
    auto m = dc_->get("/v1/migrations/" + id + "?wait_ms=5000");
    ASSERT_TRUE(m) << m.error().describe();
    ASSERT_FALSE((*m)["ended"].get<bool>()) << m->dump(2);
    if (m->contains("waiting_for")) {
      waiting = *m;
      break;
    }
  }
  ASSERT_TRUE(waiting.is_object()) << "dc never said it waits for cloud-eu";
  std::printf("[ measured ] cloud-eu's agent gone -> dc says it waits for cloud-eu: %.1f s\n",
              std::chrono::duration<double>(Clock::now() - t_gone).count());
  EXPECT_EQ(waiting.value("phase", ""), "switchover") << waiting.dump(2);
  EXPECT_NE(waiting.value("waiting_for", "").find("peer cloud-eu unreachable"), std::string::npos)
      << waiting.dump(2);
  EXPECT_EQ(waiting.value("waiting_since", "").size(), 24U) << waiting.dump(2);
  // Since the guest paused for the switchover: before cloud-eu's agent died.
  EXPECT_GT(waiting.value("waiting_since_us", int64_t{0}), 0);
  EXPECT_LE(waiting.value("waiting_since_us", int64_t{0}), gone_us) << waiting.dump(2);
  EXPECT_NE(waiting["report"].value("result", ""), "ok");
  auto events = dc_->get("/v1/vms/web1/events?since=0&max=1000");
  ASSERT_TRUE(events) << events.error().describe();
  std::string last_run_event;  // the guest is paused: its last STOP/RESUME was a STOP
  for (const auto& e : (*events)["events"]) {
    if (e.value("kind", "") == "qmp" &&
        (e.value("name", "") == "STOP" || e.value("name", "") == "RESUME")) {
      last_run_event = e.value("name", "");
    }
  }
  EXPECT_EQ(last_run_event, "STOP");
  const std::string cli = VANDRA_CLI_PATH;
  const std::vector<std::string> at_dc = {"--site", "dc", "--testbed", tb_.state_dir};
  auto args = [&](std::vector<std::string> a) {
    a.insert(a.end(), at_dc.begin(), at_dc.end());
    return a;
  };
  const CliRun shown = runCli(cli, args({"vm", "show", "web1"}));
  EXPECT_EQ(shown.code, 0) << shown.out;
  EXPECT_NE(shown.out.find("waiting for peer cloud-eu unreachable"), std::string::npos)
      << shown.out;
  const CliRun listed = runCli(cli, args({"vm", "migrations", "web1"}));
  EXPECT_NE(listed.out.find("waiting for peer cloud-eu unreachable"), std::string::npos)
      << listed.out;

  // The operator knows cloud-eu never ran it: resume-source, through the CLI.
  const auto t_resolve = Clock::now();
  const CliRun resolved =
      runCli(cli, args({"vm", "migrate", "web1", "--resolve", "resume-source", "--reason",
                        "cloud-eu lost power before starting the guest"}));
  EXPECT_EQ(resolved.code, 0) << resolved.out;
  std::printf("[ measured ] vandra vm migrate --resolve resume-source: %.2f s\n",
              std::chrono::duration<double>(Clock::now() - t_resolve).count());
  EXPECT_NE(resolved.out.find("rolled_back"), std::string::npos) << resolved.out;
  EXPECT_NE(resolved.out.find("resolved by operator: resume-source"), std::string::npos)
      << resolved.out;
  auto end = dc_->get("/v1/migrations/" + id);
  ASSERT_TRUE(end) << end.error().describe();
  EXPECT_EQ(end->value("phase", ""), "rolled_back") << end->dump(2);
  EXPECT_TRUE(end->value("ended", false));
  EXPECT_FALSE(end->contains("waiting_for"));
  const json& res = (*end)["report"]["resolution"];
  EXPECT_EQ(res.value("action", ""), "resume-source") << end->dump(2);
  EXPECT_EQ(res.value("who", ""), "operator") << end->dump(2);  // the client certificate's CN
  EXPECT_EQ(res.value("reason", ""), "cloud-eu lost power before starting the guest");
  EXPECT_EQ(res.value("result", ""), "resumed here") << end->dump(2);
  bool operator_event = false;
  for (const auto& t : (*end)["timeline"]) {
    operator_event = operator_event || t.value("event", "") == "operator_resume";
  }
  EXPECT_TRUE(operator_event) << end->dump(2);
  auto resolved_event = waitForEvent(*dc_, "migration-resolved", 0, Clock::now() + 5s);
  ASSERT_TRUE(resolved_event);
  EXPECT_EQ((*resolved_event)["data"].value("who", ""), "operator");
  // Once is enough: the migration has ended.
  auto again = dc_->post("/v1/migrations/" + id + "/resolve",
                         {{"action", "abandon-source"}, {"reason", "again"}});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::IllegalTransition);

  // The guest runs on at dc, the same QEMU, memory and disk intact.
  expectRunningAtDc();
  auto mem = conn_->exec("vguest-mempat check", 120s);
  ASSERT_TRUE(mem) << mem.error().describe();
  EXPECT_EQ(mem->out.empty() ? "" : mem->out.back(), "PASS bytes=33554432 seed=9");
  EXPECT_EQ(execOut(*conn_, "vguest-diskpat check /dev/vdb 5 0 16").rfind("PASS", 0), 0U);

  // When cloud-eu's agent does come back it finds its copy never ran and cleans up.
  auto back = restartAgent(tb_.state_dir, "cloud-eu", /*crash=*/false);
  ASSERT_TRUE(back) << back.error().describe();
  EXPECT_EQ(cloud_->get("/v1/vms/web1").error().code, ErrorCode::NotFound);
  auto theirs = cloud_->get("/v1/migrations/" + id);
  ASSERT_TRUE(theirs) << theirs.error().describe();
  EXPECT_EQ(theirs->value("phase", ""), "rolled_back") << theirs->dump(2);
  EXPECT_EQ(qemuProcessesIn(tb_.site("cloud-eu")->netns), 0U);
}

// cloud-eu's agent dies just after it started the guest (before writing confirm) and stays
// down: the guest runs at cloud-eu (QEMU outlives its agent), dc keeps its paused copy and waits.
// The operator, who sees the guest run at cloud-eu, lets dc's copy go (abandon-source): dc's
// QEMU and VM are gone, the record done with the decision. cloud-eu's agent, back, adopts its
// running guest and (nobody confirming) closes the migration itself.
TEST_F(WanDown, AnAbandonedSourceLetsItsCopyGoWhenTheTargetRunsTheGuest) {
  bringUp();
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  auto armed =
      restartAgent(tb_.state_dir, "cloud-eu", /*crash=*/true, {"--failpoint", "target-started"});
  ASSERT_TRUE(armed) << armed.error().describe();
  const agent::QemuPid dying{*armed, agent::processStartTime(*armed)};
  auto begun = dc_->post("/v1/vms/web1/migrate", {{"to", "cloud-eu"}});
  ASSERT_TRUE(begun) << begun.error().describe();
  const std::string id = (*begun)["id"];
  auto gone = agent::waitForExit(dying, 300s);
  ASSERT_TRUE(gone) << "cloud-eu's agent did not reach its failpoint: " << gone.error().describe();
  json waiting;
  for (const auto until = Clock::now() + 180s; Clock::now() < until;) {
    auto m = dc_->get("/v1/migrations/" + id + "?wait_ms=5000");
    ASSERT_TRUE(m) << m.error().describe();
    ASSERT_FALSE((*m)["ended"].get<bool>()) << m->dump(2);
    if (m->contains("waiting_for")) {
      waiting = *m;
      break;
    }
  }
  ASSERT_TRUE(waiting.is_object()) << "dc never said it waits for cloud-eu";
  EXPECT_EQ(waiting.value("phase", ""), "switchover") << waiting.dump(2);
  EXPECT_EQ(qemuProcessesIn(tb_.site("dc")->netns), 1U);
  // resume-source would run the guest twice; the operator knows better and lets dc's go.
  auto resolved =
      dc_->post("/v1/migrations/" + id + "/resolve",
                {{"action", "abandon-source"}, {"reason", "web1 runs at cloud-eu (its console)"}});
  ASSERT_TRUE(resolved) << resolved.error().describe();
  EXPECT_EQ(resolved->value("phase", ""), "done") << resolved->dump(2);
  const json& res = (*resolved)["report"]["resolution"];
  EXPECT_EQ(res.value("action", ""), "abandon-source") << resolved->dump(2);
  EXPECT_EQ(res.value("who", ""), "operator");
  EXPECT_EQ(res.value("result", ""), "source released") << resolved->dump(2);
  EXPECT_EQ(dc_->get("/v1/vms/web1").error().code, ErrorCode::NotFound);
  EXPECT_EQ(qemuProcessesIn(tb_.site("dc")->netns), 0U);

  // cloud-eu's agent comes back: its guest has run, so it adopts it; with no confirm coming
  // (dc has let go) it closes the migration after its confirm timeout (3 s here).
  const uint64_t since = lastEventSeq(*dc_);
  auto back =
      restartAgent(tb_.state_dir, "cloud-eu", /*crash=*/false, {"--confirm-timeout-s", "3"});
  ASSERT_TRUE(back) << back.error().describe();
  auto there = cloud_->get("/v1/vms/web1");
  ASSERT_TRUE(there) << there.error().describe();
  EXPECT_EQ((*there)["state"], "running");
  std::optional<json> closed =
      waitForEvent(*cloud_, "migration-closed-unconfirmed", 0, Clock::now() + 60s);
  ASSERT_TRUE(closed) << "cloud-eu did not close the migration";
  auto theirs = cloud_->get("/v1/migrations/" + id);
  ASSERT_TRUE(theirs) << theirs.error().describe();
  EXPECT_EQ(theirs->value("phase", ""), "done") << theirs->dump(2);
  // And the guest is reached from dc's site through the stretched LAN again.
  ASSERT_TRUE(dc_->post("/v1/peers/cloud-eu/connect", json::object()));
  EXPECT_TRUE(waitForEvent(*dc_, "peer-link-up", since, Clock::now() + 30s, "peer", "cloud-eu"));
  auto pong = conn_->ping("atcloud", 60s);
  EXPECT_TRUE(pong) << pong.error().describe();
}

}  // namespace
}  // namespace vandra::testbed
