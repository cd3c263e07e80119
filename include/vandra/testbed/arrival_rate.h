// The steady rate of a transfer from the receiver's reads: shared by the profile accuracy tests
// and `vandra bench link`.
#pragma once

#include <chrono>
#include <cstdint>
#include <utility>
#include <vector>

namespace vandra::testbed {

/// One read at the receiver: when it returned, and the bytes received so far.
using Arrival = std::pair<std::chrono::steady_clock::time_point, uint64_t>;

/// Bytes per second over the second half of @p arrivals (in time order): the least-squares
/// slope of bytes over time, not (last - middle) / time. An emulator or a receiver that was
/// descheduled delivers a batch late; one such batch at either end of a two-point window
/// reads as a percent too fast (CI saw 253.8 Mbit/s on a 250 Mbit/s link), while a slope over
/// thousands of reads moves by about (delay / window)^2. 0 with fewer than two reads there.
inline double steadyBytesPerSecond(const std::vector<Arrival>& arrivals) {
  if (arrivals.size() < 2) {
    return 0;
  }
  const auto first = arrivals.front().first;
  const auto mid = first + (arrivals.back().first - first) / 2;
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& [t, bytes] : arrivals) {
    if (t < mid) {
      continue;
    }
    const double x = std::chrono::duration<double>(t - mid).count();
    const double y = static_cast<double>(bytes);
    n += 1;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double d = n * sxx - sx * sx;
  return d > 0 ? (n * sxy - sx * sy) / d : 0;
}

}  // namespace vandra::testbed
