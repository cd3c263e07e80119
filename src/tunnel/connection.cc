// Site tunnel transport: one TCP+TLS connection's I/O thread (Connection::run) and how it
// applies each frame from the peer (handleFrame). The structure and threading model are
// drawn at the top of tunnel.h; locking rules are in transport.h.
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
#include "vandra/tunnel/tunnel.h"
#include "wire.h"

namespace vandra::tunnel::detail {
namespace {

constexpr size_t kCtrlQueueLimit =
    4 * 1024 * 1024;  // queued control bytes: beyond, the peer does not read
constexpr size_t kReadBuffer = 64 * 1024;
constexpr int kReadsPerTurn = 16;  // then the I/O thread writes before reading on

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
        s.rx.push_back({std::move(f.payload), (f.flags & kFlagCompressed) != 0});
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

}  // namespace vandra::tunnel::detail
