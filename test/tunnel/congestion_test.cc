// The tunnel's per-link congestion control: which TCP_INFO deltas count as the link's own
// loss (move to bbr) and which as congestion (stay on cubic).
#include "congestion.h"

#include <gtest/gtest.h>

namespace vandra::tunnel {
namespace {

TcpSample at(uint64_t segs, uint64_t retrans, uint32_t srtt_us, uint32_t min_rtt_us) {
  return {segs, retrans, srtt_us, min_rtt_us};
}

TEST(CongestionTest, LossWithoutQueueIsTheLinks) {
  // lossy: 0.5 % of 2000 segments re-sent, RTT at the path's 50 ms (51.4 ms measured).
  EXPECT_TRUE(randomLoss(at(1000, 0, 50000, 50000), at(3000, 10, 51400, 50000)));
}

TEST(CongestionTest, LossWithAStandingQueueIsCongestion) {
  // wan: cubic overflows the bottleneck's queue (one BDP): RTT 1.5x the minimum.
  EXPECT_FALSE(randomLoss(at(1000, 0, 75000, 50000), at(100000, 300, 75000, 50000)));
  // Measured on wan with cubic: 611 of 19221 re-sent at 62.3 ms against a 50.1 ms minimum.
  EXPECT_FALSE(randomLoss(at(0, 0, 50000, 50133), at(19221, 611, 62339, 50133)));
}

TEST(CongestionTest, AStandingQueueIsSeenFromTheRtt) {
  EXPECT_FALSE(standingQueue(at(0, 0, 51400, 50000)));  // lossy, measured
  EXPECT_TRUE(standingQueue(at(0, 0, 62339, 50133)));   // wan with cubic, measured
}

TEST(CongestionTest, TooLittleTrafficOrLossIsNoEvidence) {
  EXPECT_FALSE(randomLoss(at(0, 0, 50000, 50000), at(kMinSegments - 1, 20, 50000, 50000)));
  EXPECT_FALSE(randomLoss(at(0, 0, 50000, 50000), at(10000, kMinRetransmits - 1, 50000, 50000)));
  // Below the ratio: 5 of 100000 (0.005 %).
  EXPECT_FALSE(randomLoss(at(0, 0, 50000, 50000), at(100000, 5, 50000, 50000)));
}

TEST(CongestionTest, ASlowConnectionIsJudgedOverALongerSpan) {
  // A collapsed cubic connection: 300 segments a second, 0.5 % of them re-sent.
  const TcpSample start = at(1000, 0, 51000, 50000);
  const TcpSample one_s = at(1300, 2, 51000, 50000);
  const TcpSample three_s = at(2200, 6, 51000, 50000);
  EXPECT_FALSE(enoughToJudge(start, one_s));
  EXPECT_TRUE(enoughToJudge(start, three_s));
  EXPECT_TRUE(randomLoss(start, three_s));
}

TEST(CongestionTest, UnknownRttOrCountersGoingBackAreNoEvidence) {
  EXPECT_FALSE(randomLoss(at(0, 0, 0, 0), at(3000, 10, 0, 0)));
  EXPECT_FALSE(randomLoss(at(5000, 50, 50000, 50000), at(3000, 60, 50000, 50000)));
}

TEST(CongestionTest, AutoStartsOnCubicOthersAsConfigured) {
  EXPECT_EQ(initialCongestion("auto"), "cubic");
  EXPECT_EQ(initialCongestion("bbr"), "bbr");
  EXPECT_EQ(initialCongestion(""), "");
}

}  // namespace
}  // namespace vandra::tunnel
