// The agent's Prometheus metrics (GET /metrics, text format), kept with prometheus-cpp's
// registry as the controller's are (ADR 0021). Typed calls, so that a metric's name, help and
// labels are written once, here and in metrics.cc:
//
//   vandra_agent_migrations_total{role,result}       migrations ended (result: the end phase)
//   vandra_agent_migration_wan_bytes_total{role}     bytes over the site tunnel, both ways
//   vandra_agent_migration_ram_bytes_total{role}     RAM QEMU sent
//   vandra_agent_migration_disk_bytes_total{role}    disk the mirrors sent
//   vandra_agent_migration_interruption_seconds      histogram: the guest's measured interruption
//   vandra_agent_migration_duration_seconds{role}    histogram: record created -> ended
//   vandra_agent_capacity_vcpus{kind}                kind: total, reserved, allocated, free
//   vandra_agent_capacity_memory_mib{kind}
//   vandra_agent_capacity_disk_bytes{kind}
//   vandra_agent_vms{state}                          registered VMs by state
//   vandra_agent_http_requests_total{method,code}    API requests answered (code: 2xx .. 5xx)
//
// Migration figures come from the orchestrator's one write path (metered_store.h); capacity
// and VM gauges are set when scraped (text()).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "vandra/agent/capacity.h"
#include "vandra/agent/vm_state.h"
#include "vandra/common/migration_phase.h"

namespace vandra::agent {

/// Which side of a migration this agent played (the orchestrator's MigrationRole).
enum class MigrationSide : uint8_t { Source = 1, Target = 2 };

/// Bytes one migration moved (QEMU's and the tunnel's counts).
struct MigrationBytes {
  uint64_t wan = 0;   // over the site tunnel, both directions
  uint64_t ram = 0;   // RAM QEMU transferred
  uint64_t disk = 0;  // what the disk mirrors transferred
};

/// Thread-safe: every call may come from any thread.
class AgentMetrics {
 public:
  AgentMetrics();
  AgentMetrics(const AgentMetrics&) = delete;
  AgentMetrics& operator=(const AgentMetrics&) = delete;

  /// A migration's record reached its end phase @p result (done, rolled_back, failed) after
  /// @p duration_s.
  void migrationEnded(MigrationSide side, MigrationPhase result, double duration_s);
  void migrationBytes(MigrationSide side, const MigrationBytes& bytes);
  /// The guest's interruption as the agent measured it (downtime_verdict.h).
  void migrationInterruption(double seconds);
  /// One API request answered with @p status.
  void request(const std::string& method, int status);

  /// Every metric in the text exposition format, the host's gauges set from @p host and
  /// @p vms (VMs by state; a state not named counts 0).
  std::string text(const HostUsage& host, const std::map<VmState, uint64_t>& vms);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* migrations_;
  prometheus::Family<prometheus::Counter>* wan_bytes_;
  prometheus::Family<prometheus::Counter>* ram_bytes_;
  prometheus::Family<prometheus::Counter>* disk_bytes_;
  prometheus::Histogram* interruption_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Gauge>* vcpus_;
  prometheus::Family<prometheus::Gauge>* memory_mib_;
  prometheus::Family<prometheus::Gauge>* disk_;
  prometheus::Family<prometheus::Gauge>* vms_;
  prometheus::Family<prometheus::Counter>* requests_;
  std::mutex scrape_mu_;  // one scrape sets the host's gauges and serializes at a time
};

}  // namespace vandra::agent
