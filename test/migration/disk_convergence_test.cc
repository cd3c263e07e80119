// Tests for vandra/migration/disk_convergence.h: when a mirror's backlog does not fall, the
// guest's writes are throttled a step harder each window, eased at READY, never for a link
// that copies nothing.
#include "vandra/migration/disk_convergence.h"

#include <gtest/gtest.h>

namespace vandra::migration {
namespace {

constexpr uint64_t MiB = 1 << 20;

DiskConvergenceOptions opts() {
  DiskConvergenceOptions o;
  o.window_s = 5;
  return o;
}

TEST(DiskConvergenceTest, ABulkCopyWithoutGuestWritesIsNeverThrottled) {
  DiskConvergence c(opts());
  // 1 GiB at 10 MiB/s: the backlog falls by exactly what is copied.
  for (int t = 0; t <= 100; ++t) {
    const uint64_t offset = static_cast<uint64_t>(t) * 10 * MiB;
    EXPECT_FALSE(c.observe(t, offset, 1024 * MiB, false)) << t;
  }
  EXPECT_EQ(c.level(), 0);
  EXPECT_TRUE(c.throttle().none());
}

TEST(DiskConvergenceTest, AGuestOutwritingTheCopyIsThrottledHarderEachWindow) {
  DiskConvergence c(opts());
  // Copies 8 MiB/s; the guest dirties 8 MiB/s more: the backlog stays at 16 MiB.
  uint64_t offset = 100 * MiB;
  std::vector<ThrottleStep> steps;
  for (int t = 0; t <= 30; ++t) {
    offset += 8 * MiB;
    if (auto s = c.observe(t, offset, offset + 16 * MiB, false)) {
      steps.push_back(*s);
    }
  }
  ASSERT_GE(steps.size(), 4u);
  EXPECT_EQ(steps[0].level, 1);
  EXPECT_DOUBLE_EQ(steps[0].at_s, 5);
  EXPECT_EQ(steps[0].copied_bytes_per_s, 8 * MiB);
  EXPECT_EQ(steps[0].throttle.bytes_per_s, 4 * MiB);  // half the copy rate
  EXPECT_EQ(steps[0].throttle.writes_per_s, 0u);
  EXPECT_EQ(steps[0].backlog_bytes, 16 * MiB);
  EXPECT_NE(steps[0].why.find("were copied in 5.0 s"), std::string::npos) << steps[0].why;
  EXPECT_EQ(steps[1].throttle.bytes_per_s, 2 * MiB);
  EXPECT_EQ(steps[1].throttle.writes_per_s, 64u);  // gaps between writes let the job idle
  EXPECT_EQ(steps[2].throttle.writes_per_s, 32u);
  EXPECT_EQ(steps[3].throttle.bytes_per_s, 512u << 10);
}

TEST(DiskConvergenceTest, StopsAtTheFloorsAndEasesAtReady) {
  DiskConvergenceOptions o = opts();
  o.floor_bytes_per_s = 1 * MiB;
  o.floor_writes_per_s = 16;
  DiskConvergence c(o);
  uint64_t offset = 0;
  int changes = 0;
  for (int t = 0; t <= 200; ++t) {
    offset += 4 * MiB;
    if (c.observe(t, offset, offset + MiB, false)) {
      ++changes;
    }
  }
  // 2 MiB/s, then 1 MiB/s with 64, 32, 16 writes/s; then nothing more to take away.
  EXPECT_EQ(changes, 4);
  EXPECT_EQ(c.throttle(), (WriteThrottle{1 * MiB, 16}));
  auto eased = c.observe(201, offset, offset, true);
  ASSERT_TRUE(eased);
  EXPECT_EQ(eased->level, 1);
  EXPECT_EQ(eased->throttle, (WriteThrottle{2 * MiB, 0}));
  EXPECT_FALSE(c.observe(202, offset, offset, true));  // once
}

TEST(DiskConvergenceTest, ALinkThatCopiesNothingIsNotTheGuestsFault) {
  DiskConvergence c(opts());
  for (int t = 0; t <= 60; ++t) {
    EXPECT_FALSE(c.observe(t, 50 * MiB, 80 * MiB, false));
  }
  EXPECT_EQ(c.level(), 0);
}

TEST(DiskConvergenceTest, ASlowButConvergingBacklogIsLeftAlone) {
  DiskConvergence c(opts());
  // Copies 10 MiB/s, the guest dirties 7 MiB/s: the backlog falls 3 MiB/s (30 % of the copy).
  uint64_t offset = 0;
  uint64_t len = 500 * MiB;
  for (int t = 0; t <= 100; ++t) {
    EXPECT_FALSE(c.observe(t, offset, len, false)) << t;
    offset += 10 * MiB;
    len += 7 * MiB;
  }
}

TEST(DiskConvergenceTest, DisabledDoesNothing) {
  DiskConvergenceOptions o = opts();
  o.enabled = false;
  DiskConvergence c(o);
  uint64_t offset = 0;
  for (int t = 0; t <= 30; ++t) {
    offset += 8 * MiB;
    EXPECT_FALSE(c.observe(t, offset, offset + 16 * MiB, false));
  }
}

}  // namespace
}  // namespace vandra::migration
