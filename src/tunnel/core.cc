// Site tunnel transport: the state shared by a tunnel's connections (Core): start, the
// dispatcher thread, taking the tunnel down, the bandwidth cap, RTT; and the stream-table
// and send-queue helpers the I/O threads and Stream handles share. Locking: transport.h.
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

// ---- stream table and queue helpers (callers hold Connection::mu) -----------------------

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

bool labelMatches(std::string_view prefix, std::string_view label) {
  if (prefix.empty() || label == prefix) {
    return true;
  }
  return label.starts_with(prefix) && (prefix.back() == '/' || label[prefix.size()] == '/');
}

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
  last_rtt_us.store(us);
  for (int64_t low = min_rtt_us.load(); us > 0 && (low < 0 || us < low);) {
    if (min_rtt_us.compare_exchange_weak(low, us)) {
      break;
    }
  }
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

}  // namespace vandra::tunnel::detail
