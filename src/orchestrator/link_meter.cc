#include "vandra/orchestrator/link_meter.h"

#include <algorithm>

namespace vandra::orchestrator {

LinkMeter::LinkMeter(std::string peer, LinkMeterOptions options)
    : peer_(std::move(peer)), o_(options) {
  o_.window_ticks = std::max<size_t>(o_.window_ticks, 1);
  o_.rtt_weight = std::clamp(o_.rtt_weight, 0.01, 1.0);
}

void LinkMeter::observe(const LinkSample& s) {
  connected_ = s.alive;
  const bool restarted = !last_ || last_->generation != s.generation ||
                         s.frame_bytes < last_->frame_bytes || s.bulk_sent < last_->bulk_sent ||
                         s.bulk_received < last_->bulk_received || s.pongs < last_->pongs;
  if (restarted || s.steady_us <= last_->steady_us) {
    if (restarted) {  // a new tunnel: nothing to compare with yet
      window_.clear();
      in_transfer_ = false;
      last_ = s;
    }
    return;
  }
  const int64_t us = s.steady_us - last_->steady_us;
  const auto per_s = [us](uint64_t bytes) {
    return static_cast<double>(bytes) * 1e6 / static_cast<double>(us);
  };
  // RTT: only a fresh sample, and only from a quiet tick.
  const bool quiet =
      per_s(s.frame_bytes - last_->frame_bytes) < static_cast<double>(o_.quiet_bytes_per_s);
  if (s.pongs > last_->pongs && s.last_rtt_us >= 0 && quiet) {
    const double v = std::min(static_cast<double>(s.last_rtt_us) / 1000.0, kMaxLinkRttMs);
    rtt_ms_ = rtt_ms_ ? (1 - o_.rtt_weight) * *rtt_ms_ + o_.rtt_weight * v : v;
    rtt_at_ms_ = s.at_ms;
  }
  // Throughput: the busier direction of the bulk streams.
  const uint64_t bulk =
      std::max(s.bulk_sent - last_->bulk_sent, s.bulk_received - last_->bulk_received);
  if (per_s(bulk) >= static_cast<double>(o_.busy_bytes_per_s)) {
    if (!in_transfer_) {  // a new transfer: its own best replaces the last one's
      in_transfer_ = true;
      transfer_counted_ = false;
      window_.clear();
    }
    window_.push_back({bulk, us});
    if (window_.size() > o_.window_ticks) {
      window_.pop_front();
    }
    if (window_.size() == o_.window_ticks) {
      uint64_t bytes = 0;
      int64_t total_us = 0;
      for (const auto& t : window_) {
        bytes += t.bytes;
        total_us += t.us;
      }
      const double mbps =
          std::min(static_cast<double>(bytes) * 8 / static_cast<double>(total_us), kMaxLinkMbps);
      if (!transfer_counted_ || mbps > *transfer_mbps_) {
        transfer_mbps_ = mbps;
      }
      transfer_counted_ = true;
      transfer_at_ms_ = s.at_ms;
    }
  } else {
    in_transfer_ = false;
    window_.clear();
  }
  last_ = s;
}

void LinkMeter::recordProbe(double mbps, int64_t at_ms) {
  if (!(mbps > 0) || mbps > kMaxLinkMbps) {
    return;
  }
  probe_mbps_ = mbps;
  probe_at_ms_ = at_ms;
}

LinkMeasurement LinkMeter::report() const {
  LinkMeasurement m;
  m.peer = peer_;
  m.connected = connected_;
  m.rtt_ms = rtt_ms_;
  m.rtt_at_ms = rtt_ms_ ? rtt_at_ms_ : 0;
  const bool probe_newer = probe_mbps_ && (!transfer_mbps_ || probe_at_ms_ >= transfer_at_ms_);
  if (probe_newer) {
    m.throughput_mbps = probe_mbps_;
    m.throughput_method = ThroughputMethod::Probe;
    m.throughput_at_ms = probe_at_ms_;
  } else if (transfer_mbps_) {
    m.throughput_mbps = transfer_mbps_;
    m.throughput_method = ThroughputMethod::Migration;
    m.throughput_at_ms = transfer_at_ms_;
  }
  m.measured_at_ms = std::max(m.rtt_at_ms, m.throughput_at_ms);
  return m;
}

}  // namespace vandra::orchestrator
