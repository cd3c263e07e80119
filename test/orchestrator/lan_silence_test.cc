// LanSilenceMeter on real AF_PACKET sockets: frames written to the loopback device with a
// made-up source MAC (loopback carries Ethernet headers to packet sockets as they are).
#include "vandra/orchestrator/lan_silence.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>
#include <thread>

#include "test/support/require.h"

namespace vandra::orchestrator {
namespace {

using namespace std::chrono_literals;
using Clock = LanSilenceMeter::Clock;

class LoopbackSender {
 public:
  LoopbackSender() : fd_(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL))) {}
  ~LoopbackSender() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  bool ok() const { return fd_ >= 0; }
  void send(const std::array<uint8_t, 6>& src) {
    std::array<uint8_t, 60> frame{};
    frame.fill(0);
    std::copy(src.begin(), src.end(), frame.begin() + 6);  // destination 00:..:00
    frame[12] = 0x88;  // EtherType 0x88b5: IEEE local experimental
    frame[13] = 0xb5;
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = static_cast<int>(if_nametoindex("lo"));
    to.sll_halen = 6;
    ASSERT_EQ(
        ::sendto(fd_, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
        static_cast<ssize_t>(frame.size()));
  }

 private:
  int fd_;
};

// Loopback is shared with every test running at the same time: each test's MACs carry this
// process's pid and a byte of its own, so no other test's frames match.
std::array<uint8_t, 6> macFor(uint8_t which) {
  const auto pid = static_cast<uint32_t>(::getpid());
  return {0x52,
          0x54,
          static_cast<uint8_t>(pid >> 16),
          static_cast<uint8_t>(pid >> 8),
          static_cast<uint8_t>(pid),
          which};
}

std::string text(const std::array<uint8_t, 6>& m) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                m[5]);
  return buf;
}

TEST(LanSilenceMeter, MeasuresTheSilenceOfOneMacAroundAnInstant) {
  LoopbackSender out;
  if (!out.ok()) {
    VANDRA_SKIP_OR_FAIL("no AF_PACKET socket (needs CAP_NET_RAW)");
  }
  const auto kVm = macFor(1);
  const auto kOther = macFor(2);
  auto meter = LanSilenceMeter::start(text(kVm), {"lo"});
  ASSERT_TRUE(meter) << meter.error().describe();
  out.send(kVm);
  const auto before = Clock::now();
  // The silence to measure: 300 ms without the VM's frames, while another MAC talks on.
  const auto pause_at = before + 100ms;
  while (Clock::now() < before + 300ms) {
    out.send(kOther);
    std::this_thread::sleep_for(10ms);
  }
  out.send(kVm);
  auto s = (*meter)->silenceAround(pause_at, Clock::now() + 5s);
  ASSERT_TRUE(s);
  // From the pause (the VM said nothing in its last 100 ms of running: not an interruption)...
  EXPECT_GE(s->silence_ms, 190.0);
  const double whole_ms = std::chrono::duration<double, std::milli>(Clock::now() - before).count();
  EXPECT_LE(s->silence_ms, whole_ms - 100 + 1);
  // ... and from its last frame.
  EXPECT_GE(s->since_last_frame_ms, 290.0);
  EXPECT_LE(s->since_last_frame_ms, whole_ms + 1);
  // The difference is the instant less the last frame's arrival: 100 ms at most, less by the
  // time the meter's reader took to see that frame (the machine may be busy).
  EXPECT_LE(s->since_last_frame_ms - s->silence_ms, 100.0 + 1.0);
  EXPECT_GT(s->since_last_frame_ms - s->silence_ms, 50.0);
  EXPECT_EQ(s->frames, 2U);  // loopback shows each frame out and in: counted once
}

TEST(LanSilenceMeter, NoFrameAfterTheInstantMeansNoAnswer) {
  LoopbackSender out;
  if (!out.ok()) {
    VANDRA_SKIP_OR_FAIL("no AF_PACKET socket (needs CAP_NET_RAW)");
  }
  const auto kVm = macFor(3);
  const auto kOther = macFor(4);
  auto meter = LanSilenceMeter::start(text(kVm), {"lo"});
  ASSERT_TRUE(meter) << meter.error().describe();
  const auto sent = Clock::now();
  out.send(kVm);
  out.send(kOther);
  // Returns once the meter has seen the frame (after `sent`), with no answer: nothing before.
  EXPECT_FALSE((*meter)->silenceAround(sent, Clock::now() + 5s));
  const auto t0 = Clock::now();
  EXPECT_FALSE((*meter)->silenceAround(Clock::now(), Clock::now() + 200ms));
  EXPECT_GE(Clock::now() - t0, 200ms);  // it waited for the deadline
  // Nothing seen before the instant either.
  auto fresh = LanSilenceMeter::start(text(macFor(5)), {"lo"});
  ASSERT_TRUE(fresh);
  EXPECT_FALSE((*fresh)->silenceAround(Clock::now(), Clock::now() + 50ms));
}

TEST(LanSilenceMeter, RefusesAMalformedMacOrInterface) {
  for (const char* bad :
       {"", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "zz:54:00:ab:cd:ef", "52-54-00-ab-cd-ef"}) {
    auto m = LanSilenceMeter::start(bad, {"lo"});
    ASSERT_FALSE(m) << bad;
    EXPECT_EQ(m.error().code, ErrorCode::InvalidArgument) << bad;
  }
  EXPECT_EQ(LanSilenceMeter::start("52:54:00:ab:cd:ef", {}).error().code,
            ErrorCode::InvalidArgument);
  auto missing = LanSilenceMeter::start("52:54:00:ab:cd:ef", {"lo", "vandra-nope0"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
  EXPECT_NE(missing.error().describe().find("vandra-nope0"), std::string::npos);
}

}  // namespace
}  // namespace vandra::orchestrator
