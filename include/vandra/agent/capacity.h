// Host capacity accounting: what the host offers, what its VMs hold, and whether one more
// fits. Pure (no I/O); the refusal names the resource and the numbers.
#pragma once

#include <cstdint>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::agent {

struct Resources {
  uint64_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_bytes = 0;
  bool operator==(const Resources&) const = default;
};

struct HostCapacity {
  Resources total;     // what the agent may hand out (operator setting, or detected)
  Resources reserved;  // kept for the host itself
};

/// What the host offers and its VMs hold (GET /v1/host, the /metrics gauges).
struct HostUsage {
  HostCapacity capacity;
  Resources used;  // by the registered VMs
  Resources free;  // available(capacity, used)
};

/// Sum of @p vms.
Resources used(const std::vector<Resources>& vms);

/// Ok when @p request fits next to @p in_use; else CapacityExceeded naming each resource that
/// does not fit, e.g. "Not enough memory: VM needs 2048 MiB, 1024 MiB free of 8192 MiB".
[[nodiscard]] Result<void> checkFits(const HostCapacity& host, const Resources& in_use,
                                     const Resources& request);

/// Free resources (never negative).
Resources available(const HostCapacity& host, const Resources& in_use);

}  // namespace vandra::agent
