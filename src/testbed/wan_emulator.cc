// User-space WAN emulator: the LinkShaper model and the TUN forwarding loop around it.
// One process, one thread: epoll waits on both TUN fds, a signalfd and a timerfd armed at
// the next packet's delivery time, so it sleeps whenever nothing is due (no busy loop).
//
//   site dc netns                 emulator process (root netns)              site cloud netns
//   +-----------+   IP packet    +--------------------------------------+    +-----------+
//   | routes -> |  read(tun a)   |  LinkShaper a->b                     |    |           |
//   |  wan0 ====|===============>|  loss? -> FIFO queue (tail drop) ->  |===>|==== wan0  |
//   | (TUN a)   |                |  serialise at rate -> delay line --> |    | (TUN b)   |
//   |           |<===============|  <-- LinkShaper b->a (same stages)   |<===|           |
//   +-----------+  write(tun a)  +--------------------------------------+    +-----------+
//
// The TUN devices are created by this process in its own namespace and then moved by the
// testbed into the site namespaces; the fds stay attached. Deleting a site namespace
// destroys its TUN, the fd reports an error and the emulator exits by itself. SIGUSR1 cuts
// the link (every packet is dropped, both ways) until SIGUSR2: a WAN outage for the tests.
#include "vandra/testbed/wan_emulator.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "vandra/common/unique_fd.h"

namespace vandra::testbed {

using namespace std::chrono_literals;

Result<void> validate(const LinkParams& p) {
  if (!(p.loss >= 0.0 && p.loss <= 1.0)) {
    return fail(ErrorCode::InvalidArgument, "Loss must be between 0 and 1");
  }
  if (p.queue_packets == 0 || p.queue_bytes == 0) {
    return fail(ErrorCode::InvalidArgument, "Queue limits must be positive");
  }
  if (p.delay < 0ns) {
    return fail(ErrorCode::InvalidArgument, "Delay must not be negative");
  }
  return {};
}

LinkShaper::LinkShaper(LinkParams params, uint64_t seed) : params_(params), rng_(seed) {}

std::chrono::nanoseconds LinkShaper::serialisationTime(size_t bytes) const {
  if (params_.rate_bps == 0) {
    return 0ns;
  }
  // bits * 1e9 / rate, rounded up; 128-bit so 64 KiB at 1 bit/s cannot overflow.
  __extension__ using U128 = unsigned __int128;
  const U128 num = static_cast<U128>(bytes) * 8U * 1'000'000'000U;
  const U128 ns = (num + params_.rate_bps - 1) / params_.rate_bps;
  return std::chrono::nanoseconds(static_cast<int64_t>(ns));
}

void LinkShaper::advance(TimePoint now) {
  while (!queue_.empty() && queue_.front().sent <= now) {
    queue_bytes_ -= queue_.front().packet.size();
    line_.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
}

LinkShaper::Verdict LinkShaper::submit(TimePoint now, Packet packet) {
  advance(now);
  ++stats_.submitted;
  if (params_.loss > 0.0 && uniform_(rng_) < params_.loss) {
    ++stats_.dropped_loss;
    return Verdict::DroppedLoss;
  }
  if (queue_.size() + 1 > params_.queue_packets ||
      queue_bytes_ + packet.size() > params_.queue_bytes) {
    ++stats_.dropped_queue;
    return Verdict::DroppedQueueFull;
  }
  const TimePoint start = std::max(now, link_free_);
  const TimePoint sent = start + serialisationTime(packet.size());
  link_free_ = sent;
  queue_bytes_ += packet.size();
  queue_.push_back(Entry{sent, sent + params_.delay, std::move(packet)});
  stats_.max_queue_packets = std::max(stats_.max_queue_packets, queue_.size());
  // A packet with no serialisation time is on the wire at once.
  advance(now);
  return Verdict::Queued;
}

void LinkShaper::release(TimePoint now, std::vector<Packet>& out) {
  advance(now);
  while (!line_.empty() && line_.front().deliver <= now) {
    ++stats_.delivered;
    stats_.delivered_bytes += line_.front().packet.size();
    out.push_back(std::move(line_.front().packet));
    line_.pop_front();
  }
}

std::optional<TimePoint> LinkShaper::nextDelivery() const {
  // Delivery times grow along line_ then queue_ (FIFO, constant delay).
  if (!line_.empty()) {
    return line_.front().deliver;
  }
  if (!queue_.empty()) {
    return queue_.front().deliver;
  }
  return std::nullopt;
}

namespace {

LinkParams profileLink(uint64_t rate_bps, std::chrono::nanoseconds rtt, double loss) {
  LinkParams p;
  p.rate_bps = rate_bps;
  p.delay = rtt / 2;
  p.loss = loss;
  // A router queue of one bandwidth-delay product (at least 256 KiB).
  const auto bdp = static_cast<size_t>(static_cast<double>(rate_bps) / 8.0 *
                                       std::chrono::duration<double>(rtt).count());
  p.queue_bytes = std::max<size_t>(bdp, 256U << 10);
  p.queue_packets = std::max<size_t>(p.queue_bytes / 1000, 1000);
  return p;
}

}  // namespace

const std::vector<Profile>& profiles() {
  static const std::vector<Profile> all = {
      {"lan", profileLink(10'000'000'000ULL, 200us, 0.0)},
      {"metro", profileLink(1'000'000'000ULL, 10ms, 0.0)},
      {"wan", profileLink(1'000'000'000ULL, 50ms, 0.0)},
      {"ldvm", profileLink(250'000'000ULL, 150ms, 0.0)},
      {"lossy", profileLink(1'000'000'000ULL, 50ms, 0.005)},
  };
  return all;
}

Result<Profile> findProfile(const std::string& name) {
  std::string known;
  for (const auto& p : profiles()) {
    if (p.name == name) {
      return p;
    }
    known += (known.empty() ? "" : ", ") + p.name;
  }
  return fail(ErrorCode::NotFound, "Unknown link profile '" + name + "' (known: " + known + ")");
}

// ---------------------------------------------------------------------------------------
// TUN forwarding loop

namespace {

constexpr size_t kMaxPacket = 65536;
constexpr int kReadBatch = 256;

Result<UniqueFd> openTun(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return fail(ErrorCode::InvalidArgument, "Bad TUN device name '" + name + "'");
  }
  VANDRA_TRY_ASSIGN(auto fd, UniqueFd::open("/dev/net/tun", O_RDWR | O_NONBLOCK));
  ifreq ifr{};
  ifr.ifr_flags = static_cast<short>(IFF_TUN | IFF_NO_PI);
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    return fail(Error::fromErrno("Cannot create TUN device '" + name + "'"));
  }
  return fd;
}

bool deviceGone(int err) {
  return err == EBADFD || err == EIO || err == ENXIO || err == ENODEV;
}

struct Side {
  UniqueFd fd;
  std::string name;
};

enum class IoOutcome { Ok, Gone };

// Reads up to kReadBatch packets into the shaper. Errors: Io.
// @p cut: the link is cut (SIGUSR1 until SIGUSR2): every packet read is dropped.
Result<IoOutcome> readSide(Side& side, LinkShaper& shaper, std::vector<uint8_t>& buf, bool cut,
                           uint64_t& cut_drops) {
  for (int i = 0; i < kReadBatch; ++i) {
    const ssize_t n = ::read(side.fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN) {
        return IoOutcome::Ok;
      }
      if (deviceGone(errno)) {
        return IoOutcome::Gone;
      }
      return fail(Error::fromErrno("Read from " + side.name + " failed"));
    }
    if (n == 0) {
      return IoOutcome::Gone;
    }
    if (cut) {
      ++cut_drops;
      continue;
    }
    // One clock read per packet: a batch may span a few microseconds.
    shaper.submit(Clock::now(), Packet(buf.begin(), buf.begin() + n));
  }
  return IoOutcome::Ok;
}

Result<IoOutcome> writeSide(Side& side, std::vector<Packet>& packets, uint64_t& write_drops) {
  for (const auto& p : packets) {
    for (;;) {
      const ssize_t n = ::write(side.fd.get(), p.data(), p.size());
      if (n >= 0) {
        break;
      }
      if (errno == EINTR) {
        continue;
      }
      if (deviceGone(errno)) {
        return IoOutcome::Gone;
      }
      // The kernel refused this one (no buffer, bad packet): count it, keep going.
      ++write_drops;
      break;
    }
  }
  packets.clear();
  return IoOutcome::Ok;
}

timespec toTimespec(TimePoint t) {
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  return ts;
}

}  // namespace

Result<WanEmulatorResult> runWanEmulator(const WanEmulatorOptions& options) {
  VANDRA_TRY(validate(options.a_to_b));
  VANDRA_TRY(validate(options.b_to_a));
  // Timers as precise as the kernel allows (default slack is 50 us), and ahead of ordinary
  // work on a busy machine (best effort: needs CAP_SYS_NICE). Not real-time: a bug here
  // must not be able to starve the machine.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  ::setpriority(PRIO_PROCESS, 0, options.nice);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGUSR1);  // cut the link (tests: a WAN outage)
  sigaddset(&mask, SIGUSR2);  // restore it
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    return fail(Error::fromErrno("sigprocmask failed"));
  }
  ::signal(SIGPIPE, SIG_IGN);
  UniqueFd sig(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sig.valid()) {
    return fail(Error::fromErrno("signalfd failed"));
  }
  UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer.valid()) {
    return fail(Error::fromErrno("timerfd_create failed"));
  }
  std::array<Side, 2> sides;
  VANDRA_TRY_ASSIGN(sides[0].fd, openTun(options.a.device));
  sides[0].name = options.a.device;
  VANDRA_TRY_ASSIGN(sides[1].fd, openTun(options.b.device));
  sides[1].name = options.b.device;

  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep.valid()) {
    return fail(Error::fromErrno("epoll_create1 failed"));
  }
  const std::array<int, 4> watched{sides[0].fd.get(), sides[1].fd.get(), sig.get(), timer.get()};
  for (size_t i = 0; i < watched.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, watched[i], &ev) != 0) {
      return fail(Error::fromErrno("epoll_ctl failed"));
    }
  }
  if (options.ready_fd >= 0) {
    UniqueFd ready(options.ready_fd);
    static constexpr char kReady[] = "ready\n";
    VANDRA_TRY(writeAll(ready.get(), kReady, sizeof(kReady) - 1, "ready pipe"));
  }

  // shapers[0]: a -> b (read from side 0, write to side 1); shapers[1]: b -> a.
  std::array<LinkShaper, 2> shapers{
      LinkShaper(options.a_to_b, options.seed),
      LinkShaper(options.b_to_a, options.seed ^ 0x9e3779b97f4a7c15ULL)};
  std::vector<uint8_t> buf(kMaxPacket);
  std::vector<Packet> due;
  uint64_t write_drops = 0;
  bool cut = false;
  uint64_t cut_drops = 0;
  constexpr TimePoint kNever = TimePoint::max();
  TimePoint armed =
      kNever;  // what the timerfd is set to (plain value: GCC 12 -O2 misreads optional)
  WanEmulatorResult result;

  for (;;) {
    std::array<epoll_event, 8> events{};
    const int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Error::fromErrno("epoll_wait failed"));
    }
    bool stop = false;
    for (int i = 0; i < n; ++i) {
      const auto& ev = events[static_cast<size_t>(i)];
      const uint64_t which = ev.data.u64;
      if (which < 2) {
        if ((ev.events & (EPOLLERR | EPOLLHUP)) != 0) {
          result.reason = "device " + sides[which].name + " disappeared";
          stop = true;
          break;
        }
        VANDRA_TRY_ASSIGN(auto outcome,
                          readSide(sides[which], shapers[which], buf, cut, cut_drops));
        if (outcome == IoOutcome::Gone) {
          result.reason = "device " + sides[which].name + " disappeared";
          stop = true;
          break;
        }
      } else if (which == 2) {
        signalfd_siginfo si{};
        if (::read(sig.get(), &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
          if (si.ssi_signo == SIGUSR1 || si.ssi_signo == SIGUSR2) {
            cut = si.ssi_signo == SIGUSR1;
            continue;
          }
          result.reason = "signal " + std::to_string(si.ssi_signo);
          stop = true;
          break;
        }
      } else {
        uint64_t expirations = 0;
        if (::read(timer.get(), &expirations, sizeof(expirations)) < 0 && errno != EAGAIN) {
          return fail(Error::fromErrno("timerfd read failed"));
        }
        armed = kNever;
      }
    }
    if (stop) {
      break;
    }
    // Deliver what is due in each direction, then sleep until the next delivery.
    const TimePoint now = Clock::now();
    bool gone = false;
    for (size_t d = 0; d < 2 && !gone; ++d) {
      shapers[d].release(now, due);
      VANDRA_TRY_ASSIGN(auto outcome, writeSide(sides[1 - d], due, write_drops));
      if (outcome == IoOutcome::Gone) {
        result.reason = "device " + sides[1 - d].name + " disappeared";
        gone = true;
      }
    }
    if (gone) {
      break;
    }
    TimePoint next = kNever;
    for (const auto& s : shapers) {
      if (const auto t = s.nextDelivery(); t && *t < next) {
        next = *t;
      }
    }
    if (next != armed) {
      itimerspec its{};  // all zero: disarmed
      if (next != kNever) {
        its.it_value = toTimespec(next);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) {
          its.it_value.tv_nsec = 1;  // zero would disarm
        }
      }
      if (::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &its, nullptr) != 0) {
        return fail(Error::fromErrno("timerfd_settime failed"));
      }
      armed = next;
    }
  }
  result.a_to_b = shapers[0].stats();
  result.b_to_a = shapers[1].stats();
  if (write_drops > 0) {
    result.reason += " (" + std::to_string(write_drops) + " packets refused by the kernel)";
  }
  return result;
}

}  // namespace vandra::testbed
