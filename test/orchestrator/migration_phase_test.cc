// The migration phase table and the recovery table, checked for every combination against
// tables written out here independently of the implementation.
#include "vandra/orchestrator/migration_phase.h"

#include <gtest/gtest.h>

#include <map>
#include <utility>
#include <vector>

namespace vandra::orchestrator {
namespace {

using P = MigrationPhase;
using E = MigrationEvent;

// Every legal (phase, event) -> phase; everything else must be refused.
const std::map<std::pair<P, E>, P>& legal() {
  static const std::map<std::pair<P, E>, P> t = {
      {{P::Preflight, E::PreflightPassed}, P::PrepareTarget},
      {{P::Preflight, E::Failure}, P::RollingBack},
      {{P::Preflight, E::Cancel}, P::RollingBack},
      {{P::PrepareTarget, E::TargetPrepared}, P::MirrorDisks},
      {{P::PrepareTarget, E::Failure}, P::RollingBack},
      {{P::PrepareTarget, E::Cancel}, P::RollingBack},
      {{P::MirrorDisks, E::MirrorsReady}, P::PrecopyRam},
      {{P::MirrorDisks, E::Failure}, P::RollingBack},
      {{P::MirrorDisks, E::Cancel}, P::RollingBack},
      {{P::PrecopyRam, E::RamConverged}, P::Switchover},
      {{P::PrecopyRam, E::Failure}, P::RollingBack},
      {{P::PrecopyRam, E::Cancel}, P::RollingBack},
      {{P::Switchover, E::TargetStarted}, P::Confirm},
      {{P::Switchover, E::Failure}, P::RollingBack},
      {{P::Switchover, E::Cancel}, P::RollingBack},
      {{P::Switchover, E::Lost}, P::Failed},
      {{P::Confirm, E::Lost}, P::Failed},
      {{P::Switchover, E::OperatorResume}, P::RollingBack},
      {{P::Switchover, E::OperatorAbandon}, P::Done},
      {{P::Confirm, E::OperatorAbandon}, P::Done},
      {{P::Confirm, E::TargetConfirmed}, P::Done},
      {{P::Confirm, E::Failure}, P::Confirm},
      {{P::RollingBack, E::RollbackDone}, P::RolledBack},
      {{P::RollingBack, E::RollbackFailed}, P::Failed},
      {{P::RollingBack, E::Failure}, P::RollingBack},
      {{P::RollingBack, E::Cancel}, P::RollingBack},
  };
  return t;
}

TEST(MigrationPhase, EveryPhaseAndEventPair) {
  int checked = 0;
  for (P p : kAllPhases) {
    for (E e : kAllEvents) {
      auto r = transition(p, e);
      const auto it = legal().find({p, e});
      if (it != legal().end()) {
        ASSERT_TRUE(r) << toString(p) << " + " << toString(e) << ": " << r.error().describe();
        EXPECT_EQ(*r, it->second) << toString(p) << " + " << toString(e);
      } else {
        ASSERT_FALSE(r) << toString(p) << " + " << toString(e) << " should be refused";
        EXPECT_EQ(r.error().code, ErrorCode::IllegalTransition);
        EXPECT_NE(r.error().message.find(std::string(toString(e))), std::string::npos)
            << r.error().message;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 130);
  EXPECT_FALSE(transition(P::Invalid, E::PreflightPassed));
}

// The forward path: each working phase's completion leads to the next one, preflight to done.
TEST(MigrationPhase, CompletionsWalkTheForwardPathToDone) {
  std::vector<MigrationPhase> walked;
  MigrationPhase p = MigrationPhase::Preflight;
  while (auto e = completionOf(p)) {
    walked.push_back(p);
    auto next = transition(p, *e);
    ASSERT_TRUE(next) << toString(p);
    p = *next;
  }
  EXPECT_EQ(p, MigrationPhase::Done);
  EXPECT_EQ(walked,
            (std::vector<MigrationPhase>{MigrationPhase::Preflight, MigrationPhase::PrepareTarget,
                                         MigrationPhase::MirrorDisks, MigrationPhase::PrecopyRam,
                                         MigrationPhase::Switchover, MigrationPhase::Confirm}));
  for (MigrationPhase t : {MigrationPhase::Done, MigrationPhase::RollingBack,
                           MigrationPhase::RolledBack, MigrationPhase::Failed}) {
    EXPECT_FALSE(completionOf(t)) << toString(t);
  }
}

TEST(MigrationPhase, CancelAfterTheTargetRunsIsRefusedWithTheReason) {
  auto r = transition(P::Confirm, E::Cancel);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("already runs at the target"), std::string::npos);
}

TEST(MigrationPhase, NamesRoundTripAndTerminalPhases) {
  for (P p : kAllPhases) {
    EXPECT_EQ(migrationPhaseFromString(toString(p)), p);
    EXPECT_EQ(isTerminal(p), p == P::Done || p == P::RolledBack || p == P::Failed) << toString(p);
  }
  EXPECT_FALSE(migrationPhaseFromString("bogus"));
  EXPECT_TRUE(beforeSwitchoverCommitted(P::Switchover));
  EXPECT_FALSE(beforeSwitchoverCommitted(P::Confirm));
}

// Every phase x role x observation.
TEST(MigrationRecovery, EveryPhaseRoleAndObservation) {
  using R = RecoveryStep;
  using V = PeerView;
  const V views[] = {V::Unreachable, V::Unsettled, V::TargetOwns, V::GuestLost, V::NotStarted};
  int checked = 0;
  for (P p : kAllPhases) {
    for (bool alive : {false, true}) {
      for (V peer : views) {
        for (bool running : {false, true}) {
          const Observation seen{alive, peer, running};
          // Source: before switchover always roll back; at switchover it depends on the target.
          R want_source = R::Nothing;
          switch (p) {
            case P::Preflight:
            case P::PrepareTarget:
            case P::MirrorDisks:
            case P::PrecopyRam:
              want_source = R::RollBack;
              break;
            case P::Switchover:
              want_source = peer == V::Unreachable || peer == V::Unsettled ? R::WaitForPeer
                            : peer == V::TargetOwns                        ? R::FinishConfirm
                            : peer == V::NotStarted && alive               ? R::RollBack
                                                                           : R::MarkFailed;
              break;
            case P::Confirm:
              want_source =
                  peer == V::GuestLost || peer == V::NotStarted ? R::MarkFailed : R::FinishConfirm;
              break;
            case P::RollingBack:
              want_source = R::ResumeRollback;
              break;
            case P::Invalid:
            case P::Done:
            case P::RolledBack:
            case P::Failed:
              want_source = R::Nothing;
              break;
          }
          EXPECT_EQ(recoveryFor(MigrationRole::Source, p, seen), want_source)
              << toString(p) << " alive=" << alive << " peer=" << toString(peer);
          R want_target = R::Nothing;
          if (!isTerminal(p)) {
            want_target = p == P::Confirm && alive                 ? R::KeepTarget
                          : p == P::Switchover && alive && running ? R::AdoptTarget
                                                                   : R::CleanUpTarget;
          }
          EXPECT_EQ(recoveryFor(MigrationRole::Target, p, seen), want_target)
              << toString(p) << " alive=" << alive << " running=" << running;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 200);
}

// The source is never resumed while the target might run the guest.
TEST(MigrationRecovery, NeverTwoCopies) {
  for (bool alive : {false, true}) {
    for (PeerView v :
         {PeerView::Unreachable, PeerView::Unsettled, PeerView::TargetOwns, PeerView::GuestLost}) {
      EXPECT_NE(recoveryFor(MigrationRole::Source, P::Switchover, {alive, v}),
                RecoveryStep::RollBack)
          << toString(v);
      EXPECT_NE(recoveryFor(MigrationRole::Source, P::Confirm, {alive, v}), RecoveryStep::RollBack)
          << toString(v);
    }
  }
}

// What a target's `status` means for the source.
TEST(MigrationRecovery, PeerViewOfTheTargetsStatus) {
  EXPECT_EQ(peerViewOf(false, "", false), PeerView::NotStarted);
  EXPECT_EQ(peerViewOf(true, "done", false), PeerView::TargetOwns);
  EXPECT_EQ(peerViewOf(true, "confirm", true), PeerView::TargetOwns);
  EXPECT_EQ(peerViewOf(true, "confirm", false), PeerView::GuestLost);
  EXPECT_EQ(peerViewOf(true, "switchover", true), PeerView::Unsettled);
  EXPECT_EQ(peerViewOf(true, "rolling_back", false), PeerView::Unsettled);
  EXPECT_EQ(peerViewOf(true, "some_later_phase", true), PeerView::Unsettled);
  for (const char* p :
       {"preflight", "prepare_target", "mirror_disks", "precopy_ram", "rolled_back", "failed"}) {
    EXPECT_EQ(peerViewOf(true, p, false), PeerView::NotStarted) << p;
  }
}

}  // namespace
}  // namespace vandra::orchestrator
