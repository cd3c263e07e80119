#include "vandra/orchestrator/downtime_plan.h"

#include <gtest/gtest.h>

namespace vandra::orchestrator {
namespace {

using std::chrono::milliseconds;

TEST(DowntimePlan, WithoutABudgetStartsShortAndMayRaiseToQemusDefault) {
  const auto p = planDowntime(std::nullopt, std::nullopt, milliseconds(50));
  EXPECT_FALSE(p.refusal);
  EXPECT_EQ(p.overhead_ms, 2 * 50 + kSwitchoverLocalMs);
  EXPECT_EQ(p.initial_limit_ms, kInitialDowntimeLimitMs);
  EXPECT_EQ(p.max_limit_ms, kMaxDowntimeLimitMs);
}

constexpr uint64_t kOldPeer = switchoverRoundTrips(false, false);

TEST(DowntimePlan, TheRoundTripsInThePauseFollowThePath) {
  EXPECT_EQ(switchoverRoundTrips(true, false), 2U);   // the target flushes, no return path
  EXPECT_EQ(switchoverRoundTrips(false, false), 4U);  // an older target: two NBD flushes
  EXPECT_EQ(switchoverRoundTrips(true, true), 3U);    // post-copy's return path
  EXPECT_EQ(kSwitchoverRoundTrips, 2U);
}

TEST(DowntimePlan, AOneSecondBudgetHoldsOnALinkOfSeveralHundredMilliseconds) {
  // 300 ms RTT: 2 round trips and the local work leave 250 ms for the last copy; with the
  // four round trips an older target costs, the same budget is refused.
  const auto p = planDowntime(1000, std::nullopt, milliseconds(300));
  ASSERT_FALSE(p.refusal) << *p.refusal;
  EXPECT_EQ(p.overhead_ms, 2 * 300 + kSwitchoverLocalMs);
  EXPECT_EQ(p.max_limit_ms, 250U);
  EXPECT_TRUE(planDowntime(1000, std::nullopt, milliseconds(300), kOldPeer).refusal);
}

TEST(DowntimePlan, TheBudgetCapsTheLimitAfterTheOverhead) {
  // 500 ms budget, 50 ms RTT, an older target: 350 ms overhead leaves 150 ms for the RAM's
  // last copy.
  const auto p = planDowntime(500, std::nullopt, milliseconds(50), kOldPeer);
  ASSERT_FALSE(p.refusal);
  EXPECT_EQ(p.max_limit_ms, 150U);
  EXPECT_EQ(p.initial_limit_ms, 100U);
  // A generous budget does not lift the limit past QEMU's default.
  EXPECT_EQ(planDowntime(5000, std::nullopt, milliseconds(50)).max_limit_ms, kMaxDowntimeLimitMs);
  // A tight one lowers the initial limit too.
  const auto tight = planDowntime(300, std::nullopt, milliseconds(50));
  ASSERT_FALSE(tight.refusal);
  EXPECT_EQ(tight.max_limit_ms, 50U);
  EXPECT_EQ(tight.initial_limit_ms, 50U);
}

TEST(DowntimePlan, ABudgetTheLinkCannotMeetIsRefusedWithTheNumbers) {
  // 300 ms budget over a 150 ms link: 450 ms of overhead alone.
  const auto p = planDowntime(300, std::nullopt, milliseconds(150));
  ASSERT_TRUE(p.refusal);
  EXPECT_NE(p.refusal->find("300 ms"), std::string::npos) << *p.refusal;
  EXPECT_NE(p.refusal->find("450 ms"), std::string::npos) << *p.refusal;
  EXPECT_NE(p.refusal->find("2 round trips"), std::string::npos) << *p.refusal;
  EXPECT_NE(p.refusal->find("150 ms measured"), std::string::npos) << *p.refusal;
  // The same budget on a LAN is fine.
  EXPECT_FALSE(planDowntime(300, std::nullopt, std::chrono::microseconds(200)).refusal);
  // Just under the minimum share.
  EXPECT_TRUE(planDowntime(2 * 10 + kSwitchoverLocalMs + kMinDowntimeLimitMs - 1, std::nullopt,
                           milliseconds(10))
                  .refusal);
  EXPECT_FALSE(planDowntime(2 * 10 + kSwitchoverLocalMs + kMinDowntimeLimitMs, std::nullopt,
                            milliseconds(10))
                   .refusal);
}

TEST(DowntimePlan, AnOperatorsLimitIsKeptFixedAndMustFitTheBudget) {
  const auto p = planDowntime(std::nullopt, 250, milliseconds(50));
  EXPECT_FALSE(p.refusal);
  EXPECT_EQ(p.initial_limit_ms, 250U);
  EXPECT_EQ(p.max_limit_ms, 250U);
  EXPECT_FALSE(planDowntime(1000, 250, milliseconds(50)).refusal);
  const auto over = planDowntime(400, 250, milliseconds(50));
  ASSERT_TRUE(over.refusal);
  EXPECT_NE(over.refusal->find("250 ms"), std::string::npos) << *over.refusal;
}

TEST(DowntimePlan, RoundTripsAreRoundedUpToWholeMilliseconds) {
  EXPECT_EQ(planDowntime(std::nullopt, std::nullopt, std::chrono::microseconds(1)).overhead_ms,
            2 + kSwitchoverLocalMs);
  EXPECT_EQ(planDowntime(std::nullopt, std::nullopt, std::chrono::microseconds(0)).overhead_ms,
            kSwitchoverLocalMs);
}

}  // namespace
}  // namespace vandra::orchestrator
