// The controller's store on a real SQLite file: every record round-trips, lists come in their
// order, the audit log filters, and a database written by a newer vandra is refused unchanged.
#include "vandra/controller/store.h"

#include <gtest/gtest.h>

#include "test/controller/controller_fixture.h"

namespace vandra::controller::testing {
namespace {

using StoreTest = ControllerFixture;

TEST_F(StoreTest, RecordsRoundTrip) {
  Site s = site("edge", {"EU"}, 0.05);
  s.water_marks = {0.9, 0.5};
  ASSERT_TRUE(store_->putSite(s));
  EXPECT_EQ(*store_->site("edge"), s);
  EXPECT_EQ(store_->site("nowhere").error().code, ErrorCode::NotFound);

  ASSERT_TRUE(store_->putLink({"edge", "dc", 20, 800, 5}));
  ASSERT_TRUE(store_->putLink({"dc", "edge", 25, 900, 6}));  // the same pair, either way
  auto links = store_->links();
  ASSERT_TRUE(links);
  ASSERT_EQ(links->size(), 4u);  // the fixture's three and this one
  size_t found = 0;
  for (const auto& l : *links) {
    if ((l.a == "dc" && l.b == "edge") || (l.a == "edge" && l.b == "dc")) {
      ++found;
      EXPECT_EQ(l.rtt_ms, 25);
    }
  }
  EXPECT_EQ(found, 1u);

  Vm v;
  v.name = "web1";
  v.site = "dc";
  v.home_site = "dc";
  v.state = VmState::Running;
  v.vcpus = 2;
  v.memory_mib = 512;
  v.sla = euOnly();
  v.networks = {"lan"};
  v.dirty_rate_mbps = 12.5;
  ASSERT_TRUE(store_->putVm(v));
  auto back = store_->vm("web1");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->sla, v.sla);
  EXPECT_EQ(back->dirty_rate_mbps, 12.5);
  EXPECT_EQ(back->networks, v.networks);
  ASSERT_TRUE(store_->deleteVm("web1"));
  EXPECT_EQ(store_->vm("web1").error().code, ErrorCode::NotFound);
}

TEST_F(StoreTest, MigrationsNewestFirstAndRunningOnly) {
  Migration m;
  m.vm = "web1";
  m.from_site = "dc";
  m.to_site = "cloud-eu";
  auto a = store_->addMigration(m);
  auto b = store_->addMigration(m);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*b, *a + 1);
  auto done = *store_->migration(*a);
  done.state = MigrationState::Done;
  done.downtime_ms = 80;
  done.report_json = R"({"phases": {}})";
  ASSERT_TRUE(store_->updateMigration(done));
  auto all = store_->migrations("web1", 10);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(all->front().id, *b);
  auto running = store_->migrations("", 10, true);
  ASSERT_EQ(running->size(), 1u);
  EXPECT_EQ(running->front().id, *b);
  EXPECT_EQ(store_->migration(*a)->report_json, R"({"phases": {}})");
  EXPECT_EQ(store_->migration(*a)->downtime_ms, 80);
  Migration ghost;
  ghost.id = 999;
  EXPECT_EQ(store_->updateMigration(ghost).error().code, ErrorCode::NotFound);
}

TEST_F(StoreTest, AuditIsAppendOnlyAndFilters) {
  for (const char* who : {"alice", "bob", "alice"}) {
    ASSERT_TRUE(
        store_->appendAudit({0, 1, who, "operator", "PATCH /v1/sites/dc", "dc", 200, "ok", ""}));
  }
  auto alice = store_->audit({0, "alice", "", 10});
  ASSERT_TRUE(alice);
  ASSERT_EQ(alice->size(), 2u);
  EXPECT_EQ((*alice)[0].seq, 1);
  EXPECT_EQ((*alice)[1].seq, 3);
  EXPECT_EQ(store_->audit({1, "", "", 10})->size(), 2u);
  EXPECT_EQ(store_->audit({0, "", "web1", 10})->size(), 0u);
}

TEST_F(StoreTest, ADatabaseFromANewerVandraIsRefused) {
  const int newest = schemaMigrations().back().version;
  ASSERT_TRUE(store_->database().execute(
      "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, 'future', 0)",
      {int64_t{newest + 1}}));
  store_.reset();
  service_.reset();
  auto again = Store::open(url_);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::Unsupported);
}

}  // namespace
}  // namespace vandra::controller::testing
