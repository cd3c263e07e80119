// The agent API over real mutual TLS on loopback: import an OVA made by the writer, list,
// show, delete; and every kind of bad request answered with a clear 4xx that changes nothing
// (malformed JSON, unknown fields, oversized body, path-like names, relative paths, a
// duplicate, a VM that does not fit).
#include "vandra/agent/http_api.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "../ovf/writer/writer_test_util.h"
#include "test/support/serve.h"
#include "vandra/ovf/disk_image.h"
#include "vandra/ovf/writer.h"
#include "vandra/pki/pki.h"
#include "vandra/pki/tls.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ovf::testing::TempDir;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    start(HostCapacity{.total = {4, 4096, 8ULL << 30}, .reserved = {0, 512, 0}});
  }
  void TearDown() override { stop(); }

  void start(const HostCapacity& cap) {
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
                                   .bridge = ""});
    ASSERT_TRUE(svc) << svc.error().describe();
    service_ = std::move(*svc);
    pki::TlsIdentity id{tmp_ / "pki/ca.crt", srv->cert_path, srv->key_path, ""};
    server_ = std::make_unique<httplib::SSLServer>(
        [id](SSL_CTX& ctx) { return pki::configureMutualTls(&ctx, id, true).has_value(); });
    registerRoutes(*server_, *service_);
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

  std::string makeOva(const std::string& name, uint32_t memory_mib) {
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
    spec.virtual_systems.push_back(vs);
    ovf::testing::makeRawImage(tmp_ / (name + ".raw"), 4ULL << 20);
    ovf::ExportOptions eo;
    eo.disk_images["disk1"] = tmp_ / (name + ".raw");
    auto r = ovf::exportPackage(spec, tmp_ / (name + ".ova"), eo);
    EXPECT_TRUE(r) << r.error().describe();
    return tmp_ / (name + ".ova");
  }

  static json body(const httplib::Result& r) { return json::parse(r->body, nullptr, false); }

  TempDir tmp_;
  std::string client_cert_, client_key_;
  std::unique_ptr<AgentService> service_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = -1;
};

TEST_F(ApiTest, ImportListShowDelete) {
  const std::string ova = makeOva("small", 256);
  auto c = client();
  auto created =
      c->Post("/v1/vms", json{{"id", "web1"}, {"package", ova}}.dump(), "application/json");
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 201) << created->body;
  EXPECT_EQ(body(created)["state"], "created");
  EXPECT_EQ(body(created)["resources"]["memory_mib"], 256);
  // The VM's disk is an overlay on the shared base image.
  const std::string overlay = tmp_ / "state/images/vms/web1/disk1.qcow2";
  ASSERT_TRUE(fs::exists(overlay));
  auto info = ovf::probeImage(overlay);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->format, "qcow2");

  // A second VM from the same package reuses the base (one base folder).
  auto second =
      c->Post("/v1/vms", json{{"id", "web2"}, {"package", ova}}.dump(), "application/json");
  ASSERT_EQ(second->status, 201) << second->body;
  size_t bases = 0;
  for (const auto& e : fs::directory_iterator(tmp_ / "state/images/base")) {
    bases += e.is_directory() ? 1U : 0U;
  }
  EXPECT_EQ(bases, 1U);

  auto list = c->Get("/v1/vms");
  ASSERT_EQ(list->status, 200);
  EXPECT_EQ(body(list)["vms"].size(), 2U);
  auto host = c->Get("/v1/host");
  ASSERT_EQ(host->status, 200);
  EXPECT_EQ(body(host)["used"]["memory_mib"], 512);
  EXPECT_EQ(body(host)["free"]["memory_mib"], 4096 - 512 - 512);

  auto del = c->Delete("/v1/vms/web1");
  ASSERT_EQ(del->status, 200) << del->body;
  EXPECT_FALSE(fs::exists(tmp_ / "state/images/vms/web1"));
  EXPECT_EQ(c->Get("/v1/vms/web1")->status, 404);
  EXPECT_EQ(c->Delete("/v1/vms/web1")->status, 404);
}

TEST_F(ApiTest, BadRequestsGetAClear4xxAndChangeNothing) {
  const std::string ova = makeOva("small", 256);
  auto c = client();
  struct Case {
    std::string body;
    int status;
    std::string code;
  };
  const std::vector<Case> cases = {
      {"{not json", 400, "invalid_argument"},
      {"[1,2]", 400, "invalid_argument"},
      {json{{"id", "a"}, {"package", ova}, {"colour", "red"}}.dump(), 400, "invalid_argument"},
      {json{{"id", 7}, {"package", ova}}.dump(), 400, "invalid_argument"},
      {json{{"id", "../../etc"}, {"package", ova}}.dump(), 400, "invalid_argument"},
      {json{{"id", "ok"}, {"package", "relative.ova"}}.dump(), 400, "invalid_argument"},
      {json{{"id", "ok"}, {"package", "/nonexistent/x.ova"}}.dump(), 404, "not_found"},
  };
  for (const auto& k : cases) {
    auto r = c->Post("/v1/vms", k.body, "application/json");
    ASSERT_TRUE(r) << k.body;
    EXPECT_EQ(r->status, k.status) << k.body << " -> " << r->body;
    EXPECT_EQ(body(r)["error"]["code"], k.code) << r->body;
  }
  auto big = c->Post("/v1/vms", std::string(kMaxRequestBody + 1, ' '), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(c->Get("/v1/vms/bad%20name")->status, 400);
  EXPECT_EQ(c->Get("/v1/vms/..%2Fetc")->status, 404);  // decoded to a path no route serves
  EXPECT_TRUE(body(c->Get("/v1/vms"))["vms"].empty());
  EXPECT_TRUE(fs::is_empty(tmp_ / "state/images/vms"));

  ASSERT_EQ(
      c->Post("/v1/vms", json{{"id", "a"}, {"package", ova}}.dump(), "application/json")->status,
      201);
  auto dup = c->Post("/v1/vms", json{{"id", "a"}, {"package", ova}}.dump(), "application/json");
  EXPECT_EQ(dup->status, 409);
  EXPECT_EQ(body(dup)["error"]["code"], "already_exists");
}

TEST_F(ApiTest, VmThatDoesNotFitIsRefusedWithTheNumbers) {
  const std::string ova = makeOva("huge", 8192);
  auto c = client();
  auto r = c->Post("/v1/vms", json{{"id", "huge"}, {"package", ova}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 507);
  EXPECT_EQ(body(r)["error"]["code"], "capacity_exceeded");
  EXPECT_NE(r->body.find("VM needs 8192 MiB, 3584 MiB free of 4096 MiB"), std::string::npos)
      << r->body;
  EXPECT_TRUE(body(c->Get("/v1/vms"))["vms"].empty());
  EXPECT_TRUE(fs::is_empty(tmp_ / "state/images/base"))
      << "nothing imported for a VM that does not fit";
}

TEST_F(ApiTest, ClientWithoutCertificateIsRefused) {
  httplib::SSLClient anon("127.0.0.1", port_);
  anon.set_ca_cert_path((tmp_ / "pki/ca.crt").c_str());
  anon.enable_server_certificate_verification(true);
  EXPECT_FALSE(anon.Get("/v1/vms"));
}

}  // namespace
}  // namespace vandra::agent
