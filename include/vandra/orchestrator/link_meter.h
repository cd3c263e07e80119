// The bookkeeping of one peer link's measurements (GET /v1/links), fed by the agent's meter
// thread with one LinkSample a second per link (migration_service_measure.cc) and by probes:
//
//   tunnel ── stats() once a second ──► LinkMeter::observe(sample)
//     RTT:        a new PONG on a quiet tick (little traffic: the PING did not queue behind
//                 bulk frames) ──► smoothed (EWMA) rtt_ms, with its time
//     throughput: migration/NBD bytes per tick; window_ticks busy ticks in a row make one
//                 sustained rate; the best of the newest transfer is the link's, with its time
//   POST /v1/links/{peer}/probe ──► recordProbe(mbps)   (the far end timed the bytes)
//   report() ──► LinkMeasurement: the newer of the transfer's and the probe's throughput
//
// Pure: no clock, no threads (the agent serialises the calls); tested in link_meter_test.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "vandra/common/link_measurement.h"

namespace vandra::orchestrator {

/// One look at a link's tunnel (cumulative counters since the tunnel began).
struct LinkSample {
  int64_t at_ms = 0;         // unix ms (what the report says)
  int64_t steady_us = 0;     // monotonic (what rates are computed on)
  bool alive = false;        // the tunnel is up
  uint64_t generation = 0;   // a new tunnel has a new one: its counters start again
  uint64_t frame_bytes = 0;  // all frames, both ways (is the link quiet?)
  uint64_t bulk_sent = 0;    // DATA bytes of migration and NBD streams
  uint64_t bulk_received = 0;
  uint64_t pongs = 0;
  int64_t last_rtt_us = -1;  // the newest PING/PONG round trip (-1: none yet)
};

struct LinkMeterOptions {
  double rtt_weight = 0.25;  // of a new RTT sample in the smoothed value
  /// Fewer frame bytes a second than this (both ways): the tick was quiet and its RTT sample
  /// is trusted (a PING behind queued bulk frames measures the queue, not the link).
  uint64_t quiet_bytes_per_s = 256 * 1024;
  /// More migration/NBD bytes a second than this: the tick belongs to a bulk transfer.
  uint64_t busy_bytes_per_s = 512 * 1024;
  /// Busy ticks in a row that make one sustained rate (their bytes over their time).
  size_t window_ticks = 3;
};

class LinkMeter {
 public:
  explicit LinkMeter(std::string peer, LinkMeterOptions options = {});

  void observe(const LinkSample& s);
  /// A probe's rate as the far end timed it; ignored unless 0 < mbps <= kMaxLinkMbps.
  void recordProbe(double mbps, int64_t at_ms);
  LinkMeasurement report() const;

 private:
  std::string peer_;
  LinkMeterOptions o_;
  std::optional<LinkSample> last_;
  bool connected_ = false;
  std::optional<double> rtt_ms_;
  int64_t rtt_at_ms_ = 0;
  struct Tick {
    uint64_t bytes;
    int64_t us;
  };
  std::deque<Tick> window_;              // the busy ticks in a row so far (at most window_ticks)
  bool in_transfer_ = false;             // the last tick was busy
  bool transfer_counted_ = false;        // this transfer has given a sustained rate already
  std::optional<double> transfer_mbps_;  // best sustained rate of the newest transfer
  int64_t transfer_at_ms_ = 0;
  std::optional<double> probe_mbps_;
  int64_t probe_at_ms_ = 0;
};

}  // namespace vandra::orchestrator
