// vandra-load as a process against a mutual-TLS server in the test: with --connect-first every
// connection is opened (one request each) before the measured window, and those requests are
// reported apart, not in the window's latency.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "test/support/serve.h"
#include "vandra/common/subprocess.h"
#include "vandra/pki/pki.h"
#include "vandra/pki/tls.h"

namespace vandra {
namespace {

namespace fs = std::filesystem;

TEST(VandraLoad, ConnectFirstOpensEveryConnectionBeforeTheWindow) {
  const fs::path dir =
      fs::temp_directory_path() / ("vandra-load-cli-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(pki::initCa({.dir = dir / "pki", .common_name = "load CA", .days = 2}));
  auto srv = pki::issue({.ca_dir = dir / "pki",
                         .name = "server",
                         .role = pki::Role::Server,
                         .dns_names = {},
                         .ip_addresses = {"127.0.0.1"},
                         .days = 2,
                         .not_before_offset_s = 0,
                         .group = ""});
  auto cli = pki::issue({.ca_dir = dir / "pki",
                         .name = "client",
                         .role = pki::Role::Client,
                         .dns_names = {},
                         .ip_addresses = {},
                         .days = 2,
                         .not_before_offset_s = 0,
                         .group = ""});
  ASSERT_TRUE(srv && cli);
  pki::TlsIdentity id{dir / "pki/ca.crt", srv->cert_path, srv->key_path, ""};
  httplib::SSLServer server(
      [id](SSL_CTX& ctx) { return pki::configureMutualTls(&ctx, id, true).has_value(); });
  server.set_keep_alive_max_count(100);  // httplib's default (5) would close mid-run
  std::atomic<int> served{0};
  server.Get("/x", [&](const httplib::Request&, httplib::Response& res) {
    ++served;
    res.set_content("{}", "application/json");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread thread;
  ASSERT_TRUE(vandra::testing::serveInBackground(server, thread));

  auto out = runCapture({VANDRA_LOAD_BIN, "--agent", "127.0.0.1:" + std::to_string(port), "--ca",
                         (dir / "pki/ca.crt").string(), "--cert", cli->cert_path, "--key",
                         cli->key_path, "--concurrency", "4", "--requests", "20", "--path", "/x",
                         "--connect-first", "--json"});
  server.stop();
  thread.join();
  fs::remove_all(dir);
  ASSERT_TRUE(out) << out.error().describe();
  const auto j = nlohmann::json::parse(*out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << *out;
  EXPECT_EQ(j["requests"], 20);
  EXPECT_EQ(j["latency_ms"]["count"], 20);
  EXPECT_EQ(j["connect_ms"]["count"], 4);            // one per connection, apart from the window
  EXPECT_EQ(j["by_connection"]["new"]["count"], 0);  // the window's requests all reuse one
  EXPECT_EQ(j["tls_handshakes"], 4);
  EXPECT_EQ(served.load(), 1 + 4 + 20);  // vandra-load's probe of the path, connects, window
}

}  // namespace
}  // namespace vandra
