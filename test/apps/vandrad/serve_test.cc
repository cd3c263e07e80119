// vandrad as a process serving its API: GET /metrics over the API's mutual TLS to any client
// of the site CA (the families there, the host's numbers as GET /v1/host has them), nothing
// to a client without a certificate, and a clean stop on SIGTERM (exit 0).
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "agent_process.h"
#include "test/support/prometheus_text.h"

namespace vandra::agent {
namespace {

using nlohmann::json;
using vandra::testing::sampleOf;

TEST(VandradServeTest, MetricsOverMutualTlsAndACleanStopOnSigterm) {
  ::signal(SIGPIPE, SIG_IGN);  // the refused client writes to a socket the agent closed
  std::string dir = "/tmp/vsv-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  issueAgentPki(dir);
  if (HasFatalFailure()) {
    return;
  }
  AgentProcess agent(dir, {"--capacity-vcpus", "6", "--capacity-memory-mib", "8192",
                           "--capacity-disk-gib", "20", "--reserved-memory-mib", "1024"});
  ASSERT_GT(agent.port(), 0);
  httplib::SSLClient c("127.0.0.1", agent.port(), dir + "/pki/op.crt", dir + "/pki/op.key");
  c.set_ca_cert_path((dir + "/pki/ca.crt").c_str());
  c.enable_server_certificate_verification(true);
  c.set_keep_alive(true);  // one connection: its requests are served and counted in turn
  auto host = c.Get("/v1/host");
  ASSERT_TRUE(host);
  ASSERT_EQ(host->status, 200);
  const json h = json::parse(host->body);
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200) << m->body;
  EXPECT_EQ(m->get_header_value("Content-Type"), "text/plain; version=0.0.4");
  EXPECT_EQ(sampleOf(m->body, R"(vandra_agent_capacity_vcpus{kind="total"})"), 6) << m->body;
  EXPECT_EQ(sampleOf(m->body, R"(vandra_agent_capacity_memory_mib{kind="free"})"),
            h["free"]["memory_mib"].get<double>());
  EXPECT_EQ(sampleOf(m->body, R"(vandra_agent_capacity_memory_mib{kind="free"})"), 8192 - 1024);
  EXPECT_EQ(sampleOf(m->body, R"(vandra_agent_capacity_disk_bytes{kind="total"})"),
            20.0 * (1ULL << 30));
  EXPECT_EQ(sampleOf(m->body, R"(vandra_agent_http_requests_total{code="2xx",method="GET"})"),
            1);  // GET /v1/host, answered on this connection before the scrape was read
  EXPECT_EQ(sampleOf(m->body, R"(vandra_agent_vms{state="running"})"), 0);
  for (const char* family :
       {"vandra_agent_migrations_total", "vandra_agent_migration_wan_bytes_total",
        "vandra_agent_migration_interruption_seconds", "vandra_agent_migration_duration_seconds"}) {
    EXPECT_NE(m->body.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
  }

  httplib::SSLClient anonymous("127.0.0.1", agent.port());
  anonymous.enable_server_certificate_verification(false);
  EXPECT_FALSE(anonymous.Get("/metrics"));  // refused in the handshake

  auto ended = agent.terminate();
  ASSERT_TRUE(ended) << ended.error().describe();
  EXPECT_TRUE(ended->ok()) << "code " << ended->code << ", signal " << ended->signal << "\n"
                           << agent.log();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace vandra::agent
