// The metrics' account of a migration's record writes (metered_store.h): an end counted once,
// whichever write carries it, and the report's figures counted the first time an ended record
// has them, on both paths a source's record takes to its end.
#include "vandra/orchestrator/metered_store.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test/support/prometheus_text.h"

namespace vandra::orchestrator {
namespace {

namespace fs = std::filesystem;
using vandra::testing::sampleOf;

MigrationRecord in(MigrationPhase phase, nlohmann::json report = nlohmann::json::object()) {
  MigrationRecord r = newMigrationRecord("m-1", "web1", MigrationRole::Source, "cloud", 1'000'000);
  r.phase = phase;
  r.updated_us = 31'000'000;
  r.report = std::move(report);
  return r;
}

TEST(MigrationAccountTest, NothingIsCountedBeforeTheEnd) {
  const auto a =
      accountOf(in(MigrationPhase::Switchover), in(MigrationPhase::Confirm, {{"ram_bytes", 7}}));
  EXPECT_FALSE(a.ended);
  EXPECT_EQ(a.bytes.ram, 0U);
  EXPECT_FALSE(a.interruption_ms);
}

// The runner's path: the step loop writes done (QEMU's bytes in the report), then the runner
// adds the tunnel's bytes and the measured interruption to the ended record.
TEST(MigrationAccountTest, TheRunnersAccountAfterTheEndIsCountedOnce) {
  const auto confirm = in(MigrationPhase::Confirm, {{"ram_bytes", 300}, {"disk_bytes", 40}});
  const auto done = in(MigrationPhase::Done, {{"ram_bytes", 300}, {"disk_bytes", 40}});
  const auto first = accountOf(confirm, done);
  ASSERT_TRUE(first.ended);
  EXPECT_EQ(*first.ended, MigrationPhase::Done);
  EXPECT_DOUBLE_EQ(first.duration_s, 30);
  EXPECT_EQ(first.bytes.ram, 300U);
  EXPECT_EQ(first.bytes.disk, 40U);
  EXPECT_EQ(first.bytes.wan, 0U);
  EXPECT_FALSE(first.interruption_ms);

  auto accounted = done;
  accounted.report["wan_bytes"] = 5000;
  accounted.report["interruption_ms"] = 180.5;
  const auto second = accountOf(done, accounted);
  EXPECT_FALSE(second.ended);
  EXPECT_EQ(second.bytes.wan, 5000U);
  EXPECT_EQ(second.bytes.ram, 0U);  // counted by the first write
  ASSERT_TRUE(second.interruption_ms);
  EXPECT_DOUBLE_EQ(*second.interruption_ms, 180.5);

  const auto third = accountOf(accounted, accounted);  // a later write of the same record
  EXPECT_FALSE(third.ended);
  EXPECT_EQ(third.bytes.wan, 0U);
  EXPECT_FALSE(third.interruption_ms);
}

// The settler's path: the runner's account was written before the end; the end carries it.
TEST(MigrationAccountTest, AnAccountWrittenBeforeTheEndComesWithIt) {
  const nlohmann::json report = {{"wan_bytes", 5000}, {"interruption_ms", nullptr}};
  const auto a =
      accountOf(in(MigrationPhase::Switchover, report), in(MigrationPhase::RolledBack, report));
  ASSERT_TRUE(a.ended);
  EXPECT_EQ(*a.ended, MigrationPhase::RolledBack);
  EXPECT_EQ(a.bytes.wan, 5000U);
  EXPECT_FALSE(a.interruption_ms);  // null: nothing measured
}

TEST(MeteredMigrationStoreTest, EndsAreCountedOnceThroughTheStore) {
  std::string tmpl = (fs::temp_directory_path() / "vandra-metered-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  auto inner = openSqliteMigrationStore(tmpl + "/migrations.db");
  ASSERT_TRUE(inner) << inner.error().describe();
  agent::AgentMetrics metrics;
  MeteredMigrationStore store(**inner, &metrics);
  auto r = store.insert(newMigrationRecord("m-1", "web1", MigrationRole::Target, "dc", 1));
  ASSERT_TRUE(r) << r.error().describe();
  for (const auto e :
       {MigrationEvent::PreflightPassed, MigrationEvent::Failure, MigrationEvent::RollbackDone}) {
    auto next = advance(*r, e, 2'000'000);
    ASSERT_TRUE(next) << next.error().describe();
    r = store.update(*next);
    ASSERT_TRUE(r) << r.error().describe();
  }
  r->report["wan_bytes"] = 10;  // after the end: counted
  r = store.update(*r);
  ASSERT_TRUE(r) << r.error().describe();
  ASSERT_TRUE(store.update(*r));  // again: not counted twice
  const std::string text = metrics.text({}, {});
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migrations_total{result="rolled_back",role="target"})"),
            1)
      << text;
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migrations_total{result="done",role="target"})"), 0);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migration_wan_bytes_total{role="target"})"), 10);
  EXPECT_EQ(sampleOf(text, R"(vandra_agent_migration_duration_seconds_count{role="target"})"), 1);
  std::error_code ec;
  fs::remove_all(tmpl, ec);
}

}  // namespace
}  // namespace vandra::orchestrator
