// migrate(): versions applied once each, in order, transactionally, and never over a newer
// schema.
#include <thread>
#include <vector>

#include "test/db/db_fixture.h"

namespace vandra::db::testing {
namespace {

using MigrateTest = DbTest;
VANDRA_DB_TEST_SUITE(MigrateTest);

std::vector<Migration> migrations(int n) {
  std::vector<Migration> all = {
      {1, "hosts", "CREATE TABLE hosts (name TEXT PRIMARY KEY, site TEXT NOT NULL)", ""},
      // Several statements, and a dialect difference.
      {2, "vms",
       "CREATE TABLE vms (id INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT REFERENCES hosts(name));"
       "CREATE INDEX vms_host ON vms (host);",
       "CREATE TABLE vms (id BIGSERIAL PRIMARY KEY, host TEXT REFERENCES hosts(name));"
       "CREATE INDEX vms_host ON vms (host);"},
      // Writes a row: applied twice would leave two.
      {3, "applied marker",
       "CREATE TABLE applied (n BIGINT NOT NULL); INSERT INTO applied (n) VALUES (3)", ""},
      {4, "audit", "CREATE TABLE audit (at_ms BIGINT NOT NULL, what TEXT NOT NULL)", ""},
  };
  all.resize(static_cast<size_t>(n));
  return all;
}

int64_t count(Database& db, const std::string& table) {
  auto rows = db.query("SELECT count(*) FROM " + table);
  EXPECT_TRUE(rows) << rows.error().describe();
  return rows ? (*rows)[0].integer(0) : -1;
}

TEST_P(MigrateTest, FromEmptyToNewestThenNothingMore) {
  auto v = migrate(*db_, migrations(3));
  ASSERT_TRUE(v) << v.error().describe();
  EXPECT_EQ(*v, 3);
  auto rows = db_->query(
      "SELECT version, name, applied_at_ms FROM schema_migrations "
      "ORDER BY version");
  ASSERT_TRUE(rows) << rows.error().describe();
  ASSERT_EQ(rows->size(), 3U);
  EXPECT_EQ((*rows)[1].integer(0), 2);
  EXPECT_EQ((*rows)[1].text(1), "vms");
  EXPECT_GT((*rows)[1].integer(2), 1'700'000'000'000);  // milliseconds, from the database
  ASSERT_TRUE(db_->execute("INSERT INTO hosts (name, site) VALUES ('h1', 'a')"));

  auto again = migrate(*db_, migrations(3));
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_EQ(*again, 3);
  EXPECT_EQ(count(*db_, "schema_migrations"), 3);
  EXPECT_EQ(count(*db_, "applied"), 1);
  EXPECT_EQ(count(*db_, "hosts"), 1);
}

TEST_P(MigrateTest, ALaterMigrationAppliesOnlyTheNewOne) {
  ASSERT_EQ(migrate(*db_, migrations(3)).value_or(-1), 3);
  ASSERT_TRUE(db_->execute("INSERT INTO hosts (name, site) VALUES ('h1', 'a')"));
  auto v = migrate(*db_, migrations(4));
  ASSERT_TRUE(v) << v.error().describe();
  EXPECT_EQ(*v, 4);
  EXPECT_EQ(count(*db_, "applied"), 1);
  EXPECT_EQ(count(*db_, "hosts"), 1);
  EXPECT_EQ(count(*db_, "audit"), 0);
  EXPECT_EQ(count(*db_, "schema_migrations"), 4);
}

TEST_P(MigrateTest, ANewerDatabaseIsRefusedAndLeftAlone) {
  ASSERT_EQ(migrate(*db_, migrations(4)).value_or(-1), 4);
  auto old = migrate(*db_, migrations(2));
  ASSERT_FALSE(old);
  EXPECT_EQ(old.error().code, ErrorCode::Unsupported);
  EXPECT_NE(old.error().message.find("version 4"), std::string::npos) << old.error().message;
  EXPECT_NE(old.error().message.find("(2)"), std::string::npos) << old.error().message;
  EXPECT_EQ(count(*db_, "schema_migrations"), 4);
  EXPECT_EQ(count(*db_, "applied"), 1);
}

TEST_P(MigrateTest, NumberingMustBeOneToN) {
  auto gap = migrations(3);
  gap.erase(gap.begin() + 1);
  auto r = migrate(*db_, gap);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  auto dup = migrations(2);
  dup[1].version = 1;
  EXPECT_EQ(migrate(*db_, dup).error().code, ErrorCode::InvalidArgument);
  // Out of order in the list is fine: versions count, not positions.
  auto reversed = migrations(3);
  std::reverse(reversed.begin(), reversed.end());
  EXPECT_EQ(migrate(*db_, reversed).value_or(-1), 3);
}

TEST_P(MigrateTest, AFailingMigrationLeavesNothingBehind) {
  auto list = migrations(3);
  list[2].sqlite_sql = list[2].postgres_sql =
      "CREATE TABLE applied (n BIGINT NOT NULL); INSERT INTO no_such_table VALUES (1)";
  auto r = migrate(*db_, list);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::Io);
  EXPECT_NE(r.error().message.find("Migration 3 (applied marker)"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(count(*db_, "schema_migrations"), 2);
  EXPECT_FALSE(db_->query("SELECT count(*) FROM applied"));  // its first statement undone
  // Fixed, it applies.
  EXPECT_EQ(migrate(*db_, migrations(3)).value_or(-1), 3);
}

TEST_P(MigrateTest, ControllersStartingTogetherApplyEachMigrationOnce) {
  constexpr int kControllers = 4;
  std::vector<std::unique_ptr<Database>> dbs;
  for (int i = 0; i < kControllers; ++i) {
    dbs.push_back(openAnother());
    ASSERT_NE(dbs.back(), nullptr);
  }
  std::vector<Result<int>> results(kControllers, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kControllers; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<size_t>(i)] = migrate(*dbs[static_cast<size_t>(i)], migrations(4));
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (const auto& r : results) {
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(*r, 4);
  }
  EXPECT_EQ(count(*db_, "schema_migrations"), 4);
  EXPECT_EQ(count(*db_, "applied"), 1);
}

}  // namespace
}  // namespace vandra::db::testing
