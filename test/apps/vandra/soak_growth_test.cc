// `vandra bench soak`'s growth judgement: same-parity samples after the warm-up.
#include "soak_growth.h"

#include <gtest/gtest.h>

namespace vandra::cli::soak {
namespace {

AgentSample at(uint64_t rss_kib, uint64_t fds, uint64_t kept, uint64_t chain) {
  AgentSample s;
  s.rss_kib = rss_kib;
  s.fds = fds;
  s.threads = 10;
  s.kept_images = kept;
  s.files = 5 + kept;
  s.max_chain = chain;
  return s;
}

// The guest here (even) and away (odd) differ, and the first trips build kept images up:
// neither is growth.
TEST(SoakGrowth, AlternatingSitesAndTheWarmUpAreNotGrowth) {
  std::vector<AgentSample> s{at(30000, 20, 0, 1), at(30500, 18, 1, 0), at(31000, 21, 2, 3),
                             at(31000, 18, 1, 0), at(31200, 21, 2, 3), at(31100, 18, 1, 0),
                             at(31300, 21, 2, 3), at(31050, 18, 1, 0)};
  const Growth g = growthOf(s, 2);
  EXPECT_FALSE(grew(g)) << toJson(g).dump();
  EXPECT_TRUE(g.memory_ok);
}

// As the soak measured: memory rises over the first moves, then stays.
TEST(SoakGrowth, MemoryThatRisesAndThenStaysIsNotGrowth) {
  std::vector<AgentSample> s;
  for (uint64_t i = 0; i < 60; ++i) {
    s.push_back(at(20000 + std::min<uint64_t>(i, 20) * 1500 + (i % 3) * 200, 20, 1, 2));
  }
  const Growth g = growthOf(s, 4);
  EXPECT_TRUE(g.memory_ok) << toJson(g).dump();
  EXPECT_FALSE(grew(g));
}

TEST(SoakGrowth, MemoryLeakedEveryMoveIsGrowth) {
  std::vector<AgentSample> s;
  for (uint64_t i = 0; i < 60; ++i) {
    s.push_back(at(30000 + i * 512, 20, 1, 2));  // 512 KiB a move
  }
  const Growth g = growthOf(s, 4);
  EXPECT_FALSE(g.memory_ok) << toJson(g).dump();
  EXPECT_TRUE(grew(g));
  EXPECT_GT(g.rss_kib, 4096);
}

TEST(SoakGrowth, AChainOrKeptImagesGrowingEveryTripIsGrowth) {
  std::vector<AgentSample> s;
  for (uint64_t i = 0; i < 8; ++i) {
    s.push_back(at(30000, 20, i, 1 + i));
  }
  const Growth g = growthOf(s, 2);
  EXPECT_TRUE(grew(g));
  EXPECT_EQ(g.max_chain, 4);  // samples 2 -> 6 and 3 -> 7
  EXPECT_EQ(g.kept_images, 4);
}

TEST(SoakGrowth, AFileDescriptorLeakedPerMoveIsGrowth) {
  std::vector<AgentSample> s;
  for (uint64_t i = 0; i < 6; ++i) {
    s.push_back(at(30000, 20 + i, 1, 2));
  }
  const Growth g = growthOf(s, 2);
  EXPECT_TRUE(grew(g));
  EXPECT_EQ(g.fds, 2);
}

TEST(SoakGrowth, TooFewSamplesToCompareAreNotGrowth) {
  EXPECT_FALSE(grew(growthOf({at(1, 1, 1, 1)}, 0)));
  EXPECT_FALSE(grew(growthOf({}, 4)));
}

}  // namespace
}  // namespace vandra::cli::soak
