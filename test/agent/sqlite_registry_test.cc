// The SQLite registry: what is written survives reopening (an agent restart), concurrent
// writers are detected by generation, bad ids are refused, newer schemas are refused.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>

#include "vandra/agent/vm_registry.h"

namespace vandra::agent {
namespace {

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = "/tmp/vandra-reg-XXXXXX";
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string db() const { return dir_ + "/registry.db"; }
  std::string dir_;
};

VmRecord record(const std::string& id) {
  VmRecord r;
  r.id = id;
  r.spec_json = R"({"id":")" + id + R"("})";
  r.vcpus = 1;
  r.memory_mib = 256;
  r.disk_bytes = 1 << 30;
  return r;
}

TEST_F(RegistryTest, EveryStateSurvivesReopen) {
  {
    auto reg = openSqliteRegistry(db());
    ASSERT_TRUE(reg);
    for (const auto s : kAllVmStates) {
      VmRecord r = record("vm-" + std::string(toString(s)));
      r.state = s;
      ASSERT_TRUE((*reg)->insert(r));
    }
  }
  auto reg = openSqliteRegistry(db());
  ASSERT_TRUE(reg);
  for (const auto s : kAllVmStates) {
    auto got = (*reg)->get("vm-" + std::string(toString(s)));
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->state, s) << toString(s);
  }
}

TEST_F(RegistryTest, SurvivesReopenAndKeepsEveryField) {
  {
    auto reg = openSqliteRegistry(db());
    ASSERT_TRUE(reg) << reg.error().describe();
    ASSERT_TRUE((*reg)->insert(record("web1")));
    auto got = (*reg)->get("web1");
    ASSERT_TRUE(got && *got);
    VmRecord r = **got;
    r.state = VmState::Running;
    r.pid = 4242;
    r.pid_start_time = 99;
    r.run_dir = "/run/vandra/web1";
    auto up = (*reg)->update(r);
    ASSERT_TRUE(up) << up.error().describe();
    EXPECT_EQ(up->generation, r.generation + 1);
  }
  auto reg = openSqliteRegistry(db());
  ASSERT_TRUE(reg);
  auto all = (*reg)->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1U);
  const auto& r = all->front();
  EXPECT_EQ(r.id, "web1");
  EXPECT_EQ(r.state, VmState::Running);
  EXPECT_EQ(r.pid, 4242);
  EXPECT_EQ(r.pid_start_time, 99U);
  EXPECT_EQ(r.run_dir, "/run/vandra/web1");
  EXPECT_EQ(r.memory_mib, 256U);
  EXPECT_EQ(r.generation, 2);
}

TEST_F(RegistryTest, StaleGenerationIsBusyAndDuplicatesAreRefused) {
  auto reg = openSqliteRegistry(db());
  ASSERT_TRUE(reg);
  ASSERT_TRUE((*reg)->insert(record("a")));
  auto dup = (*reg)->insert(record("a"));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  VmRecord r = **(*reg)->get("a");
  ASSERT_TRUE((*reg)->update(r));
  auto stale = (*reg)->update(r);  // same generation again: someone else wrote in between
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::Busy);
  VmRecord ghost = record("ghost");
  auto missing = (*reg)->update(ghost);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
  ASSERT_TRUE((*reg)->remove("a"));
  EXPECT_EQ((*reg)->remove("a").error().code, ErrorCode::NotFound);
}

TEST_F(RegistryTest, PathLikeAndOddIdsAreRefused) {
  auto reg = openSqliteRegistry(db());
  ASSERT_TRUE(reg);
  for (const char* bad : {"", "../x", "a/b", ".hidden", "x y", "semi;colon", "quote'"}) {
    auto r = (*reg)->insert(record(bad));
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << bad;
  }
  EXPECT_TRUE((*reg)->list()->empty());
}

TEST_F(RegistryTest, NewerSchemaIsRefused) {
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db().c_str(), &raw), SQLITE_OK);
    sqlite3_exec(raw, "PRAGMA user_version=99", nullptr, nullptr, nullptr);
    sqlite3_close(raw);
  }
  auto reg = openSqliteRegistry(db());
  ASSERT_FALSE(reg);
  EXPECT_EQ(reg.error().code, ErrorCode::Unsupported);
}

}  // namespace
}  // namespace vandra::agent
