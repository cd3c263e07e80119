// `vandra testbed ...`: parse options, call vandra_testbed, print. Exit codes as cli_support.h;
// `status` exits 0 when the testbed is up and whole, 4 when none is recorded, 1 otherwise.
#include "testbed_commands.h"

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "vandra/testbed/testbed.h"
#include "vandra/testbed/wan_emulator.h"

namespace vandra::cli {
namespace {

using nlohmann::json;
using namespace vandra::testbed;

constexpr const char* kDefaultStateDir = "/run/vandra/testbed";

json siteJson(const SiteInfo& s) {
  json j = {{"name", s.name},
            {"netns", s.netns},
            {"bridge", s.bridge},
            {"lan_address", s.lan_address},
            {"wan_device", s.wan_device},
            {"wan_address", s.wan_address},
            {"wan_peer", s.wan_peer}};
  if (!s.agent_endpoint.empty()) {
    j["agent"] = {
        {"endpoint", s.agent_endpoint}, {"pid", s.agent_pid},    {"ca", s.ca_cert},
        {"cert", s.operator_cert},      {"key", s.operator_key}, {"site_dir", s.site_dir}};
  }
  return j;
}

json infoJson(const TestbedInfo& t) {
  json j = {{"id", t.id},
            {"profile", t.profile},
            {"congestion", t.congestion},
            {"state_dir", t.state_dir},
            {"sites", {siteJson(t.dc), siteJson(t.cloud)}},
            {"client", {{"netns", t.client_netns}, {"address", t.client_address}}},
            {"wanem_pid", t.wanem_pid}};
  if (auto p = findProfile(t.profile)) {
    j["link"] = {{"rate_mbit", static_cast<double>(p->link.rate_bps) / 1e6},
                 {"rtt_ms", std::chrono::duration<double, std::milli>(p->link.delay).count() * 2},
                 {"loss_pct", p->link.loss * 100.0},
                 {"queue_packets", p->link.queue_packets},
                 {"queue_bytes", p->link.queue_bytes}};
  }
  return j;
}

void printInfo(const TestbedInfo& t) {
  std::cout << "testbed " << t.id << " (profile " << t.profile << ", TCP congestion control "
            << t.congestion << ", state in " << t.state_dir << ")\n";
  for (const SiteInfo* s : {&t.dc, &t.cloud}) {
    std::cout << "  site " << s->name << ": netns " << s->netns << ", " << s->bridge << " "
              << s->lan_address << ", " << s->wan_device << " " << s->wan_address << " -> "
              << s->wan_peer << "\n";
    if (!s->agent_endpoint.empty()) {
      std::cout << "    agent " << s->agent_endpoint << " (pid " << s->agent_pid
                << "); talk to it with\n"
                << "      vandra vm list --testbed " << t.state_dir << " --site " << s->name
                << "\n";
    }
  }
  std::cout << "  client: netns " << t.client_netns << ", " << t.client_address << " on dc "
            << t.dc.bridge << "\n";
  if (t.wanem_pid > 0) {
    std::cout << "  wan emulator: pid " << t.wanem_pid << "\n";
  }
}

struct Opts {
  std::string profile = "wan";
  std::string state_dir = kDefaultStateDir;
  std::string wanem;
  std::string agent;
  std::string congestion;
  bool no_agents = false;
  bool json = false;
};

int cmdUp(const Opts& o) {
  TestbedOptions to;
  to.profile = o.profile;
  to.state_dir = o.state_dir;
  to.wanem_path = o.wanem;
  to.agents = !o.no_agents;
  to.agent_path = o.agent;
  to.congestion = o.congestion;
  auto t = up(to);
  if (!t) {
    return reportError("testbed up", t.error());
  }
  if (o.json) {
    std::cout << infoJson(*t).dump(2) << "\n";
  } else {
    printInfo(*t);
  }
  return 0;
}

int cmdDown(const Opts& o) {
  if (auto r = down(o.state_dir); !r) {
    return reportError("testbed down", r.error());
  }
  if (o.json) {
    std::cout << json{{"down", true}, {"state_dir", o.state_dir}}.dump(2) << "\n";
  } else {
    std::cout << "testbed in " << o.state_dir << " is down\n";
  }
  return 0;
}

int cmdStatus(const Opts& o) {
  auto s = status(o.state_dir);
  if (!s) {
    return reportError("testbed status", s.error());
  }
  if (o.json) {
    json res = json::array();
    for (const auto& r : s->resources) {
      res.push_back(
          {{"kind", r.kind}, {"name", r.name}, {"present", r.present}, {"detail", r.detail}});
    }
    json j = {{"present", s->present},
              {"complete", s->complete},
              {"healthy", s->healthy},
              {"resources", res}};
    if (s->info) {
      j["testbed"] = infoJson(*s->info);
    }
    std::cout << j.dump(2) << "\n";
  } else if (!s->present) {
    std::cout << "no testbed recorded in " << o.state_dir << "\n";
  } else {
    printInfo(*s->info);
    std::cout << "  "
              << (s->healthy    ? "healthy"
                  : s->complete ? "DEGRADED"
                                : "INCOMPLETE (up did not finish)")
              << "\n";
    for (const auto& r : s->resources) {
      const char* mark = r.present ? "[ok]    " : r.kind == "link" ? "[moved] " : "[gone]  ";
      std::cout << "    " << mark << r.kind << " " << r.name
                << (r.detail.empty() ? "" : " (" + r.detail + ")") << "\n";
    }
  }
  if (!s->present) {
    return 4;
  }
  return s->healthy ? 0 : 1;
}

}  // namespace

void addTestbedCommands(CLI::App& app, int& exit_code) {
  auto* tb =
      app.add_subcommand("testbed", "Sites dc and cloud as namespaces joined by an emulated WAN");
  tb->require_subcommand(1);

  static Opts up_o;
  auto* upc = tb->add_subcommand(
      "up", "Create namespaces, bridges, client, the WAN emulator and one agent per site");
  std::string names;
  for (const auto& p : profiles()) {
    names += (names.empty() ? "" : ", ") + p.name;
  }
  upc->add_option("--profile", up_o.profile, "Link profile: " + names)->capture_default_str();
  upc->add_option("--state-dir", up_o.state_dir, "Where the state file lives")
      ->capture_default_str();
  upc->add_option("--wanem", up_o.wanem, "Path of vandra-wanem (default: next to vandra)");
  upc->add_option("--agent", up_o.agent,
                  "Path of vandrad (default: $VANDRA_AGENT, else next to vandra)");
  upc->add_option(
      "--congestion", up_o.congestion,
      "TCP congestion control of every namespace and the agents' tunnel (e.g. cubic, "
      "bbr; default: the host's for the namespaces, the agents' own for the tunnel: auto)");
  upc->add_flag("--no-agents", up_o.no_agents, "Network only: start no site agents");
  upc->add_flag("--json", up_o.json, "Print one JSON document");
  upc->callback([&] { exit_code = cmdUp(up_o); });

  static Opts down_o;
  auto* downc = tb->add_subcommand("down", "Remove everything the state file records");
  downc->add_option("--state-dir", down_o.state_dir, "Where the state file lives")
      ->capture_default_str();
  downc->add_flag("--json", down_o.json, "Print one JSON document");
  downc->callback([&] { exit_code = cmdDown(down_o); });

  static Opts status_o;
  auto* statusc = tb->add_subcommand("status", "What is recorded and whether it exists and runs");
  statusc->add_option("--state-dir", status_o.state_dir, "Where the state file lives")
      ->capture_default_str();
  statusc->add_flag("--json", status_o.json, "Print one JSON document");
  statusc->callback([&] { exit_code = cmdStatus(status_o); });
}

}  // namespace vandra::cli
