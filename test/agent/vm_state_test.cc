// Every (state, event) pair of the VM lifecycle, against a second, independent statement of
// the table; and every (persisted state, observation) pair of the restart recovery table.
#include "vandra/agent/vm_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <string>

#include "vandra/agent/recovery.h"

namespace vandra::agent {
namespace {

// Rows: from-state; columns: start stop kill delete qemu-up qemu-exited start-failed.
// "-" means illegal.
const std::map<VmState, std::array<const char*, 7>> kExpected = {
    {VmState::Created, {"starting", "-", "-", "deleting", "-", "created", "-"}},
    {VmState::Starting, {"-", "-", "stopped", "-", "running", "failed", "failed"}},
    {VmState::Running, {"-", "stopping", "stopped", "-", "running", "failed", "-"}},
    {VmState::Stopping, {"-", "-", "stopped", "-", "stopping", "stopped", "-"}},
    {VmState::Stopped, {"starting", "-", "-", "deleting", "-", "stopped", "-"}},
    {VmState::Failed, {"starting", "-", "-", "deleting", "-", "failed", "-"}},
    {VmState::Deleting, {"-", "-", "-", "-", "-", "-", "-"}},
    {VmState::Incoming, {"-", "-", "stopped", "-", "running", "failed", "failed"}},
};

TEST(VmStateTest, EveryPairFollowsTheTable) {
  int checked = 0;
  for (const auto from : kAllVmStates) {
    const auto& row = kExpected.at(from);
    for (size_t i = 0; i < std::size(kAllVmEvents); ++i) {
      const VmEvent ev = kAllVmEvents[i];
      SCOPED_TRACE(std::string(toString(from)) + " + " + std::string(toString(ev)));
      auto r = transition(from, ev);
      if (std::string(row[i]) == "-") {
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, ErrorCode::IllegalTransition);
        EXPECT_NE(r.error().message.find(std::string(toString(from))), std::string::npos);
      } else {
        ASSERT_TRUE(r) << r.error().describe();
        EXPECT_EQ(toString(*r), row[i]);
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 56);
  EXPECT_FALSE(transition(VmState::Invalid, VmEvent::Start));
}

TEST(VmStateTest, SecondStartOfARunningVmIsIllegal) {
  auto r = transition(VmState::Running, VmEvent::Start);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::IllegalTransition);
  EXPECT_EQ(r.error().message, "Cannot start a VM that is running");
}

TEST(VmStateTest, NamesRoundTrip) {
  for (const auto s : kAllVmStates) {
    EXPECT_EQ(vmStateFromString(toString(s)), s);
  }
  EXPECT_FALSE(vmStateFromString("bogus"));
}

TEST(RecoveryTest, EveryPersistedStateAndObservation) {
  const std::map<VmState, std::pair<RecoveryAction, RecoveryAction>> expected = {
      // {dead, alive}
      {VmState::Created, {RecoveryAction::Nothing, RecoveryAction::Nothing}},
      {VmState::Starting, {RecoveryAction::MarkFailed, RecoveryAction::Reattach}},
      {VmState::Running, {RecoveryAction::MarkFailed, RecoveryAction::Reattach}},
      {VmState::Stopping, {RecoveryAction::MarkStopped, RecoveryAction::ResumeStop}},
      {VmState::Stopped, {RecoveryAction::Nothing, RecoveryAction::Nothing}},
      {VmState::Failed, {RecoveryAction::Nothing, RecoveryAction::Nothing}},
      {VmState::Deleting, {RecoveryAction::FinishDelete, RecoveryAction::KillThenDelete}},
      {VmState::Incoming, {RecoveryAction::MarkFailed, RecoveryAction::Reattach}},
  };
  for (const auto s : kAllVmStates) {
    SCOPED_TRACE(std::string(toString(s)));
    EXPECT_EQ(recoveryFor(s, {.alive = false}), expected.at(s).first);
    EXPECT_EQ(recoveryFor(s, {.alive = true}), expected.at(s).second);
  }
}

TEST(RecoveryTest, ObservesOnlyTheSameProcess) {
  const int64_t self = ::getpid();
  const uint64_t start = processStartTime(self);
  ASSERT_NE(start, 0U);
  EXPECT_TRUE(observeProcess(self, start).alive);
  EXPECT_FALSE(observeProcess(self, start + 1).alive) << "a reused pid is not our process";
  EXPECT_FALSE(observeProcess(0, start).alive);
  EXPECT_FALSE(observeProcess(1 << 30, start).alive);
}

}  // namespace
}  // namespace vandra::agent
