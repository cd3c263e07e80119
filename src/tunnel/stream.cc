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

}  // namespace vandra::tunnel
