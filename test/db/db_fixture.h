// The fixture every database test shares: the same case on SQLite (a file in a fresh temporary
// folder) and on PostgreSQL (a fresh database on a real server this process starts once, see
// test/support/postgres_server.h). Test names end in /Sqlite or /Postgres; CMake labels the
// Postgres ones integration.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>

#include "test/support/postgres_server.h"
#include "vandra/db/database.h"

namespace vandra::db::testing {

enum class Backend { Sqlite, Postgres };

class DbTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override;
  void TearDown() override;
  static void TearDownTestSuite();

  /// Another Database object on the same database (a second controller).
  std::unique_ptr<Database> openAnother(const OpenOptions& options = {}) const;

  std::string url_;
  std::unique_ptr<Database> db_;

 private:
  std::string sqlite_dir_;
};

std::string backendName(const ::testing::TestParamInfo<Backend>& info);
/// For gtest (and so ctest's test names): "Sqlite" or "Postgres", not the enum's bytes.
void PrintTo(Backend backend, std::ostream* os);

}  // namespace vandra::db::testing

#define VANDRA_DB_TEST_SUITE(Suite)                                                     \
  INSTANTIATE_TEST_SUITE_P(Backends, Suite,                                             \
                           ::testing::Values(::vandra::db::testing::Backend::Sqlite,    \
                                             ::vandra::db::testing::Backend::Postgres), \
                           ::vandra::db::testing::backendName)
