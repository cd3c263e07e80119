// Agents keep running VMs whatever happens to the controller, and a controller that comes
// back reconciles with what the agents report. Real processes: the testbed with dc, cloud-eu
// and the controller; the test guest runs at dc and the controller knows it. The controller is
// killed (SIGKILL); while it is down the guest goes on answering, an operator moves it to
// cloud-eu straight through dc's agent and deletes another VM at cloud-eu's agent. The
// controller started again on the same database then shows the guest running at cloud-eu,
// the move it did not see as an ended migration, the deleted VM as missing and nothing else
// missing. Needs root, network namespaces and the built test guest; skipped otherwise.
#include <signal.h>

#include "controller_client.h"
#include "test/testbed/testbed_migration.h"

namespace vandra::testbed {
namespace {

using nlohmann::json;

// Polls until process @p pid has ended (gone or a zombie), at most @p timeout.
bool waitGone(pid_t pid, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (processStartTimeForTest(pid) != 0) {
    if (Clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(50ms);  // a poll of /proc
  }
  return true;
}

TEST(ControllerRestart, AgentsKeepVmsWhileItIsDownAndItReconcilesWhenBack) {
  if (const std::string why = cannotRun(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  if (guest == nullptr || !fs::exists(fs::path(guest) / "test-guest.ova")) {
    VANDRA_SKIP_OR_FAIL("VANDRA_GUEST_DIR does not name a built test guest");
  }
  ::signal(SIGPIPE, SIG_IGN);  // a TLS peer that hangs up fails a request, not the test
  const auto t0 = Clock::now();
  StateDir dir;  // down whatever happens
  TestbedOptions o = agentOptionsFor("lan", dir.path());
  o.controller = true;
  auto up_result = up(o);
  ASSERT_TRUE(up_result) << up_result.error().describe();
  TestbedInfo tb = *up_result;
  auto dc = clientFor(siteOf(tb, "dc"), siteOf(tb, "dc"));
  auto cloud = clientFor(siteOf(tb, "cloud-eu"), siteOf(tb, "cloud-eu"));
  const std::string ova = fs::absolute(fs::path(guest) / "test-guest.ova").string();

  // web1 runs at dc; web2 is only imported at cloud-eu (deleted there later).
  auto imported = importUploaded(dc, "web1", ova);
  ASSERT_TRUE(imported) << imported.error().describe();
  auto started = dc.post("/v1/vms/web1/start", json::object());
  ASSERT_TRUE(started) << started.error().describe();
  auto web2 = importUploaded(cloud, "web2", ova);
  ASSERT_TRUE(web2) << web2.error().describe();
  auto conn = GuestConnection::connect(tb.client_netns, "10.10.0.10", 7000, Clock::now() + 300s);
  ASSERT_TRUE(conn) << conn.error().describe();
  ASSERT_TRUE(conn->ping("boot", 30s));
  auto known = waitForVm(tb, "web1", "dc", "running");
  ASSERT_EQ(known.body.value("state", ""), "running") << known.status << " " << known.text;
  auto known2 = waitForVm(tb, "web2", "cloud-eu", "defined");
  ASSERT_EQ(known2.body.value("site", ""), "cloud-eu") << known2.status << " " << known2.text;

  // The controller dies.
  const pid_t controller = tb.controller_pid;
  ASSERT_GT(controller, 0);
  ASSERT_EQ(::kill(controller, SIGKILL), 0);
  ASSERT_TRUE(waitGone(controller, 30s));
  EXPECT_EQ(controllerRequest(tb, "GET", "/v1/health").status, 0);

  // The agents go on: the guest answers, an operator moves it through dc's agent and deletes
  // web2 at cloud-eu's.
  auto alive = conn->ping("controller-down", 30s);
  ASSERT_TRUE(alive) << alive.error().describe();
  const json moved = migrateAndWait(dc, "web1", "cloud-eu");
  ASSERT_EQ(moved.value("phase", ""), "done") << moved.dump(2);
  const std::string agent_migration = moved.value("id", "");
  auto at_cloud = conn->ping("at-cloud-eu", 60s);
  ASSERT_TRUE(at_cloud) << at_cloud.error().describe();
  auto there = cloud.get("/v1/vms/web1");
  ASSERT_TRUE(there) << there.error().describe();
  EXPECT_EQ((*there)["state"], "running");
  auto deleted = cloud.del("/v1/vms/web2");
  ASSERT_TRUE(deleted) << deleted.error().describe();
  EXPECT_EQ(cloud.get("/v1/vms/web2").error().code, ErrorCode::NotFound);

  // The controller comes back on the same state and reconciles.
  auto back = restartController(dir.path());
  ASSERT_TRUE(back) << back.error().describe();
  tb = *back;
  EXPECT_NE(tb.controller_pid, controller);
  auto leader = waitForController(
      tb, "/v1/leader",
      [](const ControllerAnswer& a) { return a.status == 200 && a.body.value("leader", false); },
      60s);
  EXPECT_TRUE(leader.body.value("leader", false)) << leader.text;
  auto vm = waitForVm(tb, "web1", "cloud-eu", "running");
  EXPECT_EQ(vm.body.value("site", ""), "cloud-eu") << vm.text;
  EXPECT_EQ(vm.body.value("state", ""), "running") << vm.text;
  EXPECT_EQ(vm.body.value("home_site", ""), "dc") << vm.text;
  auto gone = waitForVm(tb, "web2", "cloud-eu", "missing");
  EXPECT_EQ(gone.body.value("state", ""), "missing") << gone.text;
  // Nothing that runs is reported missing.
  auto all = controllerRequest(tb, "GET", "/v1/vms");
  ASSERT_EQ(all.status, 200) << all.text;
  for (const auto& v : all.body["vms"]) {
    if (v.value("name", "") != "web2") {
      EXPECT_NE(v.value("state", ""), "missing") << v.dump();
    }
  }
  // The move it did not see is in web1's history, with the agent's record of it.
  auto history = controllerRequest(tb, "GET", "/v1/migrations?vm=web1");
  ASSERT_EQ(history.status, 200) << history.text;
  ASSERT_EQ(history.body["migrations"].size(), 1U) << history.text;
  const json& m = history.body["migrations"][0];
  EXPECT_EQ(m.value("from", ""), "dc") << m.dump();
  EXPECT_EQ(m.value("to", ""), "cloud-eu") << m.dump();
  EXPECT_EQ(m.value("state", ""), "done") << m.dump();
  EXPECT_EQ(m.value("agent_migration_id", ""), agent_migration) << m.dump();
  EXPECT_TRUE(m.contains("downtime_ms") && m["downtime_ms"].is_number()) << m.dump();
  // Recorded once, not again with every later refresh of the agents' lists.
  const int64_t recorded_at = m.value("finished_at_ms", int64_t{0});
  auto later = waitForController(
      tb, "/v1/hosts",
      [&](const ControllerAnswer& a) {
        if (a.status != 200 || !a.body.contains("hosts") || a.body["hosts"].empty()) {
          return false;
        }
        for (const auto& h : a.body["hosts"]) {
          if (h.value("last_seen_ms", int64_t{0}) <= recorded_at + 1000) {
            return false;
          }
        }
        return true;
      },
      60s);
  EXPECT_EQ(later.status, 200) << later.text;
  EXPECT_EQ(controllerRequest(tb, "GET", "/v1/migrations?vm=web1").body["migrations"].size(), 1U);
  // Its view is whole again: web1 could go home (preflight finds nothing in the way).
  auto home = controllerRequest(tb, "GET", "/v1/vms/web1/preflight?to=dc");
  ASSERT_EQ(home.status, 200) << home.text;
  EXPECT_TRUE(home.body.value("ok", false)) << home.text;
  auto still = conn->ping("after-restart", 30s);
  EXPECT_TRUE(still) << still.error().describe();
  std::printf("[ measured ] controller restart test: %.1f s\n",
              std::chrono::duration<double>(Clock::now() - t0).count());
}

}  // namespace
}  // namespace vandra::testbed
