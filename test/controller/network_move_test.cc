// Network mappings travel with a move: the controller sends the source agent the renames of the
// VM's NIC networks for the target (only those whose name changes), records them with the
// migration, has the VM on the target's names once it ends, and a move back sends the reverse.
// Fake agents (fake_agent_link.h) record what they were asked.
#include <gtest/gtest.h>

#include "test/controller/controller_fixture.h"
#include "vandra/controller/service.h"

namespace vandra::controller::testing {
namespace {

using NetworkMoveTest = ControllerFixture;
using nlohmann::json;
using Names = std::map<std::string, std::string>;

TEST(TranslateNetworks, AMappingWinsOverTheSameNameAndWhatHasNoCounterpartIsMissing) {
  const std::vector<NetworkMapping> mappings = {{"office", {{"dc", "VM Network"}, {"eu", "lan"}}},
                                                {"backup", {{"dc", "lan"}, {"eu", "bak"}}}};
  auto t = translateNetworks({"VM Network", "storage", "lan", "dmz"}, "dc", "eu",
                             {"lan", "storage", "bak"}, mappings);
  EXPECT_EQ(t.renames, (Names{{"VM Network", "lan"}, {"lan", "bak"}}));
  EXPECT_EQ(t.missing, std::vector<std::string>{"dmz"});
  // The way back is the reverse.
  auto back = translateNetworks({"lan", "storage", "bak"}, "eu", "dc",
                                {"VM Network", "lan", "storage"}, mappings);
  EXPECT_EQ(back.renames, (Names{{"lan", "VM Network"}, {"bak", "lan"}}));
  EXPECT_TRUE(back.missing.empty());
  // A mapping onto a network the target no longer has is missing, not renamed.
  auto gone = translateNetworks({"VM Network"}, "dc", "eu", {"storage"}, mappings);
  EXPECT_TRUE(gone.renames.empty());
  EXPECT_EQ(gone.missing, std::vector<std::string>{"VM Network"});
}

TEST_F(NetworkMoveTest, AMoveSendsTheRenamesAndAMoveBackTheReverse) {
  service_->refreshOnce();  // leads
  auto dc =
      service_->patchSite("dc", {{"networks", json::array({"lan", "VM Network", "storage"})}});
  ASSERT_TRUE(dc) << dc.error().describe();
  auto eu = service_->patchSite("cloud-eu", {{"networks", json::array({"lan", "storage"})}});
  ASSERT_TRUE(eu) << eu.error().describe();
  agents_["dc"]->addVm("legacy", "running", 1, 256, euOnly(), {"VM Network", "storage"});
  service_->refreshOnce();
  // Unmapped, cloud-eu has no "VM Network": refused, nothing asked of the agent.
  auto refused = service_->migrate({"legacy", "cloud-eu", MoveReason::Operator, ""},
                                   {"alice", Role::Operator});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("no network 'VM Network' here"), std::string::npos)
      << refused.error().message;
  EXPECT_TRUE(agents_["dc"]->calls.empty());

  ASSERT_TRUE(service_->putNetworkMapping({"office", {{"dc", "VM Network"}, {"cloud-eu", "lan"}}}));
  auto m = service_->migrate({"legacy", "cloud-eu", MoveReason::Operator, ""},
                             {"alice", Role::Operator});
  ASSERT_TRUE(m) << m.error().describe();
  ASSERT_EQ(agents_["dc"]->calls,
            std::vector<std::string>{"migrate legacy cloud-eu epoch 1 networks VM Network=lan"});
  EXPECT_EQ(m->networks, (Names{{"VM Network", "lan"}}));
  EXPECT_EQ(store_->migration(m->id)->networks, (Names{{"VM Network", "lan"}}));

  agents_["dc"]->endMigration(m->agent_migration_id, MigrationPhase::Done, 80.0);
  ASSERT_TRUE(eventually([&] {
    auto r = store_->migration(m->id);
    return r && r->state == MigrationState::Done;
  }));
  // At its end the VM is at cloud-eu on cloud-eu's names, before any agent is asked again.
  auto vm = store_->vm("legacy");
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->site, "cloud-eu");
  EXPECT_EQ(vm->networks, (std::vector<std::string>{"lan", "storage"}));
  // ... and as the target's agent lists it (its spec, renamed there).
  agents_["dc"]->removeVm("legacy");
  agents_["cloud-eu"]->addVm("legacy", "running", 1, 256, euOnly(), {"lan", "storage"});
  service_->refreshOnce();
  vm = store_->vm("legacy");
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->networks, (std::vector<std::string>{"lan", "storage"}));

  // The move back: cloud-eu's "lan" is dc's "VM Network" by the same mapping.
  auto back =
      service_->migrate({"legacy", "dc", MoveReason::Operator, ""}, {"alice", Role::Operator});
  ASSERT_TRUE(back) << back.error().describe();
  ASSERT_EQ(agents_["cloud-eu"]->calls,
            std::vector<std::string>{"migrate legacy dc epoch 1 networks lan=VM Network"});
  agents_["cloud-eu"]->endMigration(back->agent_migration_id, MigrationPhase::Done, 80.0);
  ASSERT_TRUE(eventually([&] {
    auto r = store_->migration(back->id);
    return r && r->state == MigrationState::Done;
  }));
  vm = store_->vm("legacy");
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->site, "dc");
  EXPECT_EQ(vm->networks, (std::vector<std::string>{"VM Network", "storage"}));
}

// A move that renames nothing asks the agent as before (no "networks"), and a failed move
// leaves the VM's networks as they were.
TEST_F(NetworkMoveTest, NothingToRenameSendsNoMapAndAFailedMoveRenamesNothing) {
  service_->refreshOnce();  // leads
  auto dc = service_->patchSite("dc", {{"networks", json::array({"lan", "VM Network"})}});
  ASSERT_TRUE(dc) << dc.error().describe();
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  agents_["dc"]->addVm("legacy", "running", 1, 256, euOnly(), {"VM Network"});
  service_->refreshOnce();
  auto plain =
      service_->migrate({"web1", "cloud-eu", MoveReason::Operator, ""}, {"alice", Role::Operator});
  ASSERT_TRUE(plain) << plain.error().describe();
  EXPECT_TRUE(plain->networks.empty());
  ASSERT_TRUE(service_->putNetworkMapping({"office", {{"dc", "VM Network"}, {"cloud-eu", "lan"}}}));
  auto m = service_->migrate({"legacy", "cloud-eu", MoveReason::Operator, ""},
                             {"alice", Role::Operator});
  ASSERT_TRUE(m) << m.error().describe();
  EXPECT_EQ(agents_["dc"]->calls,
            (std::vector<std::string>{"migrate web1 cloud-eu epoch 1",
                                      "migrate legacy cloud-eu epoch 1 networks VM Network=lan"}));
  agents_["dc"]->endMigration(m->agent_migration_id, MigrationPhase::RolledBack, std::nullopt,
                              "refused by cloud-eu");
  ASSERT_TRUE(eventually([&] {
    auto r = store_->migration(m->id);
    return r && r->state == MigrationState::Failed;
  }));
  auto vm = store_->vm("legacy");
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->site, "dc");
  EXPECT_EQ(vm->networks, std::vector<std::string>{"VM Network"});
}

}  // namespace
}  // namespace vandra::controller::testing
