// Statistics of vandra-load: latency percentiles (nearest rank) and error tallies. Kept apart
// from the HTTP code so the arithmetic is unit-tested (test/apps/vandra-load/).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vandra::load {

/// Nearest-rank percentile of @p sorted (ascending): the smallest sample such that at least
/// @p p percent of the samples are less than or equal to it. @p p is clamped to [0, 100];
/// p = 0 gives the minimum. An empty input gives 0.
double percentileNearestRank(const std::vector<double>& sorted, double p);

struct LatencySummary {
  uint64_t count = 0;
  double min_ms = 0;
  double mean_ms = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
};

/// Summary of latencies in milliseconds (any order; the vector is sorted in place).
LatencySummary summarize(std::vector<double>& samples_ms);

/// Requests per second: @p count over @p seconds (0 when no time passed).
double throughput(uint64_t count, double seconds);

/// Error counts by kind ("HTTP 503", "transport: Read", ...), merged over workers.
using ErrorTally = std::map<std::string, uint64_t>;
void merge(ErrorTally& into, const ErrorTally& from);
uint64_t total(const ErrorTally& tally);

}  // namespace vandra::load
