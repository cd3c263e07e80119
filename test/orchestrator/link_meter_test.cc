// The link meter's bookkeeping (link_meter.h): which RTT samples it trusts and how it smooths
// them, what makes a sustained transfer rate, and which throughput it reports.
#include "vandra/orchestrator/link_meter.h"

#include <gtest/gtest.h>

namespace vandra::orchestrator {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

// Ticks of one second on one tunnel; each call advances the counters by what is given.
struct Ticker {
  LinkSample s{1'000'000, 0, true, 1, 0, 0, 0, 0, -1};
  LinkSample tick(uint64_t frame_bytes, uint64_t bulk_sent, int64_t rtt_us = -1) {
    s.at_ms += 1000;
    s.steady_us += 1'000'000;
    s.frame_bytes += frame_bytes;
    s.bulk_sent += bulk_sent;
    if (rtt_us >= 0) {
      s.pongs += 1;
      s.last_rtt_us = rtt_us;
    }
    return s;
  }
};

TEST(LinkMeter, NothingMeasuredBeforeTheFirstPong) {
  LinkMeter m("cloud");
  Ticker t;
  m.observe(t.tick(0, 0));
  m.observe(t.tick(100, 0));
  const auto r = m.report();
  EXPECT_EQ(r.peer, "cloud");
  EXPECT_TRUE(r.connected);
  EXPECT_FALSE(r.rtt_ms);
  EXPECT_FALSE(r.throughput_mbps);
  EXPECT_EQ(r.measured_at_ms, 0);
}

TEST(LinkMeter, RttIsSmoothedOverQuietSamples) {
  LinkMeter m("cloud", {.rtt_weight = 0.25});
  Ticker t;
  m.observe(t.tick(0, 0));
  m.observe(t.tick(200, 0, 100'000));  // 100 ms
  ASSERT_TRUE(m.report().rtt_ms);
  EXPECT_DOUBLE_EQ(*m.report().rtt_ms, 100.0);
  EXPECT_EQ(m.report().rtt_at_ms, t.s.at_ms);
  m.observe(t.tick(200, 0, 60'000));  // 60 ms: 0.75 * 100 + 0.25 * 60
  EXPECT_DOUBLE_EQ(*m.report().rtt_ms, 90.0);
  // The same sample again (no new PONG) changes nothing.
  m.observe(t.tick(200, 0));
  EXPECT_DOUBLE_EQ(*m.report().rtt_ms, 90.0);
  EXPECT_EQ(m.report().measured_at_ms, t.s.at_ms - 1000);
}

TEST(LinkMeter, ARttSampleFromABusyTickIsNotTrusted) {
  LinkMeter m("cloud");
  Ticker t;
  m.observe(t.tick(0, 0));
  m.observe(t.tick(200, 0, 50'000));
  // The PING waited behind 8 MiB of bulk frames: 900 ms measures the queue.
  m.observe(t.tick(8 * kMiB, 8 * kMiB, 900'000));
  EXPECT_DOUBLE_EQ(*m.report().rtt_ms, 50.0);
}

TEST(LinkMeter, ASustainedRateNeedsEnoughBusyTicksInARow) {
  LinkMeter m("cloud", {.window_ticks = 3});
  Ticker t;
  m.observe(t.tick(0, 0));
  m.observe(t.tick(10 * kMiB, 10 * kMiB));
  m.observe(t.tick(10 * kMiB, 10 * kMiB));
  EXPECT_FALSE(m.report().throughput_mbps) << "two busy ticks are no sustained rate";
  m.observe(t.tick(0, 0));  // a pause breaks the run
  m.observe(t.tick(10 * kMiB, 10 * kMiB));
  m.observe(t.tick(10 * kMiB, 10 * kMiB));
  EXPECT_FALSE(m.report().throughput_mbps);
  m.observe(t.tick(13 * kMiB, 13 * kMiB));
  ASSERT_TRUE(m.report().throughput_mbps);
  // 33 MiB in 3 s.
  EXPECT_NEAR(*m.report().throughput_mbps, 33.0 * kMiB * 8 / 3 / 1e6, 1e-6);
  EXPECT_EQ(m.report().throughput_method, ThroughputMethod::Migration);
  EXPECT_EQ(m.report().throughput_at_ms, t.s.at_ms);
}

TEST(LinkMeter, TheNewestTransferReplacesTheBestOfAnOlderOne) {
  LinkMeter m("cloud", {.window_ticks = 2});
  Ticker t;
  m.observe(t.tick(0, 0));
  for (int i = 0; i < 4; ++i) {
    m.observe(t.tick(0, 20 * kMiB));
  }
  const double fast = *m.report().throughput_mbps;
  m.observe(t.tick(0, 0));  // the transfer ended
  EXPECT_DOUBLE_EQ(*m.report().throughput_mbps, fast) << "kept after the transfer";
  m.observe(t.tick(0, 2 * kMiB));  // a slower link now
  m.observe(t.tick(0, 2 * kMiB));
  EXPECT_NEAR(*m.report().throughput_mbps, 2.0 * kMiB * 8 / 1e6, 1e-6);
  m.observe(t.tick(0, 3 * kMiB));  // within one transfer the best window counts
  m.observe(t.tick(0, 1 * kMiB));
  EXPECT_NEAR(*m.report().throughput_mbps, 2.5 * kMiB * 8 / 1e6, 1e-6);
}

TEST(LinkMeter, ANewTunnelStartsItsCountersAgainWithoutAFalseRate) {
  LinkMeter m("cloud", {.window_ticks = 1});
  Ticker t;
  m.observe(t.tick(0, 0));
  m.observe(t.tick(0, 100 * kMiB));
  const double before = *m.report().throughput_mbps;
  // The tunnel is replaced: counters near zero again, a new generation.
  Ticker fresh;
  fresh.s.generation = 2;
  fresh.s.at_ms = t.s.at_ms;
  fresh.s.steady_us = t.s.steady_us;
  m.observe(fresh.tick(10, 0));
  EXPECT_DOUBLE_EQ(*m.report().throughput_mbps, before);
  m.observe(fresh.tick(10, 0));
  EXPECT_DOUBLE_EQ(*m.report().throughput_mbps, before);
  auto down = fresh.tick(0, 0);
  down.alive = false;
  m.observe(down);
  EXPECT_FALSE(m.report().connected);
  EXPECT_TRUE(m.report().throughput_mbps) << "the last measurement stays, with its time";
}

TEST(LinkMeter, TheNewerOfProbeAndTransferIsReported) {
  LinkMeter m("cloud", {.window_ticks = 1});
  Ticker t;
  m.observe(t.tick(0, 0));
  m.observe(t.tick(0, 10 * kMiB));
  m.recordProbe(42.0, t.s.at_ms + 500);
  EXPECT_DOUBLE_EQ(*m.report().throughput_mbps, 42.0);
  EXPECT_EQ(m.report().throughput_method, ThroughputMethod::Probe);
  EXPECT_EQ(m.report().measured_at_ms, t.s.at_ms + 500);
  m.observe(t.tick(0, 10 * kMiB));
  EXPECT_EQ(m.report().throughput_method, ThroughputMethod::Migration);
  m.recordProbe(-1, t.s.at_ms + 10);  // nonsense is ignored
  m.recordProbe(1e12, t.s.at_ms + 10);
  EXPECT_EQ(m.report().throughput_method, ThroughputMethod::Migration);
}

}  // namespace
}  // namespace vandra::orchestrator
