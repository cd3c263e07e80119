// Ethernet over the site tunnel (root only): a segment stretched over two network
// namespaces through TAP devices, frames held for an address until released, reflection.
#include "tunnel_test_support.h"

namespace vandra::tunnel {
namespace {

// ---- Ethernet over TAP (root only)
// -----------------------------------------------------------------

Result<std::string> ip(std::vector<std::string> args) {
  args.insert(args.begin(), "ip");
  return runCapture(args);
}

class Namespaces {
 public:
  explicit Namespaces(std::vector<std::string> names) : names_(std::move(names)) {}
  ~Namespaces() {
    for (const auto& n : names_) {
      [[maybe_unused]] auto r = ip({"netns", "del", n});
    }
  }

 private:
  std::vector<std::string> names_;
};

// Two namespaces, each a bridge with a host on it, joined by TapBridges over a real tunnel:
//   ns a: host 10.99.0.1 ── br0 ── vtap0 [TapBridge] ══ tunnel ══ [TapBridge] vtap0 ── br0 ──
//   host 10.99.0.2 :ns b
class StretchedSegment : public ::testing::Test {
 protected:
  static constexpr const char* kHostB = "02:00:00:99:00:02";  // b's host, the address held below

  void SetUp() override {
    if (::geteuid() != 0 || ::access("/dev/net/tun", R_OK | W_OK) != 0) {
      VANDRA_SKIP_OR_FAIL("needs root and /dev/net/tun");
    }
    const std::string tag = std::to_string(::getpid() % 100000);
    ns_a = "vtt-" + tag + "-a";
    ns_b = "vtt-" + tag + "-b";
    cleanup = std::make_unique<Namespaces>(std::vector<std::string>{ns_a, ns_b});
    const std::vector<std::pair<std::string, std::string>> sites = {{ns_a, "10.99.0.1/24"},
                                                                    {ns_b, "10.99.0.2/24"}};
    for (const auto& [ns, addr] : sites) {
      ASSERT_TRUE(ip({"netns", "add", ns}));
      for (auto args : std::vector<std::vector<std::string>>{
               {"link", "set", "lo", "up"},
               {"link", "add", "br0", "type", "bridge"},
               {"link", "set", "br0", "up"},
               {"link", "add", "host", "type", "veth", "peer", "name", "host-br"},
               {"link", "set", "host", "address", ns == ns_b ? kHostB : "02:00:00:99:00:01"},
               {"link", "set", "host-br", "master", "br0", "up"},
               {"addr", "add", addr, "dev", "host"},
               {"link", "set", "host", "up"}}) {
        args.insert(args.begin(), {"-n", ns});
        auto r = ip(args);
        ASSERT_TRUE(r) << r.error().describe();
      }
    }
    server = std::make_unique<Server>();
    ASSERT_TRUE(server->listener);
    auto c = Tunnel::connect(clientOptions(server->listener->port()));
    ASSERT_TRUE(c) << c.error().describe();
    client = std::move(*c);
    // Each site makes its tap inside its namespace and attaches it to its bridge.
    auto a = TapBridge::create("vtap0", ns_a);
    ASSERT_TRUE(a) << a.error().describe();
    auto b = TapBridge::create("vtap0", ns_b);
    ASSERT_TRUE(b) << b.error().describe();
    tap_a = std::move(*a);
    tap_b = std::move(*b);
    for (const auto& ns : {ns_a, ns_b}) {
      ASSERT_TRUE(ip({"-n", ns, "link", "set", "vtap0", "master", "br0", "up"}));
    }
    auto eth = client->openStream(StreamKind::Ethernet, "net0");
    ASSERT_TRUE(eth);
    ASSERT_TRUE(tap_a->attach(std::move(*eth)));
    auto eth_in = server->inbox.take("net0");
    ASSERT_TRUE(eth_in);
    ASSERT_TRUE(tap_b->attach(std::move(*eth_in)));
  }

  // One ping from a to b, waiting up to @p wait_s for its reply (ping's own deadline).
  Result<std::string> pingB(int wait_s) {
    return runCapture({"ip", "netns", "exec", ns_a, "ping", "-c", "1", "-W", std::to_string(wait_s),
                       "10.99.0.2"});
  }
  // Waits (up to 10 s) until @p tap has held @p n frames in all.
  static bool heldAt(const TapBridge& tap, uint64_t n) {
    const auto until = Clock::now() + 10s;
    while (tap.counters().held < n) {
      if (Clock::now() >= until) {
        return false;
      }
      std::this_thread::sleep_for(5ms);  // polling a counter, not waiting for an effect
    }
    return true;
  }

  std::string ns_a, ns_b;
  std::unique_ptr<Namespaces> cleanup;  // destroyed last: the namespaces go after what is in them
  std::unique_ptr<Server> server;
  std::unique_ptr<Tunnel> client;
  std::unique_ptr<TapBridge> tap_a, tap_b;

  void TearDown() override {
    tap_a.reset();
    tap_b.reset();
    client.reset();
    server.reset();
    cleanup.reset();
  }
};

TEST_F(StretchedSegment, BridgeTapStretchesAnEthernetSegment) {
  // ping waits for its own replies with a deadline (-w).
  auto ping = runCapture(
      {"ip", "netns", "exec", ns_a, "ping", "-c", "3", "-w", "15", "-i", "0.2", "10.99.0.2"});
  EXPECT_TRUE(ping) << (ping ? "" : ping.error().describe());
  EXPECT_GT(tap_a->counters().frames_sent, 0U);
  EXPECT_GT(tap_a->counters().frames_received, 0U);
  EXPECT_GT(client->stats().of(StreamKind::Ethernet).bytes_received, 0U);
  EXPECT_EQ(tap_b->counters().held, 0U);

  // Removal leaves nothing: the taps go with their bridges' fds, then the namespaces.
  tap_a.reset();
  tap_b.reset();
  auto links = ip({"-n", ns_a, "-o", "link", "show"});
  ASSERT_TRUE(links);
  EXPECT_EQ(links->find("vtap0"), std::string::npos) << *links;
}

TEST_F(StretchedSegment, FramesHeldForAnAddressWaitForTheirRelease) {
  // b's bridge answers ARP for b's address too (arp_ignore=0): a must send to b's host.
  ASSERT_TRUE(ip({"-n", ns_a, "neigh", "replace", "10.99.0.2", "lladdr", kHostB, "dev", "host"}));
  ASSERT_TRUE(pingB(10));                               // b knows a's address now (ARP)
  EXPECT_FALSE(tap_b->hold("02:00:00:99:00:0", 1min));  // not an address: refused
  ASSERT_TRUE(tap_b->hold(kHostB, 1min));

  // Held: the echo request waits at b's tap, so no reply can come until it is released.
  auto pinging = std::async(std::launch::async, [&] { return pingB(20); });
  ASSERT_TRUE(heldAt(*tap_b, 1));
  if (pinging.wait_for(0s) != std::future_status::timeout) {
    auto early = pinging.get();
    FAIL() << "ping ended while its request was held: "
           << (early ? *early : early.error().describe());
  }
  const auto released = tap_b->release(kHostB, 10s);
  EXPECT_GE(released.delivered, 1U);
  EXPECT_EQ(released.discarded, 0U);
  auto answered = pinging.get();
  EXPECT_TRUE(answered) << answered.error().describe();

  // Released: frames pass again at once.
  ASSERT_TRUE(pingB(10));
  const uint64_t held = tap_b->counters().held;

  // Dropped: the held request is discarded, its ping gets no reply; the next ping passes.
  ASSERT_TRUE(tap_b->hold(kHostB, 1min));
  auto lost = std::async(std::launch::async, [&] { return pingB(2); });
  ASSERT_TRUE(heldAt(*tap_b, held + 1));
  EXPECT_GE(tap_b->drop(kHostB), 1U);
  EXPECT_FALSE(lost.get());
  ASSERT_TRUE(pingB(10));

  // Too old at release: discarded, not delivered.
  ASSERT_TRUE(tap_b->hold(kHostB, 1min));
  auto stale = std::async(std::launch::async, [&] { return pingB(2); });
  ASSERT_TRUE(heldAt(*tap_b, tap_b->counters().held + 1));
  const auto late = tap_b->release(kHostB, 0ms);
  EXPECT_EQ(late.delivered, 0U);
  EXPECT_GE(late.discarded, 1U);
  EXPECT_FALSE(stale.get());

  // A hold whose lifetime has passed lets frames through (and ends).
  ASSERT_TRUE(tap_b->hold(kHostB, 0ms));
  EXPECT_TRUE(pingB(10));
  EXPECT_EQ(tap_b->release(kHostB, 10s).delivered, 0U);
  EXPECT_GE(tap_b->counters().held_dropped, 2U);
}

// The source's half of a switchover: frames for the guest that reach it from the peer go
// back to the peer (to be held there). Here b reflects frames for its host, a holds them.
TEST_F(StretchedSegment, ReflectedFramesGoBackToThePeer) {
  ASSERT_TRUE(ip({"-n", ns_a, "neigh", "replace", "10.99.0.2", "lladdr", kHostB, "dev", "host"}));
  ASSERT_TRUE(pingB(10));
  EXPECT_FALSE(tap_b->reflect("not-a-mac", 1min));
  ASSERT_TRUE(tap_b->reflect(kHostB, 1min));
  ASSERT_TRUE(tap_a->hold(kHostB, 1min));
  auto pinging = std::async(std::launch::async, [&] { return pingB(2); });
  EXPECT_TRUE(heldAt(*tap_a, 1));
  EXPECT_GE(tap_b->counters().reflected, 1U);
  EXPECT_FALSE(pinging.get());  // its request went back to a, never to b's host
  EXPECT_GE(tap_b->unreflect(kHostB), 1U);
  EXPECT_EQ(tap_b->unreflect(kHostB), 0U);  // ended already
  EXPECT_GE(tap_a->drop(kHostB), 1U);
  EXPECT_TRUE(pingB(10));  // both ended: frames flow as before
}

}  // namespace
}  // namespace vandra::tunnel
