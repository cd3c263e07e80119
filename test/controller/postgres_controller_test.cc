// The controller on a real PostgreSQL server (started by the test): two controllers share it;
// the leader dies in the middle of a migration (its lease is left to run out), the standby
// takes over within 15 s with a higher epoch that every agent is told, adopts the migration the
// agent is still running and records its end.
#include <gtest/gtest.h>

#include "test/controller/controller_fixture.h"
#include "test/support/postgres_server.h"
#include "test/support/require.h"

namespace vandra::controller::testing {
namespace {

class PostgresController : public ControllerFixture {
 protected:
  std::string databaseUrl() override {
    if (const std::string why = vandra::testing::PostgresServer::unavailable(); !why.empty()) {
      [&] { VANDRA_SKIP_OR_FAIL(why); }();
      return "";
    }
    auto server = vandra::testing::PostgresServer::start();
    if (!server) {
      ADD_FAILURE() << server.error().describe();
      return "";
    }
    server_ = std::move(*server);
    return server_->url();
  }
  void TearDown() override {
    ControllerFixture::TearDown();
    server_.reset();
  }
  std::unique_ptr<vandra::testing::PostgresServer> server_;
};

TEST_F(PostgresController, AStandbyTakesOverMidMigrationAndAdoptsIt) {
  if (IsSkipped() || HasFatalFailure() || url_.empty()) {
    return;
  }
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  ASSERT_TRUE(service_->leader().leader);
  auto m =
      service_->migrate({"web1", "cloud-eu", MoveReason::Operator, ""}, {"alice", Role::Operator});
  ASSERT_TRUE(m) << m.error().describe();

  auto other = Store::open(url_);
  ASSERT_TRUE(other) << other.error().describe();
  auto standby = makeService(**other, "c2");  // the default lease: 10 s
  standby->refreshOnce();
  ASSERT_FALSE(standby->leader().leader);

  service_->halt();  // dies: no more renewals, the lease is not handed over
  const auto died = std::chrono::steady_clock::now();
  while (!standby->leader().leader &&
         std::chrono::steady_clock::now() - died < std::chrono::seconds(20)) {
    standby->refreshOnce();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // the standby's refresh pace
  }
  const auto took = std::chrono::steady_clock::now() - died;
  ASSERT_TRUE(standby->leader().leader);
  EXPECT_LT(took, std::chrono::seconds(15));
  EXPECT_EQ(standby->leader().epoch, 2);
  for (auto& [site, a] : agents_) {
    EXPECT_EQ(a->announced, 2) << site;
  }
  // The migration the agent went on with is the new leader's now.
  agents_["dc"]->endMigration(m->agent_migration_id, MigrationPhase::Done, 140.0);
  ASSERT_TRUE(
      eventually([&] { return (*other)->migration(m->id)->state == MigrationState::Done; }));
  EXPECT_EQ((*other)->vm("web1")->site, "cloud-eu");
  EXPECT_EQ((*other)->migration(m->id)->within_budget, true);
  std::cout << "standby took over " << std::chrono::duration<double>(took).count()
            << " s after the leader died\n";
  standby.reset();
}

}  // namespace
}  // namespace vandra::controller::testing
