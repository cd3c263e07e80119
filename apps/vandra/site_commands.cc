#include "site_commands.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent_conn.h"
#include "cli_support.h"
#include "controller_commands.h"
#include "migrate_watch.h"
#include "migration_summary.h"
#include "seed_commands.h"
#include "vandra/agent/agent_client.h"
#include "vandra/pki/pki.h"
#include "vandra/testbed/testbed.h"

namespace vandra::cli {
namespace {

using nlohmann::json;

// The commands that also go through the controller: --controller (or a configured one) and no
// agent named (--site, --agent) means the controller; --ca/--cert/--key are then its.
void addControllerFlags(CLI::App* sub, AgentConn& c) {
  sub->add_option("--controller", c.controller,
                  "Through the controller at host:port (default: the configured one, when no "
                  "agent is named)");
  sub->add_option("--cli-config", c.cli_config, "CLI config file naming the controller");
}

std::optional<ControllerConn> viaController(CLI::App* sub, const AgentConn& c) {
  if (sub->count("--site") > 0 || sub->count("--agent") > 0 || sub->count("--netns") > 0) {
    return std::nullopt;  // talking straight to an agent (debugging)
  }
  ControllerConn cc{c.controller, c.ca, c.cert, c.key, c.cli_config, c.json};
  if (!c.controller.empty() || controllerConfigured(cc)) {
    return cc;
  }
  return std::nullopt;
}

// One request to the agent through AgentClient; errors (the agent's own codes included) take
// their exit code from the one table (cli_support.h).
int call(AgentConn& c, const std::string& method, const std::string& path, const std::string& body,
         const std::function<void(const json&)>& human) {
  auto made = clientFor(c);
  if (!made) {
    return reportError("vm", made.error());
  }
  agent::AgentClient& client = *made;
  Result<std::string> text = method == "GET" && path.find("/console") != std::string::npos
                                 ? client.getText(path)
                                 : [&]() -> Result<std::string> {
    auto j = method == "GET"      ? client.get(path)
             : method == "DELETE" ? client.del(path)
                                  : client.post(path, json::parse(body));
    if (!j) {
      return fail(std::move(j).error());
    }
    return j->dump();
  }();
  if (!text) {
    return reportError(c.agent, text.error());
  }
  const json j = json::parse(*text, nullptr, false);
  if (c.json || j.is_discarded()) {
    std::cout << *text << "\n";
  } else {
    human(j);
  }
  return 0;
}

// "2026-11-25T20:31:07.123Z" for microseconds since the epoch.
std::string formatUtc(int64_t us) {
  const time_t secs = static_cast<time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>((us / 1000) % 1000));
  return std::string(buf, n) + ms;
}

void printVm(const json& v) {
  std::cout << v.value("id", "") << "  " << v.value("state", "") << "  "
            << v["resources"].value("vcpus", 0) << " vCPU  "
            << v["resources"].value("memory_mib", 0) << " MiB\n";
}

// A finished migration in a few lines: result, times, downtime, bytes over the WAN.
void printMigration(const json& m) {
  std::cout << migrationSummary(m);
  if (const std::string w = migrationWaitingLine(m); !w.empty()) {
    std::cout << "  " << w << "\n";
  }
  if (const std::string r = migrationResolutionLine(m); !r.empty()) {
    std::cout << "  " << r << "\n";
  }
}

// The id of VM @p vm's migration from this agent that has not ended ("" when none).
Result<std::string> runningSourceMigration(agent::AgentClient& client, const std::string& vm) {
  VANDRA_TRY_ASSIGN(const json all, client.get("/v1/migrations?vm=" + vm));
  for (const auto& m : all["migrations"]) {
    if (!m.value("ended", true) && m.value("role", "") == "source") {
      return m.value("id", "");
    }
  }
  return std::string();
}

// vandra vm migrate VM --resolve ACTION --reason WHY: the operator's word on a migration that
// waits for its unreachable target (docs/agent/api.md). Exit 0 when it ended as asked.
int resolveMigration(AgentConn& conn, agent::AgentClient& client, const std::string& vm,
                     const std::string& action, const std::string& reason) {
  if (reason.empty()) {
    return reportError(
        "vm migrate", Error(ErrorCode::InvalidArgument,
                            "--resolve needs --reason WHY (it is kept in the migration's record)"));
  }
  auto mid = runningSourceMigration(client, vm);
  if (!mid) {
    return reportError(conn.agent, mid.error());
  }
  if (mid->empty()) {
    return reportError(
        "vm migrate",
        Error(ErrorCode::NotFound, "VM '" + vm + "' has no migration from here to resolve"));
  }
  auto r = client.post("/v1/migrations/" + *mid + "/resolve",
                       json{{"action", action}, {"reason", reason}});
  if (!r) {
    return reportError(conn.agent, r.error());
  }
  conn.json ? (void)(std::cout << r->dump() << "\n") : printMigration(*r);
  const std::string want = action == "resume-source" ? "rolled_back" : "done";
  return r->value("phase", "") == want ? 0 : 1;
}

// vandra vm migrate VM --to SITE | --cancel | --resolve, and vandra vm migrations [VM].
void addMigrateCommands(CLI::App* vm, AgentConn& conn, int& exit_code) {
  static std::string id;
  static std::string to;
  static bool cancel = false;
  static bool no_wait = false;
  static double bandwidth_mbps = 0;
  static uint64_t max_total_s = 0;
  static uint64_t downtime_ms = 0;
  static bool no_auto_converge = false;
  static bool no_disk_converge = false;
  static std::string copy_mode;
  static std::string resolve;
  static std::string reason;
  auto* mig = vm->add_subcommand(
      "migrate", "Move a running VM live to another site (progress bar; --cancel to stop one)");
  addConn(mig, conn);
  addControllerFlags(mig, conn);
  mig->add_option("id", id, "VM name")->required();
  mig->add_option("--to", to, "Target site");
  mig->add_flag("--cancel", cancel,
                "Cancel the VM's running migration (it rolls back; the VM runs on here)");
  mig->add_flag("--no-wait", no_wait, "Print the migration's id and return at once");
  mig->add_option("--bandwidth-mbps", bandwidth_mbps, "Cap for this migration (Mbit/s)");
  mig->add_option("--max-total-s", max_total_s, "Roll back when not done after this long");
  mig->add_option("--downtime-limit-ms", downtime_ms,
                  "QEMU's downtime target (default: the SLA's budget)");
  mig->add_flag("--no-auto-converge", no_auto_converge,
                "Do not throttle a guest that dirties faster than the link");
  mig->add_flag("--no-disk-converge", no_disk_converge,
                "Do not throttle the disk writes of a guest that keeps a mirror from converging");
  mig->add_option("--copy-mode", copy_mode,
                  "Disk mirrors: background (default) or write-blocking (each guest write waits "
                  "for the target)")
      ->check(CLI::IsMember({"background", "write-blocking"}));
  mig->add_option("--resolve", resolve,
                  "End the VM's migration that waits for its unreachable target: resume-source "
                  "(the target never ran the guest: it resumes here) or abandon-source (the "
                  "target runs it: the source lets its copy go)")
      ->check(CLI::IsMember({"resume-source", "abandon-source"}));
  mig->add_option("--reason", reason, "Why (with --resolve; kept in the migration's record)");
  mig->callback([&, mig] {
    if (resolve.empty() && !cancel && !to.empty()) {
      if (auto cc = viaController(mig, conn)) {
        exit_code = controllerVmMigrate(*cc, id, to, reason, no_wait);
        return;
      }
    }
    auto made = clientFor(conn);
    if (!made) {
      exit_code = reportError("vm migrate", made.error());
      return;
    }
    agent::AgentClient& client = *made;
    if (!resolve.empty()) {
      exit_code = resolveMigration(conn, client, id, resolve, reason);
      return;
    }
    if (cancel) {
      auto running = runningSourceMigration(client, id);
      if (!running) {
        exit_code = reportError(conn.agent, running.error());
        return;
      }
      const std::string mid = *running;
      if (mid.empty()) {
        exit_code = reportError(
            "vm migrate", Error(ErrorCode::NotFound, "VM '" + id + "' is not migrating from here"));
        return;
      }
      auto c = client.post("/v1/migrations/" + mid + "/cancel", json::object());
      if (!c) {
        exit_code = reportError(conn.agent, c.error());
        return;
      }
      ProgressBar bar(false);
      auto end = followMigration(client, mid, bar,
                                 std::chrono::steady_clock::now() + std::chrono::seconds(300));
      if (!end) {
        exit_code = reportError(conn.agent, end.error());
        return;
      }
      conn.json ? (void)(std::cout << end->dump() << "\n") : printMigration(*end);
      exit_code = end->value("phase", "") == "rolled_back" ? 0 : 1;
      return;
    }
    if (to.empty()) {
      exit_code = reportError("vm migrate",
                              Error(ErrorCode::InvalidArgument, "Give --to SITE (or --cancel)"));
      return;
    }
    json body{{"to", to}};
    if (bandwidth_mbps > 0) {
      body["bandwidth_mbps"] = bandwidth_mbps;
    }
    if (max_total_s > 0) {
      body["max_total_s"] = max_total_s;
    }
    if (downtime_ms > 0) {
      body["downtime_limit_ms"] = downtime_ms;
    }
    if (no_auto_converge) {
      body["auto_converge"] = false;
    }
    if (no_disk_converge) {
      body["disk_converge"] = false;
    }
    if (!copy_mode.empty()) {
      body["copy_mode"] = copy_mode;
    }
    auto begun = client.post("/v1/vms/" + id + "/migrate", body);
    if (!begun) {
      exit_code = reportError(conn.agent, begun.error());
      return;
    }
    const std::string mid = begun->value("id", "");
    if (no_wait) {
      std::cout << (conn.json ? begun->dump() : mid) << "\n";
      exit_code = 0;
      return;
    }
    ProgressBar bar(!conn.json);
    auto end = followMigration(client, mid, bar,
                               std::chrono::steady_clock::now() + std::chrono::hours(25));
    if (!end) {
      exit_code = reportError(conn.agent, end.error());
      return;
    }
    conn.json ? (void)(std::cout << end->dump() << "\n") : printMigration(*end);
    if (end->value("phase", "") != "done") {
      std::cout.flush();
      std::cerr << "vandra: migration " << mid << " did not complete: " << end->value("phase", "")
                << ": " << end->value("error", "") << "\n";
      exit_code = 1;
      return;
    }
    exit_code = 0;
  });
  static std::string list_vm;
  auto* list = vm->add_subcommand("migrations", "Migrations this agent took part in, newest first");
  addConn(list, conn);
  list->add_option("id", list_vm, "Only this VM");
  list->callback([&] {
    exit_code =
        call(conn, "GET", "/v1/migrations" + (list_vm.empty() ? std::string() : "?vm=" + list_vm),
             "", [](const json& j) {
               for (const auto& m : j["migrations"]) {
                 std::cout << m.value("id", "") << "  " << m.value("vm", "") << "  "
                           << m.value("role", "") << "  " << m.value("peer", "") << "  "
                           << m.value("phase", "") << "  "
                           << formatUtc(m.value("created_us", int64_t{0})) << "\n";
                 if (const std::string w = migrationWaitingLine(m); !w.empty()) {
                   std::cout << "    " << w << "\n";
                 }
               }
             });
  });
}

}  // namespace

void addPkiCommands(CLI::App& app, int& exit_code) {
  auto* pki = app.add_subcommand("pki", "Site CA and certificates for mutual TLS");
  pki->require_subcommand(1);
  static pki::CaOptions ca;
  auto* init = pki->add_subcommand("init", "Create a site CA (ca.key, ca.crt) in a folder");
  init->add_option("--dir", ca.dir, "Folder (created; must not hold a CA)")->required();
  init->add_option("--name", ca.common_name, "CA common name, e.g. 'vandra site dc CA'")
      ->required();
  init->add_option("--days", ca.days, "Validity in days");
  init->callback([&] {
    auto r = pki::initCa(ca);
    exit_code = r ? 0 : reportError("pki init", r.error());
    if (r) {
      std::cout << "CA: " << r->cert_path << " (key " << r->key_path << ", mode 0600)\n";
    }
  });
  static pki::IssueOptions is;
  static std::string role = "both";
  auto* issue = pki->add_subcommand("issue", "Issue a certificate signed by the site CA");
  issue->add_option("--dir", is.ca_dir, "Folder holding the CA")->required();
  issue->add_option("--name", is.name, "Certificate name (file stem and CN)")->required();
  issue->add_option("--role", role, "server | client | both")
      ->check(CLI::IsMember({"server", "client", "both"}));
  issue->add_option("--dns", is.dns_names, "subjectAltName DNS names");
  issue->add_option("--ip", is.ip_addresses, "subjectAltName IP addresses");
  issue->add_option("--days", is.days, "Validity in days");
  issue->add_option("--group", is.group,
                    "The holder's group (subject OU): the controller's role, operator | viewer");
  issue->callback([&] {
    is.role = role == "server"   ? pki::Role::Server
              : role == "client" ? pki::Role::Client
                                 : pki::Role::Both;
    auto r = pki::issue(is);
    exit_code = r ? 0 : reportError("pki issue", r.error());
    if (r) {
      std::cout << "certificate: " << r->cert_path << " (key " << r->key_path << ", mode 0600)\n";
    }
  });
  static std::string revoke_dir;
  static std::string revoke_cert;
  static uint32_t crl_days = 30;
  auto* revoke = pki->add_subcommand(
      "revoke", "Revoke a certificate of the site CA (writes the CA's CRL, ca.crl)");
  revoke->add_option("--dir", revoke_dir, "Folder holding the CA")->required();
  revoke->add_option("--cert", revoke_cert, "The certificate to revoke (PEM)")->required();
  revoke->add_option("--days", crl_days, "Days until the CRL must be renewed")
      ->check(CLI::Range(1, 3650));
  revoke->callback([&] {
    auto r = pki::revoke(revoke_dir, revoke_cert, crl_days);
    exit_code = r ? 0 : reportError("pki revoke", r.error());
    if (r) {
      std::cout << "CRL: " << *r << " (give it to the peer sites' agents: vandrad --tunnel-crl)\n";
    }
  });
}

void addVmCommands(CLI::App& app, int& exit_code) {
  auto* vm = app.add_subcommand("vm", "VMs on an agent (vandrad)");
  vm->require_subcommand(1);
  static AgentConn conn;
  auto* list = vm->add_subcommand("list", "List the VMs (every site's through the controller)");
  addConn(list, conn);
  addControllerFlags(list, conn);
  list->callback([&, list] {
    if (auto cc = viaController(list, conn)) {
      exit_code = controllerVmList(*cc);
      return;
    }
    exit_code = call(conn, "GET", "/v1/vms", "", [](const json& j) {
      for (const auto& v : j["vms"]) {
        printVm(v);
      }
    });
  });
  static std::string id;
  auto* show = vm->add_subcommand("show", "Show one VM");
  addConn(show, conn);
  addControllerFlags(show, conn);
  show->add_option("id", id, "VM name")->required();
  show->callback([&, show] {
    if (auto cc = viaController(show, conn)) {
      exit_code = controllerVmShow(*cc, id);
      return;
    }
    auto made = clientFor(conn);
    if (!made) {
      exit_code = reportError("vm show", made.error());
      return;
    }
    auto v = made->get("/v1/vms/" + id);
    if (!v) {
      exit_code = reportError(conn.agent, v.error());
      return;
    }
    // A migration of it that has not ended (an agent without --site has none): what it waits
    // for, and since when, with the VM.
    json running;
    if (auto all = made->get("/v1/migrations?vm=" + id)) {
      for (const auto& m : (*all)["migrations"]) {
        if (!m.value("ended", true)) {
          running = m;
          break;
        }
      }
    }
    if (conn.json) {
      json out = *v;
      if (!running.is_null()) {
        out["migration"] = running;
      }
      std::cout << out.dump() << "\n";
    } else {
      std::cout << v->dump(2) << "\n";
      if (!running.is_null()) {
        std::cout << "migration " << running.value("id", "") << " (" << running.value("role", "")
                  << ", " << running.value("peer", "") << "): " << running.value("phase", "")
                  << "\n";
        if (const std::string w = migrationWaitingLine(running); !w.empty()) {
          std::cout << "  " << w << "\n";
        }
      }
    }
    exit_code = 0;
  });
  static std::string package_file;
  static std::string on_agent;
  static std::string upload_name;
  static std::string vs;
  static bool lax = false;
  auto* imp = vm->add_subcommand(
      "import",
      "Import an OVA as a new VM: upload FILE to the agent and import it, or (--on-agent) import "
      "a package already in one of the agent's import folders");
  addConn(imp, conn);
  imp->add_option("id", id, "New VM name")->required();
  imp->add_option("file", package_file, "Local .ova file to upload");
  imp->add_option("--on-agent", on_agent,
                  "Absolute path of an .ova in one of the agent's import folders (vandrad "
                  "--import-dir), instead of FILE");
  imp->add_option("--name", upload_name, "Name of the upload on the agent (default: FILE's name)");
  imp->add_option("--vs", vs, "Virtual system id (default: the first)");
  imp->add_flag("--lax", lax, "Import despite package problems (warnings)");
  addControllerFlags(imp, conn);
  static ControllerImport through;
  imp->add_option("--place-at", through.site,
                  "Through the controller: import at this site (refused if it breaks the SLA)");
  imp->add_option("--map", through.maps,
                  "Through the controller: OVF_NETWORK=SITE_NETWORK (repeatable; default: the "
                  "same name at the site, else its default network)");
  imp->add_flag("--start", through.start, "Through the controller: start it once imported");
  imp->add_option("--reason", through.reason, "Through the controller: why (audit log)");
  imp->callback([&, imp] {
    if (auto cc = viaController(imp, conn); cc && on_agent.empty() && !package_file.empty()) {
      through.id = id;
      through.file = package_file;
      through.upload_name = upload_name;
      through.vs = vs;
      through.lax = lax;
      exit_code = controllerVmImport(*cc, through);
      return;
    }
    if (package_file.empty() == on_agent.empty()) {
      exit_code = reportError("vm import", Error(ErrorCode::InvalidArgument,
                                                 "Give FILE (uploaded) or --on-agent PATH"));
      return;
    }
    json body{{"id", id}, {"lax", lax}};
    if (!vs.empty()) {
      body["vs"] = vs;
    }
    if (!on_agent.empty()) {
      body["package"] = on_agent;
      exit_code = call(conn, "POST", "/v1/vms", body.dump(), printVm);
      return;
    }
    auto client = clientFor(conn);
    if (!client) {
      exit_code = reportError("vm", client.error());
      return;
    }
    const std::string name =
        upload_name.empty() ? std::filesystem::path(package_file).filename().string() : upload_name;
    auto up = client->uploadPackage(
        package_file, name, conn.json ? agent::AgentClient::UploadProgress{} : uploadProgress(name),
        lax);
    if (!up) {
      exit_code = reportError(conn.agent, up.error());
      return;
    }
    body["upload"] = name;
    auto r = client->post("/v1/vms", body);
    if (!r) {
      exit_code = reportError(conn.agent, r.error());
      return;
    }
    if (conn.json) {
      json out = *r;
      out["upload"] = *up;  // added beside the VM's fields, which stay as they were
      std::cout << out.dump() << "\n";
    } else {
      std::cout << "package " << name
                << (up->value("reused", false) ? " (already on the agent)" : " uploaded") << "\n";
      printVm(*r);
    }
    exit_code = 0;
  });
  static std::string package_name;
  auto* pkgs = vm->add_subcommand("packages", "Packages uploaded to the agent (list, delete)");
  addConn(pkgs, conn);
  auto* pkg_del = pkgs->add_subcommand("delete", "Remove an uploaded package");
  addConn(pkg_del, conn);
  pkg_del->add_option("name", package_name, "Upload name")->required();
  pkg_del->callback([&] {
    exit_code = call(conn, "DELETE", "/v1/packages/" + package_name, "", [](const json& j) {
      std::cout << "deleted " << j.value("deleted", "") << "\n";
    });
  });
  pkgs->callback([&, pkg_del] {
    if (pkg_del->parsed()) {
      return;
    }
    exit_code = call(conn, "GET", "/v1/packages", "", [](const json& j) {
      for (const auto& p : j.value("packages", json::array())) {
        std::cout << p.value("name", "") << "  " << p.value("size", uint64_t{0}) << " bytes  "
                  << (p["sha256"].is_string() ? p["sha256"].get<std::string>() : "-") << "\n";
      }
      std::cout << "upload folder " << j.value("upload_dir", "") << ", bound "
                << (j.value("max_upload_bytes", uint64_t{0}) >> 20) << " MiB, free "
                << (j.value("available_bytes", uint64_t{0}) >> 20) << " MiB\n";
    });
  });
  addSeedCommands(vm, exit_code);
  static std::string from;
  auto* create = vm->add_subcommand(
      "create", "A new VM like an existing one: same spec, new overlays on the same base images");
  addConn(create, conn);
  create->add_option("id", id, "New VM name")->required();
  create->add_option("--from", from, "Existing VM")->required();
  create->callback([&] {
    exit_code = call(conn, "POST", "/v1/vms", json{{"id", id}, {"from", from}}.dump(), printVm);
  });
  auto* del = vm->add_subcommand("delete", "Delete a VM that is not running, with its disks");
  addConn(del, conn);
  del->add_option("id", id, "VM name")->required();
  del->callback([&] {
    exit_code = call(conn, "DELETE", "/v1/vms/" + id, "", [](const json& j) {
      std::cout << "deleted " << j.value("deleted", "") << "\n";
    });
  });
  for (const char* verb : {"start", "stop", "kill"}) {
    auto* sub = vm->add_subcommand(
        verb, std::string(verb) == "start"  ? "Start a VM (QEMU) and wait until it runs"
              : std::string(verb) == "stop" ? "ACPI shutdown, forced after the agent's timeout"
                                            : "Stop a VM at once (SIGKILL)");
    addConn(sub, conn);
    addControllerFlags(sub, conn);
    sub->add_option("id", id, "VM name")->required();
    sub->callback([&exit_code, verb, sub] {
      if (std::string(verb) != "kill") {
        if (auto cc = viaController(sub, conn)) {
          exit_code = controllerVmAction(*cc, id, verb);
          return;
        }
      }
      exit_code = call(conn, "POST", "/v1/vms/" + id + "/" + verb, "{}", printVm);
    });
  }
  auto* console = vm->add_subcommand("console", "Print the VM's serial console log (last 256 KiB)");
  addConn(console, conn);
  console->add_option("id", id, "VM name")->required();
  console->callback([&] {
    conn.json = true;  // plain text passes through as is
    exit_code = call(conn, "GET", "/v1/vms/" + id + "/console", "", [](const json&) {});
  });
  static std::string events_vm;
  static uint64_t since = 0;
  static bool follow = false;
  auto* events =
      vm->add_subcommand("events", "What happened to the agent's VMs (state changes, QEMU events)");
  addConn(events, conn);
  events->add_option("id", events_vm, "Only this VM");
  events->add_option("--since", since, "Only events after this sequence number");
  events->add_flag("--follow", follow, "Keep waiting for new events (Ctrl-C ends)");
  events->callback([&] {
    const std::string base = events_vm.empty() ? "/v1/events" : "/v1/vms/" + events_vm + "/events";
    uint64_t next = since;
    bool more = true;
    while (more) {
      uint64_t last = next;
      const bool as_json = conn.json;
      conn.json = false;  // one line per event either way; --json prints each event as JSON
      exit_code = call(
          conn, "GET",
          base + "?max=1000&since=" + std::to_string(next) + (follow ? "&wait_ms=25000" : ""), "",
          [&](const json& j) {
            if (j.value("truncated", false)) {
              std::cerr << "vandra: some events after " << next
                        << " were already dropped by the agent\n";
            }
            for (const auto& e : j["events"]) {
              last = e.value("seq", last);
              if (as_json) {
                std::cout << e.dump() << "\n";
                continue;
              }
              const auto us = e.value("time_us", int64_t{0});
              std::cout << e.value("seq", 0) << "  " << formatUtc(us) << "  " << e.value("vm", "")
                        << "  " << e.value("kind", "") << " " << e.value("name", "");
              if (!e["data"].empty()) {
                std::cout << "  " << e["data"].dump();
              }
              std::cout << "\n";
            }
            std::cout.flush();
          });
      conn.json = as_json;
      next = last;
      more = follow && exit_code == 0;
    }
  });
  addMigrateCommands(vm, conn, exit_code);
  auto* peers = vm->add_subcommand(
      "peers", "The agent's site tunnel: its listener (listening or retrying) and peer links");
  addConn(peers, conn);
  peers->callback([&] {
    exit_code = call(conn, "GET", "/v1/peers", "", [](const json& j) {
      const json& l = j.value("listener", json::object());
      std::cout << "listener " << l.value("address", "") << ": " << l.value("state", "?");
      if (l.contains("since_us")) {
        std::cout << " since " << formatUtc(l.value("since_us", int64_t{0}));
      }
      if (l.contains("last_error")) {
        std::cout << " (" << l.value("last_error", "") << ")";
      }
      std::cout << "\n";
      for (const auto& p : j.value("peers", json::array())) {
        if (!p.contains("site")) {
          continue;
        }
        std::cout << "peer " << p.value("site", "") << ": link " << p.value("link", "?");
        if (p.contains("rtt_us")) {
          std::cout << ", rtt " << static_cast<double>(p.value("rtt_us", int64_t{0})) / 1000.0
                    << " ms";
        }
        if (p.contains("error")) {
          std::cout << " (" << p.value("error", "") << ")";
        }
        std::cout << "\n";
      }
    });
  });
  auto* host = vm->add_subcommand("host", "Capacity of the agent's host");
  addConn(host, conn);
  host->callback([&] {
    exit_code =
        call(conn, "GET", "/v1/host", "", [](const json& j) { std::cout << j.dump(2) << "\n"; });
  });
}

}  // namespace vandra::cli
