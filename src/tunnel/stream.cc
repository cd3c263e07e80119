// Site tunnel transport: Stream handles (write with flow control and the bandwidth cap,
// read, half-close, close). Locking rules are in transport.h.
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

namespace vandra::tunnel {

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

// Queues @p data as DATA frames carrying @p flags: in one frame when @p whole (a message, a
// compressed chunk), else in pieces of at most kChunk within the peer's window. @p plain: the
// stream bytes they stand for (plain_tx). Adds the time spent waiting for the link (a full send
// queue, the bandwidth cap) to @p waited; waiting for the peer's window is not counted.
Result<void> queueData(StreamState& s, std::string_view data, bool whole, uint16_t flags,
                       size_t plain, std::optional<Deadline> deadline,
                       std::chrono::nanoseconds& waited) {
  using namespace detail;
  Connection& c = *s.conn;
  Core& core = *s.core;
  size_t off = 0;
  bool first = true;
  while (off < data.size() || (whole && first)) {
    first = false;
    const size_t want = whole ? data.size() : std::min(data.size() - off, kChunk);
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
          return whole ? s.send_window < static_cast<int64_t>(want) : s.send_window <= 0;
        }
        return false;
      };
      while (blocked()) {
        // Only a full send queue is the link's doing; waiting for the peer's credit is
        // waiting for its reader (on a host whose cores are all busy, often for CPU that a
        // higher compression level would take from it too).
        const bool link = c.data_bytes >= kSendQueueLimit;
        const auto t0 = Clock::now();
        if (deadline) {
          if (c.space_cv.wait_until(lk, *deadline) == std::cv_status::timeout && blocked()) {
            return fail(ErrorCode::Timeout, "Tunnel " + streamName(s) + ": write timed out");
          }
        } else {
          c.space_cv.wait(lk);
        }
        if (link) {
          waited += Clock::now() - t0;
        }
      }
      if (auto e = writeBlocker(s, c)) {
        return fail(std::move(*e));
      }
      if (c.version >= 2) {
        if (!whole) {
          n = std::min(want, static_cast<size_t>(s.send_window));
        }
        s.send_window -= static_cast<int64_t>(n);
      }
    }
    if (core.bandwidth.load() > 0 && n > 0) {
      const auto t0 = Clock::now();
      auto t = core.takeTokens(n, deadline);
      waited += Clock::now() - t0;
      if (!t) {
        std::lock_guard lk(c.mu);
        if (c.version >= 2) {
          s.send_window += static_cast<int64_t>(n);
        }
        return t;
      }
    }
    std::string frame = encodeDataFrame(c.version, s.id, flags, data.substr(off, n));
    {
      std::lock_guard lk(c.mu);
      if (auto e = writeBlocker(s, c)) {
        return fail(std::move(*e));
      }
      pushData(c, std::move(frame));
      core.kind_tx[kindIndex(s.kind)].fetch_add(n);
      core.plain_tx[kindIndex(s.kind)].fetch_add(whole ? plain : n);
    }
    c.ring();
    off += n;
  }
  return {};
}

// Adds what @p s's compressor did since the last call to its tunnel's counters.
void publishCompression(StreamState& s) {
  const CompressionCounters& now = s.compressor->counters();
  CompressionCounters& was = s.published;
  detail::Core& core = *s.core;
  core.comp_plain.fetch_add(now.plain_bytes - was.plain_bytes);
  core.comp_bytes.fetch_add(now.compressed_bytes - was.compressed_bytes);
  core.comp_plain_compressed.fetch_add(now.compressed_plain - was.compressed_plain);
  core.comp_chunks.fetch_add(now.chunks_compressed - was.chunks_compressed);
  core.comp_chunks_plain.fetch_add(now.chunks_plain - was.chunks_plain);
  core.comp_ns.fetch_add(now.compress_ns - was.compress_ns);
  core.comp_quick_tries.fetch_add(now.quick_tries - was.quick_tries);
  for (int top = core.comp_top_level.load();
       now.top_level > top && !core.comp_top_level.compare_exchange_weak(top, now.top_level);) {
  }
  if (now.level != 0) {
    core.comp_level.store(now.level);
  }
  was = now;
}

Result<void> writeImpl(StreamState& s, std::string_view data, bool message,
                       std::optional<Deadline> deadline) {
  if (message && data.size() > kMaxPayload) {
    return fail(ErrorCode::LimitExceeded, "Tunnel message of " + std::to_string(data.size()) +
                                              " bytes is above the frame limit " +
                                              std::to_string(kMaxPayload));
  }
  std::lock_guard wl(s.write_mu);
  std::chrono::nanoseconds waited{0};
  if (message || !s.compressor) {
    return queueData(s, data, message, 0, data.size(), deadline, waited);
  }
  // A bulk stream that compresses: piece by piece, each compressed when it pays.
  for (size_t off = 0; off < data.size();) {
    const std::string_view piece = data.substr(off, kCompressPiece);
    auto packed = s.compressor->encode(piece);
    waited = std::chrono::nanoseconds{0};
    auto queued = packed
                      ? queueData(s, *packed, true, kFlagCompressed, piece.size(), deadline, waited)
                      : queueData(s, piece, false, 0, piece.size(), deadline, waited);
    s.compressor->waited(waited);
    publishCompression(s);
    VANDRA_TRY(queued);
    off += piece.size();
  }
  return {};
}

// How much this stream lets the peer have in flight or waiting here (the caller holds the
// connection's lock). With window_follows_reader off: the configured window. On: a window
// that covers the link's bandwidth-delay product keeps the link full, and one much larger
// only queues (in the link's buffers or here, behind a slow reader), and every queued byte is
// drained inside a migration's pause (docs/benchmarks.md: 16 MiB of compressed pages behind
// the target QEMU cost the way back ~1 s). So the window is what the reader took per second
// at its peak over the last 16 spans, times four round trips of the unloaded path (the
// smallest PING round trip) and at least 100 ms, between kInitialStreamWindow and the
// configured window (two round trips starved a reader whose pace varies: ADR 0028):
//   link-limited:   the peak is the link's rate      -> 4 x BDP: the link stays full
//   reader-limited: the peak is the reader's         -> a few RTT of its work wait here
//   window-limited: the peak is window / RTT         -> the window grows each round trip
// Spans last at least a round trip and 20 ms. Before any round trip is known: the configured
// window.
uint32_t windowTarget(StreamState& s) {
  const uint32_t configured = s.core->settings.receive_window;
  const int64_t rtt_us = s.core->min_rtt_us.load();
  if (!s.core->settings.window_follows_reader || rtt_us <= 0 ||
      configured <= kInitialStreamWindow) {
    return configured;
  }
  using std::chrono::steady_clock;
  const auto now = steady_clock::now();
  if (s.mark == steady_clock::time_point{}) {
    s.mark = now;
    s.consumed_at_mark = s.consumed;
  }
  const auto span = now - s.mark;
  if (span >= std::max<steady_clock::duration>(std::chrono::microseconds(rtt_us),
                                               std::chrono::milliseconds(20))) {
    const double span_s = std::chrono::duration<double>(span).count();
    s.span_rates[s.next_span % s.span_rates.size()] =
        static_cast<double>(s.consumed - s.consumed_at_mark) / span_s;
    ++s.next_span;
    s.mark = now;
    s.consumed_at_mark = s.consumed;
  }
  if (s.next_span < s.span_rates.size()) {
    return configured;  // not enough history yet
  }
  const double peak = *std::max_element(s.span_rates.begin(), s.span_rates.end());
  const double horizon_s = std::max(4.0 * static_cast<double>(rtt_us) / 1e6, 0.1);
  return static_cast<uint32_t>(std::clamp(peak * horizon_s,
                                          static_cast<double>(kInitialStreamWindow),
                                          static_cast<double>(configured)));
}

// Serves the reader from the decompressed chunk (s.plain): up to @p n bytes, or with @p msg
// the rest of it.
size_t takePlain(StreamState& s, char* buf, size_t n, std::string* msg) {
  size_t k = 0;
  if (msg != nullptr) {
    *msg = s.plain_off == 0 ? std::move(s.plain) : s.plain.substr(s.plain_off);
    k = msg->size();
  } else {
    k = std::min(n, s.plain.size() - s.plain_off);
    std::memcpy(buf, s.plain.data() + s.plain_off, k);
    s.plain_off += k;
  }
  if (msg != nullptr || s.plain_off == s.plain.size()) {
    s.plain.clear();
    s.plain_off = 0;
  }
  s.core->plain_rx[detail::kindIndex(s.kind)].fetch_add(k);
  return k;
}

// Takes up to @p n received bytes (or, with @p msg, the rest of the front DATA payload). A
// compressed payload is taken whole and decompressed without the connection's lock.
Result<size_t> readImpl(StreamState& s, char* buf, size_t n, std::string* msg,
                        std::optional<Deadline> deadline) {
  using namespace detail;
  if (s.plain_off < s.plain.size()) {
    return takePlain(s, buf, n, msg);
  }
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
  size_t k = 0;        // bytes for the caller
  std::string packed;  // a compressed payload, decompressed below
  if (s.rx.front().compressed) {
    packed = std::move(s.rx.front().data);
    s.rx.pop_front();
    s.rx_off = 0;
  } else if (msg != nullptr) {
    std::string& front = s.rx.front().data;
    if (s.rx_off == 0) {
      *msg = std::move(front);
    } else {
      *msg = front.substr(s.rx_off);
    }
    k = msg->size();
    s.rx.pop_front();
    s.rx_off = 0;
  } else {
    while (k < n && !s.rx.empty() && !s.rx.front().compressed) {
      const std::string& front = s.rx.front().data;
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
  const size_t consumed = packed.empty() ? k : packed.size();  // what the window counts
  s.rx_bytes -= consumed;
  bool ring = false;
  if (c.version >= 2 && !s.end_received && !s.close_sent && !c.dead) {
    // The peer may have at most the target in flight or waiting here: credit up to it, in
    // steps of at least a quarter (not a WINDOW frame per read).
    s.consumed += consumed;
    const uint32_t target = windowTarget(s);
    const uint64_t held = static_cast<uint64_t>(s.recv_credit) + s.rx_bytes;
    if (held < target && target - held >= std::max<uint32_t>(target / 4, 1)) {
      const auto grant = static_cast<uint32_t>(target - held);
      pushCtrl(c, windowFrame(c.version, s.id, grant));
      s.recv_credit += grant;
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
  if (packed.empty()) {
    s.core->plain_rx[kindIndex(s.kind)].fetch_add(k);
    return k;
  }
  auto plain = decompressChunk(packed);
  if (!plain) {
    // The peer broke the protocol on this stream: reset it, so that both ends stop.
    closeStreamState(s, WireError::ProtocolError, plain.error().message);
    return fail(plain.error());
  }
  s.plain = std::move(*plain);
  s.plain_off = 0;
  return takePlain(s, buf, n, msg);
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
  detail::closeStreamState(*s_, code, reason);
}

namespace detail {

void closeStreamState(StreamState& s, WireError code, std::string_view reason) {
  Connection& c = *s.conn;
  bool ring = false;
  {
    std::lock_guard lk(c.mu);
    if (!s.close_sent) {
      s.close_sent = true;
      if (!s.error) {
        s.error = Error(ErrorCode::Io, "Tunnel " + streamName(s) + " was closed locally");
      }
      s.rx.clear();
      s.rx_off = 0;
      s.rx_bytes = 0;
      if (s.v1_full) {
        s.v1_full = false;
        --c.v1_full_streams;
      }
      if (s.in_table && !c.dead) {
        std::string frame = closeFrame(c.version, s.id, code, reason);
        if (code == WireError::NoError) {
          pushData(c, std::move(frame));  // after the stream's queued DATA
        } else {
          pushCtrl(c, std::move(frame));  // a reset overtakes queued DATA
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

}  // namespace detail

}  // namespace vandra::tunnel
