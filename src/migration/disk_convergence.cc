#include "vandra/migration/disk_convergence.h"

#include <algorithm>
#include <cstdio>

namespace vandra::migration {

std::optional<ThrottleStep> DiskConvergence::observe(double t_s, uint64_t offset, uint64_t len,
                                                     bool ready) {
  if (!o_.enabled) {
    return std::nullopt;
  }
  const uint64_t backlog = len > offset ? len - offset : 0;
  if (!started_) {
    started_ = true;
    window_t_ = t_s;
    window_offset_ = offset;
    window_backlog_ = backlog;
  }
  if (ready) {
    // READY is for good: keep only a byte rate under the copy rate until the end.
    if (level_ >= 2 && !eased_) {
      eased_ = true;
      current_ = first_;
      return ThrottleStep{t_s, 1, current_, backlog, 0, "ready: eased to the first step"};
    }
    return std::nullopt;
  }
  const double elapsed = t_s - window_t_;
  if (elapsed < o_.window_s) {
    return std::nullopt;
  }
  const uint64_t copied = offset > window_offset_ ? offset - window_offset_ : 0;
  const uint64_t drop = window_backlog_ > backlog ? window_backlog_ - backlog : 0;
  const auto copied_per_s = static_cast<uint64_t>(static_cast<double>(copied) / elapsed);
  window_t_ = t_s;
  window_offset_ = offset;
  window_backlog_ = backlog;
  // Nothing copied: the link, not the guest, holds the job up (the deadline handles that).
  if (copied == 0 ||
      static_cast<double>(drop) >= o_.min_net_fraction * static_cast<double>(copied)) {
    return std::nullopt;
  }
  WriteThrottle next = first_;
  if (level_ == 0) {
    next.bytes_per_s = std::max(o_.floor_bytes_per_s, copied_per_s / 2);
    next.writes_per_s = 0;
  } else {
    next.bytes_per_s = std::max(o_.floor_bytes_per_s, current_.bytes_per_s / 2);
    next.writes_per_s = level_ == 1 ? o_.first_writes_per_s
                                    : std::max(o_.floor_writes_per_s, current_.writes_per_s / 2);
  }
  if (level_ > 0 && next == current_) {
    return std::nullopt;  // at the floors already
  }
  ++level_;
  current_ = next;
  if (level_ == 1) {
    first_ = next;
  }
  char why[160];
  std::snprintf(why, sizeof why, "the backlog fell %llu B while %llu B were copied in %.1f s",
                static_cast<unsigned long long>(drop), static_cast<unsigned long long>(copied),
                elapsed);
  return ThrottleStep{t_s, level_, current_, backlog, copied_per_s, why};
}

}  // namespace vandra::migration
