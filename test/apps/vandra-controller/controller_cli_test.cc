// vandra-controller as a process with a real agent (vandrad) behind it, driven through the
// vandra CLI as an operator and a viewer would: sites listed with their facts and the agent's
// host, a viewer's change refused (exit 6) and an operator's made, the audit log, the SLA
// status, mobility paused and resumed, the VM list through the controller; a clean stop
// releases the lease so the next controller leads at once.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "test/apps/vandrad/agent_process.h"
#include "test/controller/test_package.h"
#include "vandra/agent/agent_client.h"
#include "vandra/common/subprocess.h"
#include "vandra/pki/pki.h"

namespace vandra::controller {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

class ControllerCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vandra-ctl-cli-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "agent");
    agent::issueAgentPki((dir_ / "agent").string());
    agent_ = std::make_unique<agent::AgentProcess>((dir_ / "agent").string(),
                                                   std::vector<std::string>{});
    ASSERT_GT(agent_->port(), 0);
    const fs::path pki = dir_ / "cpki";
    ASSERT_TRUE(pki::initCa({.dir = pki, .common_name = "controller CA", .days = 2}));
    for (const auto& [name, group, role] :
         std::vector<std::tuple<std::string, std::string, pki::Role>>{
             {"controller", "", pki::Role::Server},
             {"alice", "operator", pki::Role::Client},
             {"victor", "viewer", pki::Role::Client}}) {
      ASSERT_TRUE(pki::issue({.ca_dir = pki,
                              .name = name,
                              .role = role,
                              .dns_names = {},
                              .ip_addresses = {"127.0.0.1"},
                              .days = 2,
                              .not_before_offset_s = 0,
                              .group = group}));
    }
    const json site_file = {
        {"sites",
         {{{"name", "dc"},
           {"jurisdictions", {"EU", "SE"}},
           {"price", {{"currency", "EUR"}, {"vcpu_hour", 0.03}, {"memory_gib_hour", 0.004}}},
           {"networks", {"lan"}},
           {"agents",
            {{{"host", "dc-h1"},
              {"endpoint", "127.0.0.1:" + std::to_string(agent_->port())},
              {"ca", (dir_ / "agent/pki/ca.crt").string()},
              {"cert", (dir_ / "agent/pki/op.crt").string()},
              {"key", (dir_ / "agent/pki/op.key").string()}}}}}}}};
    std::ofstream(dir_ / "sites.json") << site_file.dump(2);
    startController("c1");
  }
  void TearDown() override {
    stopController();
    agent_.reset();
    fs::remove_all(dir_);
  }

  void startController(const std::string& id) {
    fs::remove(dir_ / "cport");
    auto p = Subprocess::start(
        {VANDRA_CONTROLLER_BIN, "--port", "0", "--port-file", (dir_ / "cport").string(), "--tls-ca",
         (dir_ / "cpki/ca.crt").string(), "--tls-cert", (dir_ / "cpki/controller.crt").string(),
         "--tls-key", (dir_ / "cpki/controller.key").string(), "--state-dir",
         (dir_ / "cstate").string(), "--config", (dir_ / "sites.json").string(), "--id", id,
         "--refresh-ms", "200"},
        {.capture_stdout = false, .capture_stderr = true});
    ASSERT_TRUE(p) << p.error().describe();
    controller_ = std::make_unique<Subprocess>(std::move(*p));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!fs::exists(dir_ / "cport") && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polls the port file
    }
    std::ifstream(dir_ / "cport") >> port_;
    ASSERT_GT(port_, 0) << "the controller did not start";
  }
  ExitStatus stopController() {
    if (!controller_) {
      return {};
    }
    ::kill(controller_->pid(), SIGTERM);
    auto st = controller_->wait();
    controller_.reset();
    return st ? *st : ExitStatus{};
  }

  Outcome vandra(const std::string& who, std::vector<std::string> args) {
    std::vector<std::string> argv = {VANDRA_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a : {std::string("--controller"), "127.0.0.1:" + std::to_string(port_),
                                 std::string("--ca"), (dir_ / "cpki/ca.crt").string(),
                                 std::string("--cert"), (dir_ / "cpki" / (who + ".crt")).string(),
                                 std::string("--key"), (dir_ / "cpki" / (who + ".key")).string()}) {
      argv.push_back(a);
    }
    auto p = Subprocess::start(argv, {.capture_stdout = true, .capture_stderr = true});
    EXPECT_TRUE(p) << p.error().describe();
    Outcome r;
    EXPECT_TRUE(p->drainStdout([&](std::string_view c) { r.out.append(c); }));
    auto st = p->wait();
    r.code = st ? st->code : -1;
    r.err = p->stderrText();
    return r;
  }
  // Polls `vandra site show dc --json` until the agent's host has been seen (the refresh loop).
  json hostSeen() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = vandra("victor", {"site", "show", "dc", "--json"});
      if (r.code == 0) {
        auto j = json::parse(r.out, nullptr, false);
        if (j.is_object() && !j["hosts"].empty() && j["hosts"][0]["reachable"].get<bool>()) {
          return j;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polls the controller
    }
    ADD_FAILURE() << "the controller never reached the agent";
    return {};
  }

  fs::path dir_;
  std::unique_ptr<agent::AgentProcess> agent_;
  std::unique_ptr<Subprocess> controller_;
  int port_ = 0;
};

TEST_F(ControllerCli, AnOperatorAndAViewerThroughTheCli) {
  const json dc = hostSeen();
  ASSERT_TRUE(dc.is_object());
  EXPECT_EQ(dc["jurisdictions"], json({"EU", "SE"}));
  EXPECT_GT(dc["hosts"][0]["capacity"]["memory_mib"].get<uint64_t>(), 0U);

  auto listed = vandra("victor", {"site", "list"});
  EXPECT_EQ(listed.code, 0) << listed.err;
  EXPECT_NE(listed.out.find("EU,SE"), std::string::npos) << listed.out;

  auto refused = vandra("victor", {"site", "set", "dc", "--jurisdictions", "US"});
  EXPECT_EQ(refused.code, 6) << refused.err;
  EXPECT_NE(refused.err.find("viewer"), std::string::npos) << refused.err;
  auto changed =
      vandra("alice", {"site", "set", "dc", "--vcpu-hour", "0.05", "--high", "0.9", "--json"});
  EXPECT_EQ(changed.code, 0) << changed.err;
  const auto after = json::parse(changed.out, nullptr, false);
  ASSERT_TRUE(after.is_object()) << changed.out;
  EXPECT_EQ(after["price"]["vcpu_hour"], 0.05);
  EXPECT_EQ(after["price"]["memory_gib_hour"], 0.004);  // untouched
  EXPECT_EQ(after["water_marks"]["high"], 0.9);
  EXPECT_EQ(after["jurisdictions"], json({"EU", "SE"}));

  auto audit = vandra("victor", {"audit", "--json"});
  ASSERT_EQ(audit.code, 0) << audit.err;
  const auto entries = json::parse(audit.out)["audit"];
  ASSERT_EQ(entries.size(), 2u) << audit.out;
  EXPECT_EQ(entries[0]["who"], "victor");
  EXPECT_EQ(entries[0]["result"], "forbidden");
  EXPECT_EQ(entries[1]["who"], "alice");
  EXPECT_EQ(entries[1]["result"], "ok");

  auto sla = vandra("victor", {"sla", "status", "--json"});
  EXPECT_EQ(sla.code, 0) << sla.err;
  EXPECT_EQ(json::parse(sla.out)["violations"], 0);
  EXPECT_EQ(vandra("alice", {"mobility", "pause"}).code, 0);
  auto plan = vandra("victor", {"mobility", "plan", "--json"});
  ASSERT_EQ(plan.code, 0) << plan.err;
  EXPECT_EQ(json::parse(plan.out)["paused"], true);
  EXPECT_EQ(vandra("alice", {"mobility", "resume"}).code, 0);
  auto vms = vandra("victor", {"vm", "list", "--json"});
  ASSERT_EQ(vms.code, 0) << vms.err;
  EXPECT_EQ(json::parse(vms.out)["vms"], json::array());
  auto missing = vandra("alice", {"vm", "migrate", "ghost", "--to", "dc"});
  EXPECT_EQ(missing.code, 4) << missing.err;

  // A clean stop hands the lease over at once: the next controller leads.
  EXPECT_EQ(stopController().code, 0);
  startController("c2");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  json leader;
  while (std::chrono::steady_clock::now() < deadline) {
    httplib::SSLClient c("127.0.0.1", port_, (dir_ / "cpki/victor.crt").string(),
                         (dir_ / "cpki/victor.key").string());
    c.set_ca_cert_path((dir_ / "cpki/ca.crt").c_str());
    auto r = c.Get("/v1/leader");
    if (r && r->status == 200) {
      leader = json::parse(r->body);
      if (leader["leader"].get<bool>()) {
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polls the controller
  }
  EXPECT_EQ(leader["holder"], "c2");
  EXPECT_EQ(leader["epoch"], 2);
}

// `vandra vm import` through the controller: the file goes up to the controller, the VM is
// placed at the one site, and the agent imports it with its networks mapped. A VMware-style
// "VM Network" with no default network at the site is refused by name until it is mapped.
TEST_F(ControllerCli, ImportThroughTheController) {
  ASSERT_TRUE(hostSeen().is_object());
  auto ova = testing::makeTestPackage(dir_ / "pkg", "web1", {"VM Network"}, [] {
    ovf::Sla s;
    s.jurisdictions = {"EU"};
    return s;
  }());
  ASSERT_TRUE(ova) << ova.error().describe();
  auto by_viewer = vandra("victor", {"vm", "import", "web1", *ova});
  EXPECT_EQ(by_viewer.code, 6) << by_viewer.err;
  auto unmapped = vandra("alice", {"vm", "import", "web1", *ova});
  EXPECT_NE(unmapped.code, 0);
  EXPECT_NE(unmapped.err.find("no network 'VM Network' here"), std::string::npos) << unmapped.err;
  auto none = vandra("victor", {"vm", "list", "--json"});
  ASSERT_EQ(none.code, 0) << none.err;
  EXPECT_EQ(json::parse(none.out)["vms"], json::array());

  auto imported = vandra("alice", {"vm", "import", "web1", *ova, "--map", "VM Network=lan",
                                   "--reason", "new web server", "--json"});
  ASSERT_EQ(imported.code, 0) << imported.err;
  const auto j = json::parse(imported.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << imported.out;
  EXPECT_EQ(j["vm"]["site"], "dc");
  EXPECT_EQ(j["vm"]["networks"], json::array({"lan"}));
  EXPECT_EQ(j["upload"]["reused"], true);  // the refused attempt had uploaded it already
  auto shown = vandra("victor", {"vm", "show", "web1", "--json"});
  ASSERT_EQ(shown.code, 0) << shown.err;
  EXPECT_EQ(json::parse(shown.out)["home_site"], "dc");
  // The agent has the VM on the site's network, and kept no copy of the package.
  agent::AgentClient direct(agent::AgentEndpoint{.host = "127.0.0.1",
                                                 .port = agent_->port(),
                                                 .ca = (dir_ / "agent/pki/ca.crt").string(),
                                                 .cert = (dir_ / "agent/pki/op.crt").string(),
                                                 .key = (dir_ / "agent/pki/op.key").string(),
                                                 .netns = "",
                                                 .epoch = 0,
                                                 .label = "agent"});
  auto rec = direct.get("/v1/vms/web1");
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ((*rec)["spec"]["virtual_systems"][0]["nics"][0]["network"], "lan");
  EXPECT_EQ((*direct.get("/v1/packages"))["packages"], json::array());
  auto audit = vandra("victor", {"audit", "--target", "web1", "--json"});
  ASSERT_EQ(audit.code, 0) << audit.err;
  EXPECT_EQ(json::parse(audit.out)["audit"].back()["reason"], "new web server");
}

}  // namespace
}  // namespace vandra::controller
