// vandra-controller: one control plane for every site (include/vandra/controller/). Serves the
// REST API (docs/controller/openapi.json) over mutual TLS, keeps its state in SQLite (default)
// or PostgreSQL (--db postgresql://...), and leads or stands by through the database's lease.
// Agents keep running their VMs whatever happens to it. Ends cleanly on SIGTERM/SIGINT (the
// lease is released, so a standby takes over at once).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "users.h"
#include "vandra/controller/config.h"
#include "vandra/controller/http_api.h"
#include "vandra/pki/https_server.h"

int main(int argc, char** argv) {
  vandra::pki::blockStopSignals();  // before any thread: the signal is the waiter's to take
  CLI::App app{"vandra-controller: the vandra control plane"};
  vandra::pki::TlsIdentity tls;
  std::string listen = "127.0.0.1";
  int port = 9440;
  std::string db;
  std::string state_dir = "/var/lib/vandra/controller";
  std::string config_path;
  std::string port_file;
  vandra::controller::ServiceOptions opts;
  char hostname[256] = {};
  ::gethostname(hostname, sizeof hostname - 1);
  opts.controller_id = std::string(hostname) + "-" + std::to_string(::getpid());
  app.add_option("--listen", listen, "Address to listen on");
  app.add_option("--port", port, "TCP port (0: any free one, see --port-file)");
  app.add_option("--port-file", port_file, "Write the bound port here once listening");
  app.add_option("--tls-ca", tls.ca_path, "CA that issued operators', viewers' certificates");
  app.add_option("--tls-cert", tls.cert_path, "The controller's certificate");
  app.add_option("--tls-key", tls.key_path, "The controller's key");
  app.add_option("--state-dir", state_dir, "Folder for the SQLite database");
  app.add_option("--db", db,
                 "Database: sqlite:PATH or postgresql://... (default: sqlite in --state-dir)");
  app.add_option("--config", config_path, "Site file: sites, their agents, first facts");
  vandra::controller::ConsoleOptions console;
  app.add_option("--console", console.static_dir,
                 "Serve the web console's built files (web/dist) at / and let browsers sign in "
                 "(clients without a certificate are then let in to sign in)");
  vandra::controller_app::UserCommand users;
  vandra::controller_app::addUserCommand(app, users);
  app.add_option("--id", opts.controller_id, "This controller's name in the leader lease");
  app.add_option("--lease-ttl-ms", opts.lease_ttl_ms,
                 "Leader lease time to live: a standby takes over this long after a death");
  app.add_option("--refresh-ms", opts.refresh_interval_ms, "How often agents are asked");
  app.add_option("--min-stay-s", opts.mobility.min_stay_s,
                 "A VM that moved stays at least this long before vandra moves it again")
      ->capture_default_str();
  app.add_option("--max-moves-per-link", opts.mobility.max_moves_per_link,
                 "Moves by vandra at once on one link")
      ->capture_default_str();
  uint64_t max_upload_mib = vandra::agent::kDefaultMaxUploadBytes >> 20;
  app.add_option("--max-upload-mib", max_upload_mib, "Largest package upload (MiB)")
      ->capture_default_str();
  app.add_option("--trust-store", opts.trust_store,
                 "CA bundle uploaded packages' signatures are checked against (default: system)");
  CLI11_PARSE(app, argc, argv);
  if (db.empty()) {
    db = "sqlite:" + state_dir + "/controller.db";
  }
  if (users.chosen()) {
    std::error_code ec;
    std::filesystem::create_directories(state_dir, ec);
    return vandra::controller_app::runUserCommand(users, db);
  }
  for (const auto& [value, name] : {std::pair{&tls.ca_path, "--tls-ca"},
                                    {&tls.cert_path, "--tls-cert"},
                                    {&tls.key_path, "--tls-key"},
                                    {&config_path, "--config"}}) {
    if (value->empty()) {
      std::cerr << "vandra-controller: " << name << " is required\n";
      return 2;
    }
  }
  if (!console.static_dir.empty()) {
    if (const std::string why = vandra::controller::consoleDirProblem(console.static_dir);
        !why.empty()) {
      std::cerr << "vandra-controller: " << why << "\n";
      return 2;
    }
    console.sign_in = true;
  }
  opts.max_upload_bytes = max_upload_mib << 20;
  // Uploaded packages live beside the database (with --db postgresql://..., on this host).
  opts.package_dir = state_dir + "/packages";

  auto config = vandra::controller::loadConfig(config_path);
  if (!config) {
    std::cerr << "vandra-controller: " << config.error().describe() << "\n";
    return 2;
  }
  {
    std::error_code ec;
    std::filesystem::create_directories(state_dir, ec);
  }
  auto store = vandra::controller::Store::open(db);
  if (!store) {
    std::cerr << "vandra-controller: " << store.error().describe() << "\n";
    return 1;
  }
  if (auto seeded = vandra::controller::seedFacts(**store, *config); !seeded) {
    std::cerr << "vandra-controller: " << seeded.error().describe() << "\n";
    return 1;
  }
  auto service = vandra::controller::ControllerService::create(**store, config->sites, opts);
  if (!service) {
    std::cerr << "vandra-controller: " << service.error().describe() << "\n";
    return 1;
  }
  auto server = vandra::pki::makeHttpsServer(
      tls, vandra::controller::kServerThreads, vandra::controller::kRequestsPerConnection,
      vandra::controller::kKeepAliveSeconds, console.sign_in);
  if (!server) {
    std::cerr << "vandra-controller: " << server.error().describe() << "\n";
    return 1;
  }
  vandra::controller::registerRoutes(*server->server, **service, console);
  if (auto bound = vandra::pki::bindHttps(*server, listen, port); !bound) {
    std::cerr << "vandra-controller: " << bound.error().describe() << "\n";
    return 1;
  }
  (*service)->start();
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << server->bound_port << "\n";
    std::filesystem::rename(port_file + ".tmp", port_file);
  }
  std::cerr << "vandra-controller: " << opts.controller_id << " listening on " << listen << ":"
            << server->bound_port << " (mutual TLS), state in " << (*store)->database().describe()
            << ", " << config->sites.size() << " site(s)\n";
  if (console.sign_in) {
    std::cerr << "vandra-controller: web console at https://" << listen << ":" << server->bound_port
              << "/\n";
  }
  vandra::pki::serveUntilSignal(*server, [&] { (*service)->progress().close(); });
  (*service)->stop();
  return 0;
}
