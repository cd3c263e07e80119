// The migration store on a real SQLite file: phases persisted and read back after a reopen
// (an agent restart), optimistic concurrency, one migration that has not ended per VM, and
// the schema guard.
#include "vandra/orchestrator/migration_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

namespace vandra::orchestrator {
namespace {

namespace fs = std::filesystem;

class MigrationStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "vms-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
    reopen();
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  void reopen() {
    store_.reset();
    auto s = openSqliteMigrationStore(dir_ + "/migrations.db");
    ASSERT_TRUE(s) << s.error().describe();
    store_ = std::move(*s);
  }
  static MigrationRecord fresh(const std::string& id, const std::string& vm) {
    MigrationRecord r;
    r.id = id;
    r.vm_id = vm;
    r.role = MigrationRole::Source;
    r.peer_site = "cloud";
    r.phase = MigrationPhase::Preflight;
    r.created_us = 1000;
    r.updated_us = 1000;
    return r;
  }
  std::string dir_;
  MigrationStorePtr store_;
};

TEST_F(MigrationStoreTest, PhasesSurviveARestartAndRecoveryReadsThem) {
  auto r = store_->insert(fresh("m1", "web1"));
  ASSERT_TRUE(r) << r.error().describe();
  for (auto e : {MigrationEvent::PreflightPassed, MigrationEvent::TargetPrepared,
                 MigrationEvent::MirrorsReady}) {
    auto next = advance(*r, e, 2000);
    ASSERT_TRUE(next);
    r = store_->update(*next);
    ASSERT_TRUE(r) << r.error().describe();
  }
  r->report = {{"wan_bytes", 12345}};
  r = store_->update(*r);
  ASSERT_TRUE(r);
  reopen();  // the agent restarts
  auto back = store_->get("m1");
  ASSERT_TRUE(back);
  ASSERT_TRUE(back->has_value());
  const MigrationRecord& m = **back;
  EXPECT_EQ(m.phase, MigrationPhase::PrecopyRam);
  EXPECT_EQ(m.role, MigrationRole::Source);
  EXPECT_EQ(m.peer_site, "cloud");
  EXPECT_EQ(m.report.value("wan_bytes", 0), 12345);
  ASSERT_EQ(m.timeline.size(), 3U);
  EXPECT_EQ(m.timeline[2]["phase"], "precopy_ram");
  EXPECT_EQ(m.generation, r->generation);
  EXPECT_EQ(recoveryFor(m.role, m.phase, {true, PeerView::Unreachable}), RecoveryStep::RollBack);
  auto active = store_->active("web1");
  ASSERT_TRUE(active);
  ASSERT_TRUE(active->has_value());
  EXPECT_EQ((*active)->id, "m1");
}

TEST_F(MigrationStoreTest, OneMigrationThatHasNotEndedPerVm) {
  auto first = store_->insert(fresh("m1", "web1"));
  ASSERT_TRUE(first);
  auto second = store_->insert(fresh("m2", "web1"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::Busy);
  ASSERT_TRUE(store_->insert(fresh("m3", "web2")));  // another VM is fine
  auto dup = store_->insert(fresh("m1", "web9"));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  // Once the first has ended, the VM may migrate again.
  auto rb = advance(*first, MigrationEvent::Cancel, 2000);
  ASSERT_TRUE(rb);
  first = store_->update(*rb);
  ASSERT_TRUE(first);
  ASSERT_FALSE(store_->insert(fresh("m2", "web1")));  // rolling back has not ended
  rb = advance(*first, MigrationEvent::RollbackDone, 3000);
  ASSERT_TRUE(rb);
  ASSERT_TRUE(store_->update(*rb));
  EXPECT_TRUE(store_->insert(fresh("m2", "web1")));
  auto all = store_->list("web1");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 2U);
}

TEST_F(MigrationStoreTest, StaleWritesAndBadIdsAreRefused) {
  auto r = store_->insert(fresh("m1", "web1"));
  ASSERT_TRUE(r);
  auto a = store_->update(*r);
  ASSERT_TRUE(a);
  auto stale = store_->update(*r);  // generation 1 again
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::Busy);
  auto missing = fresh("nope", "web1");
  missing.generation = 1;
  EXPECT_EQ(store_->update(missing).error().code, ErrorCode::NotFound);
  for (const char* bad : {"", "../x", "a b", ".hidden"}) {
    auto b = store_->insert(fresh(bad, "web1"));
    ASSERT_FALSE(b) << bad;
    EXPECT_EQ(b.error().code, ErrorCode::InvalidArgument);
  }
}

TEST_F(MigrationStoreTest, IllegalEventLeavesTheRecordAsItWas) {
  auto r = store_->insert(fresh("m1", "web1"));
  ASSERT_TRUE(r);
  auto bad = advance(*r, MigrationEvent::TargetStarted, 5000);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::IllegalTransition);
  auto back = store_->get("m1");
  ASSERT_TRUE(back && back->has_value());
  EXPECT_EQ((*back)->phase, MigrationPhase::Preflight);
  EXPECT_TRUE((*back)->timeline.empty());
}

TEST_F(MigrationStoreTest, NewerSchemaIsRefused) {
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/migrations.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto s = openSqliteMigrationStore(dir_ + "/migrations.db");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::Unsupported);
}

}  // namespace
}  // namespace vandra::orchestrator
