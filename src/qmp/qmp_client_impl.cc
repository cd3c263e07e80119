// QMP transport: unix socket, reader thread, event thread, id correlation, timeouts. Must not
// busy-wait or sleep to synchronise: waiters block on condition variables, the reader on
// poll(2) over the socket and an eventfd that close() writes.
#include "qmp_client_impl.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "qmp_codec.h"

namespace vandra::qmp {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

int msUntil(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1'000'000));
}

Result<UniqueFd> connectOnce(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    return fail(Error::fromErrno("Cannot create a unix socket"));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): sockaddr API
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail(Error::fromErrno("Cannot connect to QMP socket '" + path + "'"));
  }
  return fd;
}

// Connects, retrying while the socket is absent or not yet listening (QEMU creates it while
// starting; nothing signals that moment, so this is the one place that waits on a clock).
Result<UniqueFd> connectWithRetry(const std::string& path, Clock::time_point deadline) {
  int backoff_ms = 5;
  while (true) {
    auto fd = connectOnce(path);
    if (fd) {
      return fd;
    }
    const auto e = fd.error().sys_errno.value_or(0);
    const bool retry = e == ENOENT || e == ECONNREFUSED || e == EAGAIN;
    if (!retry || Clock::now() >= deadline) {
      if (retry) {
        Error t(ErrorCode::Timeout, "QMP socket '" + path + "' did not accept in time");
        return fail(std::move(t).withCause(fd.error()));
      }
      return fd;
    }
    ::poll(nullptr, 0, std::min(backoff_ms, msUntil(deadline)));
    backoff_ms = std::min(backoff_ms * 2, 100);
  }
}

}  // namespace

QmpClientImpl::QmpClientImpl(UniqueFd sock, UniqueFd wake, QmpClientOptions options)
    : sock_(std::move(sock)), wake_(std::move(wake)), options_(std::move(options)) {
  options_.event_queue_capacity = std::max<size_t>(options_.event_queue_capacity, 1);
}

Result<std::unique_ptr<QmpClientImpl>> QmpClientImpl::connect(const std::string& socket_path,
                                                              QmpClientOptions options) {
  if (socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
    return fail(ErrorCode::InvalidArgument,
                "QMP socket path '" + socket_path + "' is empty or longer than " +
                    std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  }
  const auto deadline = Clock::now() + options.connect_timeout;
  VANDRA_TRY_ASSIGN(UniqueFd sock, connectWithRetry(socket_path, deadline));
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) {
    return fail(Error::fromErrno("Cannot create an eventfd"));
  }
  auto client =
      std::make_unique<QmpClientImpl>(std::move(sock), std::move(wake), std::move(options));
  client->eventer_ = std::thread([c = client.get()] { c->eventLoop(); });
  client->reader_ = std::thread([c = client.get()] { c->readerLoop(); });

  {
    std::unique_lock lock(client->mu_);
    client->cv_.wait_until(lock, deadline, [&] { return client->greeting_ || client->broken_; });
    if (client->broken_) {
      return fail(*client->broken_);
    }
    if (!client->greeting_) {
      return fail(ErrorCode::Timeout, "No QMP greeting on '" + socket_path + "' in time");
    }
    client->greeting_value_ = *client->greeting_;
  }
  QmpCommand caps{"qmp_capabilities", json::object(), options.connect_timeout};
  const auto& offered = client->greeting_value_.capabilities;
  if (options.enable_oob && std::find(offered.begin(), offered.end(), "oob") != offered.end()) {
    caps.args = {{"enable", json::array({"oob"})}};
    client->oob_ = true;
  }
  auto ok = client->executeUntil(caps, deadline);
  if (!ok) {
    return fail(std::move(ok).error());
  }
  return client;
}

QmpClientImpl::~QmpClientImpl() {
  close();
}

void QmpClientImpl::close() {
  std::call_once(close_once_, [this] {
    breakConnection(Error(ErrorCode::QmpDisconnected, "QMP connection closed by vandra"));
    {
      std::lock_guard lock(ev_mu_);
      ev_stop_ = true;
    }
    ev_cv_.notify_all();
    if (reader_.joinable()) {
      reader_.join();
    }
    if (eventer_.joinable()) {
      eventer_.join();
    }
    if (sock_.valid()) {
      ::shutdown(sock_.get(), SHUT_RDWR);
      (void)sock_.close();
    }
  });
}

bool QmpClientImpl::waitDisconnected(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return broken_.has_value(); });
}

void QmpClientImpl::breakConnection(Error e) {
  {
    std::lock_guard lock(mu_);
    if (broken_) {
      return;
    }
    broken_ = std::move(e);
  }
  cv_.notify_all();
  // Stop the reader's poll; it exits on the eventfd.
  const uint64_t one = 1;
  (void)::write(wake_.get(), &one, sizeof(one));
}

void QmpClientImpl::readerLoop() {
  LineFramer framer(options_.max_line_bytes);
  std::vector<char> buf(64 * 1024);
  while (true) {
    std::array<pollfd, 2> fds{pollfd{sock_.get(), POLLIN, 0}, pollfd{wake_.get(), POLLIN, 0}};
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      breakConnection(Error::fromErrno("poll on the QMP socket failed"));
      return;
    }
    if (fds[1].revents != 0) {
      return;  // breakConnection() or close(): broken_ is already set
    }
    if (fds[0].revents == 0) {
      continue;
    }
    const ssize_t n = ::recv(sock_.get(), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        continue;
      }
      Error e = Error::fromErrno("Reading the QMP socket failed");
      e.code = ErrorCode::QmpDisconnected;
      breakConnection(std::move(e));
      return;
    }
    if (n == 0) {
      breakConnection(Error(ErrorCode::QmpDisconnected, "QEMU closed the QMP connection"));
      return;
    }
    if (auto ok = framer.append(std::string_view(buf.data(), static_cast<size_t>(n))); !ok) {
      breakConnection(std::move(ok).error());
      return;
    }
    while (auto line = framer.next()) {
      if (line->find_first_not_of(" \t") == std::string::npos) {
        continue;
      }
      if (auto ok = handleLine(*line); !ok) {
        breakConnection(std::move(ok).error());
        return;
      }
    }
  }
}

Result<void> QmpClientImpl::handleLine(const std::string& line) {
  VANDRA_TRY_ASSIGN(QmpMessage m, decodeMessage(line));
  std::unique_lock lock(mu_);
  if (!greeting_ && m.kind != MessageKind::Greeting) {
    return fail(ErrorCode::QmpProtocol,
                "QMP peer sent a " + std::string(toString(m.kind)) + " before its greeting");
  }
  switch (m.kind) {
    case MessageKind::Greeting:
      if (greeting_) {
        return fail(ErrorCode::QmpProtocol, "QMP peer sent a second greeting");
      }
      greeting_ = std::move(m.greeting);
      break;
    case MessageKind::Return:
    case MessageKind::Error: {
      if (!m.id) {
        // We always send an id; QEMU leaves it out only when it could not parse the request.
        return fail(ErrorCode::QmpProtocol,
                    "QMP reply without an id: " + (m.kind == MessageKind::Error
                                                       ? m.error_class + ": " + m.error_desc
                                                       : std::string("return")));
      }
      auto it = pending_.find(*m.id);
      if (it == pending_.end() || it->second) {
        return {};  // a reply after its command timed out: dropped
      }
      if (m.kind == MessageKind::Return) {
        it->second = Result<json>(std::move(m.value));
      } else {
        it->second = Result<json>(fail(ErrorCode::QmpError, m.error_class + ": " + m.error_desc));
      }
      break;
    }
    case MessageKind::Event:
      lock.unlock();
      pushEvent(std::move(m.event));
      return {};
  }
  lock.unlock();
  cv_.notify_all();
  return {};
}

void QmpClientImpl::pushEvent(QmpEvent ev) {
  if (!options_.on_event) {
    return;
  }
  {
    std::lock_guard lock(ev_mu_);
    if (events_.size() >= options_.event_queue_capacity) {
      events_.pop_front();
      dropped_.fetch_add(1);
    }
    events_.push_back(std::move(ev));
  }
  ev_cv_.notify_one();
}

void QmpClientImpl::eventLoop() {
  while (true) {
    QmpEvent ev;
    {
      std::unique_lock lock(ev_mu_);
      ev_cv_.wait(lock, [&] { return ev_stop_ || !events_.empty(); });
      if (events_.empty()) {
        return;  // stopped, and every event received before close() has been delivered
      }
      ev = std::move(events_.front());
      events_.pop_front();
    }
    options_.on_event(ev);
  }
}

Result<void> QmpClientImpl::writeLine(const std::string& line, Clock::time_point deadline) {
  std::lock_guard lock(write_mu_);
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n =
        ::send(sock_.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN) {
      Error e = Error::fromErrno("Writing to the QMP socket failed");
      e.code = ErrorCode::QmpDisconnected;
      return fail(std::move(e));
    }
    pollfd p{sock_.get(), POLLOUT, 0};
    const int r = ::poll(&p, 1, msUntil(deadline));
    if (r == 0) {
      return fail(ErrorCode::Timeout, "QEMU did not read the QMP command in time");
    }
    if (r < 0 && errno != EINTR) {
      return fail(Error::fromErrno("poll on the QMP socket failed"));
    }
  }
  return {};
}

Result<json> QmpClientImpl::execute(const QmpCommand& cmd) {
  return executeUntil(cmd, Clock::now() + cmd.timeout);
}

Result<json> QmpClientImpl::executeUntil(const QmpCommand& cmd, Clock::time_point deadline) {
  if (!cmd.args.is_null() && !cmd.args.is_object()) {
    return fail(ErrorCode::InvalidArgument, "QMP arguments of " + cmd.name + " are not an object");
  }
  if (cmd.out_of_band && !oob_) {
    return fail(ErrorCode::Unsupported, "QMP command " + cmd.name +
                                            " needs out-of-band execution, which this monitor "
                                            "connection did not negotiate");
  }
  std::string id;
  {
    std::lock_guard lock(mu_);
    if (broken_) {
      return fail(*broken_);
    }
    id = "vq-" + std::to_string(next_id_++);
    pending_.emplace(id, std::nullopt);
  }
  if (auto sent = writeLine(encodeCommand(cmd.name, cmd.args, id, cmd.out_of_band), deadline);
      !sent) {
    {
      std::lock_guard lock(mu_);
      pending_.erase(id);
    }
    // Part of a line may be on the wire: the stream can no longer be trusted.
    breakConnection(sent.error());
    return fail(std::move(sent).error());
  }
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] { return pending_.at(id).has_value() || broken_; });
  auto node = pending_.extract(id);
  if (node.mapped()) {
    auto r = std::move(*node.mapped());
    if (!r) {
      r.error().message = cmd.name + ": " + r.error().message;
    }
    return r;
  }
  if (broken_) {
    return fail(*broken_);
  }
  return fail(ErrorCode::Timeout,
              "QMP command " + cmd.name + " got no reply within " +
                  std::to_string(
                      std::chrono::duration_cast<std::chrono::milliseconds>(cmd.timeout).count()) +
                  " ms");
}

Result<QmpClientPtr> connectQmp(const std::string& socket_path, QmpClientOptions options) {
  VANDRA_TRY_ASSIGN(auto client, QmpClientImpl::connect(socket_path, std::move(options)));
  return QmpClientPtr(std::move(client));
}

}  // namespace vandra::qmp
