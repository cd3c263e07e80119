// Post-copy (vandra/migration/qemu_migration.h, "Post-copy") against real QEMU 7.2 under TCG,
// with the fixture of qemu_migration_test.cc.
//   PostCopyFinishesAGuestThatOutpacesTheLinkAndSurvivesACut: post-copy after a pre-copy
//     that cannot converge, a refused cancel, a cut stream recovered over a new one, and a
//     stalled one paused by hand and recovered too.
#include <gtest/gtest.h>

#include "migration_fixture.h"

namespace vandra::migtest {
namespace {

using namespace std::chrono_literals;
using migration::Clock;

// A guest that dirties its memory faster than the link carries it never converges in
// pre-copy; with post-copy allowed the engine switches to it, the target runs the guest
// while its pages follow, a cancel is refused (it would lose the guest), the migration
// stream is cut mid-way and both sides pause, and a new connection recovers it: every page
// the dirtier and the pattern wrote is on the target.
TEST_F(MigrationTest, PostCopyFinishesAGuestThatOutpacesTheLinkAndSurvivesACut) {
  std::map<std::string, std::string> src_disks;
  ASSERT_NO_FATAL_FAILURE(sourceDisks(tmp_.path / "src-disks", src_disks));
  ASSERT_NO_FATAL_FAILURE(bootSource(src_disks));
  auto ms = guest("EXEC vguest-mempat start 64 7");
  ASSERT_EQ(ms.empty() ? "" : ms.back(), "EXIT 0") << joined(ms);
  testbed::WorkloadOptions wo;
  wo.disk = false;
  wo.dirty_wss_mib = 32;
  wo.dirty_rate_mbps = 0;  // as fast as the guest can: far above the 8 MB/s link below
  auto d = guest("EXEC " + testbed::dirtierStartLine(wo));
  ASSERT_EQ(d.empty() ? "" : d.back(), "EXIT 0") << joined(d);

  QemuVm t;
  std::map<std::string, std::string> dst_disks;
  ASSERT_NO_FATAL_FAILURE(targetDisks(tmp_.path / "dst", dst_disks));
  ASSERT_NO_FATAL_FAILURE(startTarget("dst", dst_disks, t));
  const fs::path nbd = tmp_.path / "dst-nbd.sock";
  const fs::path mig = tmp_.path / "dst-mig.sock";
  migration::IncomingOptions io;
  io.post_copy = true;
  ASSERT_NO_FATAL_FAILURE(prepareTarget(t, nbd, mig, io));
  // The migration stream goes through a relay the test can cut.
  auto link = std::make_unique<DelayProxy>(tmp_.path / "relay.sock", mig, 0us);
  ASSERT_EQ(link->start(), "");

  migration::SourceMigration m;
  auto started = migration::startMirrors(*src_.qmp, m, mirrorTargets(nbd), {});
  ASSERT_TRUE(started) << started.error().describe();
  auto ready = migration::waitMirrorsReady(*src_.qmp, *src_.events, m, Clock::now() + 300s);
  ASSERT_TRUE(ready) << ready.error().describe();
  migration::RamMigrationOptions ro;
  ro.post_copy = true;
  ro.downtime_limit_ms = 100;
  ro.max_bandwidth_bytes_per_s = 8 << 20;
  // Slow enough that the post-copy is still running when the test cuts the stream.
  ro.max_postcopy_bandwidth_bytes_per_s = 2 << 20;
  const auto t0 = Clock::now();
  auto r =
      migration::startRamMigration(*src_.qmp, m, "unix:" + (tmp_.path / "relay.sock").string(), ro);
  ASSERT_TRUE(r) << r.error().describe();
  auto sw = migration::switchover(*src_.qmp, *src_.events, m, Clock::now() + 300s);
  ASSERT_TRUE(sw) << sw.error().describe();
  note("postcopy_switch_after_s", secondsSince(t0), "s");
  note("postcopy_paused_ms", sw->paused_ms, "ms");
  ASSERT_TRUE(sw->post_copy) << "the pre-copy converged: the guest did not outpace the link";
  EXPECT_NE(sw->post_copy_reason.find("does not converge"), std::string::npos)
      << sw->post_copy_reason;
  auto switched = migration::waitIncomingSwitched(*t.qmp, *t.events, Clock::now() + 60s);
  ASSERT_TRUE(switched) << switched.error().describe();
  EXPECT_TRUE(*switched);
  auto fin = migration::finishTarget(*t.qmp);
  ASSERT_TRUE(fin) << fin.error().describe();
  EXPECT_TRUE(fin->resumed);

  // A cancel now would stop the only source of the pages the running target lacks.
  auto c = migration::cancel(*src_.qmp, *src_.events, m, Clock::now() + 30s);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::IllegalTransition) << c.error().describe();
  auto still = migration::progress(*src_.qmp);
  ASSERT_TRUE(still) << still.error().describe();
  EXPECT_EQ(still->status, "postcopy-active");

  // The cut: both ends pause, the guest waits at the target for its missing pages.
  link.reset();
  auto src_end = migration::waitPostcopyEnd(*src_.qmp, *src_.events, Clock::now() + 60s);
  ASSERT_TRUE(src_end) << src_end.error().describe();
  EXPECT_FALSE(src_end->completed) << "the post-copy ended before the cut";
  auto dst_end = migration::waitIncomingPostcopyEnd(*t.events, Clock::now() + 60s);
  ASSERT_TRUE(dst_end) << dst_end.error().describe();
  EXPECT_FALSE(*dst_end);

  // The target listens again (out of band), the source resumes over a new relay.
  const fs::path mig2 = tmp_.path / "dst-mig2.sock";
  auto rec = migration::recoverIncoming(*t.qmp, "unix:" + mig2.string());
  ASSERT_TRUE(rec) << rec.error().describe();
  DelayProxy link2(tmp_.path / "relay2.sock", mig2, 0us);
  ASSERT_EQ(link2.start(), "");
  auto resumed = migration::resumePostcopy(
      *src_.qmp, *src_.events, "unix:" + (tmp_.path / "relay2.sock").string(), Clock::now() + 60s);
  ASSERT_TRUE(resumed) << resumed.error().describe();

  // A stream that stalls instead of closing: QEMU does not notice, each end is paused by
  // hand (out of band at the target) and recovered the same way.
  link2.stall();
  auto p1 = migration::pausePostcopy(*src_.qmp);
  ASSERT_TRUE(p1) << p1.error().describe();
  auto p2 = migration::pausePostcopy(*t.qmp);
  ASSERT_TRUE(p2) << p2.error().describe();
  src_end = migration::waitPostcopyEnd(*src_.qmp, *src_.events, Clock::now() + 60s);
  ASSERT_TRUE(src_end) << src_end.error().describe();
  EXPECT_FALSE(src_end->completed) << "the post-copy ended before the stall";
  dst_end = migration::waitIncomingPostcopyEnd(*t.events, Clock::now() + 60s);
  ASSERT_TRUE(dst_end) << dst_end.error().describe();
  EXPECT_FALSE(*dst_end);
  const fs::path mig3 = tmp_.path / "dst-mig3.sock";
  rec = migration::recoverIncoming(*t.qmp, "unix:" + mig3.string());
  ASSERT_TRUE(rec) << rec.error().describe();
  DelayProxy link3(tmp_.path / "relay3.sock", mig3, 0us);
  ASSERT_EQ(link3.start(), "");
  resumed = migration::resumePostcopy(
      *src_.qmp, *src_.events, "unix:" + (tmp_.path / "relay3.sock").string(), Clock::now() + 60s);
  ASSERT_TRUE(resumed) << resumed.error().describe();

  src_end = migration::waitPostcopyEnd(*src_.qmp, *src_.events, Clock::now() + 300s);
  ASSERT_TRUE(src_end) << src_end.error().describe();
  EXPECT_TRUE(src_end->completed) << src_end->error_desc;
  dst_end = migration::waitIncomingPostcopyEnd(*t.events, Clock::now() + 60s);
  ASSERT_TRUE(dst_end) << dst_end.error().describe();
  EXPECT_TRUE(*dst_end);
  note("postcopy_total_s", secondsSince(t0), "s");
  EXPECT_EQ(t.status(), "running");
  EXPECT_EQ(src_.status(), "postmigrate");

  // Every page is there: the dirtier's and the 64 MiB pattern's, checked by the guest at the
  // target (the test's connection followed the guest over the bridge).
  auto check = checkResult(guest("EXEC vguest-dirtier check"));
  ASSERT_TRUE(check) << check.error().describe();
  EXPECT_TRUE(check->pass) << check->line;
  expectPatterns("target after post-copy", 7, {});
  EXPECT_TRUE(src_.quit());
  ctl_.reset();
  EXPECT_TRUE(t.quit());
}

}  // namespace
}  // namespace vandra::migtest
