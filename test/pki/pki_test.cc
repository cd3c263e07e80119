// Site PKI and the mutual-TLS settings, checked with real TLS over loopback (cpp-httplib on
// OpenSSL): a client without a certificate, with one from another CA, or talking to a
// server whose certificate names another host is refused; the right one gets through.
#include "vandra/pki/pki.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "test/support/serve.h"
#include "vandra/common/subprocess.h"
#include "vandra/pki/tls.h"

namespace vandra::pki {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string t = "/tmp/vandra-pki-XXXXXX";
    path_ = ::mkdtemp(t.data()) != nullptr ? t : "";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& n) const { return path_ + "/" + n; }

 private:
  std::string path_;
};

TEST(PkiTest, CaAndIssuedCertificatesVerify) {
  TempDir t;
  auto ca = initCa({.dir = t / "dc", .common_name = "vandra site dc CA", .days = 30});
  ASSERT_TRUE(ca) << ca.error().describe();
  struct stat st {};
  ASSERT_EQ(::stat(ca->key_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U) << "CA key must be private";
  auto agent = issue({.ca_dir = t / "dc",
                      .name = "agent-dc",
                      .role = Role::Server,
                      .dns_names = {"agent-dc"},
                      .ip_addresses = {"127.0.0.1"},
                      .days = 30,
                      .not_before_offset_s = 0,
                      .group = ""});
  ASSERT_TRUE(agent) << agent.error().describe();
  EXPECT_TRUE(verify(agent->cert_path, ca->cert_path, "agent-dc"));
  EXPECT_TRUE(verify(agent->cert_path, ca->cert_path, "127.0.0.1"));
  auto wrong_host = verify(agent->cert_path, ca->cert_path, "agent-cloud");
  ASSERT_FALSE(wrong_host);
  EXPECT_EQ(wrong_host.error().code, ErrorCode::CertificateUntrusted);

  // Another site's CA does not vouch for dc's certificates.
  auto other = initCa({.dir = t / "cloud", .common_name = "vandra site cloud CA", .days = 30});
  ASSERT_TRUE(other);
  auto foreign = verify(agent->cert_path, other->cert_path, "");
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code, ErrorCode::CertificateUntrusted);

  // Expired certificates are told apart.
  auto old = issue({.ca_dir = t / "dc",
                    .name = "old",
                    .role = Role::Client,
                    .dns_names = {},
                    .ip_addresses = {},
                    .days = 1,
                    .not_before_offset_s = -3 * 86400,
                    .group = ""});
  ASSERT_TRUE(old);
  auto expired = verify(old->cert_path, ca->cert_path, "");
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error().code, ErrorCode::CertificateExpired);
}

TEST(PkiTest, NeverReplacesAndRefusesBadNames) {
  TempDir t;
  ASSERT_TRUE(initCa({.dir = t / "dc", .common_name = "CA", .days = 30}));
  const auto again = initCa({.dir = t / "dc", .common_name = "CA", .days = 30});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::AlreadyExists);
  for (const char* bad : {"../evil", "a/b", "", "ca", ".hidden"}) {
    auto r = issue({.ca_dir = t / "dc",
                    .name = bad,
                    .role = Role::Client,
                    .dns_names = {},
                    .ip_addresses = {},
                    .days = 1,
                    .not_before_offset_s = 0,
                    .group = ""});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << bad;
  }
  EXPECT_FALSE(fs::exists(t / "evil.key"));
  auto missing = issue({.ca_dir = t / "nope",
                        .name = "x",
                        .role = Role::Client,
                        .dns_names = {},
                        .ip_addresses = {},
                        .days = 1,
                        .not_before_offset_s = 0,
                        .group = ""});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
}

// A mutual-TLS server on 127.0.0.1 (port 0 -> any free port) answering GET /v1/ping.
class MutualTlsServer {
 public:
  explicit MutualTlsServer(TlsIdentity id)
      : server_([id](SSL_CTX& ctx) { return configureMutualTls(&ctx, id, true).has_value(); }) {
    server_.Get("/v1/ping", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("{\"pong\":true}", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    EXPECT_TRUE(vandra::testing::serveInBackground(server_, thread_));
  }
  ~MutualTlsServer() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  httplib::SSLServer server_;
  int port_ = -1;
  std::thread thread_;
};

int get(const std::string& host, int port, const std::string& ca, const std::string& cert,
        const std::string& key) {
  std::unique_ptr<httplib::SSLClient> c =
      cert.empty() ? std::make_unique<httplib::SSLClient>(host, port)
                   : std::make_unique<httplib::SSLClient>(host, port, cert, key);
  c->set_ca_cert_path(ca.c_str());
  c->enable_server_certificate_verification(true);
  c->set_connection_timeout(5);
  c->set_read_timeout(5);
  auto r = c->Get("/v1/ping");
  return r ? r->status : -1;
}

TEST(MutualTlsTest, OnlyClientsOfTheSiteCaWithTheRightServerNameGetThrough) {
  TempDir t;
  ASSERT_TRUE(initCa({.dir = t / "dc", .common_name = "dc CA", .days = 30}));
  ASSERT_TRUE(initCa({.dir = t / "evil", .common_name = "evil CA", .days = 30}));
  auto server = issue({.ca_dir = t / "dc",
                       .name = "agent",
                       .role = Role::Server,
                       .dns_names = {"agent-dc"},
                       .ip_addresses = {"127.0.0.1"},
                       .days = 30,
                       .not_before_offset_s = 0,
                       .group = ""});
  auto op = issue({.ca_dir = t / "dc",
                   .name = "operator",
                   .role = Role::Client,
                   .dns_names = {},
                   .ip_addresses = {},
                   .days = 30,
                   .not_before_offset_s = 0,
                   .group = ""});
  auto intruder = issue({.ca_dir = t / "evil",
                         .name = "operator",
                         .role = Role::Client,
                         .dns_names = {},
                         .ip_addresses = {},
                         .days = 30,
                         .not_before_offset_s = 0,
                         .group = ""});
  ASSERT_TRUE(server && op && intruder);
  MutualTlsServer s({t / "dc/ca.crt", server->cert_path, server->key_path, ""});
  ASSERT_GT(s.port(), 0);

  EXPECT_EQ(get("127.0.0.1", s.port(), t / "dc/ca.crt", op->cert_path, op->key_path), 200);
  EXPECT_EQ(get("127.0.0.1", s.port(), t / "dc/ca.crt", "", ""), -1) << "no client certificate";
  EXPECT_EQ(get("127.0.0.1", s.port(), t / "dc/ca.crt", intruder->cert_path, intruder->key_path),
            -1)
      << "client certificate from another CA";
  EXPECT_EQ(get("127.0.0.1", s.port(), t / "evil/ca.crt", op->cert_path, op->key_path), -1)
      << "server not trusted by the client's CA";
}

TEST(MutualTlsTest, WrongServerNameIsRefusedByTheClient) {
  TempDir t;
  ASSERT_TRUE(initCa({.dir = t / "dc", .common_name = "dc CA", .days = 30}));
  // The server's certificate names another host (no 127.0.0.1).
  auto server = issue({.ca_dir = t / "dc",
                       .name = "agent",
                       .role = Role::Server,
                       .dns_names = {"agent-cloud"},
                       .ip_addresses = {},
                       .days = 30,
                       .not_before_offset_s = 0,
                       .group = ""});
  auto op = issue({.ca_dir = t / "dc",
                   .name = "operator",
                   .role = Role::Client,
                   .dns_names = {},
                   .ip_addresses = {},
                   .days = 30,
                   .not_before_offset_s = 0,
                   .group = ""});
  ASSERT_TRUE(server && op);
  MutualTlsServer s({t / "dc/ca.crt", server->cert_path, server->key_path, ""});
  EXPECT_EQ(get("127.0.0.1", s.port(), t / "dc/ca.crt", op->cert_path, op->key_path), -1);
}

}  // namespace
}  // namespace vandra::pki

namespace vandra::pki {
namespace {

// The controller reads a client's role from the certificate's OU: issue() writes it, and
// refuses a group that is not a plain token.
TEST(PkiTest, TheGroupIsTheSubjectsOrganizationalUnit) {
  const auto t =
      std::filesystem::temp_directory_path() / ("vandra-pki-group-" + std::to_string(::getpid()));
  std::filesystem::remove_all(t);
  ASSERT_TRUE(initCa({.dir = t, .common_name = "controller CA", .days = 2}));
  auto op = issue({.ca_dir = t,
                   .name = "alice",
                   .role = Role::Client,
                   .dns_names = {},
                   .ip_addresses = {},
                   .days = 2,
                   .not_before_offset_s = 0,
                   .group = "operator"});
  ASSERT_TRUE(op) << op.error().describe();
  auto subject = runCapture({"openssl", "x509", "-in", op->cert_path, "-noout", "-subject"});
  ASSERT_TRUE(subject) << subject.error().describe();
  EXPECT_NE(subject->find("OU = operator"), std::string::npos) << *subject;
  EXPECT_NE(subject->find("CN = alice"), std::string::npos) << *subject;
  auto bad = issue({.ca_dir = t,
                    .name = "bob",
                    .role = Role::Client,
                    .dns_names = {},
                    .ip_addresses = {},
                    .days = 2,
                    .not_before_offset_s = 0,
                    .group = "a,OU=x"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::InvalidArgument);
  std::filesystem::remove_all(t);
}

}  // namespace
}  // namespace vandra::pki
