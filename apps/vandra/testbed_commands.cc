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
  json wans = json::array();
  for (const auto& w : s.wans) {
    wans.push_back({{"peer", w.peer},
                    {"device", w.device},
                    {"address", w.address},
                    {"peer_address", w.peer_address}});
  }
  json j = {{"name", s.name},     {"jurisdictions", s.jurisdictions}, {"netns", s.netns},
            {"bridge", s.bridge}, {"lan_address", s.lan_address},     {"lan", s.lan},
            {"wans", wans}};
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
            {"client", {{"netns", t.client_netns}, {"address", t.client_address}}}};
  j["sites"] = json::array();
  for (const auto& s : t.sites) {
    j["sites"].push_back(siteJson(s));
  }
  j["links"] = json::array();
  for (const auto& l : t.links) {
    j["links"].push_back({{"a", l.a}, {"b", l.b}, {"wanem_pid", l.wanem_pid}});
  }
  if (t.controller_pid > 0) {
    j["controller"] = {{"endpoint", t.controller_endpoint},
                       {"pid", t.controller_pid},
                       {"ca", t.controller_ca},
                       {"cert", t.operator_cert},
                       {"key", t.operator_key},
                       {"viewer_cert", t.viewer_cert},
                       {"viewer_key", t.viewer_key},
                       {"cli_config", t.cli_config},
                       {"dir", t.controller_dir}};
    if (!t.console_url.empty()) {
      j["console"] = {{"url", t.console_url}, {"users", t.console_users}};
    }
  }
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
  for (const auto& site : t.sites) {
    const SiteInfo* s = &site;
    std::cout << "  site " << s->name << " (";
    for (size_t i = 0; i < s->jurisdictions.size(); ++i) {
      std::cout << (i == 0 ? "" : " ") << s->jurisdictions[i];
    }
    std::cout << "): netns " << s->netns << ", " << s->bridge << " " << s->lan_address << "\n";
    for (const auto& w : s->wans) {
      std::cout << "    " << w.device << " " << w.address << " -> " << w.peer << " "
                << w.peer_address << "\n";
    }
    if (!s->agent_endpoint.empty()) {
      std::cout << "    agent " << s->agent_endpoint << " (pid " << s->agent_pid
                << "); talk to it with\n"
                << "      vandra vm list --testbed " << t.state_dir << " --site " << s->name
                << "\n";
    }
  }
  std::cout << "  client: netns " << t.client_netns << ", " << t.client_address << " on dc br0\n";
  for (const auto& l : t.links) {
    if (l.wanem_pid > 0) {
      std::cout << "  wan emulator " << l.a << " <-> " << l.b << ": pid " << l.wanem_pid << "\n";
    }
  }
  if (t.controller_pid > 0) {
    std::cout << "  controller " << t.controller_endpoint << " (pid " << t.controller_pid
              << "); operator credentials in " << t.cli_config << "\n";
  }
  if (!t.console_url.empty()) {
    std::cout << "  web console " << t.console_url << " (users and passwords in " << t.console_users
              << ")\n";
  }
}

struct Opts {
  std::string profile = "wan";
  std::string state_dir = kDefaultStateDir;
  std::string wanem;
  std::string agent;
  std::string congestion;
  std::string controller;
  std::string console;
  std::vector<std::string> sites;
  bool no_agents = false;
  bool no_controller = false;
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
  to.sites = o.sites;
  to.controller = !o.no_controller;
  to.controller_path = o.controller;
  to.console_dir = o.console;
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
  auto* tb = app.add_subcommand(
      "testbed",
      "Sites dc, cloud-eu, cloud-us as namespaces joined by emulated WAN links, with a controller");
  tb->require_subcommand(1);

  static Opts up_o;
  auto* upc = tb->add_subcommand(
      "up",
      "Create namespaces, bridges, client, a WAN emulator per site pair, one agent per site "
      "and the controller");
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
  upc->add_option("--sites", up_o.sites,
                  "Which sites (comma separated; dc is needed; default: dc,cloud-eu,cloud-us)")
      ->delimiter(',');
  upc->add_option("--controller", up_o.controller,
                  "Path of vandra-controller (default: $VANDRA_CONTROLLER, else next to vandra)");
  upc->add_flag("--no-agents", up_o.no_agents,
                "Network only: start no site agents (and no controller)");
  upc->add_flag("--no-controller", up_o.no_controller, "Start the agents but no controller");
  upc->add_option("--console", up_o.console,
                  "The web console's built files (web/dist): the controller serves them, with "
                  "an operator and a viewer to sign in as");
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
