// Tests for src/common/failpoint: an armed name fires once, others never; unarmed is silent.
#include "vandra/common/failpoint.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace vandra {
namespace {

class FailpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setFailpointAction([this](std::string_view n) { hits_.emplace_back(n); });
  }
  void TearDown() override {
    disarmFailpoints();
    setFailpointAction({});
  }
  std::vector<std::string> hits_;
};

TEST_F(FailpointTest, OnlyTheArmedNameFiresAndOnlyOnce) {
  failpoint("source-paused");
  EXPECT_TRUE(hits_.empty());
  armFailpoint("source-paused");
  failpoint("source-completed");
  EXPECT_TRUE(hits_.empty());
  failpoint("source-paused");
  failpoint("source-paused");
  EXPECT_EQ(hits_, std::vector<std::string>{"source-paused"});
}

TEST_F(FailpointTest, DisarmClearsEveryName) {
  armFailpoint("source-paused");
  armFailpoint("target-before-start");
  disarmFailpoints();
  failpoint("source-paused");
  failpoint("target-before-start");
  EXPECT_TRUE(hits_.empty());
}

TEST_F(FailpointTest, KnownNamesAreUnique) {
  auto names = knownFailpoints();
  EXPECT_GE(names.size(), 4U);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());
}

}  // namespace
}  // namespace vandra
