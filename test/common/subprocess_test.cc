#include "vandra/common/subprocess.h"

#include <gtest/gtest.h>
#include <signal.h>

namespace vandra {
namespace {

TEST(SubprocessTest, CapturesStdout) {
  auto out = runCapture({"printf", "a\\nb"});
  ASSERT_TRUE(out) << out.error().describe();
  EXPECT_EQ(*out, "a\nb");
}

TEST(SubprocessTest, NonZeroExitCarriesStderr) {
  auto out = runCapture({"sh", "-c", "echo broken >&2; exit 3"});
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, ErrorCode::Subprocess);
  EXPECT_NE(out.error().message.find("exit 3"), std::string::npos);
  EXPECT_NE(out.error().message.find("broken"), std::string::npos);
}

TEST(SubprocessTest, MissingProgramIsNotFound) {
  auto p = Subprocess::start({"/nonexistent/vandra-no-such-program"}, {});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ErrorCode::NotFound);
}

TEST(SubprocessTest, DestructorKillsAndReapsChild) {
  pid_t pid = -1;
  {
    auto p = Subprocess::start({"sleep", "600"}, {});
    ASSERT_TRUE(p);
    pid = p->pid();
    ASSERT_EQ(::kill(pid, 0), 0);
  }
  // Reaped: the pid no longer names our child.
  EXPECT_NE(::kill(pid, 0), 0);
}

TEST(SubprocessTest, LargeStderrDoesNotDeadlockWhileDrainingStdout) {
  auto out = runCapture({"sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x >&2; echo done"});
  ASSERT_TRUE(out) << out.error().describe();
  EXPECT_EQ(*out, "done\n");
}

}  // namespace
}  // namespace vandra
