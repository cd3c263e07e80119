// vandra-load's statistics: nearest-rank percentiles on hand-checked inputs, the summary, the
// throughput and the error tally.
#include "load_stats.h"

#include <gtest/gtest.h>

#include <numeric>

namespace vandra::load {
namespace {

std::vector<double> oneTo(size_t n) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), 1.0);
  return v;
}

TEST(LoadStatsTest, NearestRankOnOneToHundred) {
  const auto v = oneTo(100);
  EXPECT_EQ(percentileNearestRank(v, 50), 50);
  EXPECT_EQ(percentileNearestRank(v, 90), 90);
  EXPECT_EQ(percentileNearestRank(v, 99), 99);
  EXPECT_EQ(percentileNearestRank(v, 99.5), 100);
  EXPECT_EQ(percentileNearestRank(v, 100), 100);
  EXPECT_EQ(percentileNearestRank(v, 0), 1);
  EXPECT_EQ(percentileNearestRank(v, 1), 1);
  EXPECT_EQ(percentileNearestRank(v, 1.5), 2);
}

TEST(LoadStatsTest, WholeRanksAreNotPushedUpByBinaryFractions) {
  // 0.9 * 10 is 9.000000000000002 in doubles; a careless ceil would pick the 10th sample.
  const auto ten = oneTo(10);
  EXPECT_EQ(percentileNearestRank(ten, 90), 9);
  EXPECT_EQ(percentileNearestRank(ten, 50), 5);
  EXPECT_EQ(percentileNearestRank(ten, 10), 1);
  EXPECT_EQ(percentileNearestRank(ten, 11), 2);
  const auto thousand = oneTo(1000);
  EXPECT_EQ(percentileNearestRank(thousand, 99.9), 999);
  EXPECT_EQ(percentileNearestRank(thousand, 99.95), 1000);
}

TEST(LoadStatsTest, SmallAndOddSizes) {
  EXPECT_EQ(percentileNearestRank({}, 50), 0);
  EXPECT_EQ(percentileNearestRank({7.5}, 1), 7.5);
  EXPECT_EQ(percentileNearestRank({7.5}, 99), 7.5);
  const std::vector<double> three = {1, 2, 3};
  EXPECT_EQ(percentileNearestRank(three, 33), 1);
  EXPECT_EQ(percentileNearestRank(three, 34), 2);
  EXPECT_EQ(percentileNearestRank(three, 50), 2);
  EXPECT_EQ(percentileNearestRank(three, 67), 3);
  EXPECT_EQ(percentileNearestRank(three, 150), 3);  // clamped to 100
  EXPECT_EQ(percentileNearestRank(three, -5), 1);   // clamped to 0
}

TEST(LoadStatsTest, SummarySortsAndFindsTheTail) {
  // 200 samples: 198 fast ones (1..198 ms, shuffled by reversing) and two slow ones.
  std::vector<double> v;
  for (int i = 198; i >= 1; --i) {
    v.push_back(i);
  }
  v.push_back(5000);
  v.push_back(1000);
  const LatencySummary s = summarize(v);
  EXPECT_EQ(s.count, 200u);
  EXPECT_EQ(s.min_ms, 1);
  EXPECT_EQ(s.max_ms, 5000);
  EXPECT_EQ(s.p50_ms, 100);  // rank 100
  EXPECT_EQ(s.p90_ms, 180);  // rank 180
  EXPECT_EQ(s.p99_ms, 198);  // rank 198: the two slow samples are the top 1 %
  EXPECT_DOUBLE_EQ(s.mean_ms, (198.0 * 199.0 / 2 + 6000) / 200);
  EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
}

TEST(LoadStatsTest, EmptySummaryIsZero) {
  std::vector<double> v;
  const LatencySummary s = summarize(v);
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.p99_ms, 0);
  EXPECT_EQ(s.max_ms, 0);
}

TEST(LoadStatsTest, Throughput) {
  EXPECT_DOUBLE_EQ(throughput(5000, 2.5), 2000);
  EXPECT_DOUBLE_EQ(throughput(10, 0), 0);
}

TEST(LoadStatsTest, ErrorTallyMerges) {
  ErrorTally a{{"HTTP 503", 2}, {"transport: Read", 1}};
  merge(a, {{"HTTP 503", 3}, {"HTTP 404", 1}});
  EXPECT_EQ(a.at("HTTP 503"), 5u);
  EXPECT_EQ(a.at("HTTP 404"), 1u);
  EXPECT_EQ(a.at("transport: Read"), 1u);
  EXPECT_EQ(total(a), 7u);
  EXPECT_EQ(total({}), 0u);
}

}  // namespace
}  // namespace vandra::load
