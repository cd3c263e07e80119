// The controller API under load (docs/benchmarks.md, "Controller API under load"): a real
// controller (service, SQLite store, HTTPS server with mutual TLS, the same server setup as
// vandra-controller) with 1 000 VMs over 3 sites, reported by simulated agents (no QEMU: the
// agents' side is not what is measured). While vandra-load's clients read GET /v1/vms and VM
// details, a driver starts a migration through POST /v1/vms/{name}/migrate every 100 ms (the
// simulated source agent ends each after 200 ms). Prints vandra-load's numbers and the
// migrations' counts; asserts nothing.
//
//   controller_api_bench --load build-release/apps/vandra-load/vandra-load [--vms 1000]
//                        [--concurrency 200] [--duration-s 20]
#include <CLI/CLI.hpp>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <thread>

#include "test/controller/fake_agent_link.h"
#include "vandra/common/subprocess.h"
#include "vandra/controller/http_api.h"
#include "vandra/pki/https_server.h"
#include "vandra/pki/pki.h"

namespace fs = std::filesystem;
using namespace vandra;
using namespace vandra::controller;

int main(int argc, char** argv) {
  CLI::App app{"controller_api_bench: the controller API under concurrent load"};
  std::string load;
  int vms = 1000;
  int concurrency = 200;
  int duration_s = 20;
  int interval_ms = 0;
  int watchers = 0;

  app.add_option("--load", load, "vandra-load")->required()->check(CLI::ExistingFile);
  app.add_option("--vms", vms, "VMs registered over the 3 sites");
  app.add_option("--concurrency", concurrency, "vandra-load clients");
  app.add_option("--duration-s", duration_s, "How long the load runs");
  app.add_option(
      "--interval-ms", interval_ms,
      "Each client sends a request every N ms (vandra-load --interval-ms); 0: back to back");
  app.add_option("--watchers", watchers,
                 "Event streams (GET /v1/stream) held open through the run, as consoles watching "
                 "the migrations' progress (vandra-load --watchers)");
  CLI11_PARSE(app, argc, argv);

  const fs::path dir =
      fs::temp_directory_path() / ("vandra-api-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto cleanup = [&] { fs::remove_all(dir); };
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) {
      std::cerr << "controller_api_bench: " << what << "\n";
      cleanup();
      std::exit(1);
    }
  };
  check(pki::initCa({.dir = dir / "pki", .common_name = "bench CA", .days = 2}).has_value(), "CA");
  auto srv = pki::issue({.ca_dir = dir / "pki",
                         .name = "controller",
                         .role = pki::Role::Server,
                         .dns_names = {},
                         .ip_addresses = {"127.0.0.1"},
                         .days = 2,
                         .not_before_offset_s = 0,
                         .group = ""});
  auto op = pki::issue({.ca_dir = dir / "pki",
                        .name = "operator",
                        .role = pki::Role::Client,
                        .dns_names = {},
                        .ip_addresses = {},
                        .days = 2,
                        .not_before_offset_s = 0,
                        .group = "operator"});
  check(srv && op, "certificates");

  auto store = Store::open("sqlite:" + (dir / "controller.db").string());
  check(store.has_value(), "store");
  std::vector<SiteConfig> sites;
  std::map<std::string, std::shared_ptr<testing::FakeAgentState>> agents;
  std::map<std::string, std::unique_ptr<AgentLink>> links;
  const char* names[] = {"dc", "cloud-eu", "cloud-us"};
  for (const char* n : names) {
    Site s;
    s.name = n;
    s.jurisdictions = {std::string(n) == "cloud-us" ? "US" : "EU"};
    s.networks = {"lan"};
    AgentAccess a;
    a.site = n;
    a.host = std::string(n) + "-h1";
    sites.push_back({s, {a}});
    agents[n] = std::make_shared<testing::FakeAgentState>();
    agents[n]->capacity = {4096, 16ull << 20, 100000, 0, 0, 0};
    links[a.host] = std::make_unique<testing::FakeAgentLink>(agents[n]);
  }
  ovf::Sla any;
  any.mobility = ovf::Mobility::Automatic;
  for (int i = 0; i < vms; ++i) {
    agents[names[i % 3]]->addVm("vm" + std::to_string(i), "running", 1, 512, any, {"lan"});
  }
  for (int a = 0; a < 3; ++a) {
    for (int b = a + 1; b < 3; ++b) {
      check((*store)->putLink({names[a], names[b], 20, 1000, 0}).has_value(), "links");
    }
  }
  ServiceOptions opts;
  opts.controller_id = "bench";
  auto service = ControllerService::create(**store, sites, opts, std::move(links));
  check(service.has_value(), "service");
  (*service)->refreshOnce();
  (*service)->start();

  auto server =
      pki::makeHttpsServer({(dir / "pki/ca.crt").string(), srv->cert_path, srv->key_path, ""},
                           kServerThreads, kRequestsPerConnection, kKeepAliveSeconds);
  check(server.has_value(), "server");
  registerRoutes(*server->server, **service);
  check(pki::bindHttps(*server, "127.0.0.1", 0).has_value(), "bind");
  std::thread serving([&] { server->server->listen_after_bind(); });
  while (!server->server->is_running()) {
    std::this_thread::yield();
  }
  const std::string endpoint = "127.0.0.1:" + std::to_string(server->bound_port);

  // The migration driver: one start every 100 ms, ended by the simulated agent 200 ms later.
  std::atomic<bool> stop{false};
  std::atomic<int> started{0}, refused{0};
  std::thread driver([&] {
    httplib::SSLClient c("127.0.0.1", server->bound_port, op->cert_path, op->key_path);
    c.set_ca_cert_path((dir / "pki/ca.crt").c_str());
    c.enable_server_certificate_verification(true);
    int i = 0;
    while (!stop.load()) {
      const int n = (i * 7) % vms;
      const std::string to = names[(n + 1) % 3];
      auto r = c.Post("/v1/vms/vm" + std::to_string(n) + "/migrate",
                      R"({"to": ")" + to + R"(", "reason": "bench"})", "application/json");
      if (r && r->status == 202) {
        ++started;
        const auto id = nlohmann::json::parse(r->body)["agent_migration_id"].get<std::string>();
        auto src = agents[names[n % 3]];
        std::thread([src, id] {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the move's length
          src->endMigration(id, MigrationPhase::Done, 50.0);
        }).detach();
      } else {
        ++refused;
      }
      ++i;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the driver's pace
    }
  });

  std::vector<std::string> cmd = {load,
                                  "--agent",
                                  endpoint,
                                  "--ca",
                                  (dir / "pki/ca.crt").string(),
                                  "--cert",
                                  op->cert_path,
                                  "--key",
                                  op->key_path,
                                  "--concurrency",
                                  std::to_string(concurrency),
                                  "--duration-s",
                                  std::to_string(duration_s),
                                  "--interval-ms",
                                  std::to_string(interval_ms),
                                  "--connect-first",
                                  "--watchers",
                                  std::to_string(watchers),
                                  "--path",
                                  "/v1/vms"};
  for (int k = 0; k < 9; ++k) {
    cmd.push_back("--path");
    cmd.push_back("/v1/vms/vm" + std::to_string((k * 97) % vms));
  }
  std::cout << "controller_api_bench: " << vms << " VMs over 3 sites, " << concurrency
            << " clients for " << duration_s << " s (GET /v1/vms 1 in 10, VM details 9 in 10), "
            << "a migration started every 100 ms, " << watchers
            << " event streams watching their progress\n";
  auto out = runCapture(cmd);
  stop.store(true);
  driver.join();
  std::cout << (out ? *out : out.error().describe()) << "\n";
  std::cout << "migrations started through the API: " << started.load()
            << ", refused (VM moving already, or its SLA): " << refused.load() << "\n";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the last simulated ends
  (*service)->progress().close();  // streams still held end now, not at their keep-alive
  server->server->stop();
  serving.join();
  (*service)->stop();
  cleanup();
  return out ? 0 : 1;
}
