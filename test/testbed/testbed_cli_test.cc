// `vandra testbed up|status|down` through the real binary: exit codes, --json fields, and the
// emulator found next to the CLI in the build tree. Root and network namespaces needed.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "test/support/require.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/testbed/testbed.h"
#include "vandra/testbed/wan_emulator.h"

namespace vandra::testbed {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct CliRun {
  int code = -1;
  std::string out;
};

CliRun vandra(std::vector<std::string> args) {
  args.insert(args.begin(), VANDRA_CLI_PATH);
  CliRun r;
  auto p = Subprocess::start(args, {.capture_stdout = true, .capture_stderr = true});
  if (!p) {
    return r;
  }
  (void)p->drainStdout([&](std::string_view c) { r.out.append(c); });
  auto st = p->wait();
  r.code = st ? (st->signal != 0 ? 128 + st->signal : st->code) : -1;
  return r;
}

TEST(TestbedCli, UpStatusDown) {
  if (::geteuid() != 0 || ::access("/dev/net/tun", R_OK | W_OK) != 0) {
    VANDRA_SKIP_OR_FAIL("needs root and /dev/net/tun");
  }
  std::string tmpl = (fs::temp_directory_path() / "vandra-tbcli-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl + "/state";  // created by up, removed by down
  auto cleanup = defer([&] {
    (void)down(dir);
    std::error_code ec;
    fs::remove_all(tmpl, ec);
  });

  CliRun none = vandra({"testbed", "status", "--state-dir", dir});
  EXPECT_EQ(none.code, 4) << none.out;

  CliRun u = vandra({"testbed", "up", "--profile", "metro", "--state-dir", dir, "--json"});
  ASSERT_EQ(u.code, 0) << u.out;
  auto j = nlohmann::json::parse(u.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << u.out;
  EXPECT_EQ(j["profile"], "metro");
  EXPECT_EQ(j["link"]["rtt_ms"], 10.0);
  // All three sites by default, a link (an emulator) per pair, an agent each, the controller.
  ASSERT_EQ(j["sites"].size(), 3U) << u.out;
  EXPECT_EQ(j["sites"][0]["name"], "dc");
  EXPECT_EQ(j["sites"][1]["name"], "cloud-eu");
  EXPECT_EQ(j["sites"][2]["name"], "cloud-us");
  EXPECT_EQ(j["sites"][2]["jurisdictions"], nlohmann::json::array({"US"}));
  for (const auto& site : j["sites"]) {
    EXPECT_EQ(site["wans"].size(), 2U) << site.dump();
    EXPECT_GT(site["agent"]["pid"].get<int>(), 0) << site.dump();
  }
  ASSERT_EQ(j["links"].size(), 3U) << u.out;
  for (const auto& l : j["links"]) {
    EXPECT_GT(l["wanem_pid"].get<int>(), 0) << l.dump();
  }
  ASSERT_TRUE(j.contains("controller")) << u.out;
  EXPECT_GT(j["controller"]["pid"].get<int>(), 0);
  EXPECT_EQ(j["controller"]["endpoint"].get<std::string>().rfind("127.0.0.1:", 0), 0U);
  EXPECT_TRUE(fs::exists(j["controller"]["cli_config"].get<std::string>()));

  CliRun again = vandra({"testbed", "up", "--state-dir", dir});
  EXPECT_EQ(again.code, 3) << "a second testbed in the same state dir is refused (already_exists)";

  CliRun s = vandra({"testbed", "status", "--state-dir", dir, "--json"});
  EXPECT_EQ(s.code, 0) << s.out;
  auto sj = nlohmann::json::parse(s.out, nullptr, false);
  ASSERT_TRUE(sj.is_object()) << s.out;
  EXPECT_EQ(sj["healthy"], true);
  // The controller is one of the recorded resources, alive, and status knows where it is.
  bool controller_listed = false;
  int emulators = 0;
  for (const auto& r : sj["resources"]) {
    if (r["kind"] == "process" && r["name"] == "controller") {
      controller_listed = r["present"].get<bool>();
    }
    emulators += r["kind"] == "process" && r["name"].get<std::string>().rfind("wanem-", 0) == 0;
  }
  EXPECT_TRUE(controller_listed) << s.out;
  EXPECT_EQ(emulators, 3) << s.out;
  EXPECT_EQ(sj["testbed"]["controller"]["endpoint"], j["controller"]["endpoint"]) << s.out;
  EXPECT_EQ(sj["testbed"]["controller"]["pid"], j["controller"]["pid"]) << s.out;
  CliRun plain = vandra({"testbed", "status", "--state-dir", dir});
  EXPECT_NE(plain.out.find("controller 127.0.0.1:"), std::string::npos) << plain.out;
  EXPECT_NE(plain.out.find("wan emulator cloud-eu <-> cloud-us"), std::string::npos) << plain.out;

  CliRun d = vandra({"testbed", "down", "--state-dir", dir});
  EXPECT_EQ(d.code, 0) << d.out;
  EXPECT_FALSE(fs::exists(dir)) << "the state dir up created is gone";
  CliRun d2 = vandra({"testbed", "down", "--state-dir", dir});
  EXPECT_EQ(d2.code, 0) << "down is idempotent";

  CliRun bad = vandra({"testbed", "up", "--profile", "moon", "--state-dir", dir});
  EXPECT_EQ(bad.code, 4);
  EXPECT_FALSE(fs::exists(stateFilePath(dir)));
}

// Processes whose command line holds @p marker (only to verify; nothing is killed by name).
std::vector<pid_t> processesWith(const std::string& marker) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    const pid_t pid = std::stoi(name);
    if (processMatches(pid, 0, marker)) {
      out.push_back(pid);
    }
  }
  return out;
}

// `up` killed half-way (SIGKILL, no chance to clean up): `down` removes what it recorded and
// an emulator whose pid was never recorded ends by itself once its devices are gone.
TEST(TestbedCli, DownAfterUpIsKilled) {
  if (::geteuid() != 0 || ::access("/dev/net/tun", R_OK | W_OK) != 0) {
    VANDRA_SKIP_OR_FAIL("needs root and /dev/net/tun");
  }
  std::string tmpl = (fs::temp_directory_path() / "vandra-tbcli-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl;
  auto cleanup = defer([&] {
    (void)down(dir);
    std::error_code ec;
    fs::remove_all(tmpl, ec);
  });
  for (int kill_after_resources : {1, 5, 7}) {  // a netns, the TUN names, the emulator
    auto p = Subprocess::start({VANDRA_CLI_PATH, "testbed", "up", "--state-dir", dir},
                               {.capture_stdout = true, .capture_stderr = true});
    ASSERT_TRUE(p);
    // Poll the state file (with a deadline) until `up` has recorded enough, then kill it.
    std::string id;
    for (auto deadline = Clock::now() + 10s; Clock::now() < deadline;) {
      std::ifstream in(stateFilePath(dir));
      auto j = nlohmann::json::parse(in, nullptr, false);
      if (j.is_object() && j["resources"].size() >= static_cast<size_t>(kill_after_resources)) {
        id = j["id"];
        break;
      }
      std::this_thread::sleep_for(1ms);  // polling a condition, not synchronising
    }
    ASSERT_FALSE(id.empty());
    ::kill(p->pid(), SIGKILL);
    (void)p->wait();
    ASSERT_TRUE(fs::exists(stateFilePath(dir)));
    ASSERT_TRUE(down(dir)) << kill_after_resources;
    EXPECT_FALSE(fs::exists(stateFilePath(dir)));
    for (const char* site : {"dc", "cloud-eu", "cloud-us", "client"}) {
      EXPECT_FALSE(fs::exists("/run/netns/vtb-" + id + "-" + site)) << site;
    }
    bool emulators_gone = false;
    for (auto deadline = Clock::now() + 5s; Clock::now() < deadline && !emulators_gone;) {
      emulators_gone = processesWith("--tag vtb-" + id).empty();
      if (!emulators_gone) {
        std::this_thread::sleep_for(10ms);
      }
    }
    EXPECT_TRUE(emulators_gone) << kill_after_resources;
  }
}

}  // namespace
}  // namespace vandra::testbed
