// The web console in a real browser (issue 16): Debian's Chromium, driven by playwright-core
// (web/e2e/run.mjs, the scenarios in web/e2e/scenarios.mjs), against a real controller that
// serves the built console over the testbed (wan profile: 50 ms between sites), with the
// test guest running at dc and writing memory all along, so that a copy lasts long enough to
// be watched and cancelled. This test brings it all up, runs the scenarios, and takes it all
// down. Screenshots of the main screens are kept in <build>/test-output/console-screenshots.
// Needs root, network namespaces, the built test guest, the built console (web/dist),
// playwright-core (web/node_modules) and /usr/bin/chromium; skipped otherwise (failed in CI).
#include <cstdlib>

#include "controller_client.h"
#include "test/testbed/testbed_migration.h"
#include "vandra/common/subprocess.h"

namespace vandra::testbed {
namespace {

using nlohmann::json;

std::string missingBrowserPieces() {
  const fs::path web = VANDRA_WEB_DIR;
  if (!fs::exists(web / "dist/index.html")) {
    return "the console is not built (npm ci && npm run build in web/)";
  }
  if (!fs::exists(web / "node_modules/playwright-core")) {
    return "playwright-core is not installed (npm ci in web/)";
  }
  const char* chromium = std::getenv("VANDRA_CHROMIUM");
  if (!fs::exists(chromium != nullptr ? chromium : "/usr/bin/chromium")) {
    return "Chromium is not installed (apt-get install chromium)";
  }
  return "";
}

TEST(ConsoleBrowser, TheScenariosPassInChromiumAgainstTheRealControllerAndTestbed) {
  if (const std::string why = cannotRun(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  if (guest == nullptr || !fs::exists(fs::path(guest) / "test-guest.ova")) {
    VANDRA_SKIP_OR_FAIL("VANDRA_GUEST_DIR does not name a built test guest");
  }
  if (const std::string why = missingBrowserPieces(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  ::signal(SIGPIPE, SIG_IGN);  // a TLS peer that hangs up fails a request, not the test
  StateDir dir;                // down whatever happens
  TestbedOptions o = agentOptionsFor("wan", dir.path());
  o.controller = true;
  o.sites = {"dc", "cloud-eu", "cloud-us"};  // cloud-us: the site web1's SLA forbids
  o.console_dir = fs::path(VANDRA_WEB_DIR) / "dist";
  // A copy of the guest's memory takes seconds at this cap: long enough to watch the bar
  // rise and to press Cancel while it copies.
  o.peer_mbps = 200;
  auto up_result = up(o);
  ASSERT_TRUE(up_result) << up_result.error().describe();
  const TestbedInfo tb = *up_result;
  ASSERT_FALSE(tb.console_url.empty());

  auto dc = clientFor(siteOf(tb, "dc"), siteOf(tb, "dc"));
  const std::string ova = fs::absolute(fs::path(guest) / "test-guest.ova").string();
  auto imported = importUploaded(dc, "web1", ova);
  ASSERT_TRUE(imported) << imported.error().describe();
  ASSERT_TRUE(dc.post("/v1/vms/web1/start", json::object()));
  auto conn = GuestConnection::connect(tb.client_netns, "10.10.0.10", 7000, Clock::now() + 300s);
  ASSERT_TRUE(conn) << conn.error().describe();
  ASSERT_TRUE(conn->ping("boot", 30s));
  // 128 MiB rewritten over and over: what a busy VM's copy looks like.
  auto mem = conn->exec("vguest-mempat start 128 7", 120s);
  ASSERT_TRUE(mem && mem->exit_code == 0);
  const auto seen = support::waitForVm(tb, "web1", "dc", "running");
  ASSERT_EQ(seen.body.value("site", ""), "dc") << seen.text;

  std::ifstream users_file(tb.console_users);
  const std::string users_text((std::istreambuf_iterator<char>(users_file)),
                               std::istreambuf_iterator<char>());
  const json users = json::parse(users_text, nullptr, false);
  ASSERT_TRUE(users.is_object()) << users_text;
  const fs::path shots = fs::path(VANDRA_TEST_OUTPUT_DIR) / "console-screenshots";
  fs::remove_all(shots);  // only this run's pictures
  fs::create_directories(shots);
  const auto cred = [&](const char* role) {
    return users[role]["user"].get<std::string>() + ":" +
           users[role]["password"].get<std::string>();
  };
  ::setenv("VANDRA_CONSOLE_URL", tb.console_url.c_str(), 1);
  ::setenv("VANDRA_CONSOLE_OPERATOR", cred("operator").c_str(), 1);
  ::setenv("VANDRA_CONSOLE_VIEWER", cred("viewer").c_str(), 1);
  ::setenv("VANDRA_CONSOLE_VM", "web1", 1);
  ::setenv("VANDRA_CONSOLE_TARGET", "cloud-eu", 1);
  ::setenv("VANDRA_CONSOLE_FORBIDDEN", "cloud-us", 1);  // web1's SLA: EU only
  ::setenv("VANDRA_CONSOLE_ORIGIN", "dc", 1);
  ::setenv("VANDRA_CONSOLE_SCREENSHOTS", shots.c_str(), 1);
  ::setenv("VANDRA_CONSOLE_MOVE_TIMEOUT_MS", "300000", 1);
  ::setenv("VANDRA_CONSOLE_OVA", ova.c_str(), 1);  // uploaded from the browser, imported
  // Everything the runner says goes to a log kept beside the screenshots, and is printed.
  const fs::path log = shots / "run.log";
  auto run = runCapture({"sh", "-c", "exec node \"$0\" > \"$1\" 2>&1",
                         (fs::path(VANDRA_WEB_DIR) / "e2e/run.mjs").string(), log.string()});
  std::ifstream log_file(log);
  std::cout << std::string((std::istreambuf_iterator<char>(log_file)),
                           std::istreambuf_iterator<char>());
  EXPECT_TRUE(run) << run.error().describe() << " (the runner's output is above)";
  for (const char* name :
       {"01-sign-in.png", "03-vms.png", "05-result.png", "06-history.png", "11-import.png"}) {
    EXPECT_TRUE(fs::exists(shots / name)) << name;
  }
  // What the browser did happened for real: one cancelled move and two done.
  const auto migrations = support::controllerRequest(tb, "GET", "/v1/migrations?vm=web1");
  std::map<std::string, int> states;
  for (const auto& m : migrations.body.value("migrations", json::array())) {
    ++states[m.value("state", "")];
  }
  EXPECT_EQ(states["cancelled"], 1) << migrations.text;
  EXPECT_EQ(states["done"], 2) << migrations.text;
  // The package the browser uploaded became a VM where placement put it.
  const auto copy = support::controllerRequest(tb, "GET", "/v1/vms/web1-copy");
  EXPECT_EQ(copy.status, 200) << copy.text;
  const auto mem_check = conn->exec("vguest-mempat check", 120s);
  ASSERT_TRUE(mem_check);
  EXPECT_EQ(mem_check->exit_code, 0);
}

}  // namespace
}  // namespace vandra::testbed
