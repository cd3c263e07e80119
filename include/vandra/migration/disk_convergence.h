// Disk convergence: what to do when a mirror cannot catch up with the guest's writes.
//
// QEMU's mirror job turns READY only at a moment when nothing is dirty and nothing is in
// flight. A guest that writes faster than the link copies, or merely writes more often than
// one copy round trip, keeps the job from ever being READY, and the migration waits until its
// deadline. The RAM pre-copy has auto-converge for this; this is the same for disks: when a
// window passes in which the job's backlog (len - offset) fell by less than a fifth of what
// it copied, the guest's writes to that disk are throttled (block_set_io_throttle on its
// device), a step harder each window that still does not converge, until the job is READY.
// Then the throttle eases to its first step (a byte rate under the copy rate, which keeps the
// backlog the switchover must flush bounded) until the migration ends or is cancelled, which
// lifts it.
//
//   samples (t, offset, len) ──► window of W s ──► net = backlog drop, copied = Δoffset
//                                                   │
//        level 0 (none) ──stall──► 1: bytes/s = copied/W / 2                   ▲
//                     ──stall──► 2: bytes/s / 2, 64 writes/s                    │ stall:
//                     ──stall──► n: bytes/s and writes/s halved (floors)        │ net < copied/5
//        READY ──► back to level 1's byte rate, no write-count limit           │ and copied > 0
//
// Pure: no clock, no QMP; the engine feeds samples and applies what it returns.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace vandra::migration {

struct DiskConvergenceOptions {
  bool enabled = true;
  double window_s = 5.0;          // how long the backlog is watched before judging
  double min_net_fraction = 0.2;  // the backlog must fall by this much of what was copied
  uint64_t floor_bytes_per_s = 256 << 10;
  uint64_t first_writes_per_s = 64;  // from level 2 on: gaps between writes let the job idle
  uint64_t floor_writes_per_s = 4;
};

/// A limit on the guest's writes to one disk; 0 = unlimited.
struct WriteThrottle {
  uint64_t bytes_per_s = 0;
  uint64_t writes_per_s = 0;
  bool none() const { return bytes_per_s == 0 && writes_per_s == 0; }
  bool operator==(const WriteThrottle&) const = default;
};

/// One change of a disk's throttle, for the migration's report.
struct ThrottleStep {
  double at_s = 0;  // seconds since the mirror started
  int level = 0;
  WriteThrottle throttle;
  uint64_t backlog_bytes = 0;  // len - offset when judged
  uint64_t copied_bytes_per_s = 0;
  std::string why;
};

/// The convergence of one mirror job.
class DiskConvergence {
 public:
  explicit DiskConvergence(DiskConvergenceOptions o = {}) : o_(o) {}

  /// One sample of the job at @p t_s seconds since it started (QEMU's offset and len). Returns
  /// the step to apply when the throttle changes.
  std::optional<ThrottleStep> observe(double t_s, uint64_t offset, uint64_t len, bool ready);

  int level() const { return level_; }
  const WriteThrottle& throttle() const { return current_; }

 private:
  DiskConvergenceOptions o_;
  bool started_ = false;
  double window_t_ = 0;  // start of the current window
  uint64_t window_offset_ = 0;
  uint64_t window_backlog_ = 0;
  int level_ = 0;
  bool eased_ = false;   // READY seen and the throttle eased
  WriteThrottle first_;  // level 1's throttle
  WriteThrottle current_;
};

}  // namespace vandra::migration
