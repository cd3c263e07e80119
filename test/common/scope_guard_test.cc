#include "vandra/common/scope_guard.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "vandra/common/unique_fd.h"

namespace vandra {
namespace {

TEST(ScopeGuardTest, RunsUnlessDismissed) {
  int runs = 0;
  {
    auto g = defer([&] { ++runs; });
  }
  EXPECT_EQ(runs, 1);
  {
    auto g = defer([&] { ++runs; });
    g.dismiss();
  }
  EXPECT_EQ(runs, 1);
}

TEST(UniqueFdTest, ClosesOnDestructionAndMove) {
  int raw = -1;
  {
    auto fd = UniqueFd::open("/dev/null", O_RDONLY);
    ASSERT_TRUE(fd);
    raw = fd->get();
    UniqueFd moved = std::move(*fd);
    EXPECT_FALSE(fd->valid());
    EXPECT_EQ(moved.get(), raw);
    EXPECT_EQ(::fcntl(raw, F_GETFD), FD_CLOEXEC);
  }
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
}

TEST(UniqueFdTest, OpenMissingIsNotFound) {
  auto fd = UniqueFd::open("/nonexistent/x", O_RDONLY);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code, ErrorCode::NotFound);
}

}  // namespace
}  // namespace vandra
