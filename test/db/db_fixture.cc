#include "test/db/db_fixture.h"

#include <stdlib.h>

#include <atomic>
#include <filesystem>

#include "test/support/require.h"

namespace vandra::db::testing {
namespace {

// One server for every PostgreSQL case this process runs (each gets its own database): ctest
// runs one case per process, a developer running the binary gets them all in seconds.
std::unique_ptr<vandra::testing::PostgresServer>& sharedServer() {
  static std::unique_ptr<vandra::testing::PostgresServer> server;
  return server;
}

}  // namespace

std::string backendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::Sqlite ? "Sqlite" : "Postgres";
}

void PrintTo(Backend backend, std::ostream* os) {
  *os << (backend == Backend::Sqlite ? "Sqlite" : "Postgres");
}

void DbTest::SetUp() {
  if (GetParam() == Backend::Sqlite) {
    std::string templ = (std::filesystem::temp_directory_path() / "vandra-db-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    sqlite_dir_ = templ;
    url_ = "sqlite:" + sqlite_dir_ + "/controller.db";
  } else {
    if (auto why = vandra::testing::PostgresServer::unavailable(); !why.empty()) {
      VANDRA_SKIP_OR_FAIL(why);
    }
    auto& server = sharedServer();
    if (!server) {
      auto started = vandra::testing::PostgresServer::start();
      ASSERT_TRUE(started) << started.error().describe();
      server = std::move(*started);
    }
    // The first case on a fresh server takes its empty `postgres` database; later ones (a
    // developer running the whole binary) each create their own.
    static std::atomic<int> counter{0};
    if (++counter == 1) {
      url_ = server->url();
    } else {
      const std::string name = "t" + std::to_string(counter.load());
      auto admin = open(server->url());
      ASSERT_TRUE(admin) << admin.error().describe();
      // FILE_COPY: PostgreSQL 15's default strategy writes the whole template through the WAL.
      ASSERT_TRUE((*admin)->execute("CREATE DATABASE " + name + " STRATEGY = FILE_COPY"));
      url_ = server->url(name);
    }
  }
  auto db = open(url_);
  ASSERT_TRUE(db) << db.error().describe();
  db_ = std::move(*db);
}

void DbTest::TearDown() {
  db_.reset();
  if (!sqlite_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(sqlite_dir_, ec);
  }
}

void DbTest::TearDownTestSuite() {
  sharedServer().reset();
}

std::unique_ptr<Database> DbTest::openAnother(const OpenOptions& options) const {
  auto db = open(url_, options);
  EXPECT_TRUE(db) << db.error().describe();
  return db ? std::move(*db) : nullptr;
}

}  // namespace vandra::db::testing
