// Site tunnel transport: the dialing side (Tunnel::connect) and the Tunnel handle. The
// structure and threading model are drawn at the top of tunnel.h; locking rules are in
// transport.h. Connections: connection.cc; shared state: core.cc; streams: stream.cc; the
// listening side: listener.cc.
#include "vandra/tunnel/tunnel.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "transport.h"
#include "vandra/common/netns.h"
#include "wire.h"

namespace vandra::tunnel {
namespace detail {

// ---- dialing ------------------------------------------------------------------------------------

namespace {

Result<void> checkSettings(const TunnelSettings& s) {
  if (!wire::isSiteName(s.local_site)) {
    return fail(ErrorCode::InvalidArgument,
                "Local site name '" + s.local_site + "' is not [a-z0-9-]{1,64}");
  }
  if (s.cert_path.empty() || s.key_path.empty() || s.ca_bundle_path.empty()) {
    return fail(ErrorCode::InvalidArgument, "Tunnel needs a certificate, a key and a CA bundle");
  }
  if (s.receive_window < kInitialStreamWindow || s.receive_window > kMaxWindow) {
    return fail(ErrorCode::InvalidArgument,
                "Tunnel receive window " + std::to_string(s.receive_window) + " is not " +
                    std::to_string(kInitialStreamWindow) + ".." + std::to_string(kMaxWindow));
  }
  if (s.max_version < kMinProtocolVersion || s.max_version > kProtocolVersion) {
    return fail(ErrorCode::InvalidArgument, "Tunnel max version " + std::to_string(s.max_version) +
                                                " is not " + std::to_string(kMinProtocolVersion) +
                                                ".." + std::to_string(kProtocolVersion));
  }
  if (s.handshake_timeout.count() <= 0 || s.close_timeout.count() < 0 ||
      s.ping_interval.count() < 0 || s.idle_timeout.count() < 0) {
    return fail(ErrorCode::InvalidArgument, "Tunnel timeouts must not be negative (handshake > 0)");
  }
  return {};
}

ErrorCode codeForGoaway(WireError w) {
  switch (w) {
    case WireError::VersionMismatch:
      return ErrorCode::TunnelVersion;
    case WireError::ProtocolError:
    case WireError::FlowControl:
    case WireError::StreamRefused:
      return ErrorCode::TunnelProtocol;
    case WireError::NoError:
    case WireError::Cancelled:
    case WireError::Internal:
    case WireError::Shutdown:
      break;
  }
  return ErrorCode::Io;
}

bool isCertificateError(const Error& e) {
  return e.code == ErrorCode::CertificateUntrusted || e.code == ErrorCode::CertificateExpired;
}

Result<Established> dialOne(SSL_CTX* ctx, UniqueFd fd, const sockaddr_storage& addr,
                            socklen_t addr_len, uint16_t index, uint16_t count,
                            const SessionId& session, const TunnelOptions& o,
                            const std::string& who) {
  blockSigpipe();
  const auto deadline = Clock::now() + o.handshake_timeout;
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), addr_len) != 0) {
    if (errno != EINPROGRESS) {
      return fail(Error::fromErrno("Cannot connect to " + who));
    }
    VANDRA_TRY(waitFd(fd.get(), POLLOUT, deadline, -1, who));
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      Error e(ErrorCode::Io, "Cannot connect to " + who + ": " + std::strerror(err));
      e.sys_errno = err;
      return fail(std::move(e));
    }
  }
  HandshakeInfo info;
  VANDRA_TRY_ASSIGN(SslPtr ssl, newSsl(ctx, fd.get(), false, o.peer_site, &info));
  VANDRA_TRY(tlsHandshake(ssl.get(), fd.get(), false, deadline, -1, info, who,
                          "site '" + o.peer_site + "'"));

  Hello h;
  h.min_version = kMinProtocolVersion;
  h.max_version = o.max_version;
  h.connection_index = index;
  h.connection_count = count;
  h.session_id = session;
  h.site = o.local_site;
  VANDRA_TRY_ASSIGN(std::string payload, encodeHello(h));
  Frame hello;
  hello.version = h.min_version;
  hello.command = Command::Hello;
  hello.payload = std::move(payload);
  if (auto w = tlsWriteAll(ssl.get(), fd.get(), encodeFrame(hello), deadline, -1, who); !w) {
    // In TLS 1.3 the listener checks our certificate after our handshake is done: its alert
    // may be waiting behind a reset. Read it to say why.
    FrameDecoder probe;
    auto f = tlsReadFrame(ssl.get(), fd.get(), probe,
                          std::min(deadline, Clock::now() + std::chrono::seconds(1)), -1, who);
    if (!f && isCertificateError(f.error())) {
      return fail(std::move(f).error());
    }
    return fail(std::move(w).error());
  }

  FrameDecoder decoder;
  auto f = tlsReadFrame(ssl.get(), fd.get(), decoder, deadline, -1, who);
  if (!f) {
    Error e = std::move(f).error();
    if (!isCertificateError(e) && e.code != ErrorCode::Timeout && e.code != ErrorCode::Io) {
      e.message = who + " sent a bad answer to HELLO: " + e.message;
    }
    return fail(std::move(e));
  }
  if (f->command == Command::GoAway) {
    auto cr = decodeClose(f->payload);
    const WireError code = cr ? cr->code : WireError::ProtocolError;
    return fail(codeForGoaway(code),
                who + " refused the tunnel (GOAWAY " + std::string(toString(code)) +
                    (cr && !cr->reason.empty() ? ": " + cr->reason : "") + ")");
  }
  if (f->command != Command::HelloAck) {
    return fail(ErrorCode::TunnelProtocol,
                who + " answered HELLO with " + std::string(toString(f->command)));
  }
  VANDRA_TRY_ASSIGN(HelloAck ack, decodeHelloAck(f->payload));
  if (ack.version < kMinProtocolVersion || ack.version > o.max_version) {
    return fail(ErrorCode::TunnelVersion,
                who + " chose protocol version " + std::to_string(ack.version) + ", we offered " +
                    std::to_string(kMinProtocolVersion) + ".." + std::to_string(o.max_version));
  }
  if (ack.connection_index != index || ack.connection_count != count || ack.session_id != session) {
    return fail(ErrorCode::TunnelProtocol, who + " acknowledged another connection or session");
  }
  if (ack.site != o.peer_site) {
    return fail(ErrorCode::TunnelProtocol, who + " names itself site '" + ack.site + "'");
  }
  decoder.setVersion(ack.version);
  Established e;
  e.fd = std::move(fd);
  e.ssl = std::move(ssl);
  e.decoder = std::move(decoder);
  e.version = ack.version;
  e.index = index;
  e.peer_address = who;
  return e;
}

}  // namespace
}  // namespace detail

using detail::Clock;
using detail::Core;
using detail::StreamState;

// ---- Tunnel -------------------------------------------------------------------------------------

Tunnel::Tunnel(std::shared_ptr<Core> core) : core_(std::move(core)) {}

Tunnel::~Tunnel() {
  if (core_) {
    core_->shutdown("tunnel closed");
  }
}

Result<std::unique_ptr<Tunnel>> Tunnel::connect(const TunnelOptions& o) {
  using namespace detail;
  VANDRA_TRY(checkSettings(o));
  if (!wire::isSiteName(o.peer_site)) {
    return fail(ErrorCode::InvalidArgument,
                "Peer site name '" + o.peer_site + "' is not [a-z0-9-]{1,64}");
  }
  if (o.connections == 0 || o.connections > kMaxConnections) {
    return fail(ErrorCode::InvalidArgument, "Tunnel connection count " +
                                                std::to_string(o.connections) + " is not 1.." +
                                                std::to_string(kMaxConnections));
  }
  if (o.host.empty() || o.port == 0) {
    return fail(ErrorCode::InvalidArgument, "Tunnel needs the peer's host and port");
  }
  VANDRA_TRY_ASSIGN(SslCtxPtr ctx, makeContext(o, false, {}));
  const std::string who = "site '" + o.peer_site + "' at " + o.host + ":" + std::to_string(o.port);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(o.port);
  if (const int r = ::getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res);
      r != 0 || res == nullptr) {
    return fail(ErrorCode::NotFound, "Cannot resolve " + who + ": " + ::gai_strerror(r));
  }
  sockaddr_storage addr{};
  const socklen_t addr_len = res->ai_addrlen;
  std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
  const int family = res->ai_family;
  ::freeaddrinfo(res);

  std::vector<UniqueFd> sockets;
  Result<void> made;
  VANDRA_TRY(runInNetns(o.netns, [&] {
    for (uint16_t i = 0; i < o.connections; ++i) {
      UniqueFd s(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!s.valid()) {
        made = fail(Error::fromErrno("Cannot create a socket for the tunnel"));
        return;
      }
      sockets.push_back(std::move(s));
    }
  }));
  VANDRA_TRY(made);

  SessionId session{};
  while (std::all_of(session.begin(), session.end(), [](uint8_t b) { return b == 0; })) {
    if (RAND_bytes(session.data(), static_cast<int>(session.size())) != 1) {
      return fail(ErrorCode::Internal, "Cannot draw a tunnel session id");
    }
  }

  std::vector<std::optional<Result<Established>>> results(o.connections);
  {
    std::vector<std::thread> dialers;
    for (uint16_t i = 0; i < o.connections; ++i) {
      dialers.emplace_back([&, i] {
        results[i] = dialOne(ctx.get(), std::move(sockets[i]), addr, addr_len, i, o.connections,
                             session, o, who);
      });
    }
    for (auto& t : dialers) {
      t.join();
    }
  }
  std::optional<Error> first_error;
  for (auto& r : results) {
    if (r && !*r &&
        (!first_error || (isCertificateError(r->error()) && !isCertificateError(*first_error)))) {
      first_error = r->error();
    }
  }
  if (first_error) {
    return fail(std::move(*first_error));
  }
  std::vector<Established> established;
  for (auto& r : results) {
    established.push_back(std::move(**r));
  }
  for (const auto& e : established) {
    if (e.version != established.front().version) {
      return fail(ErrorCode::TunnelProtocol,
                  who + " negotiated different versions on one tunnel's connections");
    }
  }

  auto core = std::make_shared<Core>();
  core->settings = o;
  core->peer_site = o.peer_site;
  core->session = session;
  core->version = established.front().version;
  core->initiator = true;
  auto started = core->start(std::move(established));
  auto tunnel = std::make_unique<Tunnel>(core);
  if (!started) {
    return fail(std::move(started).error());  // ~Tunnel stops what did start
  }
  core->startDispatch();
  return tunnel;
}

Result<Stream> Tunnel::openStream(StreamKind kind, std::string_view label) {
  using namespace detail;
  Core& core = *core_;
  if (core.down.load()) {
    return fail(core.downError());
  }
  Open o;
  o.kind = kind;
  o.label = std::string(label);
  VANDRA_TRY_ASSIGN(std::string payload, encodeOpen(o));
  const size_t n = core.conns.size();
  // Control on connection 0. With 3 or more, QEMU's migration streams on connection 1 and
  // the rest (NBD, Ethernet) round-robin over 2..N-1: a disk's last writes at a switchover and
  // the stretched LAN's frames never wait in a TCP buffer behind the RAM stream's bytes
  // (docs/benchmarks.md). With 2, every bulk stream on 1.
  size_t idx = 0;
  if (kind == StreamKind::Migration && n > 1) {
    idx = 1;
  } else if (kind != StreamKind::Control && n > 2) {
    idx = 2 + core.round_robin.fetch_add(1) % (n - 2);
  } else if (kind != StreamKind::Control && n == 2) {
    idx = 1;
  }
  Connection& c = *core.conns[idx];
  std::shared_ptr<StreamState> s;
  {
    std::lock_guard lk(c.mu);
    if (c.dead) {
      return fail(core.downError());
    }
    if (c.next_local_id > kLastStreamId) {
      return fail(ErrorCode::LimitExceeded,
                  "Tunnel connection " + std::to_string(idx) + " ran out of stream ids");
    }
    const uint32_t id = c.next_local_id;
    c.next_local_id += 2;
    pushCtrl(c, encodeControlFrame(c.version, Command::Open, id, std::move(payload)));
    s = newStream(c, true, id, kind, std::string(label));
    grantInitial(c, *s);
    if (core.settings.compression == Compression::Auto && c.version >= 3 &&
        (kind == StreamKind::Migration || kind == StreamKind::Nbd)) {
      s->compressor = std::make_unique<ChunkCompressor>();
    }
  }
  c.ring();
  return Stream(std::move(s));
}

void Tunnel::setBandwidth(uint64_t bytes_per_s) {
  detail::Core& core = *core_;
  {
    std::lock_guard lk(core.bw_mu);
    const uint64_t was = core.bandwidth.exchange(bytes_per_s);
    if (was == 0 && bytes_per_s > 0) {
      // A new cap starts with one burst's worth, as at connect.
      core.tokens =
          std::max(static_cast<double>(detail::kChunk), static_cast<double>(bytes_per_s) / 50.0);
      core.bw_last = detail::Clock::now();
    }
  }
  core.bw_cv.notify_all();  // writers waiting on the old rate re-read it
}

uint64_t Tunnel::bandwidth() const {
  return core_->bandwidth.load();
}

uint64_t Tunnel::addStreamHandler(StreamKind kind, std::string label_prefix,
                                  StreamHandler handler) {
  std::lock_guard lk(core_->routes_mu);
  const uint64_t id = core_->next_route++;
  core_->routes.push_back({id, kind, std::move(label_prefix), std::move(handler)});
  return id;
}

void Tunnel::removeStreamHandler(uint64_t id) {
  Core& core = *core_;
  StreamHandler dropped;
  std::unique_lock lk(core.routes_mu);
  if (core.disp.get_id() != std::this_thread::get_id()) {
    core.routes_cv.wait(lk, [&] { return core.running_route != id; });
  }
  auto it = std::find_if(core.routes.begin(), core.routes.end(),
                         [&](const Core::Route& r) { return r.id == id; });
  if (it != core.routes.end()) {
    dropped = std::move(it->handler);
    core.routes.erase(it);
  }
  lk.unlock();
}

void Tunnel::close(std::string_view reason) {
  core_->takeDown(Error(ErrorCode::Io,
                        "Tunnel to site '" + core_->peer_site + "' closed: " + std::string(reason)),
                  WireError::Shutdown, reason, true);
}

bool Tunnel::alive() const {
  return !core_->down.load();
}

std::optional<Error> Tunnel::error() const {
  std::lock_guard lk(core_->state_mu);
  return core_->error;
}

bool Tunnel::waitDown(Deadline deadline) const {
  std::unique_lock lk(core_->state_mu);
  return core_->state_cv.wait_until(lk, deadline, [&] { return core_->error.has_value(); });
}

uint8_t Tunnel::version() const {
  return core_->version;
}
const SessionId& Tunnel::sessionId() const {
  return core_->session;
}
const std::string& Tunnel::peerSite() const {
  return core_->peer_site;
}
size_t Tunnel::connectionCount() const {
  return core_->conns.size();
}

namespace {

// A round trip kept in microseconds, -1 before the first PONG.
std::optional<std::chrono::microseconds> roundTrip(int64_t us) {
  if (us < 0) {
    return std::nullopt;
  }
  return std::chrono::microseconds(us);
}

}  // namespace

std::optional<std::chrono::microseconds> Tunnel::rtt() const {
  return roundTrip(core_->rtt_us.load());
}

std::optional<std::chrono::microseconds> Tunnel::minRtt() const {
  return roundTrip(core_->min_rtt_us.load());
}

TunnelStats Tunnel::stats() const {
  TunnelStats st;
  for (const auto& c : core_->conns) {
    st.wire_bytes_sent += c->wire_tx.load();
    st.wire_bytes_received += c->wire_rx.load();
  }
  st.frame_bytes_sent = core_->frame_tx.load();
  st.frame_bytes_received = core_->frame_rx.load();
  for (size_t i = 0; i < st.by_kind.size(); ++i) {
    st.by_kind[i].bytes_sent = core_->kind_tx[i].load();
    st.by_kind[i].bytes_received = core_->kind_rx[i].load();
    st.by_kind[i].streams = core_->kind_streams[i].load();
    st.by_kind[i].plain_bytes_sent = core_->plain_tx[i].load();
    st.by_kind[i].plain_bytes_received = core_->plain_rx[i].load();
  }
  st.pings_sent = core_->pings.load();
  st.pongs_received = core_->pongs.load();
  st.last_rtt_us = core_->last_rtt_us.load();
  auto& z = st.compression;
  z.plain_bytes = core_->comp_plain.load();
  z.compressed_bytes = core_->comp_bytes.load();
  z.compressed_plain = core_->comp_plain_compressed.load();
  z.chunks_compressed = core_->comp_chunks.load();
  z.chunks_plain = core_->comp_chunks_plain.load();
  z.compress_ns = core_->comp_ns.load();
  z.level = core_->comp_level.load();
  z.top_level = core_->comp_top_level.load();
  z.quick_tries = core_->comp_quick_tries.load();
  return st;
}

std::string_view toString(Compression c) {
  return c == Compression::Off ? "off" : "auto";
}

Result<Compression> parseCompression(std::string_view name) {
  if (name == "auto") {
    return Compression::Auto;
  }
  if (name == "off") {
    return Compression::Off;
  }
  return fail(ErrorCode::InvalidArgument,
              "Tunnel compression '" + std::string(name) + "': choose auto or off");
}

Result<void> checkCongestionControl(const std::string& name) {
  UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) {
    return fail(Error::fromErrno("Cannot create a TCP socket"));
  }
  if (name == kAutoCongestion) {  // both algorithms "auto" may use
    VANDRA_TRY(checkCongestionControl(kAutoStart));
    return checkCongestionControl(kAutoLossy);
  }
  if (name.empty() || ::setsockopt(probe.get(), IPPROTO_TCP, TCP_CONGESTION, name.data(),
                                   static_cast<socklen_t>(name.size())) == 0) {
    return {};
  }
  std::ifstream in("/proc/sys/net/ipv4/tcp_available_congestion_control");
  std::string available;
  std::getline(in, available);
  return fail(ErrorCode::InvalidArgument,
              "TCP congestion control '" + name +
                  "' is not available here (this host has: " + available + ")");
}

}  // namespace vandra::tunnel
