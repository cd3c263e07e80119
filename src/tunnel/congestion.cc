#include "congestion.h"

#include <linux/tcp.h>  // the kernel's tcp_info (glibc's lacks min_rtt, data_segs_out)
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstring>

namespace vandra::tunnel {

bool enoughToJudge(const TcpSample& before, const TcpSample& now) {
  return now.segs_out < before.segs_out || now.segs_out - before.segs_out >= kMinSegments;
}

bool randomLoss(const TcpSample& before, const TcpSample& now) {
  if (now.segs_out < before.segs_out || now.total_retrans < before.total_retrans) {
    return false;  // counters of another socket, or wrapped: no judgement
  }
  const uint64_t sent = now.segs_out - before.segs_out;
  const uint64_t lost = now.total_retrans - before.total_retrans;
  if (sent < kMinSegments || lost < kMinRetransmits) {
    return false;
  }
  if (static_cast<double>(lost) < kMinLossRatio * static_cast<double>(sent)) {
    return false;
  }
  if (now.min_rtt_us == 0 || now.srtt_us == 0) {
    return false;
  }
  // A standing queue (smoothed RTT well above the path's minimum) means the losses are the
  // bottleneck overflowing: congestion, which cubic answers rightly.
  return !standingQueue(now);
}

bool standingQueue(const TcpSample& now) {
  return now.srtt_us > now.min_rtt_us + now.min_rtt_us / 10 + 1000;
}

std::string initialCongestion(const std::string& configured) {
  return configured == kAutoCongestion ? std::string(kAutoStart) : configured;
}

Result<TcpSample> sampleTcp(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
    return fail(Error::fromErrno("TCP_INFO"));
  }
  TcpSample s;
  s.segs_out = ti.tcpi_data_segs_out;
  s.total_retrans = ti.tcpi_total_retrans;
  s.srtt_us = ti.tcpi_rtt;
  s.min_rtt_us = ti.tcpi_min_rtt;
  return s;
}

CongestionWatch::CongestionWatch(std::vector<int> fds, std::string peer_site)
    : fds_(std::move(fds)), peer_site_(std::move(peer_site)) {
  thread_ = std::thread([this] { run(); });
}

CongestionWatch::~CongestionWatch() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void CongestionWatch::run() {
  std::vector<TcpSample> last(fds_.size());
  std::vector<bool> moved(fds_.size(), false);
  std::vector<int> lossy_spans(fds_.size(), 0);  // spans judged random loss, no queue between
  for (size_t i = 0; i < fds_.size(); ++i) {
    last[i] = sampleTcp(fds_[i]).value_or(TcpSample{});
  }
  std::unique_lock lk(mu_);
  while (!cv_.wait_for(lk, std::chrono::seconds(1), [this] { return stop_; })) {
    for (size_t i = 0; i < fds_.size(); ++i) {
      if (moved[i]) {
        continue;
      }
      auto now = sampleTcp(fds_[i]);
      if (!now) {
        continue;
      }
      if (!enoughToJudge(last[i], *now)) {
        continue;  // keep the span's start
      }
      if (randomLoss(last[i], *now)) {
        ++lossy_spans[i];
      } else if (standingQueue(*now)) {
        lossy_spans[i] = 0;  // congestion: the losses so far may have been its too
      }
      if (lossy_spans[i] >= kSpansToSwitch) {
        const std::string cc = kAutoLossy;
        if (::setsockopt(fds_[i], IPPROTO_TCP, TCP_CONGESTION, cc.data(),
                         static_cast<socklen_t>(cc.size())) == 0) {
          moved[i] = true;
          switched_.fetch_add(1);
          std::fprintf(stderr,
                       "vandra tunnel: connection %zu to site '%s' loses segments without a "
                       "queue (%llu of %llu re-sent, RTT %u us, min %u us): %s from now on\n",
                       i, peer_site_.c_str(),
                       static_cast<unsigned long long>(now->total_retrans - last[i].total_retrans),
                       static_cast<unsigned long long>(now->segs_out - last[i].segs_out),
                       now->srtt_us, now->min_rtt_us, cc.c_str());
        }
      }
      last[i] = *now;
    }
  }
}

}  // namespace vandra::tunnel
