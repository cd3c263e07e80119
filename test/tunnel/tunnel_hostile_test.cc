// The site tunnel against a hostile peer speaking raw TLS: malformed frames get GOAWAY and
// the listener stays up for the next peer.
#include "tunnel_test_support.h"

namespace vandra::tunnel {
namespace {

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
  // HELLO for a one-connection session offering versions 1..@p max; true when HELLO_ACK came
  // (with that version).
  bool hello(uint8_t max = 2) {
    Hello h;
    h.min_version = 1;
    h.max_version = max;
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
    dec_.setVersion(max);
    return f->version == max;
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
    h.version = kProtocolVersion + 1;
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

  {  // Compressed DATA on a version-2 connection: a protocol error.
    RawPeer p(port);
    ASSERT_TRUE(p.hello(2));
    ASSERT_NE(server.waitTunnel(++tunnels), nullptr);
    p.sendFrame(2, Command::Open, 1, RawPeer::open("z2"));
    p.sendFrame(2, Command::Data, 1, "x", kFlagCompressed);
    auto f = p.until(Command::GoAway);
    ASSERT_TRUE(f);
    EXPECT_EQ(reasonOf(*f).code, WireError::ProtocolError);
    EXPECT_NE(reasonOf(*f).reason.find("compression needs version 3"), std::string::npos)
        << reasonOf(*f).reason;
  }
  {  // Version 3: a compressed payload that is not one bounded zstd frame ends the tunnel
     // before anything reaches a reader.
    RawPeer p(port);
    ASSERT_TRUE(p.hello(3));
    Tunnel* t = server.waitTunnel(++tunnels);
    ASSERT_NE(t, nullptr);
    p.sendFrame(3, Command::Open, 1, RawPeer::open("z3"));
    p.sendFrame(3, Command::Data, 1, "certainly not zstd", kFlagCompressed);
    auto f = p.until(Command::GoAway);
    ASSERT_TRUE(f);
    EXPECT_EQ(reasonOf(*f).code, WireError::ProtocolError);
    EXPECT_NE(reasonOf(*f).reason.find("not a zstd frame"), std::string::npos)
        << reasonOf(*f).reason;
    ASSERT_TRUE(t->waitDown(in(5s)));
  }
  {  // Version 3: a well-formed zstd frame whose content is corrupt resets that stream only;
     // its reader gets an error, never other bytes, and the tunnel lives on.
    RawPeer p(port);
    ASSERT_TRUE(p.hello(3));
    Tunnel* t = server.waitTunnel(++tunnels);
    ASSERT_NE(t, nullptr);
    p.sendFrame(3, Command::Open, 1, RawPeer::open("z4"));
    ChunkCompressor z;
    std::string text;
    while (text.size() < 64 * 1024) {
      text += "a line of a log file, " + std::to_string(text.size()) + "\n";
    }
    auto packed = z.encode(text);
    ASSERT_TRUE(packed);
    p.sendFrame(3, Command::Data, 1, *packed, kFlagCompressed);  // a good one first
    std::string bad = *packed;
    bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x41);
    p.sendFrame(3, Command::Data, 1, bad, kFlagCompressed);
    auto s = server.inbox.take("z4");
    ASSERT_TRUE(s);
    std::string got;
    std::vector<char> buf(16 * 1024);
    Result<size_t> r = size_t{0};
    for (;;) {
      r = s->read(buf.data(), buf.size(), in(10s));
      if (!r || *r == 0) {
        break;
      }
      got.append(buf.data(), *r);
    }
    EXPECT_EQ(got, text);  // the good frame, whole, and nothing of the bad one
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::TunnelProtocol) << r.error().describe();
    auto c = p.until(Command::Close);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->stream_id, 1U);
    EXPECT_EQ(reasonOf(*c).code, WireError::ProtocolError);
    EXPECT_TRUE(t->alive());
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

}  // namespace
}  // namespace vandra::tunnel
