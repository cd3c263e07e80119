// The agent API over real mutual TLS on loopback: an AgentService (import folder
// tmp_/imports) behind an SSLServer, a client with the operator's certificate, and small OVAs
// made by the writer. Shared by http_api_test and package_upload_test.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "../ovf/writer/writer_test_util.h"
#include "test/support/serve.h"
#include "vandra/agent/http_api.h"
#include "vandra/ovf/writer.h"
#include "vandra/pki/pki.h"
#include "vandra/pki/tls.h"

namespace vandra::agent::testing {

namespace fs = std::filesystem;
using nlohmann::json;
using ovf::testing::TempDir;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    start(HostCapacity{.total = {4, 4096, 8ULL << 30}, .reserved = {0, 512, 0}});
  }
  void TearDown() override { stop(); }

  // The agent's upload bound (--max-upload-mib); a fixture may make it tiny.
  virtual uint64_t maxUploadBytes() const { return kDefaultMaxUploadBytes; }
  // The server's metrics (GET /metrics); none: the route is not there.
  virtual AgentMetrics* metrics() { return nullptr; }

  void start(const HostCapacity& cap) {
    fs::create_directories(tmp_ / "imports");
    ASSERT_TRUE(pki::initCa({.dir = tmp_ / "pki", .common_name = "test CA", .days = 2}));
    auto srv = pki::issue({.ca_dir = tmp_ / "pki",
                           .name = "agent",
                           .role = pki::Role::Server,
                           .dns_names = {},
                           .ip_addresses = {"127.0.0.1"},
                           .days = 2,
                           .not_before_offset_s = 0,
                           .group = ""});
    auto cli = pki::issue({.ca_dir = tmp_ / "pki",
                           .name = "operator",
                           .role = pki::Role::Client,
                           .dns_names = {},
                           .ip_addresses = {},
                           .days = 2,
                           .not_before_offset_s = 0,
                           .group = ""});
    ASSERT_TRUE(srv && cli);
    client_cert_ = cli->cert_path;
    client_key_ = cli->key_path;
    auto svc = AgentService::open({.state_dir = tmp_ / "state",
                                   .capacity = cap,
                                   .trust_store = "",
                                   .command_line = {},
                                   .stop_timeout = std::chrono::seconds(30),
                                   .bridge = "",
                                   .import_dirs = {tmp_ / "imports"},
                                   .max_upload_bytes = maxUploadBytes(),
                                   .retain_departed = std::chrono::hours(24)});
    ASSERT_TRUE(svc) << svc.error().describe();
    service_ = std::move(*svc);
    pki::TlsIdentity id{tmp_ / "pki/ca.crt", srv->cert_path, srv->key_path, ""};
    server_ = std::make_unique<httplib::SSLServer>(
        [id](SSL_CTX& ctx) { return pki::configureMutualTls(&ctx, id, true).has_value(); });
    registerRoutes(*server_, *service_, nullptr, metrics());
    port_ = server_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    ASSERT_TRUE(vandra::testing::serveInBackground(*server_, thread_));
  }
  void stop() {
    if (server_) {
      server_->stop();
      thread_.join();
      server_.reset();
    }
  }

  std::unique_ptr<httplib::SSLClient> client() {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", port_, client_cert_, client_key_);
    c->set_ca_cert_path((tmp_ / "pki/ca.crt").c_str());
    c->enable_server_certificate_verification(true);
    c->set_read_timeout(60);
    return c;
  }

  // An OVA of one small VM, written into the import folder tmp_/imports.
  std::string makeOva(const std::string& name, uint32_t memory_mib,
                      const std::vector<std::string>& networks = {}) {
    ovf::VmSpec spec;
    ovf::VirtualSystemSpec vs;
    vs.id = "vm";
    vs.name = "vm";
    vs.vcpus = 1;
    vs.memory_mib = memory_mib;
    vs.controllers.push_back({"scsi0", ovf::ControllerKind::Scsi, "virtio-scsi"});
    vs.disks.push_back({.id = "disk1",
                        .capacity_bytes = 4ULL << 20,
                        .populated_bytes = std::nullopt,
                        .format = "vmdk-stream",
                        .format_uri = "",
                        .file = std::nullopt,
                        .parent = std::nullopt,
                        .controller = "scsi0",
                        .unit = 0});
    for (const auto& n : networks) {
      vs.nics.push_back({.network = n, .model = "e1000", .mac = std::nullopt, .connected = true});
      spec.networks.push_back({n, ""});
    }
    spec.virtual_systems.push_back(vs);
    ovf::testing::makeRawImage(tmp_ / (name + ".raw"), 4ULL << 20);
    ovf::ExportOptions eo;
    eo.disk_images["disk1"] = tmp_ / (name + ".raw");
    fs::create_directories(tmp_ / "imports");
    auto r = ovf::exportPackage(spec, tmp_ / ("imports/" + name + ".ova"), eo);
    EXPECT_TRUE(r) << r.error().describe();
    return tmp_ / ("imports/" + name + ".ova");
  }

  static json body(const httplib::Result& r) { return json::parse(r->body, nullptr, false); }

  TempDir tmp_;
  std::string client_cert_, client_key_;
  std::unique_ptr<AgentService> service_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = -1;
};

}  // namespace vandra::agent::testing
