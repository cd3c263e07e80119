// The controller against the testbed's real agents (vandrad in their site namespaces, QEMU,
// the site tunnel over the emulated WAN): it adopts the running guest, moves it live to the
// other site and back through its own preflight and records each move's interruption against
// the SLA's budget; and fencing: once a second controller has led (a higher epoch reached the
// agents), the first one's command is refused by the agent and it stops acting as leader.
#include <gtest/gtest.h>

#include "test/testbed/testbed_migration.h"
#include "vandra/controller/service.h"

namespace vandra::testbed {
namespace {

using controller::AgentAccess;
using controller::ControllerService;
using controller::MigrationState;
using controller::SiteConfig;

class ControllerOnTestbed : public TestbedMigration {
 protected:
  std::vector<SiteConfig> sites() {
    std::vector<SiteConfig> out;
    for (const SiteInfo* s : {tb_.site("dc"), tb_.site("cloud-eu")}) {
      SiteConfig sc;
      sc.site.name = s->name;
      sc.site.jurisdictions = s->jurisdictions;
      sc.site.networks = {"vandra-test", "lan"};
      AgentAccess a;
      a.site = s->name;
      a.host = s->name + "-h1";
      EXPECT_TRUE(agent::parseHostPort(s->agent_endpoint, a.endpoint));
      a.endpoint.netns = s->netns;
      a.endpoint.ca = s->ca_cert;
      a.endpoint.cert = s->operator_cert;
      a.endpoint.key = s->operator_key;
      sc.agents.push_back(a);
      out.push_back(sc);
    }
    return out;
  }
  std::unique_ptr<ControllerService> controller(controller::Store& store, const std::string& id,
                                                int64_t ttl_ms) {
    controller::ServiceOptions o;
    o.controller_id = id;
    o.lease_ttl_ms = ttl_ms;
    auto c = ControllerService::create(store, sites(), o);
    EXPECT_TRUE(c) << c.error().describe();
    return c ? std::move(*c) : nullptr;
  }
  // Follows migration @p id in @p store until it ends (the service's follower records it).
  controller::Migration waitEnded(controller::Store& store, int64_t id) {
    const auto deadline = Clock::now() + 600s;
    while (Clock::now() < deadline) {
      auto m = store.migration(id);
      if (m && m->state != MigrationState::Running) {
        return *m;
      }
      std::this_thread::sleep_for(200ms);  // a poll of the store, not synchronisation
    }
    ADD_FAILURE() << "migration " << id << " did not end";
    return {};
  }
};

TEST_F(ControllerOnTestbed, MovesTheGuestLiveAndBackAndADeposedLeaderIsFenced) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  auto store = controller::Store::open("sqlite:" + (fs::path(dir_.path()) / "c.db").string());
  ASSERT_TRUE(store) << store.error().describe();
  ASSERT_TRUE((*store)->putLink({"dc", "cloud-eu", 1, 1000, 0}));
  auto c1 = controller(**store, "c1", 1500);
  ASSERT_NE(c1, nullptr);
  c1->refreshOnce();
  ASSERT_TRUE(c1->leader().leader);
  auto vm = (*store)->vm("web1");
  ASSERT_TRUE(vm) << vm.error().describe();
  EXPECT_EQ(vm->site, "dc");
  EXPECT_EQ(vm->state, controller::VmState::Running);
  EXPECT_FALSE(vm->networks.empty());

  auto m = c1->migrate({"web1", "cloud-eu", controller::MoveReason::Operator, "test"},
                       {"alice", controller::Role::Operator});
  ASSERT_TRUE(m) << m.error().describe();
  const auto done = waitEnded(**store, m->id);
  ASSERT_EQ(done.state, MigrationState::Done) << done.error;
  ASSERT_TRUE(done.downtime_ms.has_value());
  EXPECT_GT(*done.downtime_ms, 0.0);
  EXPECT_NE(done.report_json.find("interruption_ms"), std::string::npos);
  EXPECT_EQ((*store)->vm("web1")->site, "cloud-eu");
  auto at_cloud = conn_->ping("at-cloud", 60s);
  ASSERT_TRUE(at_cloud) << at_cloud.error().describe();

  // c1 stalls (no more lease renewals); c2 takes over once the lease has run out.
  auto store2 = controller::Store::open("sqlite:" + (fs::path(dir_.path()) / "c.db").string());
  ASSERT_TRUE(store2);
  auto c2 = controller(**store2, "c2", 1500);
  ASSERT_NE(c2, nullptr);
  const auto deadline = Clock::now() + 30s;
  while (!c2->leader().leader && Clock::now() < deadline) {
    c2->refreshOnce();
    std::this_thread::sleep_for(100ms);  // the lease's expiry is the database clock's
  }
  ASSERT_TRUE(c2->leader().leader);
  EXPECT_EQ(c2->leader().epoch, 2);
  auto back = c2->migrate({"web1", "dc", controller::MoveReason::Operator, "back home"},
                          {"bob", controller::Role::Operator});
  ASSERT_TRUE(back) << back.error().describe();
  const auto home = waitEnded(**store2, back->id);
  ASSERT_EQ(home.state, MigrationState::Done) << home.error;
  EXPECT_EQ((*store2)->vm("web1")->site, "dc");
  auto at_home = conn_->ping("home-again", 60s);
  ASSERT_TRUE(at_home) << at_home.error().describe();

  // c1 still believes it leads; the agent at dc has seen epoch 2 and refuses its epoch 1.
  ASSERT_TRUE(c1->leader().leader);
  auto stale = c1->migrate({"web1", "cloud-eu", controller::MoveReason::Operator, "stale"},
                           {"alice", controller::Role::Operator});
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::StaleEpoch) << stale.error().describe();
  EXPECT_FALSE(c1->leader().leader);
  EXPECT_EQ((*store2)->vm("web1")->site, "dc");
  auto at_dc = dc_->get("/v1/vms/web1");
  ASSERT_TRUE(at_dc);
  EXPECT_EQ((*at_dc)["state"], "running");
  c1->stop();
  c2->stop();
}

}  // namespace
}  // namespace vandra::testbed
