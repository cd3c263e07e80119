// judgeDowntime: the SLA's budget against the agent's own measurement.
#include "vandra/orchestrator/downtime_verdict.h"

#include <gtest/gtest.h>

namespace vandra::orchestrator {
namespace {

TEST(DowntimeVerdict, LanSilenceWithinTheBudgetMeetsIt) {
  const auto v = judgeDowntime(500, 312.4, 280);
  EXPECT_EQ(v.source, InterruptionSource::LanSilence);
  ASSERT_TRUE(v.interruption_ms);
  EXPECT_DOUBLE_EQ(*v.interruption_ms, 312.4);
  ASSERT_TRUE(v.met);
  EXPECT_TRUE(*v.met);
  EXPECT_NE(v.reason.find("312 ms, within the SLA's budget of 500 ms"), std::string::npos)
      << v.reason;
}

TEST(DowntimeVerdict, LanSilenceOverTheBudgetMissesItEvenWhenQemuSaysLess) {
  // QEMU's own figure ends at the source's socket: the client saw more, and that counts.
  const auto v = judgeDowntime(500, 640, 280);
  ASSERT_TRUE(v.met);
  EXPECT_FALSE(*v.met);
  EXPECT_NE(v.reason.find("over the SLA's budget"), std::string::npos) << v.reason;
}

TEST(DowntimeVerdict, ExactlyTheBudgetMeetsIt) {
  const auto v = judgeDowntime(300, 300.0, std::nullopt);
  ASSERT_TRUE(v.met);
  EXPECT_TRUE(*v.met);
}

TEST(DowntimeVerdict, WithoutLanFramesQemusDowntimeIsJudgedAndNamed) {
  const auto v = judgeDowntime(200, std::nullopt, 250);
  EXPECT_EQ(v.source, InterruptionSource::QemuDowntime);
  ASSERT_TRUE(v.met);
  EXPECT_FALSE(*v.met);
  nlohmann::json r;
  addToReport(v, r);
  EXPECT_EQ(r["interruption_by"], "qemu_downtime");
  EXPECT_EQ(r["downtime_budget_ms"], 200);
  EXPECT_EQ(r["sla_met"], false);
}

TEST(DowntimeVerdict, NoBudgetOrNoMeasurementLeavesItOpen) {
  const auto none = judgeDowntime(std::nullopt, 100.0, 90);
  EXPECT_FALSE(none.met);
  EXPECT_TRUE(none.interruption_ms);
  const auto unmeasured = judgeDowntime(500, std::nullopt, 0);
  EXPECT_FALSE(unmeasured.met);
  EXPECT_EQ(unmeasured.source, InterruptionSource::None);
  nlohmann::json r;
  addToReport(unmeasured, r);
  EXPECT_TRUE(r["sla_met"].is_null());
  EXPECT_TRUE(r["interruption_ms"].is_null());
  EXPECT_EQ(r["downtime_budget_ms"], 500);
  EXPECT_FALSE(r["sla_note"].get<std::string>().empty());
}

}  // namespace
}  // namespace vandra::orchestrator
