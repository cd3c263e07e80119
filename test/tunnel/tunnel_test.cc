// The site tunnel transport over real TLS on loopback, with certificates made by vandra::pki:
// trust (unknown CA, wrong name, expired), version negotiation (2, and 1 with fixed windows),
// many concurrent streams checked byte for byte, per-stream flow control (a slow reader does
// not stall its neighbour), unix-socket forwarding with half-close, the bandwidth cap,
// and nothing left behind (a hostile peer: tunnel_hostile_test.cc; TAP: tunnel_tap_test.cc).
#include "tunnel_test_support.h"

namespace vandra::tunnel {
namespace {

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
  EXPECT_EQ(t.version(), kProtocolVersion);
  EXPECT_EQ(peer->version(), kProtocolVersion);
  EXPECT_EQ(t.connectionCount(), 4U);
  EXPECT_EQ(peer->connectionCount(), 4U);
  EXPECT_EQ(t.sessionId(), peer->sessionId());
  EXPECT_EQ(t.peerSite(), "cloud");
  EXPECT_EQ(peer->peerSite(), "dc");
  EXPECT_TRUE(t.alive());

  // Control on connection 0, the migration stream alone on 1, the disks round-robin over 2..3.
  auto control = t.openStream(StreamKind::Control, "m-1");
  ASSERT_TRUE(control);
  EXPECT_EQ(control->connection(), 0);
  auto ram = t.openStream(StreamKind::Migration, "m-1/mig");
  ASSERT_TRUE(ram);
  EXPECT_EQ(ram->connection(), 1);
  std::vector<uint16_t> used;
  std::vector<Stream> bulk;
  for (int i = 0; i < 4; ++i) {
    auto s = t.openStream(StreamKind::Nbd, "m-1/disk" + std::to_string(i));
    ASSERT_TRUE(s);
    used.push_back(s->connection());
    bulk.push_back(std::move(*s));
  }
  std::sort(used.begin(), used.end());
  EXPECT_EQ(used, (std::vector<uint16_t>{2, 2, 3, 3}));

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
  // The smallest sample is never above the smoothed round trip (an average of the samples;
  // read first: the smallest only falls).
  const auto smoothed = t.rtt();
  const auto low = t.minRtt();
  ASSERT_TRUE(low && smoothed);
  EXPECT_GT(low->count(), 0);
  EXPECT_LE(*low, *smoothed);
  const TunnelStats st = t.stats();
  EXPECT_GT(st.wire_bytes_sent, st.frame_bytes_sent);  // TLS records and handshakes on top
  EXPECT_GT(st.wire_bytes_received, 0U);
  EXPECT_EQ(st.of(StreamKind::Control).bytes_sent,
            std::string(R"({"type":"prepare","migration_id":"m-1"})").size());
  EXPECT_EQ(st.of(StreamKind::Control).bytes_received, 3U);
  EXPECT_EQ(st.of(StreamKind::Nbd).streams, 4U);
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
