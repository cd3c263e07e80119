// The closing summary of `vandra vm migrate`: order, precision, parts that add up.
#include "migration_summary.h"

#include <gtest/gtest.h>

namespace vandra::cli {
namespace {

using nlohmann::json;

json record() {
  return {{"id", "m1"},
          {"vm", "web1"},
          {"peer", "cloud"},
          {"phase", "done"},
          // Written in the order they ran; a JSON object would list them alphabetically.
          {"timeline", json::array({{{"phase", "preflight"}, {"at_us", 1000000}},
                                    {{"phase", "prepare_target"}, {"at_us", 1050000}},
                                    {{"phase", "mirror_disks"}, {"at_us", 1460000}},
                                    {{"phase", "precopy_ram"}, {"at_us", 3560000}},
                                    {{"phase", "switchover"}, {"at_us", 5617910}},
                                    {{"phase", "confirm"}, {"at_us", 5900000}},
                                    {{"phase", "done"}, {"at_us", 5920000}}})},
          {"report",
           {{"total_s", 4.61791},
            {"downtime_ms", 277},
            {"lan_silence_ms", 312.4},
            {"downtime_budget_ms", 500},
            {"sla_met", true},
            {"wan_bytes", 140800000},
            {"wan_bytes_migration", 123000000},
            {"wan_bytes_nbd", 15200000},
            {"disk_bytes", 100663000},
            {"ram_bytes", 121900000}}}};
}

TEST(MigrationSummary, PhasesInTheOrderTheyRan) {
  const std::string s = migrationSummary(record());
  const auto pre = s.find("preflight 0.05 s");
  const auto prep = s.find("prepare_target 0.41 s");
  const auto mirror = s.find("mirror_disks 2.1 s");
  const auto ram = s.find("precopy_ram 2.1 s");
  const auto sw = s.find("switchover 0.28 s");
  const auto conf = s.find("confirm 0.02 s");
  ASSERT_NE(pre, std::string::npos) << s;
  ASSERT_NE(conf, std::string::npos) << s;
  EXPECT_LT(pre, prep);
  EXPECT_LT(prep, mirror);
  EXPECT_LT(mirror, ram);
  EXPECT_LT(ram, sw);
  EXPECT_LT(sw, conf);
}

TEST(MigrationSummary, SensiblePrecisionAndTheBudget) {
  const std::string s = migrationSummary(record());
  EXPECT_NE(s.find("total 4.6 s"), std::string::npos) << s;
  EXPECT_EQ(s.find("4.61791"), std::string::npos) << s;
  EXPECT_EQ(s.find("100.663"), std::string::npos) << s;
  EXPECT_NE(s.find("guest paused 277 ms (QEMU)"), std::string::npos) << s;
  EXPECT_NE(s.find("silent on the LAN 312 ms"), std::string::npos) << s;
  EXPECT_NE(s.find("SLA budget 500 ms: met"), std::string::npos) << s;
  json missed = record();
  missed["report"]["sla_met"] = false;
  EXPECT_NE(migrationSummary(missed).find("SLA budget 500 ms: NOT met"), std::string::npos);
}

TEST(MigrationSummary, TheWanPartsAddUpToTheWhole) {
  const std::string s = migrationSummary(record());
  EXPECT_NE(s.find("over the WAN 140.8 MB: RAM stream 123.0 MB + disk mirrors 15.2 MB + LAN, "
                   "control and TLS 2.6 MB"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("disk data copied 100.7 MB"), std::string::npos) << s;
}

TEST(MigrationSummary, AThrottledDiskSaysHowHardAndFromWhen) {
  EXPECT_EQ(migrationSummary(record()).find("throttled"), std::string::npos);
  json r = record();
  r["report"]["disk_write_throttle"] = json::parse(R"([
    {"device": "disk-disk2", "at_s": 17.04, "level": 1, "bytes_per_s": 2090798, "writes_per_s": 0},
    {"device": "disk-disk2", "at_s": 19.05, "level": 2, "bytes_per_s": 1045399, "writes_per_s": 64},
    {"device": "disk-disk2", "at_s": 20.6, "level": 1, "bytes_per_s": 2090798, "writes_per_s": 0}])");
  const std::string s = migrationSummary(r);
  EXPECT_NE(
      s.find("disk writes of disk-disk2 throttled so its mirror converges (hardest: 1.0 MB/s, "
             "64 writes/s, from 19.1 s into the mirrors)\n"),
      std::string::npos)
      << s;
}

TEST(MigrationSummary, ARolledBackMigrationSaysWhy) {
  json r = record();
  r["phase"] = "rolled_back";
  r["error"] = "cancelled by the operator";
  const std::string s = migrationSummary(r);
  EXPECT_EQ(s.rfind("migration m1 of web1 to cloud: rolled_back (cancelled by the operator)\n", 0),
            0u)
      << s;
}

TEST(MigrationSummary, NumbersAsPeopleReadThem) {
  EXPECT_EQ(formatSeconds(4.61791), "4.6 s");
  EXPECT_EQ(formatSeconds(0.4123), "0.41 s");
  EXPECT_EQ(formatSeconds(612.4), "612 s");
  EXPECT_EQ(formatMs(1149.779844), "1150 ms");
  EXPECT_EQ(formatMs(2.19465), "2.2 ms");
  EXPECT_EQ(formatBytes(100663000), "100.7 MB");
  EXPECT_EQ(formatBytes(2345000000), "2.35 GB");
}

TEST(FitToWidth, AProgressLineNeverWraps) {
  const std::string line(200, 'x');
  const std::string cut = fitToWidth(line, 120);
  // 118 characters and an ellipsis (3 bytes, one column): 119 columns of 120.
  EXPECT_EQ(cut.size(), 118u + 3u);
  EXPECT_EQ(cut.substr(118), "\xE2\x80\xA6");
  EXPECT_EQ(fitToWidth("short", 120), "short");
  EXPECT_EQ(fitToWidth(std::string(119, 'y'), 120), std::string(119, 'y'));
  EXPECT_EQ(fitToWidth(std::string(120, 'y'), 120).size(), 118u + 3u);
}

}  // namespace
}  // namespace vandra::cli
