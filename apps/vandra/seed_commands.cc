#include "seed_commands.h"

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "agent_conn.h"
#include "cli_support.h"

namespace vandra::cli {
namespace {

using nlohmann::json;

struct ExportArgs {
  AgentConn conn;
  std::string id;
  std::string out;
  std::string name;
  bool no_sign = false;
  bool keep_on_agent = false;
};

struct SeedArgs {
  AgentConn conn;
  std::string file;
  std::string name;
  unsigned keep_hours = 24 * 7;
  bool keep_upload = false;
  bool lax = false;
};

// Bytes received of a download, as uploadProgress() shows bytes sent.
agent::AgentClient::UploadProgress downloadProgress(const std::string& name) {
  auto bar = std::make_shared<ProgressBar>(true);
  return [bar, name](uint64_t got, uint64_t total) {
    const double f = total == 0 ? 0.0 : static_cast<double>(got) / static_cast<double>(total);
    bar->update("downloading " + name, f,
                std::to_string(got >> 20) + "/" + std::to_string(total >> 20) + " MiB");
  };
}

int runExport(ExportArgs& a) {
  auto client = clientFor(a.conn);
  if (!client) {
    return reportError("vm export", client.error());
  }
  if (std::filesystem::exists(a.out)) {
    return reportError("vm export",
                       Error(ErrorCode::AlreadyExists, "'" + a.out + "' already exists"));
  }
  json body{{"sign", !a.no_sign}};
  if (!a.name.empty()) {
    body["name"] = a.name;
  }
  if (!a.conn.json) {
    std::cerr << "exporting " << a.id << " (its disks are frozen where they stand; a running "
              << "guest writes on)...\n";
  }
  auto e = client->post("/v1/vms/" + a.id + "/export", body);
  if (!e) {
    return reportError(a.conn.agent, e.error());
  }
  const std::string name = (*e)["package"].value("name", "");
  auto got = client->downloadFile(
      "/v1/packages/" + name + "/file", a.out,
      a.conn.json ? agent::AgentClient::UploadProgress{} : downloadProgress(name));
  if (!got) {
    return reportError(a.conn.agent, got.error());
  }
  bool kept = a.keep_on_agent;
  if (!kept) {
    if (auto d = client->del("/v1/packages/" + name); !d) {
      kept = true;  // the file is here; say what is left there rather than fail
      std::cerr << "vandra: vm export: the package stays on the agent: " << d.error().describe()
                << "\n";
    }
  }
  if (a.conn.json) {
    json out = *e;
    out["file"] = a.out;
    out["bytes"] = *got;
    out["kept_on_agent"] = kept;
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::cout << "exported " << a.id << " to " << a.out << ": " << *got << " bytes"
            << (e->value("signed", false) ? ", signed by the site" : ", unsigned")
            << (e->value("running", false) ? ", the guest ran on (disks frozen in " +
                                                 std::to_string(e->value("freeze_ms", 0.0)) + " ms)"
                                           : "")
            << "\npackage key " << e->value("package_key", "")
            << (kept ? "\nthe package stays on the agent as " + name : "") << "\n";
  return 0;
}

int runSeed(SeedArgs& a) {
  auto client = clientFor(a.conn);
  if (!client) {
    return reportError("vm seed", client.error());
  }
  const std::string name =
      a.name.empty() ? std::filesystem::path(a.file).filename().string() : a.name;
  auto up = client->uploadPackage(
      a.file, name, a.conn.json ? agent::AgentClient::UploadProgress{} : uploadProgress(name),
      a.lax);
  if (!up) {
    return reportError(a.conn.agent, up.error());
  }
  auto s = client->post("/v1/seeds",
                        json{{"upload", name}, {"keep_hours", a.keep_hours}, {"lax", a.lax}});
  if (!s) {
    return reportError(a.conn.agent, s.error());
  }
  bool kept = a.keep_upload;
  if (!kept) {
    if (auto d = client->del("/v1/packages/" + name); !d) {
      kept = true;
      std::cerr << "vandra: vm seed: the upload stays on the agent: " << d.error().describe()
                << "\n";
    }
  }
  if (a.conn.json) {
    json out = *s;
    out["upload"] = *up;
    out["upload_kept"] = kept;
    std::cout << out.dump() << "\n";
    return 0;
  }
  const int64_t until = s->value("expires_unix", int64_t{0});
  std::cout << "seeded " << a.file << ": base images " << s->value("key", "") << " ("
            << s->value("disks", json::array()).size() << " disks"
            << (s->value("reused", false) ? ", already here" : "") << ")\n"
            << (until > 0 ? "kept " + std::to_string(a.keep_hours) + " h once no VM stands on them"
                          : "an ordinary package's images: kept")
            << "\n";
  return 0;
}

}  // namespace

void addSeedCommands(CLI::App* vm, int& exit_code) {
  static ExportArgs ex;
  auto* exp = vm->add_subcommand(
      "export",
      "Export a VM (running or not) as a signed OVA to FILE: its disks are frozen where they "
      "stand, so a live move to a site seeded with FILE (vm seed) sends only what changed since");
  addConn(exp, ex.conn);
  exp->add_option("id", ex.id, "VM name")->required();
  exp->add_option("-o,--output", ex.out, "Local .ova file to write (must not exist)")->required();
  exp->add_option("--name", ex.name, "The package's name on the agent (default: <vm>-<time>.ova)");
  exp->add_flag("--no-sign", ex.no_sign, "Do not sign with the site's certificate");
  exp->add_flag("--keep-on-agent", ex.keep_on_agent,
                "Leave the package among the agent's uploads too");
  exp->callback([&] { exit_code = runExport(ex); });

  static SeedArgs sd;
  auto* seed = vm->add_subcommand(
      "seed",
      "Import an OVA's disks at this agent as base images only (no VM): a later live move of "
      "the exported VM here sends only what it wrote since the export");
  addConn(seed, sd.conn);
  seed->add_option("file", sd.file, "Local .ova (from vm export)")->required();
  seed->add_option("--name", sd.name, "Name of the upload on the agent (default: FILE's name)");
  seed->add_option("--keep-hours", sd.keep_hours,
                   "How long the images stay once no VM stands on them")
      ->check(CLI::Range(1U, 24U * 366));
  seed->add_flag("--keep-upload", sd.keep_upload, "Leave the uploaded OVA on the agent too");
  seed->add_flag("--lax", sd.lax, "Import despite package problems (warnings)");
  seed->callback([&] { exit_code = runSeed(sd); });
}

}  // namespace vandra::cli
