#include "vandra/agent/capacity.h"

#include <gtest/gtest.h>

namespace vandra::agent {
namespace {

const HostCapacity kHost{.total = {4, 8192, 100ULL << 30}, .reserved = {0, 1024, 10ULL << 30}};

TEST(CapacityTest, FitsUntilFullThenRefusesWithTheNumbers) {
  const Resources vm{2, 2048, 10ULL << 30};
  Resources in_use = used({vm, vm});
  EXPECT_EQ(in_use, (Resources{4, 4096, 20ULL << 30}));
  auto third = checkFits(kHost, in_use, vm);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, ErrorCode::CapacityExceeded);
  EXPECT_NE(third.error().message.find("Not enough vCPUs: VM needs 2, 0 free of 4"),
            std::string::npos)
      << third.error().message;
  EXPECT_EQ(third.error().message.find("memory"), std::string::npos) << "memory still fits";
  EXPECT_TRUE(checkFits(kHost, used({vm}), vm));
}

TEST(CapacityTest, ReservedMemoryIsNotHandedOut) {
  auto big = checkFits(kHost, {}, {1, 8192, 0});
  ASSERT_FALSE(big);
  EXPECT_NE(
      big.error().message.find("Not enough memory: VM needs 8192 MiB, 7168 MiB free of 8192 MiB"),
      std::string::npos)
      << big.error().message;
  EXPECT_TRUE(checkFits(kHost, {}, {1, 7168, 0}));
  EXPECT_EQ(available(kHost, {9, 9999, 0}), (Resources{0, 0, 90ULL << 30}));
}

}  // namespace
}  // namespace vandra::agent
