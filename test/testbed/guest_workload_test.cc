// testbed::GuestWorkload's command lines and verdict parsing (no guest): the lines the guest
// programs take (guest/programs/vguest-dirtier.c, vguest-diskwriter.c) and PASS/FAIL read
// back only with the exit code that goes with them.
#include "vandra/testbed/guest_workload.h"

#include <gtest/gtest.h>

namespace vandra::testbed {
namespace {

TEST(GuestWorkload, StartLinesCarryTheOptions) {
  WorkloadOptions o;
  EXPECT_EQ(dirtierStartLine(o), "vguest-dirtier start 16 8");
  EXPECT_EQ(diskWriterStartLine(o), "vguest-diskwriter start /dev/vdb 56 8 512");
  o.dirty_wss_mib = 64;
  o.dirty_rate_mbps = 40;
  o.disk_offset_mib = 200;
  o.disk_len_mib = 16;
  o.disk_rate_kibps = 0;
  o.lose_page_write = 3000;
  o.lose_block_write = 7;
  EXPECT_EQ(dirtierStartLine(o), "vguest-dirtier start -L 3000 64 40");
  EXPECT_EQ(diskWriterStartLine(o), "vguest-diskwriter start -L 7 /dev/vdb 200 16 0");
}

TEST(GuestWorkload, VerdictNeedsItsExitCode) {
  auto pass = parseCheck({"PASS pages=4096 writes=10 gen_min=0 gen_max=1 seed=1"}, 0);
  ASSERT_TRUE(pass) << pass.error().describe();
  EXPECT_TRUE(pass->ran);
  EXPECT_TRUE(pass->pass);
  auto failed = parseCheck({"FAIL page=951 want_gen=2 got_gen=1 reason=generation"}, 1);
  ASSERT_TRUE(failed) << failed.error().describe();
  EXPECT_FALSE(failed->pass);
  EXPECT_EQ(failed->line, "FAIL page=951 want_gen=2 got_gen=1 reason=generation");
  // A PASS line with a failing exit code, no verdict, or a usage error: not a verdict.
  EXPECT_FALSE(parseCheck({"PASS pages=1"}, 1));
  EXPECT_FALSE(parseCheck({"FAIL page=1"}, 0));
  EXPECT_FALSE(parseCheck({}, 0));
  EXPECT_FALSE(parseCheck({"no resident writer at /run/vguest-dirtier.sock"}, 2));
}

TEST(GuestWorkload, ReportPassesOnlyWhenEveryPartThatRanPassed) {
  WorkloadReport r;
  EXPECT_TRUE(r.pass());
  EXPECT_EQ(r.describe(), "no workload");
  r.memory = {true, true, "PASS pages=1"};
  r.disk = {true, false, "FAIL block=9 want_gen=1 got_gen=0"};
  EXPECT_FALSE(r.pass());
  EXPECT_EQ(r.describe(), "memory: PASS pages=1; disk: FAIL block=9 want_gen=1 got_gen=0");
  r.disk.ran = false;
  EXPECT_TRUE(r.pass());
}

}  // namespace
}  // namespace vandra::testbed
