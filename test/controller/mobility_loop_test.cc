// The mobility loop against fake agents: a site over its high water mark sheds automatic VMs to
// the cheapest site their SLA allows (an EU-only VM never to the cheaper US site), a bounded
// number per link; paused, nothing moves; VMs come home; a drain moves what may leave and
// names what cannot; an automatic VM whose site breaks its SLA moves to comply. Every move by
// vandra is in the audit log with its reason.
#include <gtest/gtest.h>

#include "test/controller/controller_fixture.h"

namespace vandra::controller::testing {
namespace {

class MobilityLoopTest : public ControllerFixture {
 protected:
  // dc at 3 x 3000 of 16384 MiB = 55 % memory, over a high mark of 50 %.
  void crowdDc() {
    for (const char* n : {"eu1", "eu2", "eu3"}) {
      agents_["dc"]->addVm(n, "running", 1, 3000, euOnly(), {"lan"});
    }
    service_->refreshOnce();  // adopted now: the minimum stay starts
    ASSERT_TRUE(service_->patchSite("dc", {{"water_marks", {{"high", 0.5}, {"low", 0.2}}}}));
    now_ += 3600 * 1000;  // an hour later
  }
  std::vector<Migration> started() {
    auto m = store_->migrations("", 100);
    EXPECT_TRUE(m);
    return m ? *m : std::vector<Migration>{};
  }
};

TEST_F(MobilityLoopTest, AnOverfullSiteShedsAutomaticVmsToTheCheapestSiteTheirSlaAllows) {
  crowdDc();
  auto plan = service_->mobilityPlan();
  ASSERT_TRUE(plan) << plan.error().describe();
  ASSERT_EQ(plan->moves.size(), 1u);         // one 3000 MiB VM gets dc to 37 %
  EXPECT_EQ(plan->moves[0].to, "cloud-eu");  // cloud-us is cheaper, but US
  service_->mobilityRound();
  auto ms = started();
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].to_site, "cloud-eu");
  EXPECT_EQ(ms[0].reason, MoveReason::Wander);
  EXPECT_NE(ms[0].why.find("dc above its high water mark"), std::string::npos) << ms[0].why;
  EXPECT_EQ(ms[0].requested_by, "vandra");
  auto audit = store_->audit({0, "vandra", "", 10});
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].role, "system");
  EXPECT_EQ((*audit)[0].result, "ok");
  EXPECT_NE((*audit)[0].reason.find("wander: dc above its high water mark"), std::string::npos);
  // The next round does not move another: the one in flight counts as gone.
  service_->mobilityRound();
  EXPECT_EQ(started().size(), 1u);
}

TEST_F(MobilityLoopTest, PausedNothingMovesByItself) {
  crowdDc();
  ASSERT_TRUE(service_->setMobilityPaused(true, {"alice", Role::Operator}));
  EXPECT_TRUE(*service_->mobilityPaused());
  service_->mobilityRound();
  EXPECT_TRUE(started().empty());
  ASSERT_TRUE(service_->setMobilityPaused(false, {"alice", Role::Operator}));
  service_->mobilityRound();
  EXPECT_EQ(started().size(), 1u);
}

TEST_F(MobilityLoopTest, AVmAwayFromHomeComesBackWhenHomeIsQuiet) {
  agents_["cloud-eu"]->addVm("web1", "running", 1, 512, euOnly(), {"lan"});
  service_->refreshOnce();
  auto vm = *store_->vm("web1");
  vm.home_site = "dc";  // first placed at dc, wandered to cloud-eu
  ASSERT_TRUE(store_->putVm(vm));
  now_ += 3600 * 1000;
  service_->mobilityRound();
  auto ms = started();
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].to_site, "dc");
  EXPECT_EQ(ms[0].reason, MoveReason::ComeHome);
}

TEST_F(MobilityLoopTest, ADrainMovesWhatMayLeaveAndNamesWhatCannot) {
  agents_["cloud-eu"]->addVm("a", "running", 1, 512, euOnly(), {"lan"});
  agents_["cloud-eu"]->addVm("b", "running", 1, 512, euOnly(ovf::Mobility::OnRequest), {"lan"});
  agents_["cloud-eu"]->addVm("p", "running", 1, 512, euOnly(ovf::Mobility::Pinned), {"lan"});
  service_->refreshOnce();
  auto plan = service_->drain("cloud-eu", {"alice", Role::Operator});
  ASSERT_TRUE(plan) << plan.error().describe();
  ASSERT_EQ(plan->held.size(), 1u);
  EXPECT_EQ(plan->held[0].vm, "p");
  EXPECT_NE(plan->held[0].why.find("pinned"), std::string::npos) << plan->held[0].why;
  auto ms = started();
  ASSERT_EQ(ms.size(), 2u);  // a and b, to dc (EU, the only other EU site), 2 on the link
  for (const auto& m : ms) {
    EXPECT_EQ(m.to_site, "dc");
    EXPECT_EQ(m.reason, MoveReason::Drain);
  }
}

TEST_F(MobilityLoopTest, AnAutomaticVmWhoseSiteBreaksItsSlaMovesToComply) {
  agents_["dc"]->addVm("eu1", "running", 1, 512, euOnly(), {"lan"});
  agents_["dc"]->addVm("manual", "running", 1, 512, euOnly(ovf::Mobility::OnRequest), {"lan"});
  service_->refreshOnce();
  ASSERT_TRUE(service_->patchSite("dc", {{"jurisdictions", {"US"}}}));
  service_->refreshOnce();  // checkSla, then the round
  auto ms = started();
  ASSERT_EQ(ms.size(), 1u);  // the on-request VM is reported, not moved
  EXPECT_EQ(ms[0].vm, "eu1");
  EXPECT_EQ(ms[0].to_site, "cloud-eu");
  EXPECT_EQ(ms[0].reason, MoveReason::Sla);
  EXPECT_NE(ms[0].why.find("jurisdiction"), std::string::npos) << ms[0].why;
}

}  // namespace
}  // namespace vandra::controller::testing
