#include "vandra/agent/capacity.h"

#include <string>

namespace vandra::agent {
namespace {

uint64_t sat(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}

}  // namespace

Resources used(const std::vector<Resources>& vms) {
  Resources r;
  for (const auto& v : vms) {
    r.vcpus += v.vcpus;
    r.memory_mib += v.memory_mib;
    r.disk_bytes += v.disk_bytes;
  }
  return r;
}

Resources available(const HostCapacity& host, const Resources& in_use) {
  return {sat(sat(host.total.vcpus, host.reserved.vcpus), in_use.vcpus),
          sat(sat(host.total.memory_mib, host.reserved.memory_mib), in_use.memory_mib),
          sat(sat(host.total.disk_bytes, host.reserved.disk_bytes), in_use.disk_bytes)};
}

Result<void> checkFits(const HostCapacity& host, const Resources& in_use,
                       const Resources& request) {
  const Resources free = available(host, in_use);
  std::string why;
  auto check = [&](const char* what, uint64_t need, uint64_t have, uint64_t total,
                   const char* unit) {
    if (need > have) {
      why += std::string(why.empty() ? "" : "; ") + "Not enough " + what + ": VM needs " +
             std::to_string(need) + unit + ", " + std::to_string(have) + unit + " free of " +
             std::to_string(total) + unit;
    }
  };
  check("vCPUs", request.vcpus, free.vcpus, host.total.vcpus, "");
  check("memory", request.memory_mib, free.memory_mib, host.total.memory_mib, " MiB");
  check("disk", request.disk_bytes, free.disk_bytes, host.total.disk_bytes, " bytes");
  if (!why.empty()) {
    return fail(ErrorCode::CapacityExceeded, why);
  }
  return {};
}

}  // namespace vandra::agent
