// The controller's logic against fake agents on a real SQLite store: leadership and the epoch
// every agent gets, VMs adopted from what agents report, preflight reasons (SLA clause,
// capacity, network mapping, mobility), migrations followed to their end with the downtime
// verdict, SLA re-checked when facts change, a standby that refuses changes and takes over.
#include "vandra/controller/service.h"

#include <gtest/gtest.h>

#include "test/controller/controller_fixture.h"

namespace vandra::controller::testing {
namespace {

bool hasClause(const std::vector<Refusal>& rs, const std::string& part) {
  for (const auto& r : rs) {
    if (r.clause.find(part) != std::string::npos) {
      return true;
    }
  }
  return false;
}

using ServiceTest = ControllerFixture;

TEST_F(ServiceTest, LeadsAndSendsItsEpochToEveryAgent) {
  service_->refreshOnce();
  const auto l = service_->leader();
  EXPECT_TRUE(l.leader);
  EXPECT_EQ(l.epoch, 1);
  EXPECT_EQ(l.holder, "c1");
  for (auto& [site, a] : agents_) {
    EXPECT_EQ(a->epoch, 1) << site;
    EXPECT_EQ(a->announced, 1) << site;
  }
}

TEST_F(ServiceTest, AdoptsTheVmsTheAgentsReport) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  auto vm = store_->vm("web1");
  ASSERT_TRUE(vm) << vm.error().describe();
  EXPECT_EQ(vm->site, "dc");
  EXPECT_EQ(vm->host, "dc-h1");
  EXPECT_EQ(vm->home_site, "dc");
  EXPECT_EQ(vm->state, VmState::Running);
  EXPECT_EQ(vm->memory_mib, 256u);
  EXPECT_EQ(vm->sla.jurisdictions, std::vector<std::string>{"EU"});
  EXPECT_EQ(vm->networks, std::vector<std::string>{"lan"});
  auto hosts = store_->hosts();
  ASSERT_TRUE(hosts);
  ASSERT_EQ(hosts->size(), 3u);
  for (const auto& h : *hosts) {
    EXPECT_TRUE(h.reachable) << h.name;
  }
}

TEST_F(ServiceTest, PreflightNamesTheClauseTheResourceAndTheNetwork) {
  agents_["dc"]->addVm("web1", "running", 1, 2048, euOnly(), {"lan"});
  agents_["cloud-eu"]->capacity.used_memory_mib = 15000;  // 1384 MiB free
  service_->refreshOnce();

  auto us = service_->preflight("web1", "cloud-us", MoveReason::Operator);
  ASSERT_TRUE(us) << us.error().describe();
  EXPECT_TRUE(hasClause(*us, "jurisdiction")) << us->front().clause;
  EXPECT_EQ(us->front().code, ErrorCode::SlaViolated);

  auto eu = service_->preflight("web1", "cloud-eu", MoveReason::Operator);
  ASSERT_TRUE(eu);
  ASSERT_EQ(eu->size(), 1u);
  EXPECT_EQ(eu->front().code, ErrorCode::CapacityExceeded);
  EXPECT_EQ(eu->front().clause, "cloud-eu-h1: memory 1384 MiB free, 2048 needed");

  agents_["cloud-eu"]->capacity.used_memory_mib = 0;
  ASSERT_TRUE(
      service_->patchSite("cloud-eu", {{"networks", {"prod"}}, {"default_network", "prod"}}));
  service_->refreshOnce();
  eu = service_->preflight("web1", "cloud-eu", MoveReason::Operator);
  ASSERT_TRUE(eu);
  ASSERT_EQ(eu->size(), 1u);
  EXPECT_EQ(eu->front().clause.rfind("no network 'lan' here", 0), 0u) << eu->front().clause;

  // Mapped: lan at dc is prod at cloud-eu.
  ASSERT_TRUE(service_->putNetworkMapping({"office", {{"dc", "lan"}, {"cloud-eu", "prod"}}}));
  eu = service_->preflight("web1", "cloud-eu", MoveReason::Operator);
  ASSERT_TRUE(eu);
  EXPECT_TRUE(eu->empty()) << eu->front().clause;
  // A mapping naming a network the site does not have is refused.
  EXPECT_EQ(service_->putNetworkMapping({"x", {{"dc", "nope"}}}).error().code,
            ErrorCode::InvalidArgument);
}

TEST_F(ServiceTest, MobilityDecidesWhoMayMoveIt) {
  agents_["dc"]->addVm("pinned", "running", 1, 128, euOnly(ovf::Mobility::Pinned), {"lan"});
  agents_["dc"]->addVm("manual", "running", 1, 128, euOnly(ovf::Mobility::OnRequest), {"lan"});
  service_->refreshOnce();
  auto p = service_->preflight("pinned", "cloud-eu", MoveReason::Operator);
  ASSERT_TRUE(p);
  EXPECT_TRUE(hasClause(*p, "mobility pinned"));
  auto byOperator = service_->preflight("manual", "cloud-eu", MoveReason::Operator);
  ASSERT_TRUE(byOperator);
  EXPECT_TRUE(byOperator->empty());
  auto byVandra = service_->preflight("manual", "cloud-eu", MoveReason::Wander);
  ASSERT_TRUE(byVandra);
  EXPECT_TRUE(hasClause(*byVandra, "mobility on-request"));
}

TEST_F(ServiceTest, MigrationIsFollowedToItsEndAndJudgedAgainstTheBudget) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  auto m = service_->migrate({"web1", "cloud-eu", MoveReason::Operator, "maintenance"},
                             {"alice", Role::Operator});
  ASSERT_TRUE(m) << m.error().describe();
  EXPECT_EQ(m->state, MigrationState::Running);
  EXPECT_EQ(m->epoch, 1);
  EXPECT_EQ(m->requested_by, "alice");
  ASSERT_EQ(agents_["dc"]->calls, std::vector<std::string>{"migrate web1 cloud-eu epoch 1"});
  EXPECT_EQ(store_->vm("web1")->state, VmState::Migrating);

  // A second move of a moving VM is refused.
  auto again =
      service_->migrate({"web1", "cloud-us", MoveReason::Operator, ""}, {"bob", Role::Operator});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::Busy);

  agents_["dc"]->endMigration(m->agent_migration_id, MigrationPhase::Done, 120.0);
  ASSERT_TRUE(eventually([&] {
    auto r = store_->migration(m->id);
    return r && r->state == MigrationState::Done;
  }));
  auto done = store_->migration(m->id);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->downtime_ms, 120.0);
  EXPECT_EQ(done->budget_ms, 500u);
  EXPECT_EQ(done->within_budget, true);
  EXPECT_EQ(done->report_json.find("fake") != std::string::npos, true);
  auto vm = store_->vm("web1");
  EXPECT_EQ(vm->site, "cloud-eu");
  EXPECT_EQ(vm->home_site, "dc");
  EXPECT_EQ(vm->last_moved_at_ms, now_.load());
  EXPECT_NE(service_->metrics().text().find(
                "vandra_migrations_total{reason=\"operator\",result=\"done\"} 1"),
            std::string::npos)
      << service_->metrics().text();
}

TEST_F(ServiceTest, AMoveMadeAtTheAgentsIsRecordedOnceWithTheSourceAgentsRecord) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  // An operator moved it straight through the agents (or while no controller ran).
  agents_["dc"]->removeVm("web1");
  agents_["cloud-eu"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  AgentMigration am;
  am.id = "m-at-the-agent";
  am.vm = "web1";
  am.role = "source";
  am.peer = "cloud-eu";
  am.phase = MigrationPhase::Done;
  am.ended = true;
  am.interruption_ms = 80.0;
  am.report_json = "{}";
  agents_["dc"]->migrations[am.id] = am;
  service_->refreshOnce();
  auto vm = store_->vm("web1");
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->site, "cloud-eu");
  EXPECT_EQ(vm->state, VmState::Running);
  auto ms = store_->migrations("web1", 10);
  ASSERT_TRUE(ms);
  ASSERT_EQ(ms->size(), 1u);
  const Migration& m = ms->front();
  EXPECT_EQ(m.from_site, "dc");
  EXPECT_EQ(m.to_site, "cloud-eu");
  EXPECT_EQ(m.state, MigrationState::Done);
  EXPECT_EQ(m.agent_migration_id, "m-at-the-agent");
  EXPECT_EQ(m.downtime_ms, 80.0);
  EXPECT_EQ(m.within_budget, true);
  service_->refreshOnce();
  EXPECT_EQ(store_->migrations("web1", 10)->size(), 1u);
}

TEST_F(ServiceTest, AnInterruptionOverTheBudgetIsAnSlaEvent) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  auto m =
      service_->migrate({"web1", "cloud-eu", MoveReason::Operator, ""}, {"alice", Role::Operator});
  ASSERT_TRUE(m);
  agents_["dc"]->endMigration(m->agent_migration_id, MigrationPhase::Done, 750.0);
  ASSERT_TRUE(eventually([&] { return store_->migration(m->id)->state == MigrationState::Done; }));
  EXPECT_EQ(store_->migration(m->id)->within_budget, false);
  auto events = store_->events(0, 100);
  ASSERT_TRUE(events);
  bool found = false;
  for (const auto& e : *events) {
    found = found || (e.kind == "sla" && e.subject == "web1" &&
                      e.message.find("over the budget of 500 ms") != std::string::npos);
  }
  EXPECT_TRUE(found);
}

TEST_F(ServiceTest, AFailedMoveLeavesTheVmWhereItWas) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  auto m =
      service_->migrate({"web1", "cloud-eu", MoveReason::Operator, ""}, {"alice", Role::Operator});
  ASSERT_TRUE(m);
  agents_["dc"]->endMigration(m->agent_migration_id, MigrationPhase::RolledBack, std::nullopt,
                              "target disk full");
  ASSERT_TRUE(
      eventually([&] { return store_->migration(m->id)->state == MigrationState::Failed; }));
  EXPECT_EQ(store_->migration(m->id)->error, "target disk full");
  EXPECT_EQ(store_->vm("web1")->site, "dc");
  EXPECT_EQ(store_->vm("web1")->state, VmState::Running);
}

TEST_F(ServiceTest, SlaIsRecheckedWhenASiteChangesItsJurisdiction) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  auto before = service_->slaStatus();
  ASSERT_TRUE(before);
  ASSERT_EQ(before->size(), 1u);
  EXPECT_TRUE(before->front().ok);

  ASSERT_TRUE(service_->patchSite("dc", {{"jurisdictions", {"US"}}}));
  service_->refreshOnce();
  service_->refreshOnce();  // reported once, not on every round
  auto after = service_->slaStatus();
  ASSERT_TRUE(after);
  EXPECT_FALSE(after->front().ok);
  ASSERT_EQ(after->front().violations.size(), 1u);
  EXPECT_NE(after->front().violations[0].find("jurisdiction"), std::string::npos);
  size_t sla_events = 0;
  const auto events = store_->events(0, 100);
  ASSERT_TRUE(events);
  for (const auto& e : *events) {
    sla_events += e.kind == "sla" ? 1u : 0u;
  }
  EXPECT_EQ(sla_events, 1u);
  // A VM may not start where its SLA is broken.
  auto start = service_->startVm("web1");
  ASSERT_FALSE(start);
  EXPECT_EQ(start.error().code, ErrorCode::SlaViolated);
}

TEST_F(ServiceTest, AStandbyRefusesChangesAndTakesOverWhenTheLeaderStops) {
  service_->refreshOnce();
  auto other_store = Store::open(url_);
  ASSERT_TRUE(other_store);
  auto standby = makeService(**other_store, "c2");
  standby->refreshOnce();
  EXPECT_FALSE(standby->leader().leader);
  EXPECT_EQ(standby->leader().holder, "c1");
  auto refused = standby->patchSite("dc", {{"jurisdictions", {"EU"}}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::Busy);
  EXPECT_NE(refused.error().message.find("leader is 'c1'"), std::string::npos);

  service_->stop();  // a clean stop releases the lease at once
  standby->refreshOnce();
  EXPECT_TRUE(standby->leader().leader);
  EXPECT_EQ(standby->leader().epoch, 2);
  for (auto& [site, a] : agents_) {
    EXPECT_EQ(a->epoch, 2) << site;
    EXPECT_EQ(a->announced, 2) << site;
  }
  standby.reset();
}

TEST_F(ServiceTest, ANewLeaderAdoptsTheMigrationsInFlight) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  auto m =
      service_->migrate({"web1", "cloud-eu", MoveReason::Operator, ""}, {"alice", Role::Operator});
  ASSERT_TRUE(m);
  service_.reset();  // the leader goes away; the agent goes on

  auto other_store = Store::open(url_);
  ASSERT_TRUE(other_store);
  auto next = makeService(**other_store, "c2");
  next->refreshOnce();
  ASSERT_TRUE(next->leader().leader);
  agents_["dc"]->endMigration(m->agent_migration_id, MigrationPhase::Done, 90.0);
  ASSERT_TRUE(
      eventually([&] { return (*other_store)->migration(m->id)->state == MigrationState::Done; }));
  EXPECT_EQ((*other_store)->vm("web1")->site, "cloud-eu");
  next.reset();
}

TEST_F(ServiceTest, DuringAMoveTheCopyThatRunsIsWhereTheVmIs) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  agents_["cloud-eu"]->addVm("web1", "incoming", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  EXPECT_EQ(store_->vm("web1")->site, "dc");
  agents_["dc"]->removeVm("web1");
  agents_["cloud-eu"]->removeVm("web1");
  agents_["cloud-eu"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  EXPECT_EQ(store_->vm("web1")->site, "cloud-eu");
  EXPECT_EQ(store_->vm("web1")->home_site, "dc");
}

TEST_F(ServiceTest, AVmNoAgentListsIsMissingUnlessItsAgentCannotBeAsked) {
  agents_["dc"]->addVm("web1", "running", 1, 256, euOnly(), {"lan"});
  service_->refreshOnce();
  agents_["dc"]->down = true;
  service_->refreshOnce();
  EXPECT_EQ(store_->vm("web1")->state, VmState::Running);  // unknown, not gone
  bool unreachable = false;
  const auto hosts = store_->hosts();
  ASSERT_TRUE(hosts);
  for (const auto& h : *hosts) {
    unreachable = unreachable || (h.name == "dc-h1" && !h.reachable && !h.last_error.empty());
  }
  EXPECT_TRUE(unreachable);
  agents_["dc"]->down = false;
  agents_["dc"]->removeVm("web1");
  service_->refreshOnce();
  EXPECT_EQ(store_->vm("web1")->state, VmState::Missing);
}

}  // namespace
}  // namespace vandra::controller::testing
