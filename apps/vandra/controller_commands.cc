#include "controller_commands.h"

#include <httplib.h>

#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli_support.h"
#include "migrate_watch.h"

namespace vandra::cli {
namespace {

using nlohmann::json;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// The config files looked at, in order (the first that exists is used).
std::vector<std::string> configCandidates(const ControllerConn& c) {
  std::vector<std::string> out;
  if (!c.config.empty()) {
    out.push_back(c.config);
    return out;  // named: that one or nothing
  }
  if (!env("VANDRA_CONFIG").empty()) {
    out.push_back(env("VANDRA_CONFIG"));
  }
  out.push_back("/run/vandra/testbed/cli.json");
  if (!env("HOME").empty()) {
    out.push_back(env("HOME") + "/.config/vandra/cli.json");
  }
  return out;
}

Result<ControllerConn> resolve(const ControllerConn& given) {
  ControllerConn c = given;
  if (c.controller.empty() && !env("VANDRA_CONTROLLER").empty()) {
    c.controller = env("VANDRA_CONTROLLER");
    c.ca = c.ca.empty() ? env("VANDRA_CONTROLLER_CA") : c.ca;
    c.cert = c.cert.empty() ? env("VANDRA_CONTROLLER_CERT") : c.cert;
    c.key = c.key.empty() ? env("VANDRA_CONTROLLER_KEY") : c.key;
  }
  if (c.controller.empty()) {
    for (const auto& path : configCandidates(given)) {
      std::error_code ec;
      if (!std::filesystem::exists(path, ec)) {
        if (!given.config.empty()) {
          return fail(ErrorCode::NotFound, "No CLI config file '" + path + "'");
        }
        continue;
      }
      VANDRA_TRY_ASSIGN(auto text, readSmallFile(path, 64 * 1024));
      const auto j = json::parse(text, nullptr, false);
      if (!j.is_object() || !j.contains("controller") || !j["controller"].is_string()) {
        return fail(ErrorCode::InvalidArgument,
                    path + ": expected {\"controller\": \"HOST:PORT\", \"ca\", \"cert\", \"key\"}");
      }
      c.controller = j["controller"].get<std::string>();
      c.ca = c.ca.empty() ? j.value("ca", "") : c.ca;
      c.cert = c.cert.empty() ? j.value("cert", "") : c.cert;
      c.key = c.key.empty() ? j.value("key", "") : c.key;
      break;
    }
  }
  if (c.controller.empty()) {
    return fail(ErrorCode::NotFound,
                "No controller configured: give --controller HOST:PORT with --ca, --cert and "
                "--key, or set VANDRA_CONTROLLER, or write ~/.config/vandra/cli.json (a testbed "
                "writes /run/vandra/testbed/cli.json)");
  }
  if (c.ca.empty() || c.cert.empty() || c.key.empty()) {
    return fail(ErrorCode::InvalidArgument,
                "The controller " + c.controller + " needs a CA, a certificate and a key");
  }
  return c;
}

void printTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()));
    for (size_t i = 0; i < r.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      std::cout << std::left << std::setw(static_cast<int>(width[i] + 2)) << r[i];
    }
    std::cout << "\n";
  }
}

std::string join(const json& a) {
  std::string out;
  for (const auto& x : a) {
    out += (out.empty() ? "" : ",") + (x.is_string() ? x.get<std::string>() : x.dump());
  }
  return out.empty() ? "-" : out;
}

std::string num(double v, int precision = 3) {
  std::ostringstream o;
  o << std::setprecision(precision) << v;
  return o.str();
}

// GET @p path and print it with @p human (or the JSON with --json).
template <class F>
int show(const ControllerConn& c, const std::string& what, const std::string& path, F human) {
  auto client = controllerClient(c);
  if (!client) {
    return reportError(what, client.error());
  }
  auto r = client->get(path);
  if (!r) {
    return reportError(what, r.error());
  }
  if (c.json) {
    std::cout << r->dump() << "\n";
  } else {
    human(*r);
  }
  return 0;
}

int send(const ControllerConn& c, const std::string& what, const std::string& method,
         const std::string& path, const json& body) {
  auto client = controllerClient(c);
  if (!client) {
    return reportError(what, client.error());
  }
  auto r = method == "POST" ? client->post(path, body) : client->sendJson(method, path, body);
  if (!r) {
    return reportError(what, r.error());
  }
  std::cout << (c.json ? r->dump() : r->dump(2)) << "\n";
  return 0;
}

void printPlan(const json& plan) {
  std::vector<std::vector<std::string>> rows = {{"VM", "FROM", "TO", "REASON", "WHY"}};
  for (const auto& m : plan.value("moves", json::array())) {
    rows.push_back({m.value("vm", ""), m.value("from", ""), m.value("to", ""),
                    m.value("reason", ""), m.value("why", "")});
  }
  if (rows.size() == 1) {
    std::cout << "no moves\n";
  } else {
    printTable(rows);
  }
  for (const auto& h : plan.value("held", json::array())) {
    std::cout << "held: " << h.value("vm", "") << " at " << h.value("site", "") << " ("
              << h.value("reason", "") << "): " << h.value("why", "") << "\n";
    for (const auto& r : h.value("reasons", json::array())) {
      std::cout << "  " << r.value("site", "") << ": " << r.value("clause", "") << "\n";
    }
  }
}

void addSiteCommands(CLI::App& app, int& exit_code) {
  auto* site = app.add_subcommand("site", "Sites, through the controller");
  site->require_subcommand(1);
  static ControllerConn conn;
  auto* list = site->add_subcommand("list", "Every site with its facts and use");
  addControllerConn(list, conn);
  list->callback([&] {
    exit_code = show(conn, "site list", "/v1/sites", [](const json& j) {
      std::vector<std::vector<std::string>> rows = {
          {"SITE", "JURISDICTIONS", "vCPU/h", "GiB/h", "OVERCOMMIT", "HIGH", "LOW", "NETWORKS"}};
      for (const auto& s : j["sites"]) {
        rows.push_back(
            {s["name"], join(s["jurisdictions"]), num(s["price"]["vcpu_hour"].get<double>()),
             num(s["price"]["memory_gib_hour"].get<double>()),
             num(s["vcpu_overcommit"].get<double>()), num(s["water_marks"]["high"].get<double>()),
             num(s["water_marks"]["low"].get<double>()), join(s["networks"])});
      }
      printTable(rows);
    });
  });
  static std::string name;
  auto* show_one = site->add_subcommand("show", "One site with its hosts");
  addControllerConn(show_one, conn);
  show_one->add_option("name", name, "Site")->required();
  show_one->callback([&] {
    exit_code = show(conn, "site show", "/v1/sites/" + name,
                     [](const json& j) { std::cout << j.dump(2) << "\n"; });
  });
  static std::vector<std::string> jurisdictions, networks;
  static double vcpu_hour = -1, gib_hour = -1, overcommit = 0, high = 0, low = -1;
  static std::string currency, default_network;
  auto* set = site->add_subcommand("set", "Change a site's facts (an operator)");
  addControllerConn(set, conn);
  set->add_option("name", name, "Site")->required();
  set->add_option("--jurisdictions", jurisdictions, "Labels, e.g. EU,SE")->delimiter(',');
  set->add_option("--vcpu-hour", vcpu_hour, "Price of a vCPU per hour");
  set->add_option("--memory-gib-hour", gib_hour, "Price of a GiB of memory per hour");
  set->add_option("--currency", currency, "ISO 4217 code of the prices");
  set->add_option("--overcommit", overcommit, "vCPUs a host offers per core");
  set->add_option("--high", high, "High water mark (0..1)");
  set->add_option("--low", low, "Low water mark (0..1)");
  set->add_option("--networks", networks, "The site's networks")->delimiter(',');
  set->add_option("--default-network", default_network, "Where unmapped networks land");
  set->callback([&exit_code, set] {
    json patch = json::object();
    auto client = controllerClient(conn);
    if (!client) {
      exit_code = reportError("site set", client.error());
      return;
    }
    auto now = client->get("/v1/sites/" + name);
    if (!now) {
      exit_code = reportError("site set", now.error());
      return;
    }
    if (set->count("--jurisdictions") > 0) {
      patch["jurisdictions"] = jurisdictions;
    }
    if (vcpu_hour >= 0 || gib_hour >= 0 || !currency.empty()) {
      json price = (*now)["price"];
      if (vcpu_hour >= 0) price["vcpu_hour"] = vcpu_hour;
      if (gib_hour >= 0) price["memory_gib_hour"] = gib_hour;
      if (!currency.empty()) price["currency"] = currency;
      patch["price"] = price;
    }
    if (overcommit > 0) {
      patch["vcpu_overcommit"] = overcommit;
    }
    if (high > 0 || low >= 0) {
      json wm = (*now)["water_marks"];
      if (high > 0) wm["high"] = high;
      if (low >= 0) wm["low"] = low;
      patch["water_marks"] = wm;
    }
    if (set->count("--networks") > 0) {
      patch["networks"] = networks;
    }
    if (set->count("--default-network") > 0) {
      patch["default_network"] = default_network;
    }
    exit_code = send(conn, "site set", "PATCH", "/v1/sites/" + name, patch);
  });
  static bool dry_run = false;
  static std::string reason;
  auto* drain = site->add_subcommand(
      "drain", "Move every VM that may leave the site elsewhere; list those that cannot");
  addControllerConn(drain, conn);
  drain->add_option("name", name, "Site")->required();
  drain->add_flag("--dry-run", dry_run, "Only show what it would move, and what cannot leave");
  drain->add_option("--reason", reason, "Why (kept in the audit log)");
  drain->callback([&] {
    auto client = controllerClient(conn);
    if (!client) {
      exit_code = reportError("site drain", client.error());
      return;
    }
    auto r = dry_run ? client->get("/v1/sites/" + name + "/drain")
                     : client->post("/v1/sites/" + name + "/drain",
                                    reason.empty() ? json::object() : json{{"reason", reason}});
    if (!r) {
      exit_code = reportError("site drain", r.error());
      return;
    }
    if (conn.json) {
      std::cout << r->dump() << "\n";
    } else {
      std::cout << (dry_run ? "would move:\n" : "draining " + name + ":\n");
      printPlan((*r)["plan"]);
    }
    exit_code = 0;
  });
}

}  // namespace

void addControllerConn(CLI::App* sub, ControllerConn& c) {
  sub->add_option("--controller", c.controller, "Controller address host:port");
  sub->add_option("--ca", c.ca, "CA of the controller's certificate");
  sub->add_option("--cert", c.cert, "Our client certificate (its OU is our role)");
  sub->add_option("--key", c.key, "Our key");
  sub->add_option("--cli-config", c.config, "CLI config file (controller, ca, cert, key)");
  sub->add_flag("--json", c.json, "Print the controller's JSON");
}

Result<agent::AgentClient> controllerClient(const ControllerConn& given) {
  VANDRA_TRY_ASSIGN(auto c, resolve(given));
  agent::AgentEndpoint ep;
  VANDRA_TRY(agent::parseHostPort(c.controller, ep));
  ep.ca = c.ca;
  ep.cert = c.cert;
  ep.key = c.key;
  ep.label = "controller";
  return agent::AgentClient(std::move(ep));
}

bool controllerConfigured(const ControllerConn& c) {
  return resolve(c).has_value();
}

int controllerVmList(const ControllerConn& c) {
  return show(c, "vm list", "/v1/vms", [](const json& j) {
    std::vector<std::vector<std::string>> rows = {
        {"VM", "SITE", "HOST", "HOME", "STATE", "vCPUs", "MiB", "MOBILITY", "JURISDICTIONS"}};
    for (const auto& v : j["vms"]) {
      rows.push_back({v["name"], v["site"], v["host"], v["home_site"], v["state"],
                      std::to_string(v["vcpus"].get<uint32_t>()),
                      std::to_string(v["memory_mib"].get<uint64_t>()),
                      v["sla"].value("mobility", ""),
                      join(v["sla"].value("jurisdictions", json()))});
    }
    printTable(rows);
  });
}

int controllerVmShow(const ControllerConn& c, const std::string& vm) {
  return show(c, "vm show", "/v1/vms/" + vm, [](const json& j) { std::cout << j.dump(2) << "\n"; });
}

int controllerVmAction(const ControllerConn& c, const std::string& vm, const std::string& action) {
  return send(c, "vm " + action, "POST", "/v1/vms/" + vm + "/" + action, json::object());
}

int controllerVmMigrate(const ControllerConn& c, const std::string& vm, const std::string& to,
                        const std::string& reason, bool no_wait) {
  auto client = controllerClient(c);
  if (!client) {
    return reportError("vm migrate", client.error());
  }
  json body{{"to", to}};
  if (!reason.empty()) {
    body["reason"] = reason;
  }
  auto begun = client->post("/v1/vms/" + vm + "/migrate", body);
  if (!begun) {
    return reportError("vm migrate", begun.error());
  }
  const std::string id = std::to_string(begun->value("id", int64_t{0}));
  if (no_wait) {
    std::cout << (c.json ? begun->dump() : id) << "\n";
    return 0;
  }
  ProgressBar bar(!c.json);
  auto followed = followControllerMigration(*client, begun->value("id", int64_t{0}), bar,
                                            std::chrono::steady_clock::time_point::max());
  if (!followed) {
    return reportError("vm migrate", followed.error());
  }
  const json& m = *followed;
  if (c.json) {
    std::cout << m.dump() << "\n";
  } else {
    std::cout << vm << ": " << m.value("from", "") << " -> " << m.value("to", "") << ", "
              << m.value("state", "");
    if (m["downtime_ms"].is_number()) {
      std::cout << ", interruption " << m["downtime_ms"].get<double>() << " ms";
    }
    if (m["within_budget"].is_boolean()) {
      std::cout << (m["within_budget"].get<bool>() ? " (within" : " (over") << " the SLA's "
                << m["budget_ms"].get<uint32_t>() << " ms)";
    }
    std::cout << "\n";
    if (!m.value("error", "").empty()) {
      std::cout << "error: " << m.value("error", "") << "\n";
    }
  }
  return m.value("state", "") == "done" ? 0 : 1;
}

int controllerVmImport(const ControllerConn& c, const ControllerImport& r) {
  json body{{"id", r.id}, {"start", r.start}, {"lax", r.lax}};
  for (const auto& m : r.maps) {
    const auto eq = m.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == m.size()) {
      return reportError("vm import", Error(ErrorCode::InvalidArgument,
                                            "--map '" + m + "': give OVF_NETWORK=SITE_NETWORK"));
    }
    body["network_map"][m.substr(0, eq)] = m.substr(eq + 1);
  }
  for (const auto& [k, v] : {std::pair{"vs", r.vs}, {"site", r.site}, {"reason", r.reason}}) {
    if (!v.empty()) {
      body[k] = v;
    }
  }
  auto client = controllerClient(c);
  if (!client) {
    return reportError("vm import", client.error());
  }
  const std::string name =
      r.upload_name.empty() ? std::filesystem::path(r.file).filename().string() : r.upload_name;
  auto up = client->uploadPackage(
      r.file, name, c.json ? agent::AgentClient::UploadProgress{} : uploadProgress(name), r.lax);
  if (!up) {
    return reportError("vm import", up.error());
  }
  body["package"] = name;
  auto vm = client->post("/v1/vms", body);
  if (!vm) {
    return reportError("vm import", vm.error());
  }
  if (c.json) {
    json out = *vm;
    out["upload"] = *up;
    std::cout << out.dump() << "\n";
    return 0;
  }
  const json& v = (*vm)["vm"];
  const json& p = (*vm)["placement"];
  std::string nets;
  for (const auto& [from, to] : p["networks"].items()) {
    nets += (nets.empty() ? "" : ", ") + from +
            (from == to.get<std::string>() ? "" : " -> " + to.get<std::string>());
  }
  std::cout << "package " << name
            << (up->value("reused", false) ? " (already on the controller)" : " uploaded") << "\n"
            << "VM " << v.value("name", "") << " " << v.value("state", "") << " at "
            << v.value("site", "") << " (" << v.value("host", "") << "), "
            << p.value("cost_per_hour", 0.0) << " per hour"
            << (nets.empty() ? "" : "; networks " + nets) << "\n";
  return 0;
}

void addControllerCommands(CLI::App& app, int& exit_code) {
  addSiteCommands(app, exit_code);
  static ControllerConn conn;
  auto* sla = app.add_subcommand("sla", "The SLA of every VM against where it runs");
  sla->require_subcommand(1);
  auto* status = sla->add_subcommand("status", "Every VM's SLA verdict; exit 1 when one is broken");
  addControllerConn(status, conn);
  status->callback([&] {
    int broken = 0;
    exit_code = show(conn, "sla status", "/v1/sla", [&](const json& j) {
      std::vector<std::vector<std::string>> rows = {{"VM", "SITE", "SLA", "VIOLATIONS"}};
      for (const auto& v : j["vms"]) {
        rows.push_back(
            {v["vm"], v["site"], v["ok"].get<bool>() ? "ok" : "VIOLATED", join(v["violations"])});
      }
      printTable(rows);
      broken = j["violations"].get<int>();
    });
    if (exit_code == 0 && broken > 0) {
      exit_code = 1;
    }
  });
  static std::string who, target;
  static int64_t after = 0;
  static int max = 100;
  auto* audit = app.add_subcommand("audit", "Who changed what, when, with what result and why");
  addControllerConn(audit, conn);
  audit->add_option("--who", who, "Only this caller (certificate CN, or vandra)");
  audit->add_option("--target", target, "Only about this VM or site");
  audit->add_option("--after", after, "Entries after this sequence number");
  audit->add_option("--max", max, "At most this many")->check(CLI::Range(1, 1000));
  audit->callback([&] {
    std::string q = "/v1/audit?max=" + std::to_string(max) + "&after=" + std::to_string(after);
    if (!who.empty()) q += "&who=" + httplib::detail::encode_query_param(who);
    if (!target.empty()) q += "&target=" + httplib::detail::encode_query_param(target);
    exit_code = show(conn, "audit", q, [](const json& j) {
      std::vector<std::vector<std::string>> rows = {
          {"SEQ", "WHO", "ROLE", "ACTION", "STATUS", "RESULT", "REASON"}};
      for (const auto& e : j["audit"]) {
        rows.push_back({std::to_string(e["seq"].get<int64_t>()), e["who"], e["role"], e["action"],
                        std::to_string(e["status"].get<int>()), e["result"], e["reason"]});
      }
      printTable(rows);
    });
  });
  auto* mobility = app.add_subcommand("mobility", "Workloads that wander: the plan, pause, resume");
  mobility->require_subcommand(1);
  auto* plan = mobility->add_subcommand("plan", "What the mobility loop would do now, and why");
  addControllerConn(plan, conn);
  plan->callback([&] {
    exit_code = show(conn, "mobility plan", "/v1/mobility", [](const json& j) {
      std::cout << (j["paused"].get<bool>() ? "paused\n" : "");
      printPlan(j["plan"]);
    });
  });
  for (const char* action : {"pause", "resume"}) {
    auto* sub = mobility->add_subcommand(action, std::string(action) == "pause"
                                                     ? "Stop moving VMs by itself"
                                                     : "Move VMs by itself again");
    addControllerConn(sub, conn);
    sub->callback([&exit_code, action] {
      exit_code = send(conn, std::string("mobility ") + action, "POST",
                       std::string("/v1/mobility/") + action, json::object());
    });
  }
}

}  // namespace vandra::cli
