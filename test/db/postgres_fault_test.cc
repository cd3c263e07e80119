// PostgreSQL faults: the server killed and restarted under a Database object that stays open,
// as a controller sees a database failover.
#include <atomic>
#include <iostream>
#include <thread>
#include <vector>

#include "test/support/postgres_server.h"
#include "test/support/require.h"
#include "vandra/db/database.h"

namespace vandra::db {
namespace {

using vandra::testing::PostgresServer;

std::unique_ptr<PostgresServer> startServer() {
  auto s = PostgresServer::start();
  EXPECT_TRUE(s) << s.error().describe();
  return s ? std::move(*s) : nullptr;
}

TEST(PostgresFault, ThePoolReconnectsAfterTheServerCrashes) {
  if (auto why = PostgresServer::unavailable(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  auto server = startServer();
  ASSERT_NE(server, nullptr);
  constexpr int kPool = 4;
  auto opened = open(server->url(), {.pool_size = kPool});
  ASSERT_TRUE(opened) << opened.error().describe();
  Database& db = **opened;
  ASSERT_TRUE(db.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)"));
  // Fill the pool: kPool transactions open at once, each on its own connection.
  {
    std::atomic<int> inside{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kPool; ++i) {
      threads.emplace_back([&, i] {
        auto r = db.transaction([&](Session& s) -> Result<void> {
          VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES ($1)", {int64_t{i}}));
          ++inside;
          while (inside.load() < kPool) {
            std::this_thread::yield();  // until every connection is in use
          }
          return {};
        });
        EXPECT_TRUE(r) << r.error().describe();
      });
    }
    for (auto& t : threads) {
      t.join();
    }
  }

  ASSERT_TRUE(server->crash());
  // Down: a query fails (Io), it does not hang.
  auto down = db.query("SELECT 1");
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, ErrorCode::Io) << down.error().describe();
  ASSERT_TRUE(server->restart());

  // Up again: the first queries may still meet a dead connection (Io), then they work.
  int failures = 0;
  for (; failures <= kPool; ++failures) {
    auto r = db.query("SELECT count(*) FROM t");
    if (r) {
      EXPECT_EQ((*r)[0].integer(0), kPool);
      break;
    }
    EXPECT_EQ(r.error().code, ErrorCode::Io) << r.error().describe();
  }
  EXPECT_LE(failures, kPool);
  std::cout << failures << " queries failed after the restart\n";
  // And no connection stays broken: every one of them, used at once, works.
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kPool * 2; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 10; ++k) {
        auto r = db.transaction([&](Session& s) -> Result<void> {
          VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES ($1)", {int64_t{100 + i * 10 + k}}));
          return {};
        });
        if (!r) {
          ++bad;
          ADD_FAILURE() << r.error().describe();
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(bad.load(), 0);
  auto total = db.query("SELECT count(*) FROM t");
  ASSERT_TRUE(total) << total.error().describe();
  EXPECT_EQ((*total)[0].integer(0), kPool + kPool * 2 * 10);
}

TEST(PostgresFault, ATransactionCutOffByACrashFailsWithIoAndItsConnectionIsReplaced) {
  if (auto why = PostgresServer::unavailable(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  auto server = startServer();
  ASSERT_NE(server, nullptr);
  // One connection: the statement after the failure must run on its replacement.
  auto opened = open(server->url(), {.pool_size = 1});
  ASSERT_TRUE(opened) << opened.error().describe();
  Database& db = **opened;
  ASSERT_TRUE(db.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)"));
  int runs = 0;
  auto r = db.transaction([&](Session& s) -> Result<void> {
    ++runs;
    VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES (1)"));
    // The server dies under the open transaction and comes back.
    VANDRA_TRY(server->crash());
    VANDRA_TRY(server->restart());
    VANDRA_TRY(s.execute("INSERT INTO t (id) VALUES (2)"));
    return {};
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::Io) << r.error().describe();
  EXPECT_EQ(runs, 1);  // a lost connection is not a serialization failure: not run again
  auto rows = db.query("SELECT count(*) FROM t");
  ASSERT_TRUE(rows) << rows.error().describe();
  EXPECT_EQ((*rows)[0].integer(0), 0);  // nothing of it was committed
  ASSERT_TRUE(db.execute("INSERT INTO t (id) VALUES (3)"));
}

TEST(PostgresFault, DescribeNeverShowsThePassword) {
  if (auto why = PostgresServer::unavailable(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  auto server = startServer();
  ASSERT_NE(server, nullptr);
  // Trust authentication ignores the password; it is only there to be hidden.
  const std::string url = server->url("postgres", "s3cret-pw") + "&password=s3cret-too";
  auto db = open(url);
  ASSERT_TRUE(db) << db.error().describe();
  const std::string d = (*db)->describe();
  EXPECT_EQ(d.find("s3cret"), std::string::npos) << d;
  EXPECT_NE(d.find("postgresql://postgres@/postgres?host="), std::string::npos) << d;
  // An error naming where it failed hides it too.
  ASSERT_TRUE(server->stop());
  auto failed = open(url);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().describe().find("s3cret"), std::string::npos)
      << failed.error().describe();
  auto q = (*db)->query("SELECT 1");
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().describe().find("s3cret"), std::string::npos) << q.error().describe();
}

}  // namespace
}  // namespace vandra::db
