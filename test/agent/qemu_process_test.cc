// Daemonized QEMU: it outlives the call that started it (not our child), is waited for and
// signalled through a pidfd, and a wrong start time (a reused pid) is never signalled.
#include "vandra/agent/qemu_process.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "test/support/require.h"
#include "vandra/agent/recovery.h"
#include "vandra/common/subprocess.h"

namespace vandra::agent {
namespace {

TEST(QemuProcessTest, DaemonizedQemuIsWaitedForAndKilledByPidfd) {
  if (!runCapture({"sh", "-c", "command -v qemu-system-x86_64"})) {
    VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 not installed (package qemu-system-x86)");
  }
  std::string dir = "/tmp/vqp-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  auto p = launchDaemonized({"qemu-system-x86_64", "-machine", "q35", "-accel", "tcg",
                             "-nodefaults", "-display", "none", "-m", "64", "-S"},
                            dir);
  ASSERT_TRUE(p) << p.error().describe();
  EXPECT_TRUE(observeProcess(p->pid, p->start_time).alive);
  // Still running: a short wait times out.
  auto early = waitForExit(*p, std::chrono::milliseconds(50));
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, ErrorCode::Timeout);
  // A wrong start time stands for a reused pid: nothing is signalled.
  ASSERT_TRUE(signalProcess({p->pid, p->start_time + 1}, SIGKILL));
  EXPECT_TRUE(observeProcess(p->pid, p->start_time).alive);
  ASSERT_TRUE(signalProcess(*p, SIGKILL));
  ASSERT_TRUE(waitForExit(*p, std::chrono::seconds(10)));
  EXPECT_FALSE(observeProcess(p->pid, p->start_time).alive);
  std::filesystem::remove_all(dir);
}

TEST(QemuProcessTest, BadCommandLineFailsWithQemusMessage) {
  if (!runCapture({"sh", "-c", "command -v qemu-system-x86_64"})) {
    VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 not installed (package qemu-system-x86)");
  }
  std::string dir = "/tmp/vqp-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  auto p = launchDaemonized({"qemu-system-x86_64", "-display", "none", "-no-such-option"}, dir);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ErrorCode::Subprocess);
  EXPECT_NE(p.error().message.find("no-such-option"), std::string::npos) << p.error().message;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vandra::agent
