// The whole testbed as `vandra testbed up` makes it: dc, cloud-eu and cloud-us, an emulated
// link per pair, an agent per site and the controller over them. Every pair reaches each
// other over its own link (the route to each LAN goes through the right device), each agent
// knows the two other sites as peers, the controller answers with the three sites and their
// jurisdictions for an operator and refuses a viewer's change, and `down` leaves no
// namespace, device or process. Needs root and network namespaces; skipped otherwise.
#include <gtest/gtest.h>
#include <httplib.h>
#include <net/if.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "test/support/require.h"
#include "testbed_support.h"

namespace vandra::testbed {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace support;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string hostOf(const std::string& cidr) {
  return cidr.substr(0, cidr.find('/'));
}

// `ping -c 2` from inside @p netns; true when a reply came.
bool pings(const std::string& netns, const std::string& target) {
  auto out = runCapture({"ip", "netns", "exec", netns, "ping", "-n", "-q", "-c", "2", "-i", "0.2",
                         "-W", "2", target});
  return out && out->find(" 0 received") == std::string::npos;
}

// The device the kernel of @p netns sends packets for @p target through.
std::string deviceTowards(const std::string& netns, const std::string& target) {
  auto out = runCapture({"ip", "-n", netns, "-o", "route", "get", target});
  if (!out) {
    return "";
  }
  const auto at = out->find(" dev ");
  if (at == std::string::npos) {
    return "";
  }
  const auto start = at + 5;
  return out->substr(start, out->find(' ', start) - start);
}

// The controller's answer to @p method @p path, with @p who's certificate.
httplib::Result controllerCall(const TestbedInfo& tb, const std::string& cert,
                               const std::string& key, const std::string& method,
                               const std::string& path, const json& body = json()) {
  const std::string endpoint = tb.controller_endpoint;
  const int port = std::stoi(endpoint.substr(endpoint.find(':') + 1));
  httplib::SSLClient cli("127.0.0.1", port, cert, key);
  cli.set_ca_cert_path(tb.controller_ca.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(10);
  if (method == "PATCH") {
    return cli.Patch(path.c_str(), body.dump(), "application/json");
  }
  return cli.Get(path.c_str());
}

TEST(ThreeSites, EveryPairLinkedAgentsPeeredControllerServesAndDownLeavesNothing) {
  if (const std::string why = cannotRun(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  // A TLS peer that hangs up must fail a request here, not end the test binary.
  ::signal(SIGPIPE, SIG_IGN);
  StateDir dir;
  TestbedOptions o = agentOptionsFor("lan", dir.path());
  o.sites.clear();  // all of them, as `vandra testbed up` does
  o.controller = true;
  const auto t_up = Clock::now();
  auto up_result = up(o);
  ASSERT_TRUE(up_result) << up_result.error().describe();
  const double up_s = std::chrono::duration<double>(Clock::now() - t_up).count();
  const TestbedInfo tb = *up_result;
  std::printf("[ measured ] up, three sites, agents and controller: %.2f s\n", up_s);

  ASSERT_EQ(tb.sites.size(), 3U);
  EXPECT_EQ(tb.sites[0].name, "dc");
  EXPECT_EQ(tb.sites[1].name, "cloud-eu");
  EXPECT_EQ(tb.sites[2].name, "cloud-us");
  EXPECT_EQ(siteOf(tb, "dc").jurisdictions, (std::vector<std::string>{"EU", "SE"}));
  EXPECT_EQ(siteOf(tb, "cloud-us").lan_address, "10.30.0.1/24");
  ASSERT_EQ(tb.links.size(), 3U);
  std::set<std::string> devices_seen;
  for (const auto& a : tb.sites) {
    ASSERT_EQ(a.wans.size(), 2U) << a.name;
    for (const auto& b : tb.sites) {
      if (a.name == b.name) {
        continue;
      }
      const WanEnd* end = a.wanTo(b.name);
      ASSERT_NE(end, nullptr) << a.name << " -> " << b.name;
      EXPECT_LE(end->device.size(), 15U);
      devices_seen.insert(a.name + "/" + end->device);
      // b's LAN is routed through a's end of their own link, and answers over it.
      EXPECT_EQ(deviceTowards(a.netns, hostOf(b.lan_address)), end->device)
          << a.name << " -> " << b.name;
      EXPECT_TRUE(pings(a.netns, hostOf(b.lan_address))) << a.name << " -> " << b.name;
      EXPECT_TRUE(pings(a.netns, end->peer_address)) << a.name << " -> " << b.name;
      EXPECT_EQ(b.wanTo(a.name)->address, end->peer_address);
    }
  }
  EXPECT_EQ(devices_seen.size(), 6U);
  // The client, on dc's bridge, reaches the farthest site through dc.
  EXPECT_TRUE(pings(tb.client_netns, hostOf(siteOf(tb, "cloud-us").lan_address)));

  // One link cut: only that pair loses each other; restored, it answers again.
  const std::string us_lan = hostOf(siteOf(tb, "cloud-us").lan_address);
  const std::string eu_lan = hostOf(siteOf(tb, "cloud-eu").lan_address);
  ASSERT_TRUE(cutWan(dir.path(), "cloud-us", "dc", true));
  EXPECT_FALSE(pings(siteOf(tb, "dc").netns, us_lan));
  EXPECT_TRUE(pings(siteOf(tb, "dc").netns, eu_lan));
  EXPECT_TRUE(pings(siteOf(tb, "cloud-eu").netns, us_lan));
  ASSERT_TRUE(cutWan(dir.path(), "dc", "cloud-us", false));
  EXPECT_TRUE(pings(siteOf(tb, "dc").netns, us_lan));
  EXPECT_EQ(cutWan(dir.path(), "dc", "mars", true).error().code, ErrorCode::NotFound);

  // Each agent has the two other sites as its peers.
  for (const auto& s : tb.sites) {
    auto agent = clientFor(s, s);
    auto peers = agent.get("/v1/peers");
    ASSERT_TRUE(peers) << s.name << ": " << peers.error().describe();
    std::set<std::string> names;
    for (const auto& p : (*peers).value("peers", json::array())) {
      names.insert(p.value("site", ""));
    }
    std::set<std::string> others;
    for (const auto& t : tb.sites) {
      if (t.name != s.name) {
        others.insert(t.name);
      }
    }
    EXPECT_EQ(names, others) << s.name << ": " << peers->dump(2);
  }

  // The controller: the three sites with their jurisdictions, for an operator.
  ASSERT_GT(tb.controller_pid, 0);
  ASSERT_FALSE(tb.controller_endpoint.empty());
  auto sites = controllerCall(tb, tb.operator_cert, tb.operator_key, "GET", "/v1/sites");
  ASSERT_TRUE(sites) << httplib::to_string(sites.error());
  ASSERT_EQ(sites->status, 200) << sites->body;
  const json sj = json::parse(sites->body, nullptr, false);
  ASSERT_TRUE(sj.is_object()) << sites->body;
  std::map<std::string, json> by_name;
  for (const auto& s : sj["sites"]) {
    by_name[s.value("name", "")] = s;
  }
  ASSERT_EQ(by_name.size(), 3U) << sites->body;
  EXPECT_EQ(by_name["dc"]["jurisdictions"], json::array({"EU", "SE"})) << sites->body;
  EXPECT_EQ(by_name["cloud-eu"]["jurisdictions"], json::array({"EU", "DE"})) << sites->body;
  EXPECT_EQ(by_name["cloud-us"]["jurisdictions"], json::array({"US"})) << sites->body;
  EXPECT_LT(by_name["cloud-us"]["price"]["vcpu_hour"].get<double>(),
            by_name["cloud-eu"]["price"]["vcpu_hour"].get<double>());
  // A viewer reads, but may not change.
  auto seen = controllerCall(tb, tb.viewer_cert, tb.viewer_key, "GET", "/v1/sites");
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->status, 200) << seen->body;
  auto patched = controllerCall(tb, tb.viewer_cert, tb.viewer_key, "PATCH", "/v1/sites/dc",
                                {{"vcpu_overcommit", 2.0}});
  ASSERT_TRUE(patched);
  EXPECT_EQ(patched->status, 403) << patched->body;
  // The CLI's config names the controller and the operator's credentials.
  std::ifstream cli_in(tb.cli_config);
  const json cli = json::parse(cli_in, nullptr, false);
  ASSERT_TRUE(cli.is_object()) << tb.cli_config;
  EXPECT_EQ(cli["controller"], tb.controller_endpoint);
  EXPECT_EQ(cli["cert"], tb.operator_cert);
  EXPECT_EQ(cli["ca"], tb.controller_ca);

  // status agrees with up.
  auto st = status(dir.path());
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_TRUE(st->healthy);
  ASSERT_TRUE(st->info);
  EXPECT_EQ(st->info->controller_endpoint, tb.controller_endpoint);
  EXPECT_EQ(st->info->controller_pid, tb.controller_pid);
  for (size_t i = 0; i < tb.links.size(); ++i) {
    EXPECT_EQ(st->info->links[i].wanem_pid, tb.links[i].wanem_pid);
  }

  // down: no namespace, device or process of this testbed is left.
  std::ifstream state_in(stateFilePath(dir.path()));
  const json recorded = json::parse(state_in, nullptr, false);
  ASSERT_TRUE(recorded.is_object());
  const auto t_down = Clock::now();
  ASSERT_TRUE(down(dir.path()));
  std::printf("[ measured ] down: %.2f s\n",
              std::chrono::duration<double>(Clock::now() - t_down).count());
  int processes = 0;
  for (const auto& r : recorded["resources"]) {
    const std::string kind = r["kind"];
    const std::string name = r["name"];
    if (kind == "netns") {
      EXPECT_FALSE(fs::exists("/run/netns/" + name)) << name;
    } else if (kind == "link") {
      EXPECT_EQ(::if_nametoindex(name.c_str()), 0U) << name;
    } else if (kind == "process") {
      ++processes;
      const pid_t pid = r["pid"];
      EXPECT_FALSE(processMatches(pid, r["start_time"], r["marker"])) << name << " " << pid;
    } else if (kind == "tree" || kind == "file") {
      EXPECT_FALSE(fs::exists(name)) << name;
    }
  }
  EXPECT_EQ(processes, 3 + 3 + 1);  // emulators, agents, controller
  auto left = runCapture({"ip", "netns", "list"});
  ASSERT_TRUE(left);
  EXPECT_EQ(left->find("vtb-" + tb.id), std::string::npos) << *left;
  EXPECT_FALSE(fs::exists(stateFilePath(dir.path())));
}

}  // namespace
}  // namespace vandra::testbed
