// GET /metrics of a real agent server (mutual TLS on loopback): the families are there with
// the host's numbers as GET /v1/host has them, VMs by state, requests by method and status
// class, and a migration's end counted once through the migration service's own write path.
#include "vandra/agent/metrics.h"

#include "api_test_fixture.h"
#include "test/support/prometheus_text.h"
#include "vandra/orchestrator/migration_service.h"

namespace vandra::agent {
namespace {

using testing::json;
using vandra::testing::sampleOf;

class MetricsTest : public testing::ApiTest {
 protected:
  AgentMetrics* metrics() override { return &metrics_; }
  void TearDown() override {
    migrations_.reset();  // before the agent it migrates for
    ApiTest::TearDown();
  }

  // One scrape; fails the test unless it answers 200 in the text format.
  std::string scrape(httplib::SSLClient& c) {
    auto r = c.Get("/metrics");
    EXPECT_TRUE(r);
    if (!r) {
      return "";
    }
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4");
    return r->body;
  }

  AgentMetrics metrics_;
  orchestrator::MigrationStorePtr store_;
  std::unique_ptr<orchestrator::MigrationService> migrations_;
};

TEST_F(MetricsTest, CapacityAndVmsAreWhatTheHostRouteSays) {
  const std::string ova = makeOva("small", 256);
  auto c = client();
  for (const char* id : {"web1", "web2"}) {
    auto created =
        c->Post("/v1/vms", json{{"id", id}, {"package", ova}}.dump(), "application/json");
    ASSERT_TRUE(created);
    ASSERT_EQ(created->status, 201) << created->body;
  }
  auto host = c->Get("/v1/host");
  ASSERT_TRUE(host);
  ASSERT_EQ(host->status, 200);
  const json h = body(host);
  const std::string text = scrape(*c);
  for (const auto& [kind, key] :
       std::vector<std::pair<std::string, std::string>>{{"total", "capacity"},
                                                        {"reserved", "reserved"},
                                                        {"allocated", "used"},
                                                        {"free", "free"}}) {
    for (const auto& [family, field] : std::vector<std::pair<std::string, std::string>>{
             {"vandra_agent_capacity_vcpus", "vcpus"},
             {"vandra_agent_capacity_memory_mib", "memory_mib"},
             {"vandra_agent_capacity_disk_bytes", "disk_bytes"}}) {
      const auto v = sampleOf(text, family + "{kind=\"" + kind + "\"}");
      ASSERT_TRUE(v) << family << " " << kind << "\n" << text;
      EXPECT_EQ(*v, h[key][field].get<double>()) << family << " " << kind;
    }
  }
  // The fixture's host: 4 vCPUs, 4096 MiB of which 512 reserved; two VMs of 256 MiB.
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_capacity_memory_mib{kind="free"})"), 4096 - 512 - 512);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_vms{state="created"})"), 2);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_vms{state="running"})"), 0);
  EXPECT_NE(text.find("# HELP vandra_agent_vms "), std::string::npos);

  ASSERT_EQ(c->Delete("/v1/vms/web1")->status, 200);
  const std::string after = scrape(*c);
  EXPECT_EQ(sampleOf(after, R"(vandra_agent_vms{state="created"})"), 1);
  EXPECT_EQ(sampleOf(after, R"(vandra_agent_capacity_memory_mib{kind="allocated"})"), 256);
}

TEST_F(MetricsTest, RequestsAreCountedByMethodAndStatusClass) {
  auto c = client();
  // One connection: its requests are served (and counted) one after the other by one worker.
  c->set_keep_alive(true);
  const std::string before = scrape(*c);
  const double get_2xx =
      sampleOf(before, R"(vandra_agent_http_requests_total{code="2xx",method="GET"})").value_or(0);
  const double get_4xx =
      sampleOf(before, R"(vandra_agent_http_requests_total{code="4xx",method="GET"})").value_or(0);
  ASSERT_EQ(c->Get("/v1/vms")->status, 200);
  ASSERT_EQ(c->Get("/v1/host")->status, 200);
  ASSERT_EQ(c->Get("/v1/vms/nope")->status, 404);
  const std::string after = scrape(*c);
  // The first scrape and the two reads; the failed show.
  EXPECT_EQ(sampleOf(after, R"(vandra_agent_http_requests_total{code="2xx",method="GET"})"),
            get_2xx + 3)
      << after;
  EXPECT_EQ(sampleOf(after, R"(vandra_agent_http_requests_total{code="4xx",method="GET"})"),
            get_4xx + 1)
      << after;
}

// A source migration its agent found in confirm when it started (the target runs the guest,
// unconfirmed; the runner had written its account of the tunnel and the pause): an operator's
// abandon-source ends it, through the service's store as every end.
TEST_F(MetricsTest, AMigrationEndIsCountedOnceWithItsBytesAndInterruption) {
  auto st = orchestrator::openSqliteMigrationStore(tmp_ / "migrations.db");
  ASSERT_TRUE(st) << st.error().describe();
  store_ = std::move(*st);
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  auto rec = orchestrator::newMigrationRecord("m-1", "web9", orchestrator::MigrationRole::Source,
                                              "cloud", now_us - 42'000'000);  // 42 s ago
  rec.phase = MigrationPhase::Confirm;
  rec.report = {{"wan_bytes", 5'000'000},
                {"ram_bytes", 3'000'000},
                {"disk_bytes", 1'000'000},
                {"interruption_ms", 240.0}};
  ASSERT_TRUE(store_->insert(rec));
  orchestrator::MigrationServiceConfig mc;
  mc.site = "dc";
  mc.run_dir = tmp_ / "run";
  mc.listen = false;
  mc.peers = {{"cloud", "127.0.0.1", 1, 0}};
  mc.metrics = &metrics_;
  auto ms = orchestrator::MigrationService::start(*service_, *store_, mc);
  ASSERT_TRUE(ms) << ms.error().describe();
  migrations_ = std::move(*ms);

  auto c = client();
  const std::string before = scrape(*c);
  EXPECT_EQ(sampleOf(before, R"(vandra_agent_migrations_total{result="done",role="source"})"), 0)
      << before;
  EXPECT_EQ(sampleOf(before, R"(vandra_agent_migration_wan_bytes_total{role="source"})"), 0);
  EXPECT_EQ(sampleOf(before, "vandra_agent_migration_interruption_seconds_count"), 0);

  auto done = migrations_->resolve(
      "m-1", {orchestrator::ResolveAction::AbandonSource, "cloud runs web9", "operator"});
  ASSERT_TRUE(done) << done.error().describe();
  ASSERT_EQ(done->value("phase", ""), "done") << done->dump(2);
  const std::string text = scrape(*c);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migrations_total{result="done",role="source"})"), 1)
      << text;
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migration_wan_bytes_total{role="source"})"), 5e6);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migration_ram_bytes_total{role="source"})"), 3e6);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migration_disk_bytes_total{role="source"})"), 1e6);
  EXPECT_EQ(sampleOf(text, "vandra_agent_migration_interruption_seconds_count"), 1);
  EXPECT_DOUBLE_EQ(sampleOf(text, "vandra_agent_migration_interruption_seconds_sum").value_or(-1),
                   0.24);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migration_interruption_seconds_bucket{le="0.2"})"), 0);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migration_interruption_seconds_bucket{le="0.3"})"), 1);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migration_duration_seconds_count{role="source"})"), 1);
  EXPECT_EQ(
      sampleOf(text, R"(vandra_agent_migration_duration_seconds_bucket{role="source",le="30"})"),
      0);
  EXPECT_EQ(
      sampleOf(text, R"(vandra_agent_migration_duration_seconds_bucket{role="source",le="60"})"),
      1);

  // Ended: a second resolve is refused and nothing is counted again.
  EXPECT_FALSE(migrations_->resolve(
      "m-1", {orchestrator::ResolveAction::AbandonSource, "again", "operator"}));
  const std::string again = scrape(*c);
  EXPECT_EQ(sampleOf(again, R"(vandra_agent_migrations_total{result="done",role="source"})"), 1);
  EXPECT_EQ(sampleOf(again, R"(vandra_agent_migration_wan_bytes_total{role="source"})"), 5e6);
}

}  // namespace
}  // namespace vandra::agent
