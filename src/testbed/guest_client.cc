#include "vandra/testbed/guest_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "vandra/testbed/testbed.h"

namespace vandra::testbed {
namespace {

using Clock = std::chrono::steady_clock;

int msLeft(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(left, 1 << 30)));
}

// Waits for @p events on @p fd until the deadline. Errors: Timeout, Io.
Result<void> waitFor(int fd, short events, Clock::time_point deadline, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, msLeft(deadline));
    if (rc > 0) {
      return {};
    }
    if (rc == 0) {
      return fail(ErrorCode::Timeout,
                  std::string("The guest did not answer in time (") + what + ")");
    }
    if (errno != EINTR) {
      return fail(Error::fromErrno("poll"));
    }
  }
}

Result<void> sendAll(int fd, const char* data, size_t n, Clock::time_point deadline) {
  size_t off = 0;
  while (off < n) {
    const ssize_t w = ::send(fd, data + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      off += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      VANDRA_TRY(waitFor(fd, POLLOUT, deadline, "send"));
      continue;
    }
    return fail(Error::fromErrno("Sending to the guest failed"));
  }
  return {};
}

}  // namespace

Result<GuestConnection> GuestConnection::connect(const std::string& netns, const std::string& ip,
                                                 uint16_t port, Clock::time_point deadline) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (::inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) {
    return fail(ErrorCode::InvalidArgument, "Bad guest address '" + ip + "'");
  }
  std::string last = "not tried";
  while (Clock::now() < deadline) {
    VANDRA_TRY_ASSIGN(UniqueFd fd, socketInNetns(netns, AF_INET, SOCK_STREAM | SOCK_NONBLOCK));
    const int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const auto attempt_end = std::min(deadline, Clock::now() + std::chrono::seconds(2));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      return GuestConnection(std::move(fd));
    }
    if (errno != EINPROGRESS) {
      last = std::strerror(errno);
    } else if (auto w = waitFor(fd.get(), POLLOUT, attempt_end, "connect"); !w) {
      last = "no answer";
    } else {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) {
        return GuestConnection(std::move(fd));
      }
      last = std::strerror(err);
    }
    // Refused or unreachable: the guest is still booting. Try again shortly (bounded by the
    // deadline; each attempt is a fresh socket).
    std::this_thread::sleep_until(
        std::min(deadline, Clock::now() + std::chrono::milliseconds(200)));
  }
  return fail(ErrorCode::Timeout, "The guest service at " + ip + ":" + std::to_string(port) +
                                      " did not answer (" + last + ")");
}

Result<std::string> GuestConnection::readLine(Clock::time_point deadline) {
  for (;;) {
    if (const auto nl = pending_.find('\n'); nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    if (pending_.size() > 64 * 1024) {
      return fail(ErrorCode::LimitExceeded, "The guest sent a line longer than 64 KiB");
    }
    VANDRA_TRY(waitFor(fd_.get(), POLLIN, deadline, "reply"));
    char buf[4096];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) {
      return fail(ErrorCode::Io, "The guest closed the connection");
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        continue;
      }
      return fail(Error::fromErrno("Reading from the guest failed"));
    }
    pending_.append(buf, static_cast<size_t>(n));
  }
}

Result<void> GuestConnection::readExact(char* out, size_t n, Clock::time_point deadline) {
  size_t got = std::min(n, pending_.size());
  std::memcpy(out, pending_.data(), got);
  pending_.erase(0, got);
  while (got < n) {
    VANDRA_TRY(waitFor(fd_.get(), POLLIN, deadline, "data"));
    const ssize_t r = ::recv(fd_.get(), out + got, n - got, MSG_DONTWAIT);
    if (r == 0) {
      return fail(ErrorCode::Io, "The guest closed the connection");
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        continue;
      }
      return fail(Error::fromErrno("Reading from the guest failed"));
    }
    got += static_cast<size_t>(r);
  }
  return {};
}

Result<std::string> GuestConnection::command(const std::string& line,
                                             std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string msg = line + "\n";
  VANDRA_TRY(sendAll(fd_.get(), msg.data(), msg.size(), deadline));
  return readLine(deadline);
}

Result<std::chrono::microseconds> GuestConnection::ping(const std::string& token,
                                                        std::chrono::milliseconds timeout) {
  const auto t0 = Clock::now();
  VANDRA_TRY_ASSIGN(const std::string reply, command("PING " + token, timeout));
  const auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
  if (reply.rfind("PONG " + token + " ", 0) != 0) {
    return fail(ErrorCode::InvalidArgument, "Unexpected answer to PING: '" + reply + "'");
  }
  return rtt;
}

Result<void> GuestConnection::echo(size_t bytes, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  VANDRA_TRY_ASSIGN(const std::string ok, command("ECHO", timeout));
  if (ok != "OK ECHO") {
    return fail(ErrorCode::InvalidArgument, "Unexpected answer to ECHO: '" + ok + "'");
  }
  std::mt19937_64 rng(bytes);
  std::vector<char> data(bytes);
  for (auto& c : data) {
    c = static_cast<char>(rng());
  }
  // Send and read back in chunks so neither side's buffers fill up.
  constexpr size_t kChunk = 16 * 1024;
  std::vector<char> back(kChunk);
  for (size_t off = 0; off < bytes; off += kChunk) {
    const size_t n = std::min(kChunk, bytes - off);
    VANDRA_TRY(sendAll(fd_.get(), data.data() + off, n, deadline));
    VANDRA_TRY(readExact(back.data(), n, deadline));
    if (std::memcmp(back.data(), data.data() + off, n) != 0) {
      return fail(ErrorCode::Internal, "Echoed bytes differ near offset " + std::to_string(off));
    }
  }
  return {};
}

Result<GuestConnection::ExecResult> GuestConnection::exec(const std::string& program_and_args,
                                                          std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string msg = "EXEC " + program_and_args + "\n";
  VANDRA_TRY(sendAll(fd_.get(), msg.data(), msg.size(), deadline));
  ExecResult r;
  for (;;) {
    VANDRA_TRY_ASSIGN(const std::string line, readLine(deadline));
    if (line.rfind("OUT ", 0) == 0) {
      r.out.push_back(line.substr(4));
    } else if (line.rfind("EXIT ", 0) == 0) {
      r.exit_code = std::atoi(line.c_str() + 5);
      return r;
    } else if (line.rfind("ERR", 0) == 0) {
      return fail(ErrorCode::InvalidArgument,
                  "The guest refused '" + program_and_args + "': " + line);
    } else {
      return fail(ErrorCode::InvalidArgument, "Unexpected answer to EXEC: '" + line + "'");
    }
  }
}

Result<std::unique_ptr<SessionProbe>> SessionProbe::start(
    const std::string& netns, const std::string& ip, uint16_t port,
    std::chrono::milliseconds interval, std::chrono::steady_clock::time_point deadline) {
  VANDRA_TRY_ASSIGN(auto conn, GuestConnection::connect(netns, ip, port, deadline));
  VANDRA_TRY_ASSIGN(const std::string ok, conn.command("PROBE", std::chrono::seconds(30)));
  if (ok != "OK PROBE") {
    return fail(ErrorCode::InvalidArgument, "Unexpected answer to PROBE: '" + ok + "'");
  }
  return std::make_unique<SessionProbe>(std::move(conn), interval);
}

SessionProbe::SessionProbe(GuestConnection conn, std::chrono::milliseconds interval)
    : conn_(std::move(conn)), interval_(interval) {
  thread_ = std::thread([this] { run(); });
}

SessionProbe::~SessionProbe() {
  (void)stop(std::chrono::milliseconds(0));
}

SessionProbe::Report SessionProbe::snapshot() const {
  std::lock_guard lock(mu_);
  return report_;
}

SessionProbe::Report SessionProbe::stop(std::chrono::milliseconds drain) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      drain_until_ = Clock::now() + drain;
    }
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
  std::lock_guard lock(mu_);
  return report_;
}

// The probing loop: sends on an absolute schedule (no catch-up burst after a stall), reads
// whatever came back, and checks each 16-byte answer against the next expected counter.
void SessionProbe::run() {
  const int fd = conn_.fd();
  const auto t0 = Clock::now();
  auto last_answer = t0;
  auto next_send = t0;
  uint64_t next_counter = 0;  // next probe to send
  uint64_t expected = 0;      // next answer expected
  std::string out;            // unsent bytes (the guest may be paused: TCP holds them)
  std::string in;
  auto broken = [&](const std::string& why) {
    std::lock_guard lock(mu_);
    report_.error = why;
    report_.bytes_lost = (report_.probes_sent - report_.answers) * 8;
  };
  for (;;) {
    bool stopping = false;
    Clock::time_point drain_until;
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
      drain_until = drain_until_;
    }
    const auto now = Clock::now();
    if (stopping && (expected == next_counter || now >= drain_until)) {
      std::lock_guard lock(mu_);
      report_.bytes_lost = (report_.probes_sent - report_.answers) * 8;
      return;
    }
    if (!stopping && now >= next_send) {
      char probe[8];
      for (int i = 0; i < 8; ++i) {
        probe[i] = static_cast<char>((next_counter >> (56 - 8 * i)) & 0xFF);
      }
      out.append(probe, 8);
      ++next_counter;
      next_send += interval_;
      std::lock_guard lock(mu_);
      report_.probes_sent = next_counter;
    }
    if (!out.empty()) {
      const ssize_t w = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) {
        out.erase(0, static_cast<size_t>(w));
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        broken("send failed: " + std::string(std::strerror(errno)));
        return;
      }
    }
    const auto wake = stopping ? drain_until : next_send;
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(
        &p, 1, std::max(0, msLeft(std::min(wake, Clock::now() + std::chrono::milliseconds(50)))));
    if (rc < 0 && errno != EINTR) {
      broken("poll failed: " + std::string(std::strerror(errno)));
      return;
    }
    if (rc <= 0) {
      continue;
    }
    char buf[4096];
    const ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r == 0) {
      broken("the guest closed the session");
      return;
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        continue;
      }
      broken("recv failed: " + std::string(std::strerror(errno)));
      return;
    }
    in.append(buf, static_cast<size_t>(r));
    const auto arrived = Clock::now();
    while (in.size() >= 16) {
      uint64_t got = 0;
      for (int i = 0; i < 8; ++i) {
        got = (got << 8) | static_cast<uint8_t>(in[static_cast<size_t>(i)]);
      }
      in.erase(0, 16);
      if (got != expected) {
        broken("answer " + std::to_string(got) + " where " + std::to_string(expected) +
               " was due: bytes lost or reordered");
        return;
      }
      ++expected;
      const double gap = std::chrono::duration<double, std::milli>(arrived - last_answer).count();
      last_answer = arrived;
      std::lock_guard lock(mu_);
      report_.answers = expected;
      if (gap > report_.max_gap_ms) {
        report_.max_gap_ms = gap;
        report_.max_gap_at_s = std::chrono::duration<double>(arrived - t0).count();
      }
    }
  }
}

}  // namespace vandra::testbed
