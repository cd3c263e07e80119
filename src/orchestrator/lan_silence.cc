#include "vandra/orchestrator/lan_silence.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "vandra/common/ethernet.h"
#include "vandra/common/unique_fd.h"

namespace vandra::orchestrator {

struct LanSilenceMeter::Impl {
  std::vector<UniqueFd> fds;
  std::thread reader;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable frame_cv;
  // The frames' times, oldest first; bounded (a chatty VM over a long migration).
  static constexpr size_t kMaxFrames = 1 << 20;
  std::vector<Clock::time_point> times;
  uint64_t frames = 0;

  void run() {
    std::array<unsigned char, 64> buf{};  // the header is enough: MSG_TRUNC drops the rest
    std::vector<pollfd> polls;
    for (const auto& fd : fds) {
      polls.push_back({fd.get(), POLLIN, 0});
    }
    while (!stop.load()) {
      if (::poll(polls.data(), polls.size(), 100) <= 0) {
        continue;
      }
      for (const auto& p : polls) {
        if ((p.revents & POLLIN) == 0) {
          continue;
        }
        sockaddr_ll from{};
        socklen_t from_len = sizeof from;
        while (::recvfrom(p.fd, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC,
                          reinterpret_cast<sockaddr*>(&from), &from_len) >= 0) {
          from_len = sizeof from;
          if (from.sll_pkttype == PACKET_OUTGOING) {
            continue;  // this host sending it on: the same frame seen arriving (loopback, bridges)
          }
          const auto now = Clock::now();
          std::lock_guard lock(mu);
          ++frames;
          if (times.size() >= kMaxFrames) {
            times.erase(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(kMaxFrames / 2));
          }
          // Two sockets may see frames out of order by microseconds: keep the list sorted.
          times.insert(std::upper_bound(times.begin(), times.end(), now), now);
          frame_cv.notify_all();
        }
      }
    }
  }
};

Result<std::unique_ptr<LanSilenceMeter>> LanSilenceMeter::start(
    const std::string& mac, const std::vector<std::string>& interfaces) {
  VANDRA_TRY_ASSIGN(const auto m, parseMac(mac));
  if (interfaces.empty() || interfaces.size() > 8) {
    return fail(ErrorCode::InvalidArgument,
                "1 to 8 interfaces to watch, not " + std::to_string(interfaces.size()));
  }
  // Accept a frame when its source address (bytes 6..11) is the MAC: two loads, two tests.
  const uint32_t hi =
      (uint32_t{m[0]} << 24) | (uint32_t{m[1]} << 16) | (uint32_t{m[2]} << 8) | m[3];
  const uint32_t lo = (uint32_t{m[4]} << 8) | m[5];
  std::array<sock_filter, 6> code = {{
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 6),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, hi, 0, 3),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 10),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, lo, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 64),
      BPF_STMT(BPF_RET | BPF_K, 0),
  }};
  sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
  auto impl = std::make_unique<Impl>();
  for (const auto& name : interfaces) {
    const unsigned index = ::if_nametoindex(name.c_str());
    if (index == 0) {
      return fail(ErrorCode::NotFound, "No interface '" + name + "' to watch");
    }
    // Protocol 0 until bound and filtered: nothing is queued unfiltered meanwhile.
    UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      return fail(ErrorCode::Io, std::string("AF_PACKET socket: ") + std::strerror(errno));
    }
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) {
      return fail(ErrorCode::Io, std::string("SO_ATTACH_FILTER: ") + std::strerror(errno));
    }
    sockaddr_ll at{};
    at.sll_family = AF_PACKET;
    at.sll_protocol = htons(ETH_P_ALL);
    at.sll_ifindex = static_cast<int>(index);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&at), sizeof at) != 0) {
      return fail(ErrorCode::Io,
                  "Binding a packet socket to " + name + ": " + std::strerror(errno));
    }
    impl->fds.push_back(std::move(fd));
  }
  Impl* raw = impl.get();
  impl->reader = std::thread([raw] { raw->run(); });
  return std::unique_ptr<LanSilenceMeter>(new LanSilenceMeter(std::move(impl)));
}

LanSilenceMeter::LanSilenceMeter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LanSilenceMeter::~LanSilenceMeter() {
  impl_->stop = true;
  if (impl_->reader.joinable()) {
    impl_->reader.join();
  }
}

std::optional<LanSilence> LanSilenceMeter::silenceAround(Clock::time_point instant,
                                                         Clock::time_point deadline) {
  std::unique_lock lock(impl_->mu);
  auto after = [&] { return !impl_->times.empty() && impl_->times.back() > instant; };
  impl_->frame_cv.wait_until(lock, deadline, after);
  if (!after()) {
    return std::nullopt;
  }
  const auto& t = impl_->times;
  const auto first_after = std::upper_bound(t.begin(), t.end(), instant);
  if (first_after == t.begin()) {
    return std::nullopt;  // nothing seen before the instant
  }
  LanSilence s;
  const auto last_before = *std::prev(first_after);
  s.silence_ms =
      std::chrono::duration<double, std::milli>(*first_after - std::max(last_before, instant))
          .count();
  s.since_last_frame_ms =
      std::chrono::duration<double, std::milli>(*first_after - last_before).count();
  s.frames = impl_->frames;
  return s;
}

}  // namespace vandra::orchestrator
