// The listening side of the site tunnel: accepts TCP connections, runs TLS and HELLO on a
// thread per connection (so a slow or hostile peer holds up nobody else), parks the
// connections of a session until all of its N have arrived, then builds the Tunnel and hands
// it to on_tunnel. Refusals are counted and reported with why.
//
// Binding: an address that is not on this host (the WAN device down or gone when the agent
// starts) need not stop the agent. With retry_bind the accept thread first retries the bind
// (100 ms doubling up to bind_retry_max, woken at once by the stop eventfd), then accepts:
//
//   listen() --bind ok--> Listening ------------------------------> accept loop
//            --bind fails (Io)--> Retrying --(backoff)--> bind ok --^   (status(): state,
//                                     ^---- fails: last_error ---|       error, since)
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <map>
#include <set>

#include "transport.h"
#include "vandra/common/netns.h"
#include "vandra/tunnel/tunnel.h"
#include "wire.h"

namespace vandra::tunnel {
namespace detail {
namespace {

constexpr size_t kRememberedSessions = 4096;  // completed session ids refused if replayed

std::string addressOf(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (a.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (a.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

std::string namesOf(const std::vector<std::string>& sites) {
  std::string out;
  for (const auto& s : sites) {
    out += (out.empty() ? "'" : ", '") + s + "'";
  }
  return sites.size() == 1 ? "site " + out : "one of the sites " + out;
}

}  // namespace

class ListenerImpl {
 public:
  explicit ListenerImpl(ListenerOptions o) : opts(std::move(o)) {}
  ~ListenerImpl() { stopAll(); }

  Result<void> start();
  void stopAll();

  ListenerOptions opts;
  SslCtxPtr ctx;
  UniqueFd lfd;
  UniqueFd stop;
  std::atomic<uint16_t> port{0};
  ListenerStatus status;  // guarded by mu
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> tunnels{0};

  mutable std::mutex mu;
  std::optional<Error> last_refusal;

 private:
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  struct Session {
    uint16_t count = 0;
    std::string site;
    uint8_t version = 0;
    std::vector<std::optional<Established>> slots;
    std::vector<bool> reserved;
    size_t filled = 0;
    Clock::time_point deadline;
  };

  void acceptLoop();
  Result<void> bindOnce();
  bool retryBind();
  void setStatus(const std::function<void(ListenerStatus&)>& change);
  void handshake(UniqueFd fd, std::string who);
  void refuse(Error e);
  void goaway(SSL* ssl, int fd, uint8_t version, WireError code, const std::string& reason,
              const std::string& who);
  void reapWorkers(bool all);
  void linger(int fd);

  std::thread acceptor_;
  std::list<Worker> workers_;  // guarded by mu
  std::map<SessionId, Session> sessions_;
  std::set<SessionId> completed_;
  std::deque<SessionId> completed_order_;
  size_t parked_ = 0;
  bool stopped_ = false;
  int family_ = AF_INET;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
};

static int64_t wallUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<void> ListenerImpl::start() {
  VANDRA_TRY_ASSIGN(ctx, makeContext(opts, true, opts.peer_sites));
  stop = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop.valid()) {
    return fail(Error::fromErrno("Cannot create an eventfd for the tunnel listener"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(opts.port);
  if (const int r = ::getaddrinfo(opts.bind_host.c_str(), port_text.c_str(), &hints, &res);
      r != 0 || res == nullptr) {
    return fail(ErrorCode::InvalidArgument,
                "Tunnel listen address '" + opts.bind_host + "': " + ::gai_strerror(r));
  }
  family_ = res->ai_family;
  addr_len_ = res->ai_addrlen;
  std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  status.address = opts.bind_host + ":" + port_text;
  auto bound = bindOnce();
  if (!bound && (!opts.retry_bind || bound.error().code != ErrorCode::Io)) {
    return bound;
  }
  acceptor_ = std::thread([this, first = bound.has_value()] {
    if (first || retryBind()) {
      acceptLoop();
    }
  });
  return {};
}

// One try: a socket (in the listener's netns), bound and listening; the status says how it went.
Result<void> ListenerImpl::bindOnce() {
  UniqueFd fd;
  Result<void> made;
  VANDRA_TRY(runInNetns(opts.netns, [&] {
    fd = UniqueFd(::socket(family_, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      made = fail(Error::fromErrno("Cannot create the tunnel's listening socket"));
    }
  }));
  const int one = 1;
  if (made) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr_), addr_len_) != 0) {
      made = fail(Error::fromErrno("Cannot bind the tunnel listener to " + status.address));
    } else if (::listen(fd.get(), SOMAXCONN) != 0) {
      made = fail(Error::fromErrno("Cannot listen on " + status.address));
    }
  }
  if (!made) {
    setStatus([&](ListenerStatus& s) {
      if (s.attempts == 0 || s.state != ListenerStatus::State::Retrying) {
        s.since_us = wallUs();
      }
      s.state = ListenerStatus::State::Retrying;
      s.last_error = made.error();
      ++s.attempts;
    });
    return made;
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port = bound.ss_family == AF_INET6
             ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
             : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  lfd = std::move(fd);
  setStatus([&](ListenerStatus& s) {
    s.state = ListenerStatus::State::Listening;
    s.port = port.load();
    s.since_us = wallUs();
    ++s.attempts;
  });
  return {};
}

// Until bound (true) or stopped (false); the stop eventfd cuts any wait short.
bool ListenerImpl::retryBind() {
  blockSigpipe();
  auto backoff = std::chrono::milliseconds(100);
  for (;;) {
    pollfd p = {stop.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(backoff.count()));
    if (r > 0 || (r < 0 && errno != EINTR)) {
      return false;  // stopping (or poll broke: nothing to wait with)
    }
    if (bindOnce()) {
      return true;
    }
    backoff = std::min(backoff * 2, std::max(opts.bind_retry_max, std::chrono::milliseconds(100)));
  }
}

// Applies @p change; tells on_status when the state changed (or on the first status).
void ListenerImpl::setStatus(const std::function<void(ListenerStatus&)>& change) {
  ListenerStatus now;
  bool tell = false;
  {
    std::lock_guard lk(mu);
    const auto before = status.state;
    const bool first = status.attempts == 0;
    change(status);
    tell = first || before != status.state;
    now = status;
  }
  if (tell && opts.on_status) {
    opts.on_status(now);
  }
}

void ListenerImpl::stopAll() {
  {
    std::lock_guard lk(mu);
    if (stopped_) {
      return;
    }
    stopped_ = true;
  }
  if (stop.valid()) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t r = ::write(stop.get(), &one, sizeof one);
  }
  if (acceptor_.joinable()) {
    acceptor_.join();
  }
  reapWorkers(true);
  std::map<SessionId, Session> drop;
  {
    std::lock_guard lk(mu);
    drop.swap(sessions_);
    parked_ = 0;
  }
}

void ListenerImpl::reapWorkers(bool all) {
  std::list<Worker> finished;
  {
    std::lock_guard lk(mu);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (all || it->done->load()) {
        finished.splice(finished.end(), workers_, it++);
      } else {
        ++it;
      }
    }
  }
  for (auto& w : finished) {
    w.thread.join();
  }
}

void ListenerImpl::refuse(Error e) {
  refused.fetch_add(1);
  bool stopping = false;
  {
    std::lock_guard lk(mu);
    last_refusal = e;
    stopping = stopped_;
  }
  if (opts.on_refused && !stopping) {
    opts.on_refused(e);
  }
}

void ListenerImpl::goaway(SSL* ssl, int fd, uint8_t version, WireError code,
                          const std::string& reason, const std::string& who) {
  auto payload = encodeClose({code, cleanReason(reason)});
  const std::string frame =
      encodeControlFrame(version, Command::GoAway, 0, payload ? *payload : std::string());
  const auto deadline =
      Clock::now() + std::min(opts.close_timeout, std::chrono::milliseconds(1000));
  if (tlsWriteAll(ssl, fd, frame, deadline, stop.get(), who)) {
    SSL_shutdown(ssl);
  }
  ERR_clear_error();
  linger(fd);
}

// A refused peer may still be sending (its HELLO crosses our alert or GOAWAY). Closing with
// unread bytes would reset the connection, and a reset can overtake the alert that says why:
// so stop writing, and read (and drop) until the peer closes, for a short while.
void ListenerImpl::linger(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto deadline =
      Clock::now() + std::min(opts.close_timeout, std::chrono::milliseconds(1000));
  char buf[4096];
  for (;;) {
    if (!waitFd(fd, POLLIN, deadline, stop.get(), "a refused peer")) {
      return;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      return;
    }
  }
}

void ListenerImpl::acceptLoop() {
  blockSigpipe();
  for (;;) {
    int timeout_ms = 1000;
    {
      std::lock_guard lk(mu);
      const auto now = Clock::now();
      for (const auto& [id, s] : sessions_) {
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(s.deadline - now).count() + 1;
        timeout_ms = std::min(timeout_ms, static_cast<int>(std::max<int64_t>(ms, 0)));
      }
    }
    pollfd p[2] = {{lfd.get(), POLLIN, 0}, {stop.get(), POLLIN, 0}};
    const int r = ::poll(p, 2, timeout_ms);
    if (r < 0 && errno != EINTR) {
      refuse(Error::fromErrno("Tunnel listener poll failed"));
      return;
    }
    if ((p[1].revents & POLLIN) != 0) {
      return;
    }
    // Sessions that did not complete in time.
    std::vector<Session> expired;
    {
      std::lock_guard lk(mu);
      const auto now = Clock::now();
      for (auto it = sessions_.begin(); it != sessions_.end();) {
        if (it->second.deadline <= now) {
          parked_ -= it->second.filled;
          expired.push_back(std::move(it->second));
          it = sessions_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const auto& s : expired) {
      refuse(Error(ErrorCode::Timeout, "Tunnel session from site '" + s.site +
                                           "' incomplete: " + std::to_string(s.filled) + " of " +
                                           std::to_string(s.count) + " connections within " +
                                           std::to_string(opts.handshake_timeout.count()) + " ms"));
    }
    expired.clear();
    reapWorkers(false);
    if ((p[0].revents & POLLIN) == 0) {
      continue;
    }
    for (;;) {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      UniqueFd fd(::accept4(lfd.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                            SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd.valid()) {
        break;  // EAGAIN, or a connection that went away
      }
      std::string who = addressOf(peer);
      bool full = false;
      {
        std::lock_guard lk(mu);
        full = workers_.size() + parked_ >= opts.max_pending;
        if (!full) {
          auto done = std::make_shared<std::atomic<bool>>(false);
          Worker w;
          w.done = done;
          w.thread = std::thread([this, done, f = std::move(fd), w2 = who]() mutable {
            handshake(std::move(f), std::move(w2));
            done->store(true);
          });
          workers_.push_back(std::move(w));
        }
      }
      if (full) {
        refuse(Error(ErrorCode::LimitExceeded, "Refused " + who + ": " +
                                                   std::to_string(opts.max_pending) +
                                                   " tunnel connections are already pending"));
      }
    }
  }
}

void ListenerImpl::handshake(UniqueFd fd, std::string who) {
  blockSigpipe();
  const auto deadline = Clock::now() + opts.handshake_timeout;
  const int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  HandshakeInfo info;
  auto ssl = newSsl(ctx.get(), fd.get(), true, "", &info);
  if (!ssl) {
    refuse(std::move(ssl).error());
    return;
  }
  SSL* s = ssl->get();
  if (auto hs = tlsHandshake(s, fd.get(), true, deadline, stop.get(), info, who,
                             namesOf(opts.peer_sites));
      !hs) {
    refuse(std::move(hs).error());
    linger(fd.get());
    return;
  }
  FrameDecoder decoder;
  auto f = tlsReadFrame(s, fd.get(), decoder, deadline, stop.get(), who);
  if (!f) {
    Error e = std::move(f).error();
    if (decoder.failed()) {
      goaway(s, fd.get(), kMinProtocolVersion, wireErrorFor(e.code), e.message, who);
      e.message = "Refused " + who + ": " + e.message;
    }
    refuse(std::move(e));
    return;
  }
  const auto reject = [&](ErrorCode code, WireError wire_code, const std::string& msg,
                          uint8_t version) {
    goaway(s, fd.get(), version, wire_code, msg, who);
    refuse(Error(code, "Refused " + who + ": " + msg));
  };
  if (f->command != Command::Hello) {
    reject(ErrorCode::TunnelProtocol, WireError::ProtocolError,
           "expected HELLO, got " + std::string(toString(f->command)), f->version);
    return;
  }
  auto hello = decodeHello(f->payload);
  if (!hello) {
    reject(ErrorCode::TunnelProtocol, WireError::ProtocolError, hello.error().message, f->version);
    return;
  }
  auto version = negotiateVersion(kMinProtocolVersion, opts.max_version, hello->min_version,
                                  hello->max_version);
  if (!version) {
    reject(version.error().code, WireError::VersionMismatch, version.error().message,
           kMinProtocolVersion);
    return;
  }
  X509* cert = SSL_get0_peer_certificate(s);
  const bool accepted = std::find(opts.peer_sites.begin(), opts.peer_sites.end(), hello->site) !=
                        opts.peer_sites.end();
  if (!accepted || cert == nullptr ||
      X509_check_host(cert, hello->site.data(), hello->site.size(),
                      X509_CHECK_FLAG_NO_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                      nullptr) != 1) {
    reject(ErrorCode::CertificateUntrusted, WireError::ProtocolError,
           "HELLO names site '" + hello->site + "', which " +
               (accepted ? "its certificate does not name"
                         : "is not a peer site of '" + opts.local_site + "'"),
           *version);
    return;
  }

  // Reserve this connection's slot in its session.
  const SessionId sid = hello->session_id;
  const uint16_t index = hello->connection_index;
  const uint16_t count = hello->connection_count;
  std::string conflict;
  {
    std::lock_guard lk(mu);
    if (stopped_) {
      return;
    }
    auto it = sessions_.find(sid);
    if (completed_.count(sid) != 0) {
      conflict = "session is already complete";
    } else if (it == sessions_.end()) {
      Session ns;
      ns.count = count;
      ns.site = hello->site;
      ns.version = *version;
      ns.slots.resize(count);
      ns.reserved.assign(count, false);
      ns.deadline = Clock::now() + opts.handshake_timeout;
      it = sessions_.emplace(sid, std::move(ns)).first;
    } else if (it->second.count != count || it->second.site != hello->site) {
      conflict = "connection count or site differs from the session's other connections";
    } else if (it->second.reserved[index]) {
      conflict = "connection index " + std::to_string(index) + " is already taken in its session";
    }
    if (conflict.empty()) {
      it->second.reserved[index] = true;
    }
  }
  if (!conflict.empty()) {
    reject(ErrorCode::TunnelProtocol, WireError::ProtocolError, conflict, *version);
    return;
  }

  HelloAck ack;
  ack.version = *version;
  ack.connection_index = index;
  ack.connection_count = count;
  ack.session_id = sid;
  ack.site = opts.local_site;
  auto payload = encodeHelloAck(ack);
  Frame af;
  af.version = *version;
  af.command = Command::HelloAck;
  af.payload = payload ? std::move(*payload) : std::string();
  auto sent = tlsWriteAll(s, fd.get(), encodeFrame(af), deadline, stop.get(), who);

  std::vector<Established> complete;
  std::string site;
  {
    std::lock_guard lk(mu);
    auto it = sessions_.find(sid);
    if (!sent || it == sessions_.end()) {
      if (it != sessions_.end()) {  // a broken session: its client gives up anyway
        parked_ -= it->second.filled;
        sessions_.erase(it);
      }
    } else {
      decoder.setVersion(*version);
      Established e;
      e.fd = std::move(fd);
      e.ssl = std::move(*ssl);
      e.decoder = std::move(decoder);
      e.version = *version;
      e.index = index;
      e.peer_address = who;
      it->second.slots[index] = std::move(e);
      ++it->second.filled;
      ++parked_;
      if (it->second.filled == it->second.count) {
        for (auto& slot : it->second.slots) {
          complete.push_back(std::move(*slot));
        }
        site = it->second.site;
        parked_ -= it->second.filled;
        sessions_.erase(it);
        completed_.insert(sid);
        completed_order_.push_back(sid);
        if (completed_order_.size() > kRememberedSessions) {
          completed_.erase(completed_order_.front());
          completed_order_.pop_front();
        }
      }
    }
  }
  if (!sent) {
    refuse(std::move(sent).error());
    return;
  }
  if (complete.empty()) {
    return;  // parked until the session's other connections arrive
  }
  auto core = std::make_shared<Core>();
  core->settings = opts;
  core->peer_site = site;
  core->session = sid;
  core->version = *version;
  core->initiator = false;
  auto started = core->start(std::move(complete));
  auto tunnel = std::make_unique<Tunnel>(core);
  if (!started) {
    refuse(std::move(started).error());
    return;
  }
  tunnels.fetch_add(1);
  opts.on_tunnel(std::move(tunnel));
  core->startDispatch();
}

}  // namespace detail

Result<std::unique_ptr<TunnelListener>> TunnelListener::listen(const ListenerOptions& o) {
  if (!wire::isSiteName(o.local_site)) {
    return fail(ErrorCode::InvalidArgument,
                "Local site name '" + o.local_site + "' is not [a-z0-9-]{1,64}");
  }
  if (o.peer_sites.empty()) {
    return fail(ErrorCode::InvalidArgument, "Tunnel listener needs at least one peer site");
  }
  for (const auto& s : o.peer_sites) {
    if (!wire::isSiteName(s)) {
      return fail(ErrorCode::InvalidArgument, "Peer site name '" + s + "' is not [a-z0-9-]{1,64}");
    }
  }
  if (!o.on_tunnel) {
    return fail(ErrorCode::InvalidArgument, "Tunnel listener needs on_tunnel");
  }
  if (o.receive_window < kInitialStreamWindow || o.receive_window > kMaxWindow ||
      o.max_version < kMinProtocolVersion || o.max_version > kProtocolVersion ||
      o.handshake_timeout.count() <= 0 || o.max_pending == 0) {
    return fail(ErrorCode::InvalidArgument,
                "Tunnel listener: receive window, max version, handshake "
                "timeout or max_pending out of range");
  }
  auto impl = std::make_unique<detail::ListenerImpl>(o);
  VANDRA_TRY(impl->start());
  return std::make_unique<TunnelListener>(std::move(impl));
}

TunnelListener::TunnelListener(std::unique_ptr<detail::ListenerImpl> impl)
    : impl_(std::move(impl)) {}
TunnelListener::~TunnelListener() = default;

uint16_t TunnelListener::port() const {
  return impl_->port.load();
}
ListenerStatus TunnelListener::status() const {
  std::lock_guard lk(impl_->mu);
  return impl_->status;
}

std::string_view toString(ListenerStatus::State s) {
  return s == ListenerStatus::State::Listening ? "listening" : "retrying";
}
uint64_t TunnelListener::refusedCount() const {
  return impl_->refused.load();
}
std::optional<Error> TunnelListener::lastRefusal() const {
  std::lock_guard lk(impl_->mu);
  return impl_->last_refusal;
}
uint64_t TunnelListener::tunnelCount() const {
  return impl_->tunnels.load();
}

}  // namespace vandra::tunnel
