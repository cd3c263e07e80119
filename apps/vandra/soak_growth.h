// What `vandra bench soak` samples of an agent after each move, and how it judges growth
// (pure: unit-tested in test/apps/vandra/soak_growth_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace vandra::cli::soak {

// One agent after one move.
struct AgentSample {
  uint64_t rss_kib = 0;
  uint64_t fds = 0;
  uint64_t threads = 0;
  uint64_t qemus = 0;        // QEMU processes in the site's namespace
  uint64_t kept_images = 0;  // base/<key>/ with retained.json
  uint64_t files = 0;        // regular files under the agent's images/ and run/
  uint64_t image_bytes = 0;  // allocated bytes under images/
  uint64_t max_chain = 0;    // files under the deepest VM disk (its backing chain)
};

nlohmann::json toJson(const AgentSample& s);

// How much one agent grew over a soak.
struct Growth {
  int64_t rss_kib = 0;
  int64_t fds = 0;
  int64_t threads = 0;
  int64_t qemus = 0;
  int64_t kept_images = 0;
  int64_t files = 0;
  int64_t max_chain = 0;
  bool memory_ok = true;  // the last third's median within 5 % + 4 MiB of the middle third's
};

/// The guest alternates sites, so samples are compared with those of the same parity, from
/// @p warm_up on: each count's largest rise above the first of them, and memory's median over
/// the last third against the middle third's (bound: 5 % + 4 MiB).
Growth growthOf(const std::vector<AgentSample>& samples, size_t warm_up);

/// Any count rose, or memory left its bound.
bool grew(const Growth& g);

nlohmann::json toJson(const Growth& g);

}  // namespace vandra::cli::soak
