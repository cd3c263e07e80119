// Site tunnel transport: connections, streams, flow control, keepalive, the dialing side.
// The structure and threading model are drawn at the top of tunnel.h; locking rules are in
// transport.h. The listening side is in listener.cc.
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
namespace {

constexpr size_t kChunk = 64 * 1024;             // DATA payload per frame from write()
constexpr size_t kSendQueueLimit = 1024 * 1024;  // queued DATA bytes per connection
constexpr size_t kCtrlQueueLimit =
    4 * 1024 * 1024;  // queued control bytes: beyond, the peer does not read
constexpr size_t kReadBuffer = 64 * 1024;
constexpr int kReadsPerTurn = 16;  // then the I/O thread writes before reading on
constexpr uint32_t kLastStreamId = 0xFFFFFFF0u;

struct Fatal {
  Error error;
  WireError code;
  std::string reason;
};

Fatal protocolFatal(std::string msg) {
  Fatal f{Error(ErrorCode::TunnelProtocol, msg), WireError::ProtocolError, msg};
  return f;
}

bool peerParity(bool initiator, uint32_t id) {
  return initiator ? id % 2 == 0 : id % 2 == 1;
}

size_t kindIndex(StreamKind k) {
  return static_cast<size_t>(k) < 5 ? static_cast<size_t>(k) : 0;
}

std::string streamName(const StreamState& s) {
  return "stream " + std::to_string(s.id) + " (" + std::string(toString(s.kind)) + " '" +
         wire::printable(s.label) + "')";
}

std::string closeFrame(uint8_t version, uint32_t stream, WireError code, std::string_view reason) {
  auto payload = encodeClose({code, cleanReason(reason)});
  return encodeControlFrame(version, Command::Close, stream,
                            payload ? std::move(*payload) : std::string());
}

std::string windowFrame(uint8_t version, uint32_t stream, uint32_t increment) {
  auto payload = encodeWindow(increment);
  return encodeControlFrame(version, Command::Window, stream,
                            payload ? std::move(*payload) : std::string());
}

// ---- queues (caller holds Connection::mu) -------------------------------------------------

void pushCtrl(Connection& c, std::string frame) {
  c.ctrl_bytes += frame.size();
  c.ctrl_q.push_back(std::move(frame));
}

void pushData(Connection& c, std::string frame) {
  c.data_bytes += frame.size();
  c.data_q.push_back(std::move(frame));
}

// The credit beyond the protocol's initial window that our receive buffer allows.
void grantInitial(Connection& c, StreamState& s) {
  if (c.version < 2) {
    return;
  }
  s.send_window = kInitialStreamWindow;
  s.recv_credit = kInitialStreamWindow;
  const uint32_t rw = c.core->settings.receive_window;
  if (rw > kInitialStreamWindow) {
    pushCtrl(c, windowFrame(c.version, s.id, rw - kInitialStreamWindow));
    s.recv_credit = rw;
  }
}

void removeStream(Connection& c, StreamState& s) {
  if (!s.in_table) {
    return;
  }
  c.streams.erase(s.id);
  s.in_table = false;
  if (!s.local) {
    c.core->peer_streams.fetch_sub(1);
  }
  if (s.v1_full) {
    s.v1_full = false;
    --c.v1_full_streams;
  }
}

std::shared_ptr<StreamState> newStream(Connection& c, bool local, uint32_t id, StreamKind kind,
                                       std::string label) {
  auto s = std::make_shared<StreamState>();
  s->core = c.core->shared_from_this();
  s->conn = &c;
  s->id = id;
  s->kind = kind;
  s->label = std::move(label);
  s->local = local;
  s->in_table = true;
  c.streams.emplace(id, s);
  c.core->kind_streams[kindIndex(kind)].fetch_add(1);
  return s;
}

// A frame for a stream that is not in the table. Ids the peer opened before (refused, or
// ended on both sides) and ids we opened before are stale: dropped. Ids never opened get a
// CLOSE. A CLOSE is never answered with a CLOSE.
std::optional<Fatal> unknownStream(Connection& c, uint32_t id, Command cmd) {
  if (cmd == Command::Close) {
    return std::nullopt;
  }
  const bool stale = peerParity(c.initiator, id) ? id <= c.last_peer_id : id < c.next_local_id;
  if (!stale) {
    pushCtrl(c, closeFrame(c.version, id, WireError::ProtocolError,
                           std::string(toString(cmd)) + " on stream " + std::to_string(id) +
                               ", which was never opened"));
  }
  return std::nullopt;
}

// Applies one frame from the peer. Caller holds c.mu.
std::optional<Fatal> handleFrame(Connection& c, Frame& f,
                                 std::vector<std::shared_ptr<StreamState>>& opened) {
  Core& core = *c.core;
  switch (f.command) {
    case Command::Hello:
    case Command::HelloAck:
      return protocolFatal("Tunnel " + std::string(toString(f.command)) + " after the handshake");
    case Command::Open: {
      const uint32_t id = f.stream_id;
      if (!peerParity(c.initiator, id)) {
        return protocolFatal("Tunnel OPEN of stream " + std::to_string(id) +
                             ", whose parity belongs to the other side");
      }
      if (id <= c.last_peer_id) {
        return protocolFatal("Tunnel OPEN of stream " + std::to_string(id) +
                             " reuses an id (last was " + std::to_string(c.last_peer_id) + ")");
      }
      c.last_peer_id = id;
      auto o = decodeOpen(f.payload);
      if (!o) {
        return protocolFatal(o.error().message);
      }
      if (core.peer_streams.load() >= core.settings.max_streams) {
        pushCtrl(c, closeFrame(
                        c.version, id, WireError::StreamRefused,
                        "too many streams: at most " + std::to_string(core.settings.max_streams)));
        return std::nullopt;
      }
      core.peer_streams.fetch_add(1);
      auto s = newStream(c, false, id, o->kind, std::move(o->label));
      grantInitial(c, *s);
      opened.push_back(std::move(s));
      return std::nullopt;
    }
    case Command::Data: {
      auto it = c.streams.find(f.stream_id);
      if (it == c.streams.end()) {
        return unknownStream(c, f.stream_id, f.command);
      }
      StreamState& s = *it->second;
      if (s.end_received) {
        return protocolFatal("Tunnel DATA on " + streamName(s) + " after END_STREAM");
      }
      const size_t n = f.payload.size();
      if (c.version >= 2) {
        if (n > s.recv_credit) {
          std::string msg = "DATA of " + std::to_string(n) + " bytes on " + streamName(s) +
                            " beyond the granted window of " + std::to_string(s.recv_credit);
          return Fatal{Error(ErrorCode::TunnelProtocol, "Tunnel " + msg), WireError::FlowControl,
                       msg};
        }
        s.recv_credit -= static_cast<uint32_t>(n);
      }
      core.kind_rx[kindIndex(s.kind)].fetch_add(n);
      if ((f.flags & kFlagEndStream) != 0) {
        s.end_received = true;
      }
      if (!s.close_sent && n > 0) {
        s.rx_bytes += n;
        s.rx.push_back(std::move(f.payload));
        if (c.version < 2 && !s.v1_full && s.rx_bytes >= kVersion1StreamWindow) {
          s.v1_full = true;
          ++c.v1_full_streams;
        }
      }
      s.cv.notify_all();
      return std::nullopt;
    }
    case Command::Window: {
      auto it = c.streams.find(f.stream_id);
      if (it == c.streams.end()) {
        return unknownStream(c, f.stream_id, f.command);
      }
      StreamState& s = *it->second;
      auto inc = decodeWindow(f.payload);
      if (!inc) {
        return protocolFatal(inc.error().message);
      }
      if (s.send_window + static_cast<int64_t>(*inc) > static_cast<int64_t>(kMaxWindow)) {
        std::string msg = "WINDOW +" + std::to_string(*inc) + " on " + streamName(s) +
                          " would make the window " + std::to_string(s.send_window + *inc) +
                          ", above " + std::to_string(kMaxWindow);
        return Fatal{Error(ErrorCode::TunnelProtocol, "Tunnel " + msg), WireError::FlowControl,
                     msg};
      }
      s.send_window += *inc;
      c.space_cv.notify_all();  // writers wait there for both window and queue room
      return std::nullopt;
    }
    case Command::Close: {
      auto it = c.streams.find(f.stream_id);
      if (it == c.streams.end()) {
        return unknownStream(c, f.stream_id, f.command);
      }
      auto keep = it->second;
      StreamState& s = *keep;
      auto cr = decodeClose(f.payload);
      if (!cr) {
        return protocolFatal(cr.error().message);
      }
      s.close_received = true;
      if (!s.error && !s.end_received) {
        if (cr->code == WireError::NoError) {
          s.end_received = true;  // a close without error ends the stream like END_STREAM
        } else {
          s.error =
              Error(ErrorCode::Io, "Tunnel " + streamName(s) + " reset by site '" + core.peer_site +
                                       "': " + std::string(toString(cr->code)) +
                                       (cr->reason.empty() ? "" : ": " + cr->reason));
        }
      }
      if (!s.close_sent) {
        s.close_sent = true;
        pushCtrl(c, closeFrame(c.version, s.id, WireError::NoError, ""));
      }
      removeStream(c, s);
      s.cv.notify_all();
      c.space_cv.notify_all();
      return std::nullopt;
    }
    case Command::Ping:
      pushCtrl(c, encodeControlFrame(c.version, Command::Pong, 0, std::move(f.payload)));
      return std::nullopt;
    case Command::Pong: {
      auto token = decodePing(f.payload);
      if (token && c.ping_sent && *token == c.ping_token) {
        core.rttSample(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - *c.ping_sent)
                .count());
        c.ping_sent.reset();
        core.pongs.fetch_add(1);
      }
      return std::nullopt;
    }
    case Command::GoAway: {
      auto cr = decodeClose(f.payload);
      std::string why =
          cr ? std::string(toString(cr->code)) + (cr->reason.empty() ? "" : ": " + cr->reason)
             : std::string("unreadable");
      return Fatal{Error(ErrorCode::Io,
                         "Site '" + core.peer_site + "' closed the tunnel (GOAWAY " + why + ")"),
                   WireError::NoError, "GOAWAY received"};
    }
  }
  return protocolFatal("Tunnel frame with an unknown command");
}

}  // namespace

bool labelMatches(std::string_view prefix, std::string_view label) {
  if (prefix.empty() || label == prefix) {
    return true;
  }
  return label.starts_with(prefix) && (prefix.back() == '/' || label[prefix.size()] == '/');
}

namespace {

std::optional<Error> writeBlocker(const StreamState& s, const Connection& c) {
  if (s.error) {
    return s.error;
  }
  if (s.close_received) {
    return Error(ErrorCode::Io, "Tunnel " + streamName(s) + " was closed by the peer");
  }
  if (s.end_sent) {
    return Error(ErrorCode::InvalidArgument,
                 "Tunnel " + streamName(s) + ": write after closeWrite()");
  }
  if (c.dead) {
    return c.core->downError();
  }
  return std::nullopt;
}

}  // namespace

// ---- Connection I/O thread ------------------------------------------------------------------

void Connection::ring() {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t r = ::write(wake.get(), &one, sizeof one);
}

void Connection::run() {
  blockSigpipe();
  Core& tun = *core;
  const TunnelSettings& st = tun.settings;
  std::vector<char> buf(kReadBuffer);
  std::string wbuf;
  size_t woff = 0;
  bool goaway_queued = false;
  bool shutdown_sent = false;
  bool peer_eof = false;
  Clock::time_point close_deadline{};
  auto last_rx = Clock::now();
  auto next_ping = last_rx + st.ping_interval;
  BIO* rbio = SSL_get_rbio(ssl.get());
  BIO* wbio = SSL_get_wbio(ssl.get());
  const auto account = [&] {
    wire_rx.store(BIO_number_read(rbio));
    wire_tx.store(BIO_number_written(wbio));
  };
  const std::string who =
      "connection " + std::to_string(index) + " to site '" + tun.peer_site + "'";

  // Applies every complete frame the decoder holds; true when reading must pause (version 1,
  // a stream's buffer is full).
  const auto drain = [&](std::optional<Fatal>& fatal) {
    std::vector<std::shared_ptr<StreamState>> opened;
    bool stop_reading = false;
    {
      std::lock_guard lk(mu);
      for (;;) {
        auto next = decoder.next();
        if (!next) {
          const Error& e = next.error();
          fatal = Fatal{Error(e.code, "Tunnel " + who + ": " + e.message), wireErrorFor(e.code),
                        e.message};
          break;
        }
        if (!*next) {
          break;
        }
        fatal = handleFrame(*this, **next, opened);
        if (fatal) {
          break;
        }
      }
      if (!fatal && ctrl_bytes > kCtrlQueueLimit) {
        fatal =
            Fatal{Error(ErrorCode::LimitExceeded,
                        "Site '" + tun.peer_site + "' does not read its tunnel's control frames"),
                  WireError::ProtocolError, "control frames not read"};
      }
      stop_reading = version < 2 && v1_full_streams > 0;
    }
    if (!opened.empty()) {
      {
        std::lock_guard dl(tun.disp_mu);
        for (auto& s : opened) {
          tun.pending.push_back(std::move(s));
        }
      }
      tun.disp_cv.notify_all();
    }
    return stop_reading;
  };
  {
    std::optional<Fatal> fatal;
    drain(fatal);  // bytes that arrived with the HELLO / HELLO_ACK
    if (fatal) {
      tun.takeDown(fatal->error, fatal->code, fatal->reason, false);
    }
  }

  for (;;) {
    bool is_dead = false;
    bool paused = false;
    {
      std::lock_guard lk(mu);
      is_dead = dead;
      if (dead && !goaway_queued) {
        if (!graceful) {
          ctrl_q.clear();
          data_q.clear();
          ctrl_bytes = 0;
          data_bytes = 0;
        }
        pushData(*this, goaway);
        goaway_queued = true;
        space_cv.notify_all();
      }
      paused = !dead && version < 2 && v1_full_streams > 0;
    }
    if (is_dead && close_deadline == Clock::time_point{}) {
      close_deadline = Clock::now() + st.close_timeout;
    }
    if (paused) {
      last_rx = Clock::now();  // we are the ones not reading: the peer is not idle
    }

    // Read what is there (a bounded amount per turn, then write).
    std::optional<Fatal> fatal;
    bool more = false;
    bool read_wants_write = false;
    if (!paused && !peer_eof) {
      for (int turn = 0;; ++turn) {
        if (turn == kReadsPerTurn) {
          more = true;
          break;
        }
        ERR_clear_error();
        const int r = SSL_read(ssl.get(), buf.data(), static_cast<int>(buf.size()));
        if (r > 0) {
          last_rx = Clock::now();
          if (is_dead) {
            continue;  // closing: what the peer still sends is dropped
          }
          tun.frame_rx.fetch_add(static_cast<uint64_t>(r));
          decoder.feed(buf.data(), static_cast<size_t>(r));
          const bool stop_reading = drain(fatal);
          if (fatal || stop_reading) {
            break;
          }
          continue;
        }
        const int err = SSL_get_error(ssl.get(), r);
        if (err == SSL_ERROR_WANT_READ) {
          break;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
          read_wants_write = true;
          break;
        }
        peer_eof = true;
        if (!is_dead) {
          Error e = err == SSL_ERROR_ZERO_RETURN
                        ? Error(ErrorCode::Io, "Site '" + tun.peer_site + "' closed " +
                                                   who.substr(0, who.find(" to")) +
                                                   " of the tunnel without GOAWAY")
                        : sslError(ssl.get(), r, "Tunnel " + who);
          fatal = Fatal{std::move(e), WireError::Internal, "connection failed"};
        }
        ERR_clear_error();
        break;
      }
    }
    account();
    if (fatal) {
      tun.takeDown(fatal->error, fatal->code, fatal->reason, false);
      continue;
    }

    // Write: control frames first, then data, each frame whole.
    bool write_blocked = false;
    bool write_wants_read = false;
    bool broken = false;
    for (;;) {
      if (woff == wbuf.size()) {
        std::lock_guard lk(mu);
        if (!ctrl_q.empty()) {
          wbuf = std::move(ctrl_q.front());
          ctrl_q.pop_front();
          ctrl_bytes -= wbuf.size();
        } else if (!data_q.empty()) {
          wbuf = std::move(data_q.front());
          data_q.pop_front();
          data_bytes -= wbuf.size();
          if (data_bytes < kSendQueueLimit) {
            space_cv.notify_all();
          }
        } else {
          wbuf.clear();
          woff = 0;
          break;
        }
        woff = 0;
        tun.frame_tx.fetch_add(wbuf.size());
      }
      ERR_clear_error();
      const size_t left = std::min(wbuf.size() - woff, static_cast<size_t>(INT_MAX));
      const int r = SSL_write(ssl.get(), wbuf.data() + woff, static_cast<int>(left));
      if (r > 0) {
        woff += static_cast<size_t>(r);
        continue;
      }
      const int err = SSL_get_error(ssl.get(), r);
      if (err == SSL_ERROR_WANT_WRITE) {
        write_blocked = true;
        break;
      }
      if (err == SSL_ERROR_WANT_READ) {
        write_wants_read = true;
        break;
      }
      if (!is_dead) {
        fatal = Fatal{sslError(ssl.get(), r, "Tunnel " + who), WireError::Internal,
                      "connection failed"};
      }
      ERR_clear_error();
      broken = true;
      break;
    }
    account();
    if (broken) {
      if (fatal) {
        tun.takeDown(fatal->error, fatal->code, fatal->reason, false);
      }
      break;  // cannot write any more: this connection is finished
    }

    if (is_dead && woff == wbuf.size() && !shutdown_sent) {
      bool empty = false;
      {
        std::lock_guard lk(mu);
        empty = ctrl_q.empty() && data_q.empty();
      }
      if (empty) {  // GOAWAY is out: close_notify, FIN, then wait for the peer's end
        ERR_clear_error();
        SSL_shutdown(ssl.get());
        ERR_clear_error();
        ::shutdown(fd.get(), SHUT_WR);
        shutdown_sent = true;
        account();
      }
    }
    if (is_dead && shutdown_sent && peer_eof) {
      break;  // both ends are done
    }
    const auto now = Clock::now();
    if (is_dead && now >= close_deadline) {
      break;
    }

    // Timers: idle peer, keepalive.
    if (!is_dead) {
      if (st.idle_timeout.count() > 0 && now - last_rx >= st.idle_timeout) {
        tun.takeDown(Error(ErrorCode::Timeout, "Nothing from site '" + tun.peer_site + "' on " +
                                                   who + " for " +
                                                   std::to_string(st.idle_timeout.count()) + " ms"),
                     WireError::Internal, "idle timeout", false);
        continue;
      }
      if (st.ping_interval.count() > 0 && now >= next_ping) {
        next_ping = now + st.ping_interval;
        if (!ping_sent) {
          ping_sent = now;
          ++ping_token;
          std::lock_guard lk(mu);
          pushCtrl(*this, encodeControlFrame(version, Command::Ping, 0, encodePing(ping_token)));
          tun.pings.fetch_add(1);
        }
        continue;
      }
    }

    // Sleep until the socket, the doorbell or a timer.
    short events = 0;
    if ((!paused && !peer_eof) || write_wants_read) {
      events = static_cast<short>(events | POLLIN);
    }
    if (write_blocked || read_wants_write) {
      events = static_cast<short>(events | POLLOUT);
    }
    int timeout_ms = -1;
    const auto until = [&](Clock::time_point t) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1;
      const int v = static_cast<int>(std::clamp<int64_t>(ms, 0, INT_MAX));
      timeout_ms = timeout_ms < 0 ? v : std::min(timeout_ms, v);
    };
    if (is_dead) {
      until(close_deadline);
    } else {
      if (st.ping_interval.count() > 0) {
        until(next_ping);
      }
      if (st.idle_timeout.count() > 0) {
        until(last_rx + st.idle_timeout);
      }
    }
    if (more) {
      timeout_ms = 0;  // OpenSSL may hold decrypted bytes poll cannot see
    }
    pollfd p[2] = {{fd.get(), events, 0}, {wake.get(), POLLIN, 0}};
    const int pr = ::poll(p, 2, timeout_ms);
    if (pr > 0 && (p[1].revents & POLLIN) != 0) {
      uint64_t v = 0;
      [[maybe_unused]] const ssize_t r = ::read(wake.get(), &v, sizeof v);
    }
  }
  account();
  ::shutdown(fd.get(), SHUT_RDWR);  // the peer sees the end now; the fd goes with the tunnel
}

// ---- Core -------------------------------------------------------------------------------------

Result<void> Core::start(std::vector<Established> established) {
  std::sort(established.begin(), established.end(),
            [](const Established& a, const Established& b) { return a.index < b.index; });
  for (auto& e : established) {
    auto c = std::make_unique<Connection>();
    c->core = this;
    c->index = e.index;
    c->version = e.version;
    c->initiator = initiator;
    c->fd = std::move(e.fd);
    c->ssl = std::move(e.ssl);
    c->decoder = std::move(e.decoder);
    c->peer_address = std::move(e.peer_address);
    c->next_local_id = initiator ? 1 : 2;
    c->wake = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!c->wake.valid()) {
      return fail(Error::fromErrno("Cannot create an eventfd for the tunnel"));
    }
    const int one = 1;
    ::setsockopt(c->fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (const std::string cc = initialCongestion(settings.congestion_control);
        !cc.empty() && ::setsockopt(c->fd.get(), IPPROTO_TCP, TCP_CONGESTION, cc.data(),
                                    static_cast<socklen_t>(cc.size())) != 0) {
      return fail(Error::fromErrno("Cannot use TCP congestion control '" + cc + "' on the tunnel"));
    }
    conns.push_back(std::move(c));
  }
  if (settings.congestion_control == kAutoCongestion) {
    std::vector<int> fds;
    for (auto& c : conns) {
      fds.push_back(c->fd.get());
    }
    cc_watch = std::make_unique<CongestionWatch>(std::move(fds), peer_site);
  }
  bandwidth.store(settings.bandwidth_bytes_per_s);
  if (settings.bandwidth_bytes_per_s > 0) {
    tokens = std::max(static_cast<double>(kChunk),
                      static_cast<double>(settings.bandwidth_bytes_per_s) / 50.0);
    bw_last = Clock::now();
  }
  for (auto& c : conns) {
    Connection* raw = c.get();
    c->io = std::thread([raw] { raw->run(); });
  }
  disp = std::thread([this] { dispatchLoop(); });
  return {};
}

void Core::startDispatch() {
  {
    std::lock_guard lk(disp_mu);
    disp_go = true;
  }
  disp_cv.notify_all();
}

Error Core::downError() const {
  std::lock_guard lk(state_mu);
  return error ? *error : Error(ErrorCode::Io, "Tunnel to site '" + peer_site + "' is down");
}

void Core::takeDown(Error why, WireError code, std::string_view reason, bool graceful) {
  {
    std::lock_guard lk(state_mu);
    if (error) {
      return;
    }
    error = why;
    down.store(true);
  }
  state_cv.notify_all();
  auto payload = encodeClose({code, cleanReason(reason)});
  const Error stream_error(ErrorCode::Io,
                           "Tunnel to site '" + peer_site + "' is down: " + why.message);
  for (auto& c : conns) {
    {
      std::lock_guard lk(c->mu);
      c->dead = true;
      c->graceful = graceful;
      c->goaway =
          encodeControlFrame(c->version, Command::GoAway, 0, payload ? *payload : std::string());
      for (auto& [id, s] : c->streams) {
        if (!s->error) {
          s->error = stream_error;
        }
        s->cv.notify_all();
      }
      c->space_cv.notify_all();
    }
    c->ring();
  }
  { std::lock_guard lk(bw_mu); }
  bw_cv.notify_all();
}

void Core::shutdown(std::string_view reason) {
  takeDown(
      Error(ErrorCode::Io, "Tunnel to site '" + peer_site + "' closed: " + std::string(reason)),
      WireError::Shutdown, reason, true);
  {
    std::lock_guard lk(state_mu);
    if (joined) {
      return;
    }
    joined = true;
  }
  const auto self = std::this_thread::get_id();
  bool own_thread = disp.get_id() == self;
  for (auto& c : conns) {
    own_thread = own_thread || c->io.get_id() == self;
  }
  if (own_thread) {
    std::fputs(
        "vandra tunnel: a Tunnel was destroyed on one of its own threads (a stream handler)\n",
        stderr);
    std::abort();
  }
  cc_watch.reset();
  for (auto& c : conns) {
    if (c->io.joinable()) {
      c->io.join();
    }
  }
  {
    std::lock_guard lk(disp_mu);
    disp_stop = true;
  }
  disp_cv.notify_all();
  if (disp.joinable()) {
    disp.join();
  }
  std::vector<Route> drop_routes;
  {
    std::lock_guard lk(routes_mu);
    drop_routes.swap(routes);
  }
  std::deque<std::shared_ptr<StreamState>> drop_pending;
  {
    std::lock_guard lk(disp_mu);
    drop_pending.swap(pending);
  }
  for (auto& c : conns) {  // break the cycles stream -> core -> connection -> table -> stream
    std::unordered_map<uint32_t, std::shared_ptr<StreamState>> table;
    {
      std::lock_guard lk(c->mu);
      table.swap(c->streams);
      for (auto& [id, s] : table) {
        s->in_table = false;
      }
      c->ssl.reset();
      c->fd = UniqueFd();
    }
  }
}

Result<void> Core::takeTokens(size_t n, std::optional<Deadline> deadline) {
  std::unique_lock lk(bw_mu);
  const double rate = static_cast<double>(bandwidth.load());
  if (rate <= 0) {
    return {};  // the cap was lifted meanwhile
  }
  const double burst = std::max(static_cast<double>(kChunk), rate / 50.0);
  const auto refill = [&] {
    const auto now = Clock::now();
    tokens = std::min(burst, tokens + rate * std::chrono::duration<double>(now - bw_last).count());
    bw_last = now;
  };
  refill();
  tokens -= static_cast<double>(n);
  while (tokens < 0) {
    if (down.load()) {
      lk.unlock();
      return fail(downError());
    }
    auto wake = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(-tokens / rate));
    if (deadline && *deadline < wake) {
      if (Clock::now() >= *deadline) {
        tokens += static_cast<double>(n);
        return fail(ErrorCode::Timeout, "Tunnel bandwidth cap: deadline passed");
      }
      wake = *deadline;
    }
    bw_cv.wait_until(lk, wake);
    refill();
  }
  return {};
}

void Core::rttSample(int64_t us) {
  int64_t old = rtt_us.load();
  for (;;) {
    const int64_t v = old < 0 ? us : (old * 7 + us) / 8;
    if (rtt_us.compare_exchange_weak(old, v)) {
      return;
    }
  }
}

void Core::dispatchLoop() {
  for (;;) {
    std::shared_ptr<StreamState> s;
    {
      std::unique_lock lk(disp_mu);
      disp_cv.wait(lk, [&] { return disp_stop || (disp_go && !pending.empty()); });
      if (disp_stop) {
        return;
      }
      s = std::move(pending.front());
      pending.pop_front();
    }
    StreamHandler handler;
    {
      std::lock_guard lk(routes_mu);
      const Route* best = nullptr;
      for (const auto& r : routes) {
        if (r.kind == s->kind && labelMatches(r.prefix, s->label) &&
            (best == nullptr || r.prefix.size() > best->prefix.size())) {
          best = &r;
        }
      }
      if (best != nullptr) {
        handler = best->handler;
        running_route = best->id;
      } else {
        handler = settings.on_stream;
      }
    }
    const StreamKind kind = s->kind;
    const std::string label = s->label;
    Stream stream(std::move(s));
    if (handler) {
      handler(kind, label, std::move(stream));
    } else {
      stream.close(WireError::StreamRefused, "no handler for " + std::string(toString(kind)) +
                                                 " streams labelled '" + label + "'");
    }
    {
      std::lock_guard lk(routes_mu);
      running_route = 0;
    }
    routes_cv.notify_all();
  }
}

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

// ---- Stream
// ---------------------------------------------------------------------------------------

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (s_) {
      Stream old(std::move(s_));
    }
    s_ = std::move(o.s_);
  }
  return *this;
}

Stream::~Stream() {
  if (!s_) {
    return;
  }
  bool clean = false;
  {
    std::lock_guard lk(s_->conn->mu);
    clean = s_->end_sent && s_->end_received;
  }
  close(clean ? WireError::NoError : WireError::Cancelled, clean ? "" : "stream dropped");
}

StreamKind Stream::kind() const {
  return s_->kind;
}
const std::string& Stream::label() const {
  return s_->label;
}
uint32_t Stream::id() const {
  return s_->id;
}
uint16_t Stream::connection() const {
  return s_->conn->index;
}

namespace {

Result<void> writeImpl(StreamState& s, std::string_view data, bool message,
                       std::optional<Deadline> deadline) {
  using namespace detail;
  if (message && data.size() > kMaxPayload) {
    return fail(ErrorCode::LimitExceeded, "Tunnel message of " + std::to_string(data.size()) +
                                              " bytes is above the frame limit " +
                                              std::to_string(kMaxPayload));
  }
  Connection& c = *s.conn;
  Core& core = *s.core;
  std::lock_guard wl(s.write_mu);
  size_t off = 0;
  bool first = true;
  while (off < data.size() || (message && first)) {
    first = false;
    const size_t want = message ? data.size() : std::min(data.size() - off, kChunk);
    size_t n = want;
    {
      std::unique_lock lk(c.mu);
      const auto blocked = [&] {
        if (writeBlocker(s, c)) {
          return false;
        }
        if (c.data_bytes >= kSendQueueLimit) {
          return true;
        }
        if (c.version >= 2) {
          return message ? s.send_window < static_cast<int64_t>(want) : s.send_window <= 0;
        }
        return false;
      };
      while (blocked()) {
        if (deadline) {
          if (c.space_cv.wait_until(lk, *deadline) == std::cv_status::timeout && blocked()) {
            return fail(ErrorCode::Timeout, "Tunnel " + streamName(s) + ": write timed out");
          }
        } else {
          c.space_cv.wait(lk);
        }
      }
      if (auto e = writeBlocker(s, c)) {
        return fail(std::move(*e));
      }
      if (c.version >= 2) {
        if (!message) {
          n = std::min(want, static_cast<size_t>(s.send_window));
        }
        s.send_window -= static_cast<int64_t>(n);
      }
    }
    if (core.bandwidth.load() > 0 && n > 0) {
      auto t = core.takeTokens(n, deadline);
      if (!t) {
        std::lock_guard lk(c.mu);
        if (c.version >= 2) {
          s.send_window += static_cast<int64_t>(n);
        }
        return t;
      }
    }
    std::string frame = encodeDataFrame(c.version, s.id, 0, data.substr(off, n));
    {
      std::lock_guard lk(c.mu);
      if (auto e = writeBlocker(s, c)) {
        return fail(std::move(*e));
      }
      pushData(c, std::move(frame));
      core.kind_tx[kindIndex(s.kind)].fetch_add(n);
    }
    c.ring();
    off += n;
  }
  return {};
}

// Takes up to @p n bytes (or, with @p msg, the rest of the front DATA payload).
Result<size_t> readImpl(StreamState& s, char* buf, size_t n, std::string* msg,
                        std::optional<Deadline> deadline) {
  using namespace detail;
  Connection& c = *s.conn;
  std::unique_lock lk(c.mu);
  for (;;) {
    if (s.error && !s.end_received) {
      return fail(*s.error);
    }
    if (s.rx_bytes > 0) {
      break;
    }
    if (s.end_received) {
      return size_t{0};
    }
    if (deadline) {
      if (s.cv.wait_until(lk, *deadline) == std::cv_status::timeout && s.rx_bytes == 0 &&
          !s.end_received && !s.error) {
        return fail(ErrorCode::Timeout, "Tunnel " + streamName(s) + ": read timed out");
      }
    } else {
      s.cv.wait(lk);
    }
  }
  size_t k = 0;
  if (msg != nullptr) {
    std::string& front = s.rx.front();
    if (s.rx_off == 0) {
      *msg = std::move(front);
    } else {
      *msg = front.substr(s.rx_off);
    }
    k = msg->size();
    s.rx.pop_front();
    s.rx_off = 0;
  } else {
    while (k < n && !s.rx.empty()) {
      const std::string& front = s.rx.front();
      const size_t take = std::min(n - k, front.size() - s.rx_off);
      std::memcpy(buf + k, front.data() + s.rx_off, take);
      k += take;
      s.rx_off += take;
      if (s.rx_off == front.size()) {
        s.rx.pop_front();
        s.rx_off = 0;
      }
    }
  }
  s.rx_bytes -= k;
  bool ring = false;
  if (c.version >= 2 && !s.end_received && !s.close_sent && !c.dead) {
    s.owed += static_cast<uint32_t>(k);
    if (s.owed >= std::max<uint32_t>(s.core->settings.receive_window / 4, 1)) {
      pushCtrl(c, windowFrame(c.version, s.id, s.owed));
      s.recv_credit += s.owed;
      s.owed = 0;
      ring = true;
    }
  }
  if (s.v1_full && s.rx_bytes < kVersion1StreamWindow) {
    s.v1_full = false;
    --c.v1_full_streams;
    ring = true;
  }
  lk.unlock();
  if (ring) {
    c.ring();
  }
  return k;
}

}  // namespace

Result<void> Stream::write(std::string_view data, std::optional<Deadline> deadline) {
  if (!s_) {
    return fail(ErrorCode::InvalidArgument, "Write on an empty stream handle");
  }
  if (data.empty()) {
    return {};
  }
  return writeImpl(*s_, data, false, deadline);
}

Result<void> Stream::writeMessage(std::string_view message, std::optional<Deadline> deadline) {
  if (!s_) {
    return fail(ErrorCode::InvalidArgument, "Write on an empty stream handle");
  }
  return writeImpl(*s_, message, true, deadline);
}

Result<size_t> Stream::read(char* buf, size_t n, std::optional<Deadline> deadline) {
  if (!s_) {
    return fail(ErrorCode::InvalidArgument, "Read on an empty stream handle");
  }
  if (n == 0) {
    return size_t{0};
  }
  return readImpl(*s_, buf, n, nullptr, deadline);
}

Result<std::optional<std::string>> Stream::readMessage(std::optional<Deadline> deadline) {
  if (!s_) {
    return fail(ErrorCode::InvalidArgument, "Read on an empty stream handle");
  }
  std::string msg;
  VANDRA_TRY_ASSIGN(const size_t n, readImpl(*s_, nullptr, 0, &msg, deadline));
  if (n == 0 && msg.empty()) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(std::move(msg));
}

Result<void> Stream::closeWrite() {
  if (!s_) {
    return fail(ErrorCode::InvalidArgument, "closeWrite on an empty stream handle");
  }
  StreamState& s = *s_;
  detail::Connection& c = *s.conn;
  std::lock_guard wl(s.write_mu);
  {
    std::lock_guard lk(c.mu);
    if (s.end_sent) {
      return {};
    }
    if (auto e = detail::writeBlocker(s, c)) {
      return fail(std::move(*e));
    }
    s.end_sent = true;
    detail::pushData(c, detail::encodeDataFrame(c.version, s.id, kFlagEndStream, {}));
  }
  c.ring();
  return {};
}

void Stream::close(WireError code, std::string_view reason) {
  if (!s_) {
    return;
  }
  StreamState& s = *s_;
  detail::Connection& c = *s.conn;
  bool ring = false;
  {
    std::lock_guard lk(c.mu);
    if (!s.close_sent) {
      s.close_sent = true;
      if (!s.error) {
        s.error = Error(ErrorCode::Io, "Tunnel " + detail::streamName(s) + " was closed locally");
      }
      s.rx.clear();
      s.rx_off = 0;
      s.rx_bytes = 0;
      if (s.v1_full) {
        s.v1_full = false;
        --c.v1_full_streams;
      }
      if (s.in_table && !c.dead) {
        std::string frame = detail::closeFrame(c.version, s.id, code, reason);
        if (code == WireError::NoError) {
          detail::pushData(c, std::move(frame));  // after the stream's queued DATA
        } else {
          detail::pushCtrl(c, std::move(frame));  // a reset overtakes queued DATA
        }
        ring = true;
      }
    }
    s.cv.notify_all();
    c.space_cv.notify_all();
  }
  if (ring) {
    c.ring();
  }
}

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
  size_t idx = 0;
  if (kind != StreamKind::Control && n > 1) {
    idx = 1 + core.round_robin.fetch_add(1) % (n - 1);
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

std::optional<std::chrono::microseconds> Tunnel::rtt() const {
  const int64_t v = core_->rtt_us.load();
  if (v < 0) {
    return std::nullopt;
  }
  return std::chrono::microseconds(v);
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
  }
  st.pings_sent = core_->pings.load();
  st.pongs_received = core_->pongs.load();
  return st;
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
