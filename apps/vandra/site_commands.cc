#include "site_commands.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include <iostream>

#include "cli_support.h"
#include "vandra/pki/pki.h"

namespace vandra::cli {
namespace {

using nlohmann::json;

struct AgentConn {
  std::string agent = "127.0.0.1:8443";  // host:port of vandrad
  std::string ca;                        // site CA (verifies the agent)
  std::string cert;                      // our client certificate
  std::string key;
  bool json = false;
};

void addConn(CLI::App* sub, AgentConn& c) {
  sub->add_option("--agent", c.agent, "Agent address host:port");
  sub->add_option("--ca", c.ca, "Site CA certificate")->required();
  sub->add_option("--cert", c.cert, "Client certificate issued by the site CA")->required();
  sub->add_option("--key", c.key, "Client key")->required();
  sub->add_flag("--json", c.json, "Print the agent's JSON");
}

// One request to the agent; maps transport failures and error bodies to exit codes.
int call(const AgentConn& c, const std::string& method, const std::string& path, const std::string& body,
         const std::function<void(const json&)>& human) {
  const auto colon = c.agent.rfind(':');
  if (colon == std::string::npos) {
    return reportError("--agent", Error(ErrorCode::InvalidArgument, "Expected host:port, got '" + c.agent + "'"));
  }
  int port = 0;
  try {
    port = std::stoi(c.agent.substr(colon + 1));
  } catch (const std::exception&) {
    return reportError("--agent", Error(ErrorCode::InvalidArgument, "Bad port in '" + c.agent + "'"));
  }
  httplib::SSLClient cli(c.agent.substr(0, colon), port, c.cert, c.key);
  cli.set_ca_cert_path(c.ca.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(10);
  cli.set_read_timeout(3600);  // imports convert disks
  httplib::Result r = method == "GET"      ? cli.Get(path.c_str())
                      : method == "DELETE" ? cli.Delete(path.c_str())
                                           : cli.Post(path.c_str(), body, "application/json");
  if (!r) {
    return reportError(c.agent, Error(ErrorCode::Io, "Cannot reach the agent over mutual TLS (" +
                                                         httplib::to_string(r.error()) +
                                                         "): check --agent, --ca, --cert, --key"));
  }
  const json j = json::parse(r->body, nullptr, false);
  if (r->status >= 400) {
    const std::string code = j.is_object() && j.contains("error") ? j["error"].value("code", "") : "";
    const std::string msg = j.is_object() && j.contains("error") ? j["error"].value("message", r->body) : r->body;
    std::cerr << "vandra: " << c.agent << ": " << msg << " [" << code << "] (HTTP " << r->status << ")\n";
    return r->status == 404 ? 4 : r->status == 409 ? 5 : r->status >= 500 && r->status != 507 ? 1 : 3;
  }
  if (c.json || j.is_discarded()) {
    std::cout << r->body << "\n";
  } else {
    human(j);
  }
  return 0;
}

void printVm(const json& v) {
  std::cout << v.value("id", "") << "  " << v.value("state", "") << "  " << v["resources"].value("vcpus", 0)
            << " vCPU  " << v["resources"].value("memory_mib", 0) << " MiB\n";
}

} // namespace

void addPkiCommands(CLI::App& app, int& exit_code) {
  auto* pki = app.add_subcommand("pki", "Site CA and certificates for mutual TLS");
  pki->require_subcommand(1);
  static pki::CaOptions ca;
  auto* init = pki->add_subcommand("init", "Create a site CA (ca.key, ca.crt) in a folder");
  init->add_option("--dir", ca.dir, "Folder (created; must not hold a CA)")->required();
  init->add_option("--name", ca.common_name, "CA common name, e.g. 'vandra site dc CA'")->required();
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
  issue->add_option("--role", role, "server | client | both")->check(CLI::IsMember({"server", "client", "both"}));
  issue->add_option("--dns", is.dns_names, "subjectAltName DNS names");
  issue->add_option("--ip", is.ip_addresses, "subjectAltName IP addresses");
  issue->add_option("--days", is.days, "Validity in days");
  issue->callback([&] {
    is.role = role == "server" ? pki::Role::Server : role == "client" ? pki::Role::Client : pki::Role::Both;
    auto r = pki::issue(is);
    exit_code = r ? 0 : reportError("pki issue", r.error());
    if (r) {
      std::cout << "certificate: " << r->cert_path << " (key " << r->key_path << ", mode 0600)\n";
    }
  });
}

void addVmCommands(CLI::App& app, int& exit_code) {
  auto* vm = app.add_subcommand("vm", "VMs on an agent (vandrad)");
  vm->require_subcommand(1);
  static AgentConn conn;
  auto* list = vm->add_subcommand("list", "List the agent's VMs");
  addConn(list, conn);
  list->callback([&] {
    exit_code = call(conn, "GET", "/v1/vms", "", [](const json& j) {
      for (const auto& v : j["vms"]) {
        printVm(v);
      }
    });
  });
  static std::string id;
  auto* show = vm->add_subcommand("show", "Show one VM");
  addConn(show, conn);
  show->add_option("id", id, "VM name")->required();
  show->callback([&] { exit_code = call(conn, "GET", "/v1/vms/" + id, "", [](const json& j) { std::cout << j.dump(2) << "\n"; }); });
  static std::string package;
  static std::string vs;
  static bool lax = false;
  auto* imp = vm->add_subcommand("import", "Import an OVA/OVF (a path on the agent's host) as a new VM");
  addConn(imp, conn);
  imp->add_option("id", id, "New VM name")->required();
  imp->add_option("package", package, "Absolute path of the package on the agent's host")->required();
  imp->add_option("--vs", vs, "Virtual system id (default: the first)");
  imp->add_flag("--lax", lax, "Import despite package problems (warnings)");
  imp->callback([&] {
    json body{{"id", id}, {"package", package}, {"lax", lax}};
    if (!vs.empty()) {
      body["vs"] = vs;
    }
    exit_code = call(conn, "POST", "/v1/vms", body.dump(), printVm);
  });
  auto* del = vm->add_subcommand("delete", "Delete a VM that is not running, with its disks");
  addConn(del, conn);
  del->add_option("id", id, "VM name")->required();
  del->callback([&] { exit_code = call(conn, "DELETE", "/v1/vms/" + id, "", [](const json& j) { std::cout << "deleted " << j.value("deleted", "") << "\n"; }); });
  for (const char* verb : {"start", "stop", "kill"}) {
    auto* sub = vm->add_subcommand(verb, std::string(verb) == "start"  ? "Start a VM (QEMU) and wait until it runs"
                                         : std::string(verb) == "stop" ? "ACPI shutdown, forced after the agent's timeout"
                                                                       : "Stop a VM at once (SIGKILL)");
    addConn(sub, conn);
    sub->add_option("id", id, "VM name")->required();
    sub->callback([&exit_code, verb] {
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
  auto* host = vm->add_subcommand("host", "Capacity of the agent's host");
  addConn(host, conn);
  host->callback([&] { exit_code = call(conn, "GET", "/v1/host", "", [](const json& j) { std::cout << j.dump(2) << "\n"; }); });
}

} // namespace vandra::cli
