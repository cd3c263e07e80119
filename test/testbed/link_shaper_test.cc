// LinkShaper with a fake clock: serialisation time at the rate, exact one-way delay, loss
// fraction within a binomial bound for a fixed seed, tail drop on a full queue (packets and
// bytes), FIFO order, and the reference profiles.
#include <gtest/gtest.h>

#include <cmath>

#include "vandra/testbed/wan_emulator.h"

namespace vandra::testbed {
namespace {

using namespace std::chrono_literals;

const TimePoint t0 = TimePoint{} + 1000s;

Packet packetOf(size_t size, uint32_t tag) {
  Packet p(size, 0);
  for (size_t i = 0; i < 4 && i < size; ++i) {
    p[i] = static_cast<uint8_t>(tag >> (8 * i));
  }
  return p;
}

uint32_t tagOf(const Packet& p) {
  uint32_t t = 0;
  for (size_t i = 0; i < 4 && i < p.size(); ++i) {
    t |= static_cast<uint32_t>(p[i]) << (8 * i);
  }
  return t;
}

LinkParams bigQueue(uint64_t rate, std::chrono::nanoseconds delay) {
  LinkParams p;
  p.rate_bps = rate;
  p.delay = delay;
  p.queue_packets = 1'000'000;
  p.queue_bytes = 1ULL << 32;
  return p;
}

TEST(LinkShaper, BytesTakeEightTimesSizeOverRate) {
  // 8 Mbit/s: one byte per microsecond.
  LinkShaper s(bigQueue(8'000'000, 0ns));
  for (uint32_t i = 0; i < 100; ++i) {
    ASSERT_EQ(s.submit(t0, packetOf(1000, i)), LinkShaper::Verdict::Queued);
  }
  EXPECT_EQ(s.serialisationTime(1000), 1ms);
  std::vector<Packet> out;
  s.release(t0 + 100ms - 1ns, out);
  EXPECT_EQ(out.size(), 99U);
  s.release(t0 + 100ms, out);
  EXPECT_EQ(out.size(), 100U);
  EXPECT_EQ(s.stats().delivered_bytes, 100'000U);
  EXPECT_FALSE(s.nextDelivery().has_value());
}

TEST(LinkShaper, GigabitSerialisesAFullFrameIn12Microseconds) {
  LinkShaper s(bigQueue(1'000'000'000, 0ns));
  EXPECT_EQ(s.serialisationTime(1500), 12us);
  // 100 MB of 1500-byte packets takes 0.8 s: check the last one's delivery time.
  const size_t n = 100'000'000 / 1500;
  for (size_t i = 0; i < n; i += 1) {
    s.submit(t0, Packet(1500));
    if (i % 10000 == 0) {
      std::vector<Packet> sink;
      s.release(t0, sink);
    }
  }
  ASSERT_TRUE(s.nextDelivery().has_value());
  // The first packet is due after one frame time.
  EXPECT_EQ(*s.nextDelivery(), t0 + 12us);
  std::vector<Packet> out;
  s.release(t0 + std::chrono::nanoseconds(static_cast<int64_t>(n) * 12'000), out);
  EXPECT_EQ(out.size(), n);
}

TEST(LinkShaper, DelayIsExact) {
  LinkShaper s(bigQueue(0, 25ms));
  ASSERT_EQ(s.submit(t0, packetOf(100, 7)), LinkShaper::Verdict::Queued);
  ASSERT_TRUE(s.nextDelivery().has_value());
  EXPECT_EQ(*s.nextDelivery(), t0 + 25ms);
  std::vector<Packet> out;
  s.release(t0 + 25ms - 1ns, out);
  EXPECT_TRUE(out.empty());
  s.release(t0 + 25ms, out);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(tagOf(out[0]), 7U);
}

TEST(LinkShaper, RateThenDelay) {
  LinkShaper s(bigQueue(8'000'000, 25ms));
  for (uint32_t i = 0; i < 3; ++i) {
    s.submit(t0, packetOf(1000, i));
  }
  std::vector<Packet> out;
  s.release(t0 + 26ms - 1ns, out);
  EXPECT_TRUE(out.empty());
  s.release(t0 + 26ms, out);
  EXPECT_EQ(out.size(), 1U);
  EXPECT_EQ(*s.nextDelivery(), t0 + 27ms);
  s.release(t0 + 28ms, out);
  EXPECT_EQ(out.size(), 3U);
}

TEST(LinkShaper, IdleLinkGivesNoCredit) {
  LinkShaper s(bigQueue(8'000'000, 10ms));
  s.submit(t0, packetOf(1000, 1));
  std::vector<Packet> out;
  s.release(t0 + 1s, out);
  ASSERT_EQ(out.size(), 1U);
  s.submit(t0 + 1s, packetOf(1000, 2));
  EXPECT_EQ(*s.nextDelivery(), t0 + 1s + 1ms + 10ms);
}

TEST(LinkShaper, LossFractionWithinBinomialBound) {
  LinkParams p = bigQueue(0, 0ns);
  p.loss = 0.01;
  LinkShaper s(p, 42);
  const int n = 100'000;
  int lost = 0;
  for (int i = 0; i < n; ++i) {
    if (s.submit(t0, Packet(64)) == LinkShaper::Verdict::DroppedLoss) {
      ++lost;
    }
  }
  const double mean = n * p.loss;
  const double sd = std::sqrt(n * p.loss * (1 - p.loss));
  EXPECT_LT(std::abs(lost - mean), 5 * sd) << "lost " << lost;
  EXPECT_EQ(s.stats().dropped_loss, static_cast<uint64_t>(lost));
  std::vector<Packet> out;
  s.release(t0, out);
  EXPECT_EQ(out.size(), static_cast<size_t>(n - lost));
}

TEST(LinkShaper, SameSeedSameDrops) {
  LinkParams p = bigQueue(0, 0ns);
  p.loss = 0.3;
  LinkShaper a(p, 7);
  LinkShaper b(p, 7);
  LinkShaper c(p, 8);
  int differ = 0;
  for (int i = 0; i < 1000; ++i) {
    const auto va = a.submit(t0, Packet(1));
    EXPECT_EQ(va, b.submit(t0, Packet(1)));
    differ += va != c.submit(t0, Packet(1)) ? 1 : 0;
  }
  EXPECT_GT(differ, 0);
}

TEST(LinkShaper, NoLossAndAllLoss) {
  LinkParams p = bigQueue(0, 0ns);
  LinkShaper none(p, 1);
  p.loss = 1.0;
  LinkShaper all(p, 1);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(none.submit(t0, Packet(1)), LinkShaper::Verdict::Queued);
    EXPECT_EQ(all.submit(t0, Packet(1)), LinkShaper::Verdict::DroppedLoss);
  }
}

TEST(LinkShaper, FullQueueDropsTheTail) {
  LinkParams p = bigQueue(8'000'000, 5ms);
  p.queue_packets = 10;
  LinkShaper s(p);
  for (uint32_t i = 0; i < 20; ++i) {
    const auto v = s.submit(t0, packetOf(1000, i));
    EXPECT_EQ(v, i < 10 ? LinkShaper::Verdict::Queued : LinkShaper::Verdict::DroppedQueueFull) << i;
  }
  EXPECT_EQ(s.queuedPackets(), 10U);
  EXPECT_EQ(s.stats().dropped_queue, 10U);
  // One packet has been sent after 1 ms: room for exactly one more.
  EXPECT_EQ(s.submit(t0 + 1ms, packetOf(1000, 100)), LinkShaper::Verdict::Queued);
  EXPECT_EQ(s.submit(t0 + 1ms, packetOf(1000, 101)), LinkShaper::Verdict::DroppedQueueFull);
  std::vector<Packet> out;
  s.release(t0 + 1s, out);
  ASSERT_EQ(out.size(), 11U);
  for (uint32_t i = 0; i < 10; ++i) {
    EXPECT_EQ(tagOf(out[i]), i);
  }
  EXPECT_EQ(tagOf(out[10]), 100U);
}

TEST(LinkShaper, ByteLimit) {
  LinkParams p = bigQueue(8'000'000, 0ns);
  p.queue_bytes = 5000;
  LinkShaper s(p);
  int queued = 0;
  for (uint32_t i = 0; i < 10; ++i) {
    queued += s.submit(t0, packetOf(1000, i)) == LinkShaper::Verdict::Queued ? 1 : 0;
  }
  EXPECT_EQ(queued, 5);
  EXPECT_EQ(s.queuedBytes(), 5000U);
  // A small packet that fits is still refused when the byte limit is reached exactly.
  EXPECT_EQ(s.submit(t0, packetOf(1, 99)), LinkShaper::Verdict::DroppedQueueFull);
}

TEST(LinkShaper, OrderPreservedWithMixedSizes) {
  LinkShaper s(bigQueue(100'000'000, 3ms));
  uint32_t tag = 0;
  std::vector<Packet> out;
  TimePoint now = t0;
  for (int round = 0; round < 200; ++round) {
    for (int k = 0; k < 5; ++k) {
      s.submit(now, packetOf(static_cast<size_t>(40 + (round * 37 + k * 511) % 1460), tag++));
    }
    now += 50us;
    s.release(now, out);
  }
  s.release(now + 1s, out);
  ASSERT_EQ(out.size(), tag);
  for (uint32_t i = 0; i < tag; ++i) {
    ASSERT_EQ(tagOf(out[i]), i);
  }
}

TEST(LinkShaper, Validation) {
  LinkParams p;
  EXPECT_TRUE(validate(p));
  p.loss = 1.5;
  EXPECT_FALSE(validate(p));
  p.loss = 0;
  p.queue_packets = 0;
  EXPECT_FALSE(validate(p));
}

TEST(Profiles, ReferenceValues) {
  struct Want {
    const char* name;
    uint64_t rate;
    std::chrono::nanoseconds rtt;
    double loss;
  };
  for (const Want& w :
       {Want{"lan", 10'000'000'000ULL, 200us, 0.0}, Want{"metro", 1'000'000'000ULL, 10ms, 0.0},
        Want{"wan", 1'000'000'000ULL, 50ms, 0.0}, Want{"ldvm", 250'000'000ULL, 150ms, 0.0},
        Want{"lossy", 1'000'000'000ULL, 50ms, 0.005}}) {
    auto p = findProfile(w.name);
    ASSERT_TRUE(p) << w.name;
    EXPECT_EQ(p->link.rate_bps, w.rate);
    EXPECT_EQ(p->link.delay * 2, w.rtt);
    EXPECT_DOUBLE_EQ(p->link.loss, w.loss);
    EXPECT_TRUE(validate(p->link));
  }
  auto bad = findProfile("moon");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::NotFound);
}

}  // namespace
}  // namespace vandra::testbed
