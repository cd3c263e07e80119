#include "load_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace vandra::load {

double percentileNearestRank(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) {
    return 0;
  }
  const double n = static_cast<double>(sorted.size());
  p = std::clamp(p, 0.0, 100.0);
  // rank = ceil(p/100 * n), 1-based. p * n is formed first so that whole-number products stay
  // exact (0.9 * 10 is 9.000000000000002 in binary, 90 * 10 / 100 is 9); the small slack
  // absorbs the error of fractional p such as 99.9.
  const double rank = std::ceil(p * n / 100.0 - 1e-9);
  const size_t index = rank < 1 ? 0 : std::min(sorted.size(), static_cast<size_t>(rank)) - 1;
  return sorted[index];
}

LatencySummary summarize(std::vector<double>& samples_ms) {
  LatencySummary s;
  if (samples_ms.empty()) {
    return s;
  }
  std::sort(samples_ms.begin(), samples_ms.end());
  s.count = samples_ms.size();
  s.min_ms = samples_ms.front();
  s.max_ms = samples_ms.back();
  s.mean_ms =
      std::accumulate(samples_ms.begin(), samples_ms.end(), 0.0) / static_cast<double>(s.count);
  s.p50_ms = percentileNearestRank(samples_ms, 50);
  s.p90_ms = percentileNearestRank(samples_ms, 90);
  s.p99_ms = percentileNearestRank(samples_ms, 99);
  return s;
}

double throughput(uint64_t count, double seconds) {
  return seconds > 0 ? static_cast<double>(count) / seconds : 0;
}

void merge(ErrorTally& into, const ErrorTally& from) {
  for (const auto& [kind, n] : from) {
    into[kind] += n;
  }
}

uint64_t total(const ErrorTally& tally) {
  uint64_t n = 0;
  for (const auto& [kind, count] : tally) {
    n += count;
  }
  return n;
}

}  // namespace vandra::load
