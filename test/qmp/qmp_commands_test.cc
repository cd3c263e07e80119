// Tests for src/qmp/qmp_commands: timeout table and typed reply parsers.
#include "qmp_commands.h"

#include <gtest/gtest.h>

namespace vandra::qmp {
namespace {

using namespace std::chrono_literals;

TEST(QmpCommandsTest, TimeoutsFollowTheTable) {
  EXPECT_EQ(timeoutFor("query-status"), 5s);
  EXPECT_EQ(timeoutFor("query-block-jobs"), 5s);
  EXPECT_EQ(timeoutFor("blockdev-add"), 60s);
  EXPECT_EQ(timeoutFor("blockdev-mirror"), 600s);
  EXPECT_EQ(timeoutFor("blockdev-del"), 600s);
  EXPECT_EQ(timeoutFor("cont"), 30s);
  EXPECT_EQ(makeCommand("query-version").timeout, 5s);
  EXPECT_EQ(makeCommand("blockdev-add", {{"node-name", "x"}}).args["node-name"], "x");
}

TEST(QmpCommandsTest, ParsesQueryStatus) {
  auto r = QueryStatus::parse({{"running", false}, {"status", "prelaunch"}, {"singlestep", false}});
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->running);
  EXPECT_EQ(r->status, "prelaunch");
  auto bad = QueryStatus::parse({{"running", "no"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::QmpProtocol);
}

TEST(QmpCommandsTest, ParsesQueryVersion) {
  auto r = QueryVersion::parse(nlohmann::json::parse(
      R"({"qemu": {"major": 7, "minor": 2, "micro": 9}, "package": "Debian 1:7.2"})"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->major, 7);
  EXPECT_EQ(r->micro, 9);
  EXPECT_EQ(r->package, "Debian 1:7.2");
  EXPECT_FALSE(QueryVersion::parse(nlohmann::json::parse(R"({"qemu": {"major": 7}})")));
  EXPECT_FALSE(QueryVersion::parse(nlohmann::json::array()));
}

}  // namespace
}  // namespace vandra::qmp
