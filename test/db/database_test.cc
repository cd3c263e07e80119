// Statements, parameters, errors and transactions: the same expectations on both backends.
#include <chrono>
#include <future>
#include <iostream>
#include <limits>
#include <thread>
#include <vector>

#include "src/db/internal.h"
#include "test/db/db_fixture.h"

namespace vandra::db::testing {
namespace {

using StatementTest = DbTest;
VANDRA_DB_TEST_SUITE(StatementTest);

constexpr const char* kTable =
    "CREATE TABLE t (id BIGINT PRIMARY KEY, i BIGINT, r DOUBLE PRECISION, s TEXT, n TEXT)";

TEST_P(StatementTest, EveryValueTypeAndNullRoundTrips) {
  ASSERT_TRUE(db_->execute(kTable));
  const std::string text = "it's \"quoted\" \\ -- ; DROP TABLE t; ünïcødé ✓ 🚀 日本";
  const std::vector<std::tuple<int64_t, int64_t, double, std::string>> cases = {
      {1, std::numeric_limits<int64_t>::max(), 0.1, text},
      {2, std::numeric_limits<int64_t>::min(), -1e300, ""},
      {3, 0, 5e-324, "plain"},
  };
  for (const auto& [id, i, r, s] : cases) {
    auto ins = db_->execute("INSERT INTO t (id, i, r, s, n) VALUES ($1, $2, $3, $4, $5)",
                            {id, i, r, s, std::monostate{}});
    ASSERT_TRUE(ins) << ins.error().describe();
    EXPECT_EQ(ins->rows_affected, 1);
  }
  auto rows = db_->query("SELECT id, i, r, s, n FROM t ORDER BY id");
  ASSERT_TRUE(rows) << rows.error().describe();
  ASSERT_EQ(rows->size(), cases.size());
  for (size_t k = 0; k < cases.size(); ++k) {
    const Row& row = (*rows)[k];
    const auto& [id, i, r, s] = cases[k];
    ASSERT_EQ(row.columns.size(), 5U);
    EXPECT_EQ(std::get<int64_t>(row.columns[0]), id);
    EXPECT_EQ(std::get<int64_t>(row.columns[1]), i);
    EXPECT_EQ(std::get<double>(row.columns[2]), r);  // exact: formatted to round-trip
    EXPECT_EQ(std::get<std::string>(row.columns[3]), s);
    EXPECT_TRUE(row.isNull(4));
    EXPECT_TRUE(std::holds_alternative<std::monostate>(row.columns[4]));
  }
}

TEST_P(StatementTest, ParametersBindByNumberNotByOrder) {
  // SQLite numbers "$N" parameters by first appearance; they must still bind by N.
  auto rows = db_->query("SELECT $2, $1, $2 || $1", {std::string("a"), std::string("b")});
  ASSERT_TRUE(rows) << rows.error().describe();
  ASSERT_EQ(rows->size(), 1U);
  EXPECT_EQ((*rows)[0].text(0), "b");
  EXPECT_EQ((*rows)[0].text(1), "a");
  EXPECT_EQ((*rows)[0].text(2), "ba");

  ASSERT_TRUE(db_->execute(kTable));
  ASSERT_TRUE(db_->execute("INSERT INTO t (id, i) VALUES ($2, $1)", {int64_t{7}, int64_t{70}}));
  rows = db_->query("SELECT id, i FROM t WHERE i = $1 AND id > $2", {int64_t{7}, int64_t{0}});
  ASSERT_TRUE(rows) << rows.error().describe();
  ASSERT_EQ(rows->size(), 1U);
  EXPECT_EQ((*rows)[0].integer(0), 70);
}

TEST_P(StatementTest, MissingParameterIsAnError) {
  auto rows = db_->query("SELECT $1, $2", {int64_t{1}});
  ASSERT_FALSE(rows);
}

TEST_P(StatementTest, RowsAffectedCountsChangedRows) {
  ASSERT_TRUE(db_->execute(kTable));
  for (int64_t id = 1; id <= 5; ++id) {
    ASSERT_TRUE(db_->execute("INSERT INTO t (id, i) VALUES ($1, $2)", {id, id % 2}));
  }
  auto upd = db_->execute("UPDATE t SET s = 'odd' WHERE i = $1", {int64_t{1}});
  ASSERT_TRUE(upd) << upd.error().describe();
  EXPECT_EQ(upd->rows_affected, 3);
  auto del = db_->execute("DELETE FROM t WHERE id <= $1", {int64_t{2}});
  ASSERT_TRUE(del);
  EXPECT_EQ(del->rows_affected, 2);
  auto none = db_->execute("DELETE FROM t WHERE id > $1", {int64_t{100}});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->rows_affected, 0);
}

TEST_P(StatementTest, UniqueViolationIsAlreadyExists) {
  ASSERT_TRUE(db_->execute(kTable));
  ASSERT_TRUE(db_->execute("INSERT INTO t (id) VALUES ($1)", {int64_t{1}}));
  auto dup = db_->execute("INSERT INTO t (id) VALUES ($1)", {int64_t{1}});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists) << dup.error().describe();
}

TEST_P(StatementTest, BadSqlIsIoWithTheDatabasesMessage) {
  auto bad = db_->query("SELEC 1");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::Io);
  EXPECT_NE(bad.error().message.find("syntax error"), std::string::npos) << bad.error().message;
  auto missing = db_->query("SELECT * FROM no_such_table");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::Io);
  EXPECT_NE(missing.error().message.find("no_such_table"), std::string::npos)
      << missing.error().message;
}

TEST_P(StatementTest, TransactionCommits) {
  ASSERT_TRUE(db_->execute(kTable));
  auto r = db_->transaction([](Session& s) -> Result<void> {
    VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES ($1)", {int64_t{1}}));
    VANDRA_TRY_ASSIGN(auto rows, s.query("SELECT count(*) FROM t"));
    if (rows[0].integer(0) != 1) {
      return fail(ErrorCode::Internal, "the transaction does not see its own insert");
    }
    VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES ($1)", {int64_t{2}}));
    return {};
  });
  ASSERT_TRUE(r) << r.error().describe();
  auto rows = db_->query("SELECT count(*) FROM t");
  ASSERT_TRUE(rows);
  EXPECT_EQ((*rows)[0].integer(0), 2);
}

TEST_P(StatementTest, TransactionRollsBackWhenTheBodyFails) {
  ASSERT_TRUE(db_->execute(kTable));
  auto r = db_->transaction([](Session& s) -> Result<void> {
    VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES ($1)", {int64_t{1}}));
    VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES ($1)", {int64_t{2}}));
    return fail(ErrorCode::InvalidArgument, "changed my mind");
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(r.error().message, "changed my mind");
  auto rows = db_->query("SELECT count(*) FROM t");
  ASSERT_TRUE(rows);
  EXPECT_EQ((*rows)[0].integer(0), 0);
}

TEST_P(StatementTest, AFailedStatementSpoilsTheTransaction) {
  ASSERT_TRUE(db_->execute(kTable));
  ASSERT_TRUE(db_->execute("INSERT INTO t (id) VALUES ($1)", {int64_t{1}}));
  auto r = db_->transaction([](Session& s) -> Result<void> {
    VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES ($1)", {int64_t{2}}));
    (void)s.execute("INSERT INTO t (id) VALUES ($1)", {int64_t{1}});  // ignored on purpose
    return {};
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::AlreadyExists) << r.error().describe();
  auto rows = db_->query("SELECT count(*) FROM t");
  ASSERT_TRUE(rows);
  EXPECT_EQ((*rows)[0].integer(0), 1);  // id 2 was rolled back with it
}

TEST_P(StatementTest, ConcurrentReadModifyWriteTransactionsAreSerialised) {
  ASSERT_TRUE(db_->execute("CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)"));
  ASSERT_TRUE(db_->execute("INSERT INTO counter (id, n) VALUES (1, 0)"));
  // Two controllers (Database objects), four threads each.
  auto other = openAnother();
  ASSERT_NE(other, nullptr);
  constexpr int kThreads = 8;
  constexpr int kEach = 50;
  std::atomic<int> failures{0};
  std::string first_failure;
  std::mutex failure_mu;
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < kThreads; ++t) {
    Database& db = t % 2 == 0 ? *db_ : *other;
    threads.emplace_back([&] {
      for (int k = 0; k < kEach; ++k) {
        auto r = db.transaction([](Session& s) -> Result<void> {
          VANDRA_TRY_ASSIGN(auto rows, s.query("SELECT n FROM counter WHERE id = 1"));
          VANDRA_TRY(
              s.execute("UPDATE counter SET n = $1 WHERE id = 1", {rows.at(0).integer(0) + 1}));
          return {};
        });
        if (!r) {
          std::lock_guard lock(failure_mu);
          if (failures++ == 0) {
            first_failure = r.error().describe();
          }
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  auto rows = db_->query("SELECT n FROM counter WHERE id = 1");
  ASSERT_TRUE(rows);
  EXPECT_EQ((*rows)[0].integer(0), kThreads * kEach - failures.load());
  EXPECT_EQ((*rows)[0].integer(0), kThreads * kEach);
  std::cout << kThreads * kEach << " transactions in " << ms << " ms\n";
}

TEST_P(StatementTest, ReadsRunBesideAWriteTransaction) {
  ASSERT_TRUE(db_->execute(kTable));
  ASSERT_TRUE(db_->execute("INSERT INTO t (id) VALUES (1)"));
  std::promise<void> read_done;
  auto read_finished = read_done.get_future();
  std::thread reader;
  auto r = db_->transaction([&](Session& s) -> Result<void> {
    VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES (2)"));
    // The writer holds its transaction open until a reader has finished beside it.
    reader = std::thread([&] {
      auto rows = db_->query("SELECT count(*) FROM t");
      EXPECT_TRUE(rows);
      if (rows) {
        EXPECT_EQ((*rows)[0].integer(0), 1);  // the uncommitted row is not seen
      }
      read_done.set_value();
    });
    if (read_finished.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      return fail(ErrorCode::Timeout, "a read waited for the write transaction");
    }
    return {};
  });
  reader.join();
  ASSERT_TRUE(r) << r.error().describe();
}

TEST_P(StatementTest, RowAccessorsConvert) {
  auto rows =
      db_->query("SELECT $1, $2, $3, $4", {std::string("42"), int64_t{-7}, 2.5, std::monostate{}});
  ASSERT_TRUE(rows) << rows.error().describe();
  const Row& row = rows->at(0);
  EXPECT_EQ(row.integer(0), 42);
  EXPECT_EQ(row.text(1), "-7");
  EXPECT_EQ(row.real(1), -7.0);
  EXPECT_EQ(row.real(2), 2.5);
  EXPECT_EQ(row.integer(2), 2);
  EXPECT_EQ(row.text(2), "2.5");
  EXPECT_TRUE(row.isNull(3));
  EXPECT_EQ(row.integer(3), 0);
  EXPECT_EQ(row.text(3), "");
  EXPECT_TRUE(row.isNull(4));  // past the end
}

TEST_P(StatementTest, DescribeNamesTheDatabaseWithoutAPassword) {
  const std::string d = db_->describe();
  EXPECT_FALSE(d.empty());
  EXPECT_EQ(d.find("password"), std::string::npos) << d;
  EXPECT_EQ(db_->dialect(), GetParam() == Backend::Sqlite ? Dialect::Sqlite : Dialect::Postgres);
}

TEST(SqliteOpen, RejectsWhatIsNotADatabaseUrl) {
  for (const char* url : {"", "sqlite:", "mysql://root@localhost/x", ":memory:"}) {
    auto db = open(url);
    ASSERT_FALSE(db) << url;
    EXPECT_EQ(db.error().code, ErrorCode::InvalidArgument) << url;
  }
  auto bad = open("/nonexistent-folder/x/controller.db");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::Io);
  EXPECT_NE(bad.error().message.find("/nonexistent-folder/x/controller.db"), std::string::npos);
}

TEST(PostgresOpen, NoMessageShowsThePassword) {
  // Nothing listens there: the connection fails, and its message must not hold the password.
  auto db = open(
      "postgresql://vandra:hunter2-secret@/vandra?host=/nonexistent-socket-dir"
      "&password=other-secret&connect_timeout=2");
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code, ErrorCode::Io);
  EXPECT_EQ(db.error().describe().find("secret"), std::string::npos) << db.error().describe();
  EXPECT_NE(db.error().message.find("vandra@"), std::string::npos) << db.error().message;
}

TEST(RedactUrl, LeavesOutEveryPassword) {
  using internal::redactUrl;
  EXPECT_EQ(redactUrl("postgresql://ctl:pw@db.example:5432/vandra"),
            "postgresql://ctl@db.example:5432/vandra");
  EXPECT_EQ(redactUrl("postgres://ctl:p%40ss:w@db/vandra?sslmode=require"),
            "postgres://ctl@db/vandra?sslmode=require");
  EXPECT_EQ(redactUrl("postgresql://ctl@/vandra?password=pw&host=/run/pg&password=x"),
            "postgresql://ctl@/vandra?host=/run/pg");
  EXPECT_EQ(redactUrl("postgresql://ctl:pw@h1:5432,h2:5432/vandra?target_session_attrs=read-write"),
            "postgresql://ctl@h1:5432,h2:5432/vandra?target_session_attrs=read-write");
  EXPECT_EQ(redactUrl("postgresql://db.example"), "postgresql://db.example");
  EXPECT_EQ(redactUrl("postgresql://:pw@db?password=pw"), "postgresql://@db");
}

}  // namespace
}  // namespace vandra::db::testing
