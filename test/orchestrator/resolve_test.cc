// The operator's resolve (resolve.h): which records it may end, for every role and phase, and
// what a waiting source says it waits for and since when.
#include "vandra/orchestrator/resolve.h"

#include <gtest/gtest.h>

namespace vandra::orchestrator {
namespace {

using nlohmann::json;

MigrationRecord record(MigrationRole role, MigrationPhase phase) {
  MigrationRecord r = newMigrationRecord("m-1", "web1", role, "cloud", 1000);
  r.phase = phase;
  return r;
}

TEST(Resolve, OnlyASourceWaitingForItsPeerInSwitchoverOrConfirm) {
  int allowed = 0;
  for (MigrationRole role : {MigrationRole::Source, MigrationRole::Target}) {
    for (MigrationPhase phase : kAllPhases) {
      for (ResolveAction action : {ResolveAction::ResumeSource, ResolveAction::AbandonSource}) {
        for (bool waiting : {false, true}) {
          const bool want =
              role == MigrationRole::Source && waiting &&
              (phase == MigrationPhase::Switchover ||
               (phase == MigrationPhase::Confirm && action == ResolveAction::AbandonSource));
          auto r = checkResolvable(record(role, phase), action, waiting);
          EXPECT_EQ(r.has_value(), want) << toString(role) << " " << toString(phase) << " "
                                         << toString(action) << " " << waiting;
          if (!r) {
            EXPECT_EQ(r.error().code, ErrorCode::IllegalTransition);
            EXPECT_NE(r.error().message.find("m-1"), std::string::npos) << r.error().message;
          }
          allowed += r ? 1 : 0;
        }
      }
    }
  }
  EXPECT_EQ(allowed, 3);
  // Every allowed action is a legal transition of the phase table.
  EXPECT_EQ(transition(MigrationPhase::Switchover, MigrationEvent::OperatorResume).value(),
            MigrationPhase::RollingBack);
  EXPECT_EQ(transition(MigrationPhase::Switchover, MigrationEvent::OperatorAbandon).value(),
            MigrationPhase::Done);
  EXPECT_EQ(transition(MigrationPhase::Confirm, MigrationEvent::OperatorAbandon).value(),
            MigrationPhase::Done);
}

TEST(Resolve, ActionNamesRoundTrip) {
  for (ResolveAction a : {ResolveAction::ResumeSource, ResolveAction::AbandonSource}) {
    EXPECT_EQ(resolveActionFromString(toString(a)), a);
  }
  EXPECT_FALSE(resolveActionFromString("resume"));
  EXPECT_FALSE(resolveActionFromString(""));
}

TEST(Resolve, AWaitingSourceSaysWhatItWaitsForSinceItsPhaseBegan) {
  MigrationRecord r = record(MigrationRole::Source, MigrationPhase::Switchover);
  r.timeline.push_back({{"phase", "switchover"}, {"at_us", 5'000'000}});
  r.report["settle"] =
      json::array({{{"peer", "unreachable"}, {"said", "no answer: Connection refused"}}});
  noteWaiting(r, "", 9'000'000);
  json out = json::object();
  addWaitingFields(out, r);
  EXPECT_EQ(out.value("waiting_for", ""), "peer cloud unreachable: no answer: Connection refused");
  EXPECT_EQ(out.value("waiting_since_us", int64_t{0}), 5'000'000);  // the pause, not the note
  EXPECT_EQ(out.value("waiting_since", ""), "1970-01-01T00:00:05.000Z");
  // A later note keeps the since and counts the tries; the fallback (a failed dial) wins.
  noteWaiting(r, "peer cloud unreachable: cannot reach it", 12'000'000);
  EXPECT_EQ(r.report["waiting"].value("since_us", int64_t{0}), 5'000'000);
  EXPECT_EQ(r.report["waiting"].value("tries", 0), 2);
  EXPECT_EQ(r.report["waiting"].value("for", ""), "peer cloud unreachable: cannot reach it");
  // The peer answered but cannot say yet.
  r.report["settle"].push_back({{"peer", "unsettled"}, {"said", "its record is in switchover"}});
  noteWaiting(r, "", 13'000'000);
  EXPECT_EQ(r.report["waiting"].value("for", ""),
            "cloud to settle the switchover (its record is in switchover)");
  // Ended: no waiting fields any more (the report keeps its history).
  r.phase = MigrationPhase::RolledBack;
  json ended = json::object();
  addWaitingFields(ended, r);
  EXPECT_FALSE(ended.contains("waiting_for"));
}

}  // namespace
}  // namespace vandra::orchestrator
