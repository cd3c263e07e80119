// The site tunnel transport over real TLS on loopback, with certificates made by vandra::pki:
// trust (unknown CA, wrong name, expired), version negotiation (2, and 1 with fixed windows),
// many concurrent streams checked byte for byte, per-stream flow control (a slow reader does
// not stall its neighbour), unix-socket forwarding with half-close, the bandwidth cap, a
// hostile peer speaking raw TLS, and (root only) an Ethernet segment stretched over two
// network namespaces through TAP devices.
#include "vandra/tunnel/tunnel.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "test/support/require.h"
#include "vandra/common/subprocess.h"
#include "vandra/common/unique_fd.h"
#include "vandra/pki/pki.h"
#include "vandra/tunnel/forward.h"

namespace vandra::tunnel {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The raw TLS client writes to sockets the server may have closed.
const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

Deadline in(std::chrono::milliseconds d) {
  return Clock::now() + d;
}

// Polls @p pred until it holds or @p deadline passes (a condition wait with a deadline).
template <class Pred>
bool eventually(Pred pred, Deadline deadline) {
  while (!pred()) {
    if (Clock::now() >= deadline) {
      return pred();
    }
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// ---- certificates ----------------------------------------------------------------------------

class Pki {
 public:
  Pki() {
    std::string t = "/tmp/vandra-tunnel-XXXXXX";
    dir_ = ::mkdtemp(t.data()) != nullptr ? t : "";
    ca("dc-ca");
    ca("cloud-ca");
    ca("rogue-ca");
    site("dc-ca", "dc", {"dc"});
    site("cloud-ca", "cloud", {"cloud"});
    site("cloud-ca", "cloud-old", {"cloud"});
    EXPECT_TRUE(
        pki::revoke(path("cloud-ca"), cert("cloud-ca", "cloud-old")));  // a CRL of cloud's CA
    site("rogue-ca", "dc", {"dc"});                                     // right name, unknown CA
    site("dc-ca", "dc-evil", {"dc-evil"});                              // right CA, wrong name
    site("dc-ca", "dc-expired", {"dc"}, -86400 * 3, 1);  // right CA and name, expired
    site("dc-ca", "dc-revoked", {"dc"});                 // right CA and name, revoked below
    auto crl = pki::revoke(path("dc-ca"), cert("dc-ca", "dc-revoked"));
    EXPECT_TRUE(crl) << crl.error().describe();
    // Bundles: each side trusts the peer sites' CAs.
    bundle("trust-cloud.pem", {"dc-ca"});
    bundle("trust-dc.pem", {"cloud-ca"});
  }
  ~Pki() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& rel) const { return dir_ + "/" + rel; }
  std::string cert(const std::string& ca_dir, const std::string& name) const {
    return path(ca_dir + "/" + name + ".crt");
  }
  std::string key(const std::string& ca_dir, const std::string& name) const {
    return path(ca_dir + "/" + name + ".key");
  }

 private:
  void ca(const std::string& name) {
    auto r = pki::initCa({.dir = path(name), .common_name = "vandra " + name, .days = 30});
    ASSERT_TRUE(r) << r.error().describe();
  }
  void site(const std::string& ca_dir, const std::string& name, std::vector<std::string> dns,
            int64_t offset = 0, uint32_t days = 30) {
    auto r = pki::issue({.ca_dir = path(ca_dir),
                         .name = name,
                         .role = pki::Role::Both,
                         .dns_names = std::move(dns),
                         .ip_addresses = {},
                         .days = days,
                         .not_before_offset_s = offset});
    ASSERT_TRUE(r) << r.error().describe();
  }
  void bundle(const std::string& file, const std::vector<std::string>& cas) {
    std::ofstream out(path(file));
    for (const auto& c : cas) {
      std::ifstream in(path(c + "/ca.crt"));
      out << in.rdbuf();
    }
  }
  std::string dir_;
};

const Pki& pkiOnce() {
  static const Pki p;
  return p;
}

// ---- streams the server side receives ---------------------------------------------------------

class Inbox {
 public:
  void put(const std::string& label, Stream s) {
    {
      std::lock_guard lk(mu_);
      streams_.emplace(label, std::move(s));
    }
    cv_.notify_all();
  }
  std::optional<Stream> take(const std::string& label, Deadline deadline = in(10s)) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_until(lk, deadline, [&] { return streams_.count(label) != 0; })) {
      return std::nullopt;
    }
    auto it = streams_.find(label);
    Stream s = std::move(it->second);
    streams_.erase(it);
    return s;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<std::string, Stream> streams_;
};

// A listener for site "cloud" accepting site "dc"; tunnels it accepts are kept here.
class Server {
 public:
  explicit Server(std::function<void(ListenerOptions&)> tweak = {}) {
    const Pki& p = pkiOnce();
    ListenerOptions o;
    o.local_site = "cloud";
    o.cert_path = p.cert("cloud-ca", "cloud");
    o.key_path = p.key("cloud-ca", "cloud");
    o.ca_bundle_path = p.path("trust-cloud.pem");
    o.peer_sites = {"dc"};
    o.bind_host = "127.0.0.1";
    o.handshake_timeout = 5s;
    o.on_stream = [this](StreamKind, const std::string& label, Stream s) {
      inbox.put(label, std::move(s));
    };
    o.on_tunnel = [this](std::unique_ptr<Tunnel> t) {
      {
        std::lock_guard lk(mu_);
        tunnels_.push_back(std::move(t));
      }
      cv_.notify_all();
    };
    if (tweak) {
      tweak(o);
    }
    auto l = TunnelListener::listen(o);
    EXPECT_TRUE(l) << l.error().describe();
    if (l) {
      listener = std::move(*l);
    }
  }
  ~Server() {
    listener.reset();
    std::lock_guard lk(mu_);
    tunnels_.clear();
  }
  Tunnel* waitTunnel(size_t n = 1, Deadline deadline = in(10s)) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_until(lk, deadline, [&] { return tunnels_.size() >= n; })) {
      return nullptr;
    }
    return tunnels_[n - 1].get();
  }
  size_t tunnelCount() {
    std::lock_guard lk(mu_);
    return tunnels_.size();
  }

  Inbox inbox;
  std::unique_ptr<TunnelListener> listener;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Tunnel>> tunnels_;
};

TunnelOptions clientOptions(uint16_t port, const std::string& cert_name = "dc",
                            const std::string& ca = "dc-ca") {
  const Pki& p = pkiOnce();
  TunnelOptions o;
  o.local_site = "dc";
  o.peer_site = "cloud";
  o.cert_path = p.cert(ca, cert_name);
  o.key_path = p.key(ca, cert_name);
  o.ca_bundle_path = p.path("trust-dc.pem");
  o.host = "127.0.0.1";
  o.port = port;
  o.handshake_timeout = 5s;
  return o;
}

// ---- deterministic pseudo-random data ---------------------------------------------------------

constexpr size_t kBlock = 64 * 1024;

void makeBlock(uint64_t seed, uint64_t index, std::string& out) {
  out.resize(kBlock);
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + index * 0xD1B54A32D192ED03ULL;
  for (size_t i = 0; i < kBlock; i += 8) {
    x += 0x9E3779B97F4A7C15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    std::memcpy(out.data() + i, &z, 8);
  }
}

Result<void> sendPattern(Stream& s, uint64_t seed, size_t total,
                         std::atomic<size_t>* progress = nullptr) {
  std::string block;
  for (size_t off = 0, i = 0; off < total; off += kBlock, ++i) {
    makeBlock(seed, i, block);
    VANDRA_TRY(s.write(std::string_view(block).substr(0, std::min(kBlock, total - off))));
    if (progress != nullptr) {
      progress->store(off + std::min(kBlock, total - off));
    }
  }
  return s.closeWrite();
}

// Reads to the end; "" when exactly @p total bytes of the pattern arrived, else what was wrong.
std::string checkPattern(Stream& s, uint64_t seed, size_t total) {
  std::string expected;
  std::vector<char> buf(200 * 1024);
  size_t pos = 0;
  uint64_t block_index = UINT64_MAX;
  for (;;) {
    auto r = s.read(buf.data(), buf.size(), in(60s));
    if (!r) {
      return "read failed at " + std::to_string(pos) + ": " + r.error().describe();
    }
    if (*r == 0) {
      return pos == total ? "" : "ended at " + std::to_string(pos) + " of " + std::to_string(total);
    }
    size_t off = 0;
    while (off < *r) {
      const uint64_t bi = pos / kBlock;
      if (bi != block_index) {
        makeBlock(seed, bi, expected);
        block_index = bi;
      }
      const size_t in_block = pos % kBlock;
      const size_t n = std::min(*r - off, kBlock - in_block);
      if (pos + n > total) {
        return "more than " + std::to_string(total) + " bytes";
      }
      if (std::memcmp(buf.data() + off, expected.data() + in_block, n) != 0) {
        return "mismatch in bytes " + std::to_string(pos) + ".." + std::to_string(pos + n);
      }
      pos += n;
      off += n;
    }
  }
}

// ---- trust and versions -------------------------------------------------------------------------

TEST(TunnelTest, FourConnectionsVersion2AndAStream) {
  Server server([](ListenerOptions& o) { o.ping_interval = 20ms; });
  ASSERT_TRUE(server.listener);
  auto opts = clientOptions(server.listener->port());
  opts.ping_interval = 20ms;
  auto client = Tunnel::connect(opts);
  ASSERT_TRUE(client) << client.error().describe();
  Tunnel* peer = server.waitTunnel();
  ASSERT_NE(peer, nullptr);
  Tunnel& t = **client;
  EXPECT_EQ(t.version(), 2);
  EXPECT_EQ(peer->version(), 2);
  EXPECT_EQ(t.connectionCount(), 4U);
  EXPECT_EQ(peer->connectionCount(), 4U);
  EXPECT_EQ(t.sessionId(), peer->sessionId());
  EXPECT_EQ(t.peerSite(), "cloud");
  EXPECT_EQ(peer->peerSite(), "dc");
  EXPECT_TRUE(t.alive());

  // Control on connection 0, bulk streams round-robin over 1..3.
  auto control = t.openStream(StreamKind::Control, "m-1");
  ASSERT_TRUE(control);
  EXPECT_EQ(control->connection(), 0);
  std::vector<uint16_t> used;
  std::vector<Stream> bulk;
  for (int i = 0; i < 3; ++i) {
    auto s = t.openStream(StreamKind::Nbd, "m-1/disk" + std::to_string(i));
    ASSERT_TRUE(s);
    used.push_back(s->connection());
    bulk.push_back(std::move(*s));
  }
  std::sort(used.begin(), used.end());
  EXPECT_EQ(used, (std::vector<uint16_t>{1, 2, 3}));

  ASSERT_TRUE(control->writeMessage(R"({"type":"prepare","migration_id":"m-1"})"));
  auto got = server.inbox.take("m-1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->kind(), StreamKind::Control);
  auto msg = got->readMessage(in(5s));
  ASSERT_TRUE(msg && *msg);
  EXPECT_EQ(**msg, R"({"type":"prepare","migration_id":"m-1"})");
  ASSERT_TRUE(got->writeMessage("ack"));
  ASSERT_TRUE(got->closeWrite());
  auto back = control->readMessage(in(5s));
  ASSERT_TRUE(back && *back);
  EXPECT_EQ(**back, "ack");
  auto end = control->readMessage(in(5s));
  ASSERT_TRUE(end);
  EXPECT_FALSE(*end);

  // Keepalive measures the round trip; counters see the bytes.
  EXPECT_TRUE(eventually([&] { return t.rtt().has_value() && peer->rtt().has_value(); }, in(5s)));
  const TunnelStats st = t.stats();
  EXPECT_GT(st.wire_bytes_sent, st.frame_bytes_sent);  // TLS records and handshakes on top
  EXPECT_GT(st.wire_bytes_received, 0U);
  EXPECT_EQ(st.of(StreamKind::Control).bytes_sent,
            std::string(R"({"type":"prepare","migration_id":"m-1"})").size());
  EXPECT_EQ(st.of(StreamKind::Control).bytes_received, 3U);
  EXPECT_EQ(st.of(StreamKind::Nbd).streams, 3U);
  EXPECT_GT(st.pongs_received, 0U);

  // Closing one side tells the other why.
  t.close("agent stopping");
  ASSERT_TRUE(peer->waitDown(in(5s)));
  EXPECT_NE(peer->error()->message.find("GOAWAY shutdown: agent stopping"), std::string::npos)
      << peer->error()->message;
  auto after = bulk[0].write("x");
  EXPECT_FALSE(after);
}

// The tunnel's own congestion control: set on every connection, refused by name when the
// host has no such algorithm (vandrad checks it at start).
TEST(TunnelTest, CongestionControlIsSetOrRefusedByName) {
  EXPECT_TRUE(checkCongestionControl(""));
  EXPECT_TRUE(checkCongestionControl("reno"));  // always built in
  auto missing = checkCongestionControl("no-such-cc");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(missing.error().describe().find("'no-such-cc' is not available"), std::string::npos)
      << missing.error().describe();

  Server server;
  ASSERT_TRUE(server.listener);
  auto reno = clientOptions(server.listener->port());
  reno.congestion_control = "reno";
  auto ok = Tunnel::connect(reno);
  ASSERT_TRUE(ok) << ok.error().describe();
  auto bad = clientOptions(server.listener->port());
  bad.congestion_control = "no-such-cc";
  auto refused = Tunnel::connect(bad);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().describe().find("no-such-cc"), std::string::npos)
      << refused.error().describe();
}

// A port this host cannot bind yet (another socket holds it, as a missing WAN address would
// refuse it) does not fail listen() with retry_bind: the listener says it retries and why,
// binds once the port is free (told through on_status), and a tunnel comes up through it.
TEST(TunnelTest, ListenerRetriesItsBindInTheBackground) {
  UniqueFd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(holder.get(), 1), 0);
  ASSERT_EQ(::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  const uint16_t held = ntohs(a.sin_port);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<ListenerStatus::State> seen;
  Server server([&](ListenerOptions& o) {
    o.port = held;
    o.retry_bind = true;
    o.bind_retry_max = 200ms;
    o.on_status = [&](const ListenerStatus& st) {
      std::lock_guard lk(mu);
      seen.push_back(st.state);
      cv.notify_all();
    };
  });
  ASSERT_TRUE(server.listener);
  const auto st = server.listener->status();
  EXPECT_EQ(st.state, ListenerStatus::State::Retrying);
  ASSERT_TRUE(st.last_error);
  EXPECT_NE(st.last_error->describe().find("Cannot bind the tunnel listener to 127.0.0.1:"),
            std::string::npos)
      << st.last_error->describe();
  EXPECT_GT(st.since_us, 0);
  EXPECT_EQ(server.listener->port(), 0);
  holder = UniqueFd();  // the port is free now
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_until(lk, in(10s), [&] {
      return !seen.empty() && seen.back() == ListenerStatus::State::Listening;
    }));
    EXPECT_EQ(seen.front(), ListenerStatus::State::Retrying);
  }
  EXPECT_EQ(server.listener->port(), held);
  EXPECT_EQ(server.listener->status().state, ListenerStatus::State::Listening);
  auto t = Tunnel::connect(clientOptions(held));
  ASSERT_TRUE(t) << t.error().describe();
  EXPECT_NE(server.waitTunnel(), nullptr);
}

// An address that is on no interface (TEST-NET-1): without retry_bind listen() fails with
// the bind's error; with it, the listener retries, and stopping it does not wait for its
// next try (a 10 s backoff here).
TEST(TunnelTest, AListenerThatCannotBindStopsAtOnce) {
  const Pki& p = pkiOnce();
  ListenerOptions o;
  o.local_site = "cloud";
  o.cert_path = p.cert("cloud-ca", "cloud");
  o.key_path = p.key("cloud-ca", "cloud");
  o.ca_bundle_path = p.path("trust-cloud.pem");
  o.peer_sites = {"dc"};
  o.bind_host = "192.0.2.1";
  o.on_tunnel = [](std::unique_ptr<Tunnel>) {};
  auto plain = TunnelListener::listen(o);
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code, ErrorCode::Io) << plain.error().describe();
  o.retry_bind = true;
  o.bind_retry_max = 10s;
  auto retrying = TunnelListener::listen(o);
  ASSERT_TRUE(retrying) << retrying.error().describe();
  const auto st = (*retrying)->status();
  EXPECT_EQ(st.state, ListenerStatus::State::Retrying);
  ASSERT_TRUE(st.last_error);
  EXPECT_NE(st.last_error->describe().find("Cannot assign requested address"), std::string::npos)
      << st.last_error->describe();
  EXPECT_EQ(st.address, "192.0.2.1:0");
  EXPECT_GE(st.attempts, 1U);
  const auto t0 = Clock::now();
  retrying->reset();
  EXPECT_LT(Clock::now() - t0, 2s);
}

TEST(TunnelTest, UnknownCaIsRefusedBeforeAnyFrame) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto client = Tunnel::connect(clientOptions(server.listener->port(), "dc", "rogue-ca"));
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, ErrorCode::CertificateUntrusted);
  EXPECT_NE(client.error().message.find("refused our certificate: unknown CA"), std::string::npos)
      << client.error().message;
  ASSERT_TRUE(eventually([&] { return server.listener->refusedCount() >= 1; }, in(5s)));
  auto why = server.listener->lastRefusal();
  ASSERT_TRUE(why);
  EXPECT_EQ(why->code, ErrorCode::CertificateUntrusted);
  EXPECT_NE(why->message.find("unknown CA"), std::string::npos) << why->message;
  EXPECT_EQ(server.tunnelCount(), 0U);
  EXPECT_EQ(server.listener->tunnelCount(), 0U);
}

// A certificate on its CA's revocation list (vandra pki revoke, vandrad --tunnel-crl) is
// refused in the handshake, before any frame; the same CA's other certificates still pass.
TEST(TunnelTest, RevokedCertificateIsRefusedBeforeAnyFrame) {
  const Pki& p = pkiOnce();
  Server server([&](ListenerOptions& o) { o.crl_path = p.path("dc-ca/ca.crl"); });
  ASSERT_TRUE(server.listener);
  auto revoked = clientOptions(server.listener->port(), "dc-revoked");
  revoked.local_site = "dc";
  auto client = Tunnel::connect(revoked);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, ErrorCode::CertificateUntrusted);
  EXPECT_NE(client.error().message.find("revoked"), std::string::npos) << client.error().message;
  ASSERT_TRUE(eventually([&] { return server.listener->refusedCount() >= 1; }, in(5s)));
  auto why = server.listener->lastRefusal();
  ASSERT_TRUE(why);
  EXPECT_NE(why->message.find("revoked"), std::string::npos) << why->message;
  EXPECT_EQ(server.tunnelCount(), 0U);
  // dc's own certificate is not on the list.
  auto fine = Tunnel::connect(clientOptions(server.listener->port()));
  EXPECT_TRUE(fine) << fine.error().describe();
  // Revoking again keeps one entry; a certificate of another CA is not this CA's to revoke.
  EXPECT_TRUE(pki::revoke(p.path("dc-ca"), p.cert("dc-ca", "dc-revoked")));
  auto other = pki::revoke(p.path("dc-ca"), p.cert("cloud-ca", "cloud"));
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, ErrorCode::InvalidArgument);
}

// Once a CRL file is given, a peer whose CA has no CRL in it is refused too (the file must
// cover every CA it is used with), with a message that says so.
TEST(TunnelTest, CrlFileWithoutThePeersCaRefusesIt) {
  const Pki& p = pkiOnce();
  Server server([&](ListenerOptions& o) { o.crl_path = p.path("cloud-ca/ca.crl"); });
  ASSERT_TRUE(server.listener);
  auto client = Tunnel::connect(clientOptions(server.listener->port()));
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, ErrorCode::CertificateUntrusted);
  ASSERT_TRUE(eventually([&] { return server.listener->refusedCount() >= 1; }, in(5s)));
  auto why = server.listener->lastRefusal();
  ASSERT_TRUE(why);
  EXPECT_NE(why->message.find("no CRL"), std::string::npos) << why->message;
}

TEST(TunnelTest, RightCaWrongNameIsRefused) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto opts = clientOptions(server.listener->port(), "dc-evil");
  opts.local_site = "dc-evil";
  auto client = Tunnel::connect(opts);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, ErrorCode::CertificateUntrusted);
  EXPECT_NE(client.error().message.find("wrong name"), std::string::npos) << client.error().message;
  ASSERT_TRUE(eventually([&] { return server.listener->refusedCount() >= 1; }, in(5s)));
  EXPECT_NE(server.listener->lastRefusal()->message.find("wrong name"), std::string::npos)
      << server.listener->lastRefusal()->message;
  EXPECT_EQ(server.tunnelCount(), 0U);

  // The dialing side checks the listener's name as well.
  auto other = clientOptions(server.listener->port());
  other.peer_site = "cloud-2";
  auto c2 = Tunnel::connect(other);
  ASSERT_FALSE(c2);
  EXPECT_EQ(c2.error().code, ErrorCode::CertificateUntrusted);
  EXPECT_NE(c2.error().message.find("wrong name"), std::string::npos) << c2.error().message;
  EXPECT_NE(c2.error().message.find("site 'cloud-2'"), std::string::npos) << c2.error().message;
  EXPECT_EQ(server.tunnelCount(), 0U);
}

TEST(TunnelTest, ExpiredCertificateIsRefused) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto client = Tunnel::connect(clientOptions(server.listener->port(), "dc-expired"));
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, ErrorCode::CertificateExpired) << client.error().describe();
  ASSERT_TRUE(eventually([&] { return server.listener->refusedCount() >= 1; }, in(5s)));
  EXPECT_EQ(server.listener->lastRefusal()->code, ErrorCode::CertificateExpired);
  EXPECT_NE(server.listener->lastRefusal()->message.find("expired"), std::string::npos);
  EXPECT_EQ(server.tunnelCount(), 0U);
}

TEST(TunnelTest, OurOwnCertificateMustNameOurSite) {
  auto opts = clientOptions(1);
  opts.local_site = "zurich";
  auto client = Tunnel::connect(opts);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(client.error().message.find("does not name site 'zurich'"), std::string::npos);
}

TEST(TunnelTest, VersionOnePeerWorksWithFixedWindows) {
  for (const bool client_is_old : {true, false}) {
    SCOPED_TRACE(client_is_old ? "old client" : "old listener");
    Server server([&](ListenerOptions& o) { o.max_version = client_is_old ? 2 : 1; });
    ASSERT_TRUE(server.listener);
    auto opts = clientOptions(server.listener->port());
    opts.max_version = client_is_old ? 1 : 2;
    opts.connections = 1;
    auto client = Tunnel::connect(opts);
    ASSERT_TRUE(client) << client.error().describe();
    Tunnel* peer = server.waitTunnel();
    ASSERT_NE(peer, nullptr);
    EXPECT_EQ((*client)->version(), 1);
    EXPECT_EQ(peer->version(), 1);

    // 8 MiB each way, read as it comes.
    auto s = (*client)->openStream(StreamKind::Migration, "m-v1");
    ASSERT_TRUE(s);
    auto r = server.inbox.take("m-v1");
    ASSERT_TRUE(r);
    constexpr size_t kSize = 8 * 1024 * 1024;
    std::string up_err, down_err;
    std::thread a([&] { ASSERT_TRUE(sendPattern(*s, 11, kSize)); });
    std::thread b([&] { ASSERT_TRUE(sendPattern(*r, 12, kSize)); });
    std::thread c([&] { up_err = checkPattern(*r, 11, kSize); });
    down_err = checkPattern(*s, 12, kSize);
    a.join();
    b.join();
    c.join();
    EXPECT_EQ(up_err, "");
    EXPECT_EQ(down_err, "");

    // Nobody reads: the receiver holds the fixed 4 MiB window, then stops reading the
    // connection, so even a new stream's OPEN waits (version 1 has no per-stream credit).
    auto unread = (*client)->openStream(StreamKind::Migration, "unread");
    ASSERT_TRUE(unread);
    auto unread_in = server.inbox.take("unread");
    ASSERT_TRUE(unread_in);
    constexpr size_t kBig = 32 * 1024 * 1024;
    std::thread w([&] { EXPECT_TRUE(sendPattern(*unread, 13, kBig)); });
    const auto buffered = [&] {
      return peer->stats().of(StreamKind::Migration).bytes_received - kSize;
    };
    ASSERT_TRUE(eventually([&] { return buffered() >= kVersion1StreamWindow; }, in(10s)));
    auto late = (*client)->openStream(StreamKind::Migration, "late");
    ASSERT_TRUE(late);
    ASSERT_TRUE(late->writeMessage("after the pause"));
    EXPECT_FALSE(server.inbox.take("late", in(300ms))) << "the connection should be paused";
    EXPECT_LT(buffered(), size_t{kVersion1StreamWindow} + 512 * 1024);
    EXPECT_EQ(checkPattern(*unread_in, 13, kBig), "");  // reading resumes the connection
    w.join();
    auto late_in = server.inbox.take("late");
    ASSERT_TRUE(late_in);
    auto m = late_in->readMessage(in(5s));
    ASSERT_TRUE(m && *m);
    EXPECT_EQ(**m, "after the pause");
  }
}

// ---- streams ------------------------------------------------------------------------------------

TEST(TunnelTest, EightStreamsOf16MiBBothWays) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto client = Tunnel::connect(clientOptions(server.listener->port()));
  ASSERT_TRUE(client) << client.error().describe();
  Tunnel* peer = server.waitTunnel();
  ASSERT_NE(peer, nullptr);
  constexpr size_t kStreams = 8;
  constexpr size_t kSize = 16 * 1024 * 1024;
  std::vector<Stream> ours(kStreams);
  std::vector<Stream> theirs(kStreams);
  for (size_t i = 0; i < kStreams; ++i) {
    auto s = (*client)->openStream(StreamKind::Migration, "s" + std::to_string(i));
    ASSERT_TRUE(s) << s.error().describe();
    ours[i] = std::move(*s);
  }
  for (size_t i = 0; i < kStreams; ++i) {
    auto s = server.inbox.take("s" + std::to_string(i));
    ASSERT_TRUE(s);
    theirs[i] = std::move(*s);
  }
  std::vector<std::string> errors(kStreams * 2);
  std::vector<std::thread> threads;
  std::atomic<int> write_failures{0};
  for (size_t i = 0; i < kStreams; ++i) {
    const auto seed_up = static_cast<uint64_t>(100 + i);
    const auto seed_down = static_cast<uint64_t>(200 + i);
    threads.emplace_back(
        [&, i, seed_up] { write_failures += sendPattern(ours[i], seed_up, kSize) ? 0 : 1; });
    threads.emplace_back(
        [&, i, seed_down] { write_failures += sendPattern(theirs[i], seed_down, kSize) ? 0 : 1; });
    threads.emplace_back(
        [&, i, seed_up] { errors[2 * i] = checkPattern(theirs[i], seed_up, kSize); });
    threads.emplace_back(
        [&, i, seed_down] { errors[2 * i + 1] = checkPattern(ours[i], seed_down, kSize); });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(write_failures.load(), 0);
  for (size_t i = 0; i < kStreams * 2; ++i) {
    EXPECT_EQ(errors[i], "") << "stream " << i / 2 << (i % 2 == 0 ? " up" : " down");
  }
  const TunnelStats st = (*client)->stats();
  EXPECT_EQ(st.of(StreamKind::Migration).bytes_sent, kSize * kStreams);
  EXPECT_EQ(st.of(StreamKind::Migration).bytes_received, kSize * kStreams);
  EXPECT_GE(st.wire_bytes_sent, kSize * kStreams);
  EXPECT_GE(peer->stats().wire_bytes_received, kSize * kStreams);
  EXPECT_TRUE((*client)->alive());
  EXPECT_TRUE(peer->alive());
}

TEST(TunnelTest, SlowReaderDoesNotBlockAnotherStreamOnTheSameConnection) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto opts = clientOptions(server.listener->port());
  opts.connections = 1;
  auto client = Tunnel::connect(opts);
  ASSERT_TRUE(client) << client.error().describe();
  auto slow = (*client)->openStream(StreamKind::Nbd, "slow");
  auto fast = (*client)->openStream(StreamKind::Nbd, "fast");
  ASSERT_TRUE(slow && fast);
  ASSERT_EQ(slow->connection(), fast->connection());
  auto slow_in = server.inbox.take("slow");
  auto fast_in = server.inbox.take("fast");
  ASSERT_TRUE(slow_in && fast_in);

  constexpr size_t kSize = 16 * 1024 * 1024;
  std::atomic<size_t> slow_progress{0};
  std::atomic<bool> slow_done{false};
  std::thread slow_writer([&] {
    EXPECT_TRUE(sendPattern(*slow, 1, kSize, &slow_progress));
    slow_done = true;
  });
  std::thread fast_writer([&] { EXPECT_TRUE(sendPattern(*fast, 2, kSize)); });
  // Nobody reads the slow stream: the fast one must still complete.
  EXPECT_EQ(checkPattern(*fast_in, 2, kSize), "");
  fast_writer.join();
  EXPECT_FALSE(slow_done.load());
  EXPECT_LE(slow_progress.load(), size_t{4 * 1024 * 1024} + kBlock)  // the receive window
      << "the slow stream's writer went past the window its reader granted";
  // Now the slow reader drains, and its writer finishes.
  EXPECT_EQ(checkPattern(*slow_in, 1, kSize), "");
  slow_writer.join();
  EXPECT_TRUE(slow_done.load());
}

TEST(TunnelTest, ResetAndRefusalReachTheOtherSide) {
  Server server([](ListenerOptions& o) {
    o.on_stream = nullptr;  // only routed kinds are accepted
  });
  ASSERT_TRUE(server.listener);
  auto client = Tunnel::connect(clientOptions(server.listener->port()));
  ASSERT_TRUE(client) << client.error().describe();
  Tunnel* peer = server.waitTunnel();
  ASSERT_NE(peer, nullptr);
  Inbox routed;
  const uint64_t route = peer->addStreamHandler(
      StreamKind::Nbd, "m-7/",
      [&](StreamKind, const std::string& label, Stream s) { routed.put(label, std::move(s)); });

  // No route for this one: refused.
  auto refused = (*client)->openStream(StreamKind::Migration, "m-7");
  ASSERT_TRUE(refused);
  char c = 0;
  auto r = refused->read(&c, 1, in(5s));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("stream_refused"), std::string::npos) << r.error().message;

  // Routed by label prefix; a reset on one side is an error on the other.
  auto s = (*client)->openStream(StreamKind::Nbd, "m-7/disk0");
  ASSERT_TRUE(s);
  auto in_s = routed.take("m-7/disk0");
  ASSERT_TRUE(in_s);
  ASSERT_TRUE(s->write("partial"));
  char buf[16];
  auto got = in_s->read(buf, sizeof buf, in(5s));
  ASSERT_TRUE(got);
  EXPECT_EQ(std::string(buf, *got), "partial");
  s->close(WireError::Cancelled, "migration aborted");
  auto after = in_s->read(buf, sizeof buf, in(5s));
  ASSERT_FALSE(after);
  EXPECT_NE(after.error().message.find("cancelled: migration aborted"), std::string::npos)
      << after.error().message;
  auto wr = in_s->write("more");
  EXPECT_FALSE(wr);

  // "m-7/" does not take a sibling migration's disk.
  auto sibling = (*client)->openStream(StreamKind::Nbd, "m-70/disk0");
  ASSERT_TRUE(sibling);
  auto sr = sibling->read(&c, 1, in(5s));
  ASSERT_FALSE(sr);
  EXPECT_NE(sr.error().message.find("stream_refused"), std::string::npos);

  peer->removeStreamHandler(route);
  auto late = (*client)->openStream(StreamKind::Nbd, "m-7/disk1");
  ASSERT_TRUE(late);
  auto lr = late->read(&c, 1, in(5s));
  ASSERT_FALSE(lr);
  EXPECT_NE(lr.error().message.find("stream_refused"), std::string::npos);
  EXPECT_TRUE((*client)->alive());
}

// ---- unix-socket forwarding ---------------------------------------------------------------------

UniqueFd unixListen(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  EXPECT_EQ(::listen(fd.get(), 8), 0);
  return fd;
}

UniqueFd unixConnect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0)
      << std::strerror(errno);
  timeval tv{20, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

TEST(TunnelTest, ForwardUnixSocketEchoWithHalfClose) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto client = Tunnel::connect(clientOptions(server.listener->port()));
  ASSERT_TRUE(client) << client.error().describe();
  Tunnel* target = server.waitTunnel();
  ASSERT_NE(target, nullptr);
  const std::string dir = pkiOnce().path("");
  const std::string echo_path = dir + "echo.sock";
  const std::string mig_path = dir + "mig.sock";

  // The "target QEMU": echoes everything, then closes when its client half-closes.
  UniqueFd echo = unixListen(echo_path);
  std::atomic<int> echoed_connections{0};
  std::thread echo_server([&] {
    for (int i = 0; i < 2; ++i) {
      UniqueFd c(::accept(echo.get(), nullptr, nullptr));
      if (!c.valid()) {
        return;
      }
      std::vector<char> buf(32 * 1024);
      for (;;) {
        const ssize_t n = ::read(c.get(), buf.data(), buf.size());
        if (n <= 0) {
          break;
        }
        ASSERT_TRUE(writeAll(c.get(), buf.data(), static_cast<size_t>(n), "echo"));
      }
      ++echoed_connections;
    }
  });

  auto to_target =
      forwardUnixSocket(*target, ForwardMode::Connect, StreamKind::Migration, "m-9", echo_path);
  ASSERT_TRUE(to_target) << to_target.error().describe();
  auto from_source =
      forwardUnixSocket(**client, ForwardMode::Listen, StreamKind::Migration, "m-9", mig_path);
  ASSERT_TRUE(from_source) << from_source.error().describe();

  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    UniqueFd qemu = unixConnect(mig_path);
    std::string sent(3 * 1024 * 1024 + 17, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(sent.data()), static_cast<int>(sent.size()));
    std::string received;
    std::thread reader([&] {
      std::vector<char> buf(64 * 1024);
      for (;;) {
        const ssize_t n = ::read(qemu.get(), buf.data(), buf.size());
        if (n <= 0) {
          break;  // end of file: the echo side closed after our half-close
        }
        received.append(buf.data(), static_cast<size_t>(n));
      }
    });
    ASSERT_TRUE(writeAll(qemu.get(), sent.data(), sent.size(), "client"));
    ::shutdown(qemu.get(), SHUT_WR);  // half-close: the echoes must still come back
    reader.join();
    EXPECT_EQ(received.size(), sent.size());
    EXPECT_TRUE(received == sent);
  }
  echo_server.join();
  EXPECT_EQ(echoed_connections.load(), 2);
  EXPECT_EQ((*from_source)->forwarded(), 2U);
  EXPECT_TRUE(eventually(
      [&] { return (*from_source)->active() == 0 && (*to_target)->active() == 0; }, in(5s)));
  EXPECT_GE((*client)->stats().of(StreamKind::Migration).bytes_sent, 2 * (3U * 1024 * 1024 + 17));

  // A reset: the target side's socket is gone, so the source's connection is closed at once.
  echo = UniqueFd();
  ::unlink(echo_path.c_str());
  UniqueFd qemu = unixConnect(mig_path);
  char c = 0;
  EXPECT_EQ(::read(qemu.get(), &c, 1), 0);  // closed, not hanging
  from_source->reset();
  EXPECT_FALSE(fs::exists(mig_path));
  to_target->reset();
}

// ---- bandwidth cap
// -------------------------------------------------------------------------------

TEST(TunnelTest, BandwidthCapLimitsTheRate) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto opts = clientOptions(server.listener->port());
  opts.bandwidth_bytes_per_s = 20'000'000;
  auto client = Tunnel::connect(opts);
  ASSERT_TRUE(client) << client.error().describe();
  auto s = (*client)->openStream(StreamKind::Migration, "capped");
  ASSERT_TRUE(s);
  auto r = server.inbox.take("capped");
  ASSERT_TRUE(r);
  constexpr size_t kSize = 40'000'000;
  const auto start = Clock::now();
  std::thread w([&] { EXPECT_TRUE(sendPattern(*s, 5, kSize)); });
  EXPECT_EQ(checkPattern(*r, 5, kSize), "");
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  w.join();
  EXPECT_GE(secs, 1.8);
  EXPECT_LE(secs, 30.0);
  std::printf("[ measured ] 40 MB at a 20 MB/s cap took %.2f s (%.1f MB/s)\n", secs,
              kSize / secs / 1e6);
}

// A cap set on a running tunnel (the accepting side learns the peer's name, and so its cap,
// only after the handshake) applies from then on, and lifting it frees a writer waiting on it.
TEST(TunnelTest, BandwidthCapCanBeSetAndLiftedOnARunningTunnel) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto client = Tunnel::connect(clientOptions(server.listener->port()));
  ASSERT_TRUE(client) << client.error().describe();
  EXPECT_EQ((*client)->bandwidth(), 0U);
  auto s = (*client)->openStream(StreamKind::Migration, "recapped");
  ASSERT_TRUE(s);
  auto r = server.inbox.take("recapped");
  ASSERT_TRUE(r);
  (*client)->setBandwidth(20'000'000);
  EXPECT_EQ((*client)->bandwidth(), 20'000'000U);
  constexpr size_t kSize = 40'000'000;
  auto start = Clock::now();
  std::thread w([&] { EXPECT_TRUE(sendPattern(*s, 6, kSize)); });
  EXPECT_EQ(checkPattern(*r, 6, kSize), "");
  w.join();
  EXPECT_GE(std::chrono::duration<double>(Clock::now() - start).count(), 1.8);
  // 1 MB/s would take 40 s for the next 40 MB: lifted once the reader has seen data arrive,
  // the writer goes on at full speed.
  (*client)->setBandwidth(1'000'000);
  auto s2 = (*client)->openStream(StreamKind::Migration, "recapped-2");  // the first one has ended
  ASSERT_TRUE(s2);
  auto r2 = server.inbox.take("recapped-2");
  ASSERT_TRUE(r2);
  r = std::move(r2);
  start = Clock::now();
  std::thread w2([&] { EXPECT_TRUE(sendPattern(*s2, 7, kSize)); });
  std::promise<void> arriving;
  size_t total = 0;
  std::thread drain([&] {
    std::vector<char> buf(1 << 16);
    while (total < kSize) {
      auto got = r->read(buf.data(), buf.size());
      if (!got || *got == 0) {
        break;
      }
      if (total == 0) {
        arriving.set_value();
      }
      total += *got;
    }
  });
  EXPECT_EQ(arriving.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  (*client)->setBandwidth(0);
  w2.join();
  drain.join();
  EXPECT_EQ(total, kSize);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 20.0);
}

// ---- a hostile peer speaking raw TLS
// ---------------------------------------------------------------

class RawPeer {
 public:
  explicit RawPeer(uint16_t port) {
    const Pki& p = pkiOnce();
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION);
    SSL_CTX_use_certificate_chain_file(ctx_, p.cert("dc-ca", "dc").c_str());
    SSL_CTX_use_PrivateKey_file(ctx_, p.key("dc-ca", "dc").c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_load_verify_locations(ctx_, p.path("trust-dc.pem").c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    fd_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    timeval tv{10, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_.get());
    ok_ = SSL_connect(ssl_) == 1;
    EXPECT_TRUE(ok_);
  }
  ~RawPeer() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }

  void send(std::string_view bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const int r = SSL_write(ssl_, bytes.data() + off, static_cast<int>(bytes.size() - off));
      if (r <= 0) {
        ERR_clear_error();
        return;  // the tunnel closed on us
      }
      off += static_cast<size_t>(r);
    }
  }
  void sendFrame(uint8_t version, Command c, uint32_t stream, std::string payload,
                 uint16_t flags = 0) {
    Frame f;
    f.version = version;
    f.command = c;
    f.stream_id = stream;
    f.flags = flags;
    f.payload = std::move(payload);
    send(encodeFrame(f));
  }
  // The next frame, or nullopt at the end of the connection.
  std::optional<Frame> next() {
    char buf[16384];
    for (;;) {
      auto f = dec_.next();
      if (!f) {
        ADD_FAILURE() << "the tunnel sent a bad frame: " << f.error().describe();
        return std::nullopt;
      }
      if (*f) {
        return std::move(**f);
      }
      const int r = SSL_read(ssl_, buf, sizeof buf);
      if (r <= 0) {
        ERR_clear_error();
        return std::nullopt;
      }
      dec_.feed(buf, static_cast<size_t>(r));
    }
  }
  // Reads until a frame of @p c arrives (skipping PINGs, WINDOWs, ...).
  std::optional<Frame> until(Command c) {
    while (auto f = next()) {
      if (f->command == c) {
        return f;
      }
    }
    return std::nullopt;
  }
  // HELLO for a one-connection session; true when HELLO_ACK came (version 2).
  bool hello() {
    Hello h;
    h.min_version = 1;
    h.max_version = 2;
    h.connection_index = 0;
    h.connection_count = 1;
    RAND_bytes(h.session_id.data(), static_cast<int>(h.session_id.size()));
    h.session_id[0] = 1;
    h.site = "dc";
    sendFrame(1, Command::Hello, 0, *encodeHello(h));
    auto f = next();
    if (!f || f->command != Command::HelloAck) {
      return false;
    }
    dec_.setVersion(2);
    return true;
  }
  static std::string open(const std::string& label) {
    Open o;
    o.kind = StreamKind::Nbd;
    o.label = label;
    return *encodeOpen(o);
  }
  bool handshakeOk() const { return ok_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  UniqueFd fd_;
  FrameDecoder dec_;
  bool ok_ = false;
};

CloseReason reasonOf(const Frame& f) {
  auto r = decodeClose(f.payload);
  return r ? *r : CloseReason{};
}

TEST(TunnelTest, HostilePeerGetsGoawayAndTheListenerStaysUp) {
  Server server;
  ASSERT_TRUE(server.listener);
  const uint16_t port = server.listener->port();

  {  // Garbage instead of HELLO.
    RawPeer p(port);
    ASSERT_TRUE(p.handshakeOk());
    p.send(std::string(64, 'Z'));
    auto f = p.until(Command::GoAway);
    ASSERT_TRUE(f);
    EXPECT_EQ(reasonOf(*f).code, WireError::ProtocolError);
    EXPECT_FALSE(p.next());  // then the connection ends
  }
  {  // A HELLO header announcing a 2 GiB payload.
    RawPeer p(port);
    std::string header;
    Frame h;
    h.version = 1;
    h.command = Command::Hello;
    header = encodeFrame(h);
    header[12] = '\x7f';
    header[13] = '\xff';
    header[14] = '\xff';
    header[15] = '\xff';
    p.send(header);
    auto f = p.until(Command::GoAway);
    ASSERT_TRUE(f);
    EXPECT_EQ(reasonOf(*f).code, WireError::ProtocolError);
    EXPECT_NE(reasonOf(*f).reason.find("limit"), std::string::npos) << reasonOf(*f).reason;
  }
  {  // A HELLO offering only versions this listener does not speak: refused in the header.
    RawPeer p(port);
    Frame h;
    h.version = 3;
    h.command = Command::Hello;
    p.send(encodeFrame(h));
    auto f = p.until(Command::GoAway);
    ASSERT_TRUE(f);
    EXPECT_EQ(reasonOf(*f).code, WireError::VersionMismatch);
  }
  EXPECT_TRUE(eventually([&] { return server.listener->refusedCount() >= 3; }, in(5s)));
  EXPECT_EQ(server.tunnelCount(), 0U);

  size_t tunnels = 0;
  {  // DATA on a stream that was never opened: CLOSE for that stream, the tunnel lives on.
    RawPeer p(port);
    ASSERT_TRUE(p.hello());
    Tunnel* t = server.waitTunnel(++tunnels);
    ASSERT_NE(t, nullptr);
    p.sendFrame(2, Command::Data, 5, "boo");
    auto f = p.until(Command::Close);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->stream_id, 5U);
    EXPECT_EQ(reasonOf(*f).code, WireError::ProtocolError);
    EXPECT_NE(reasonOf(*f).reason.find("never opened"), std::string::npos);
    EXPECT_TRUE(t->alive());
  }
  {  // WINDOW overflow: GOAWAY flow_control.
    RawPeer p(port);
    ASSERT_TRUE(p.hello());
    Tunnel* t = server.waitTunnel(++tunnels);
    ASSERT_NE(t, nullptr);
    p.sendFrame(2, Command::Open, 1, RawPeer::open("w"));
    p.sendFrame(2, Command::Window, 1, *encodeWindow(kMaxWindow));
    auto f = p.until(Command::GoAway);
    ASSERT_TRUE(f);
    EXPECT_EQ(reasonOf(*f).code, WireError::FlowControl);
    ASSERT_TRUE(t->waitDown(in(5s)));
    EXPECT_NE(t->error()->message.find("WINDOW"), std::string::npos) << t->error()->message;
  }
  {  // DATA beyond the granted window: GOAWAY flow_control.
    RawPeer p(port);
    ASSERT_TRUE(p.hello());
    Tunnel* t = server.waitTunnel(++tunnels);
    ASSERT_NE(t, nullptr);
    p.sendFrame(2, Command::Open, 1, RawPeer::open("d"));
    const std::string chunk(kMaxPayload, 'x');
    for (int i = 0; i < 24 && t->alive(); ++i) {  // 6 MiB, the window is 4 MiB
      p.sendFrame(2, Command::Data, 1, chunk);
    }
    auto f = p.until(Command::GoAway);
    ASSERT_TRUE(f);
    EXPECT_EQ(reasonOf(*f).code, WireError::FlowControl);
    EXPECT_NE(reasonOf(*f).reason.find("beyond the granted window"), std::string::npos);
  }
  {  // OPEN with the listener's own parity, then a second HELLO: protocol errors.
    RawPeer p(port);
    ASSERT_TRUE(p.hello());
    ASSERT_NE(server.waitTunnel(++tunnels), nullptr);
    p.sendFrame(2, Command::Open, 2, RawPeer::open("even"));
    auto f = p.until(Command::GoAway);
    ASSERT_TRUE(f);
    EXPECT_EQ(reasonOf(*f).code, WireError::ProtocolError);
    EXPECT_NE(reasonOf(*f).reason.find("parity"), std::string::npos);
  }
  {  // Too many streams: the extra OPEN is refused, the tunnel lives on.
    Server small([](ListenerOptions& o) { o.max_streams = 2; });
    RawPeer p(small.listener->port());
    ASSERT_TRUE(p.hello());
    ASSERT_NE(small.waitTunnel(), nullptr);
    for (uint32_t id : {1U, 3U, 5U}) {
      p.sendFrame(2, Command::Open, id, RawPeer::open("s" + std::to_string(id)));
    }
    auto f = p.until(Command::Close);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->stream_id, 5U);
    EXPECT_EQ(reasonOf(*f).code, WireError::StreamRefused);
  }

  {  // A peer that goes silent: keepalive finds out.
    Server quick([](ListenerOptions& o) {
      o.ping_interval = 50ms;
      o.idle_timeout = 300ms;
    });
    RawPeer p(quick.listener->port());
    ASSERT_TRUE(p.hello());
    Tunnel* t = quick.waitTunnel();
    ASSERT_NE(t, nullptr);
    ASSERT_TRUE(t->waitDown(in(10s)));
    EXPECT_EQ(t->error()->code, ErrorCode::Timeout) << t->error()->describe();
    auto ping = p.until(Command::Ping);  // it did ask
    EXPECT_TRUE(ping);
  }

  // After all that, a real site still gets its tunnel.
  auto client = Tunnel::connect(clientOptions(port));
  ASSERT_TRUE(client) << client.error().describe();
  ASSERT_NE(server.waitTunnel(++tunnels), nullptr);
}

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

// ---- nothing left behind
// ----------------------------------------------------------------------------

size_t openDescriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) {
    ++n;
  }
  return n;
}

TEST(TunnelTest, ClosingLeavesNoDescriptorBehind) {
  pkiOnce();
  const size_t before = openDescriptors();
  {
    Server server;
    ASSERT_TRUE(server.listener);
    std::optional<Stream> held;  // outlives its tunnel
    auto client = Tunnel::connect(clientOptions(server.listener->port()));
    ASSERT_TRUE(client) << client.error().describe();
    ASSERT_NE(server.waitTunnel(), nullptr);
    const std::string path = pkiOnce().path("leak.sock");
    auto fwd = forwardUnixSocket(**client, ForwardMode::Listen, StreamKind::Nbd, "m-1/disk0", path);
    ASSERT_TRUE(fwd);
    UniqueFd local = unixConnect(path);
    auto in_s = server.inbox.take("m-1/disk0");
    ASSERT_TRUE(in_s);
    ASSERT_TRUE(in_s->write("hello"));
    char buf[5];
    ASSERT_EQ(::read(local.get(), buf, sizeof buf), 5);
    auto extra = (*client)->openStream(StreamKind::Control, "left-open");  // never closed by hand
    ASSERT_TRUE(extra);
    held = std::move(*extra);
    // Destroyed in reverse order: the local client, the forwarder, the client tunnel (its
    // stream handle still held), the stream, the listener and its tunnel.
  }
  EXPECT_EQ(openDescriptors(), before);
}

// ---- measurement (Release build; not run by default)
// -------------------------------------------------

void measure(uint16_t connections, size_t streams, size_t bytes_per_stream) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto opts = clientOptions(server.listener->port());
  opts.connections = connections;
  auto client = Tunnel::connect(opts);
  ASSERT_TRUE(client) << client.error().describe();
  std::vector<Stream> ours;
  std::vector<Stream> theirs;
  for (size_t i = 0; i < streams; ++i) {
    auto s = (*client)->openStream(StreamKind::Migration, "t" + std::to_string(i));
    ASSERT_TRUE(s);
    ours.push_back(std::move(*s));
    auto r = server.inbox.take("t" + std::to_string(i));
    ASSERT_TRUE(r);
    theirs.push_back(std::move(*r));
  }
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (size_t i = 0; i < streams; ++i) {
    threads.emplace_back([&, i] {
      const std::string block(kBlock, static_cast<char>('a' + static_cast<int>(i)));
      for (size_t off = 0; off < bytes_per_stream; off += kBlock) {
        ASSERT_TRUE(ours[i].write(block));
      }
      ASSERT_TRUE(ours[i].closeWrite());
    });
    threads.emplace_back([&, i] {
      std::vector<char> buf(256 * 1024);
      size_t total = 0;
      for (;;) {
        auto r = theirs[i].read(buf.data(), buf.size());
        ASSERT_TRUE(r);
        if (*r == 0) {
          break;
        }
        total += *r;
      }
      EXPECT_EQ(total, bytes_per_stream);
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double mb = static_cast<double>(bytes_per_stream * streams) / 1e6;
  std::printf("[ measured ] %zu stream(s) over %u connection(s): %.0f MB in %.2f s = %.0f MB/s\n",
              streams, connections, mb, secs, mb / secs);
}

TEST(TunnelTest, DISABLED_ThroughputLoopback) {
  measure(4, 1, 1024UL * 1024 * 1024);  // one migration stream (on connection 1)
  measure(4, 4, 256UL * 1024 * 1024);   // four bulk streams over connections 1..3
  measure(5, 4, 256UL * 1024 * 1024);   // four bulk streams, a connection each
  measure(1, 4, 256UL * 1024 * 1024);   // four bulk streams on one connection
}

}  // namespace
}  // namespace vandra::tunnel
