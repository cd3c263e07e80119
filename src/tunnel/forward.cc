// Unix-socket forwarding and TAP bridging over tunnel streams (forward.h).
#include "vandra/tunnel/forward.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "transport.h"
#include "vandra/common/netns.h"

namespace vandra::tunnel {
namespace {

// One compressor piece per read when the socket has that much (compress.h).
constexpr size_t kPumpBuffer = kCompressPiece;

Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path) {
    return fail(ErrorCode::InvalidArgument, "Unix socket path '" + path +
                                                "' is empty or longer than " +
                                                std::to_string(sizeof a.sun_path - 1) + " bytes");
  }
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// One forwarded connection: a local socket and a stream, a pump thread each way.
struct Pipe {
  UniqueFd sock;
  Stream stream;
  std::thread up;    // socket -> stream
  std::thread down;  // stream -> socket
  std::atomic<int> finished{0};
  std::unique_ptr<ByteTransform> up_tx;  // nullptr: the bytes pass as they are
  std::unique_ptr<ByteTransform> down_tx;
  std::function<void(const std::string&)> on_error;

  std::mutex sock_mu;  // finish() closes sock while the forwarder's destructor may shut it

  void shut(int how) {
    std::lock_guard lk(sock_mu);
    if (sock.valid()) {
      ::shutdown(sock.get(), how);
    }
  }

  // The last pump out closes the local socket, not only shuts it: QEMU's NBD client was seen
  // to keep a mirror's writes pending on a shut but open socket until the forwarder went
  // (a WAN cut mid-mirror took 60 s more to roll back); a close also tells the other process
  // that bytes it sent were never read (ECONNRESET).
  void finish() {
    if (finished.fetch_add(1) + 1 == 2) {
      stream.close(WireError::NoError, "");  // no-op when a pump already reset it
      std::lock_guard lk(sock_mu);
      sock = UniqueFd();
    }
  }

  // A transform refused its input: the connection ends both ways, and the forwarder says why.
  void transformFailed(const Error& e) {
    if (on_error) {
      on_error(e.message);
    }
    stream.close(WireError::ProtocolError, e.message.substr(0, kMaxCloseReason));
    shut(SHUT_RDWR);
  }

  // Runs @p in through @p tx (all of the input when @p in is nullopt: finish) into
  // @p scratch; nullopt when the transform failed (the connection is then over).
  std::optional<std::string_view> transform(ByteTransform* tx, std::optional<std::string_view> in,
                                            std::string& scratch) {
    if (tx == nullptr) {
      return in.value_or(std::string_view());
    }
    scratch.clear();
    if (auto r = in ? tx->feed(*in, scratch) : tx->finish(scratch); !r) {
      transformFailed(r.error());
      return std::nullopt;
    }
    return std::string_view(scratch);
  }

  void pumpUp() {
    detail::blockSigpipe();
    std::vector<char> buf(kPumpBuffer);
    std::string scratch;
    for (;;) {
      const ssize_t n = ::recv(sock.get(), buf.data(), buf.size(), 0);
      if (n >= 0) {
        std::optional<std::string_view> in;
        if (n > 0) {
          in = std::string_view(buf.data(), static_cast<size_t>(n));
        }
        const auto out = transform(up_tx.get(), in, scratch);
        if (!out) {
          break;
        }
        auto sent = out->empty() ? Result<void>() : stream.write(*out);
        if (sent && n == 0) {
          sent = stream.closeWrite();
        }
        if (!sent) {
          if (on_error) {
            on_error(sent.error().message);
          }
          ::shutdown(sock.get(), SHUT_RDWR);  // the stream is gone: so is the local connection
          break;
        }
        if (n == 0) {
          break;
        }
        continue;
      }
      if (errno == EINTR) {
        continue;
      }
      stream.close(WireError::Cancelled, std::string("local socket: ") + std::strerror(errno));
      ::shutdown(sock.get(), SHUT_RDWR);
      break;
    }
    finish();
  }

  void pumpDown() {
    detail::blockSigpipe();
    std::vector<char> buf(kPumpBuffer);
    std::string scratch;
    for (;;) {
      auto r = stream.read(buf.data(), buf.size());
      if (!r) {
        if (on_error) {
          on_error(r.error().message);
        }
        ::shutdown(sock.get(), SHUT_RDWR);  // reset or tunnel down: reset the local side too
        break;
      }
      std::optional<std::string_view> in;
      if (*r > 0) {
        in = std::string_view(buf.data(), *r);
      }
      const auto out = transform(down_tx.get(), in, scratch);
      if (!out) {
        break;
      }
      if (!sendAll(*out)) {
        stream.close(WireError::Cancelled, std::string("local socket: ") + std::strerror(errno));
        ::shutdown(sock.get(), SHUT_RDWR);
        break;
      }
      if (*r == 0) {
        ::shutdown(sock.get(), SHUT_WR);  // the peer half-closed
        break;
      }
    }
    finish();
  }

  bool sendAll(std::string_view data) {
    size_t off = 0;
    while (off < data.size()) {
      const ssize_t w = ::send(sock.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w <= 0) {
        return false;
      }
      off += static_cast<size_t>(w);
    }
    return true;
  }
};

}  // namespace

class UnixForwarderImpl {
 public:
  UnixForwarderImpl(Tunnel& t, ForwardMode m, StreamKind k, std::string l, std::string p,
                    ForwardOptions o)
      : tunnel(t),
        mode(m),
        kind(k),
        label(std::move(l)),
        path(std::move(p)),
        options(std::move(o)) {}

  ~UnixForwarderImpl() {
    stop_requested = true;
    if (stop.valid()) {
      const uint64_t one = 1;
      [[maybe_unused]] const ssize_t r = ::write(stop.get(), &one, sizeof one);
    }
    if (acceptor.joinable()) {
      acceptor.join();
    }
    if (route != 0) {
      tunnel.removeStreamHandler(route);  // no new pipes after this
    }
    std::list<std::unique_ptr<Pipe>> all;
    {
      std::lock_guard lk(mu);
      all.swap(pipes);
    }
    for (auto& p : all) {
      p->stream.close(WireError::Cancelled, "forwarder stopped");
      p->shut(SHUT_RDWR);
    }
    for (auto& p : all) {
      p->up.join();
      p->down.join();
    }
    if (created_socket) {
      ::unlink(path.c_str());
    }
  }

  void startPipe(UniqueFd sock, Stream stream) {
    reap();
    auto p = std::make_unique<Pipe>();
    p->sock = std::move(sock);
    p->stream = std::move(stream);
    if (options.to_stream) {
      p->up_tx = options.to_stream(p->stream);
    }
    if (options.from_stream) {
      p->down_tx = options.from_stream(p->stream);
    }
    p->on_error = [this](const std::string& why) {
      std::lock_guard lk(mu);
      last_error = why;
    };
    Pipe* raw = p.get();
    p->up = std::thread([raw] { raw->pumpUp(); });
    p->down = std::thread([raw] { raw->pumpDown(); });
    forwarded.fetch_add(1);
    std::lock_guard lk(mu);
    pipes.push_back(std::move(p));
  }

  void reap() {
    std::list<std::unique_ptr<Pipe>> done;
    {
      std::lock_guard lk(mu);
      for (auto it = pipes.begin(); it != pipes.end();) {
        if ((*it)->finished.load() == 2) {
          done.splice(done.end(), pipes, it++);
        } else {
          ++it;
        }
      }
    }
    for (auto& p : done) {
      p->up.join();
      p->down.join();
    }
  }

  void acceptLoop() {
    for (;;) {
      pollfd p[2] = {{lfd.get(), POLLIN, 0}, {stop.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 && errno != EINTR) {
        return;
      }
      if ((p[1].revents & POLLIN) != 0) {
        return;
      }
      if ((p[0].revents & POLLIN) == 0) {
        continue;
      }
      UniqueFd c(::accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c.valid()) {
        continue;
      }
      auto stream = tunnel.openStream(kind, label);
      if (!stream) {
        continue;  // the tunnel is down: the local client sees the connection close
      }
      startPipe(std::move(c), std::move(*stream));
    }
  }

  Tunnel& tunnel;
  ForwardMode mode;
  StreamKind kind;
  std::string label;
  std::string path;
  ForwardOptions options;
  std::string last_error;  // guarded by mu
  UniqueFd lfd;
  UniqueFd stop;
  std::thread acceptor;
  uint64_t route = 0;
  bool created_socket = false;
  std::atomic<bool> stop_requested{false};
  std::atomic<uint64_t> forwarded{0};
  mutable std::mutex mu;
  std::list<std::unique_ptr<Pipe>> pipes;
};

UnixForwarder::UnixForwarder(std::unique_ptr<UnixForwarderImpl> impl) : impl_(std::move(impl)) {}
UnixForwarder::~UnixForwarder() = default;
const std::string& UnixForwarder::socketPath() const {
  return impl_->path;
}
std::string UnixForwarder::lastError() const {
  std::lock_guard lk(impl_->mu);
  return impl_->last_error;
}
uint64_t UnixForwarder::forwarded() const {
  return impl_->forwarded.load();
}
size_t UnixForwarder::active() const {
  std::lock_guard lk(impl_->mu);
  size_t n = 0;
  for (const auto& p : impl_->pipes) {
    n += p->finished.load() < 2 ? size_t{1} : size_t{0};
  }
  return n;
}

Result<std::unique_ptr<UnixForwarder>> forwardUnixSocket(Tunnel& tunnel, ForwardMode mode,
                                                         StreamKind kind, const std::string& label,
                                                         const std::string& socket_path,
                                                         ForwardOptions options) {
  VANDRA_TRY_ASSIGN(const sockaddr_un addr, unixAddress(socket_path));
  Open probe;
  probe.kind = kind;
  probe.label = label;
  VANDRA_TRY(encodeOpen(probe));  // the label must be one the peer accepts
  auto impl = std::make_unique<UnixForwarderImpl>(tunnel, mode, kind, label, socket_path,
                                                  std::move(options));
  if (mode == ForwardMode::Connect) {
    UnixForwarderImpl* raw = impl.get();
    impl->route =
        tunnel.addStreamHandler(kind, label, [raw](StreamKind, const std::string&, Stream stream) {
          if (raw->stop_requested.load()) {
            stream.close(WireError::Cancelled, "forwarder stopping");
            return;
          }
          UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
          auto a = unixAddress(raw->path);
          if (!s.valid() || !a ||
              ::connect(s.get(), reinterpret_cast<const sockaddr*>(&*a), sizeof *a) != 0) {
            stream.close(WireError::Cancelled,
                         "cannot connect to " + raw->path + ": " + std::strerror(errno));
            return;
          }
          raw->startPipe(std::move(s), std::move(stream));
        });
    return std::make_unique<UnixForwarder>(std::move(impl));
  }

  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail(ErrorCode::AlreadyExists, "'" + socket_path + "' exists and is not a socket");
    }
    ::unlink(socket_path.c_str());  // a stale socket of an earlier run
  }
  impl->lfd = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!impl->lfd.valid()) {
    return fail(Error::fromErrno("Cannot create a unix socket"));
  }
  if (::bind(impl->lfd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return fail(Error::fromErrno("Cannot bind unix socket " + socket_path));
  }
  impl->created_socket = true;
  if (::listen(impl->lfd.get(), SOMAXCONN) != 0) {
    return fail(Error::fromErrno("Cannot listen on unix socket " + socket_path));
  }
  impl->stop = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!impl->stop.valid()) {
    return fail(Error::fromErrno("Cannot create an eventfd"));
  }
  UnixForwarderImpl* raw = impl.get();
  impl->acceptor = std::thread([raw] { raw->acceptLoop(); });
  return std::make_unique<UnixForwarder>(std::move(impl));
}

// ---- TAP ------------------------------------------------------------------------------------

TapBridge::TapBridge(std::string name, UniqueFd fd, UniqueFd stop_fd)
    : name_(std::move(name)), fd_(std::move(fd)), stop_fd_(std::move(stop_fd)) {}

Result<std::unique_ptr<TapBridge>> TapBridge::create(const std::string& name,
                                                     const std::string& netns) {
  constexpr size_t kNameMax = IFNAMSIZ - 1;
  if (name.empty() || name.size() > kNameMax ||
      name.find_first_of("/ \t\n:") != std::string::npos) {
    return fail(ErrorCode::InvalidArgument, "TAP device name '" + name + "' is not 1.." +
                                                std::to_string(kNameMax) + " plain characters");
  }
  UniqueFd fd;
  Result<void> made;
  VANDRA_TRY(runInNetns(netns, [&] {
    // The device belongs to the namespace of the thread that opens /dev/net/tun.
    fd = UniqueFd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
    if (!fd.valid()) {
      made = fail(Error::fromErrno("Cannot open /dev/net/tun"));
      return;
    }
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    std::memcpy(ifr.ifr_name, name.c_str(), name.size());
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
      made = fail(Error::fromErrno("Cannot create TAP device " + name +
                                   (netns.empty() ? "" : " in " + netns)));
    }
  }));
  VANDRA_TRY(made);
  UniqueFd stop(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop.valid()) {
    return fail(Error::fromErrno("Cannot create an eventfd"));
  }
  return std::make_unique<TapBridge>(name, std::move(fd), std::move(stop));
}

TapBridge::~TapBridge() {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t r = ::write(stop_fd_.get(), &one, sizeof one);
  if (stream_) {
    stream_->close(WireError::Cancelled, "TAP bridge stopped");
  }
  if (up_) {
    up_->join();
  }
  if (down_) {
    down_->join();
  }
}

Result<void> TapBridge::attach(Stream stream) {
  if (!stream.valid() || stream.kind() != StreamKind::Ethernet) {
    return fail(ErrorCode::InvalidArgument, "TAP " + name_ + " needs an Ethernet stream");
  }
  if (stream_) {
    return fail(ErrorCode::InvalidArgument, "TAP " + name_ + " is already attached to a stream");
  }
  stream_ = std::make_unique<Stream>(std::move(stream));
  up_ = std::make_unique<std::thread>([this] { tapToStream(); });
  down_ = std::make_unique<std::thread>([this] { streamToTap(); });
  return {};
}

TapBridge::Counters TapBridge::counters() const {
  return Counters{sent_.load(), received_.load(),     dropped_.load(),
                  held_.load(), held_dropped_.load(), reflected_.load()};
}

Result<void> TapBridge::addRule(const std::string& mac, bool reflect,
                                std::chrono::milliseconds lifetime) {
  VANDRA_TRY_ASSIGN(const MacAddress m, parseMac(mac));
  std::lock_guard lock(rules_mu_);
  auto it = rules_.find(m);
  if (it == rules_.end()) {
    if (rules_.size() >= kMaxHeldAddresses) {
      return fail(ErrorCode::LimitExceeded, "TAP " + name_ + " holds or reflects frames for " +
                                                std::to_string(kMaxHeldAddresses) +
                                                " addresses already");
    }
    it = rules_.emplace(m, Rule{}).first;
  }
  it->second.reflect = reflect;
  it->second.expires = std::chrono::steady_clock::now() + lifetime;
  diverting_.store(true);
  return {};
}

Result<void> TapBridge::hold(const std::string& mac, std::chrono::milliseconds lifetime) {
  return addRule(mac, false, lifetime);
}

Result<void> TapBridge::reflect(const std::string& mac, std::chrono::milliseconds lifetime) {
  return addRule(mac, true, lifetime);
}

bool TapBridge::endRule(const std::string& mac, bool reflect,
                        const std::function<void(Rule&)>& last) {
  const auto m = parseMac(mac);
  if (!m) {
    return false;
  }
  std::lock_guard lock(rules_mu_);
  const auto it = rules_.find(*m);
  if (it == rules_.end() || it->second.reflect != reflect) {
    return false;
  }
  last(it->second);
  rules_.erase(it);
  diverting_.store(!rules_.empty());
  return true;
}

uint64_t TapBridge::unreflect(const std::string& mac) {
  uint64_t n = 0;
  endRule(mac, true, [&](Rule& r) { n = r.reflected; });
  return n;
}

TapBridge::Released TapBridge::release(const std::string& mac, std::chrono::milliseconds max_age) {
  Released out;
  // Under the lock: a frame for @p mac that arrives meanwhile waits, and so goes out after
  // the held ones (order kept).
  endRule(mac, false, [&](Rule& r) {
    const auto oldest = std::chrono::steady_clock::now() - max_age;
    for (const auto& [at, frame] : r.frames) {
      if (at < oldest || ::write(fd_.get(), frame.data(), frame.size()) < 0) {
        ++out.discarded;
        continue;
      }
      ++out.delivered;
    }
  });
  received_.fetch_add(out.delivered);
  held_dropped_.fetch_add(out.discarded);
  return out;
}

uint64_t TapBridge::drop(const std::string& mac) {
  uint64_t n = 0;
  endRule(mac, false, [&](Rule& r) { n = r.frames.size(); });
  held_dropped_.fetch_add(n);
  return n;
}

bool TapBridge::divert(std::string& frame) {
  if (!diverting_.load() || frame.size() < 6) {
    return false;
  }
  MacAddress dst{};
  std::memcpy(dst.data(), frame.data(), dst.size());
  std::unique_lock lock(rules_mu_);
  const auto it = rules_.find(dst);
  if (it == rules_.end()) {
    return false;
  }
  const auto now = std::chrono::steady_clock::now();
  Rule& r = it->second;
  if (now >= r.expires) {  // nobody ended it in time: frames flow again
    held_dropped_.fetch_add(r.frames.size());
    rules_.erase(it);
    diverting_.store(!rules_.empty());
    return false;
  }
  if (r.reflect) {
    ++r.reflected;
    lock.unlock();  // the write may wait for the peer's window
    std::lock_guard w(write_mu_);
    if (stream_->writeMessage(frame)) {
      reflected_.fetch_add(1);
    } else {
      dropped_.fetch_add(1);
    }
    return true;
  }
  if (r.frames.size() >= kMaxHeldFrames || r.bytes + frame.size() > kMaxHeldBytes) {
    held_dropped_.fetch_add(1);
    return true;  // tail drop, as a full port queue
  }
  r.bytes += frame.size();
  r.frames.emplace_back(now, std::move(frame));
  held_.fetch_add(1);
  return true;
}

void TapBridge::tapToStream() {
  std::vector<char> buf(kMaxEthernetFrame + 1);  // one more: a longer frame shows as oversized
  for (;;) {
    pollfd p[2] = {{fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) {
      return;
    }
    if ((p[1].revents & POLLIN) != 0) {
      return;
    }
    for (;;) {
      const ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        if (errno == EAGAIN) {
          break;
        }
        return;  // the device is gone
      }
      if (static_cast<size_t>(n) > kMaxEthernetFrame || n == 0) {
        dropped_.fetch_add(1);
        continue;
      }
      std::unique_lock w(write_mu_);
      if (!stream_->writeMessage(std::string_view(buf.data(), static_cast<size_t>(n)))) {
        return;  // the stream is gone
      }
      w.unlock();
      sent_.fetch_add(1);
    }
  }
}

void TapBridge::streamToTap() {
  for (;;) {
    auto m = stream_->readMessage();
    if (!m || !*m) {
      return;
    }
    if ((*m)->size() > kMaxEthernetFrame) {
      dropped_.fetch_add(1);
      continue;
    }
    if (divert(**m)) {
      continue;
    }
    if (::write(fd_.get(), (*m)->data(), (*m)->size()) < 0) {
      dropped_.fetch_add(1);  // device down or its queue full: Ethernet may drop
      continue;
    }
    received_.fetch_add(1);
  }
}

Result<std::unique_ptr<TapBridge>> bridgeTap(const std::string& tap_name, const std::string& netns,
                                             Stream stream) {
  VANDRA_TRY_ASSIGN(auto bridge, TapBridge::create(tap_name, netns));
  VANDRA_TRY(bridge->attach(std::move(stream)));
  return bridge;
}

}  // namespace vandra::tunnel
