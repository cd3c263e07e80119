// The controller's API over real mutual TLS on loopback (the real service, a real SQLite store,
// fake agents behind it), with clients for an operator (alice), a viewer (victor) and a
// certificate without a role (nobody); call() checks every answer against the OpenAPI document.
#pragma once

#include <gtest/gtest.h>

#include "test/controller/controller_fixture.h"
#include "test/controller/openapi_check.h"
#include "test/support/serve.h"
#include "vandra/controller/http_api.h"
#include "vandra/pki/pki.h"
#include "vandra/pki/tls.h"

namespace vandra::controller::testing {

class ApiTest : public ControllerFixture {
 protected:
  void SetUp() override {
    ControllerFixture::SetUp();
    ASSERT_TRUE(pki::initCa({.dir = dir_ / "pki", .common_name = "controller CA", .days = 2}));
    auto srv = pki::issue({.ca_dir = dir_ / "pki",
                           .name = "controller",
                           .role = pki::Role::Server,
                           .dns_names = {},
                           .ip_addresses = {"127.0.0.1"},
                           .days = 2,
                           .not_before_offset_s = 0,
                           .group = ""});
    ASSERT_TRUE(srv);
    for (const char* who : {"alice", "victor", "nobody"}) {
      const std::string group = std::string(who) == "alice"    ? "operator"
                                : std::string(who) == "victor" ? "viewer"
                                                               : "";
      ASSERT_TRUE(pki::issue({.ca_dir = dir_ / "pki",
                              .name = who,
                              .role = pki::Role::Client,
                              .dns_names = {},
                              .ip_addresses = {},
                              .days = 2,
                              .not_before_offset_s = 0,
                              .group = group}));
    }
    agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
    service_->refreshOnce();
    pki::TlsIdentity id{dir_ / "pki/ca.crt", srv->cert_path, srv->key_path, ""};
    const ConsoleOptions console = consoleOptions();
    server_ = std::make_unique<httplib::SSLServer>([id, console](SSL_CTX& ctx) {
      const bool ok = pki::configureMutualTls(&ctx, id, true).has_value();
      if (ok && console.sign_in) {
        SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, nullptr);  // as makeHttpsServer does
      }
      return ok;
    });
    registerRoutes(*server_, *service_, console);
    port_ = server_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    ASSERT_TRUE(vandra::testing::serveInBackground(*server_, thread_));
  }
  void TearDown() override {
    if (server_) {
      server_->stop();
      thread_.join();
    }
    ControllerFixture::TearDown();
  }

  /// The console's files and sign-in (off: the API alone, certificates only).
  virtual ConsoleOptions consoleOptions() { return {}; }

  std::unique_ptr<httplib::SSLClient> client(const std::string& who) {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", port_,
                                                  (dir_ / "pki" / (who + ".crt")).string(),
                                                  (dir_ / "pki" / (who + ".key")).string());
    c->set_ca_cert_path((dir_ / "pki/ca.crt").c_str());
    c->enable_server_certificate_verification(true);
    return c;
  }

  // Sends and checks the answer against the document; returns it.
  httplib::Result call(const std::string& who, const std::string& method, const std::string& path,
                       const std::string& path_template, const std::string& body = "") {
    auto c = client(who);
    httplib::Result r = method == "get"      ? c->Get(path)
                        : method == "post"   ? c->Post(path, body, "application/json")
                        : method == "put"    ? c->Put(path, body, "application/json")
                        : method == "delete" ? c->Delete(path)
                                             : c->Patch(path, body, "application/json");
    EXPECT_TRUE(r) << method << " " << path;
    if (r) {
      EXPECT_EQ(checkAgainstOpenApi(method, path_template, r->status, r->body), "")
          << method << " " << path << " -> " << r->status;
    }
    return r;
  }

  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace vandra::controller::testing
