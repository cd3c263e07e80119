#include "vandra/agent/metrics.h"

#include <prometheus/text_serializer.h>

namespace vandra::agent {

namespace {

// Interruptions around the downtime budgets SLAs name (50 ms .. 10 s); whole migrations from
// a small VM over a LAN (seconds) to a large one over a slow WAN (an hour, max_total's order).
const prometheus::Histogram::BucketBoundaries kInterruptionSeconds{0.05, 0.1, 0.2, 0.3, 0.5, 0.75,
                                                                   1,    1.5, 2,   3,   5,   10};
const prometheus::Histogram::BucketBoundaries kDurationSeconds{1,   2,   5,   10,   20,   30,  60,
                                                               120, 300, 600, 1200, 1800, 3600};

std::string roleOf(MigrationSide side) {
  return side == MigrationSide::Source ? "source" : "target";
}

// Bounded label values: a client cannot invent new series.
std::string methodLabel(const std::string& method) {
  for (const char* m : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
    if (method == m) {
      return method;
    }
  }
  return "other";
}

std::string codeClass(int status) {
  return status >= 100 && status < 600 ? std::to_string(status / 100) + "xx" : "other";
}

}  // namespace

AgentMetrics::AgentMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  migrations_ = &prometheus::BuildCounter()
                     .Name("vandra_agent_migrations_total")
                     .Help(
                         "Migrations ended at this agent, by role and end phase "
                         "(done, rolled_back, failed)")
                     .Register(*registry_);
  wan_bytes_ = &prometheus::BuildCounter()
                    .Name("vandra_agent_migration_wan_bytes_total")
                    .Help("Bytes ended migrations moved over the site tunnel, both directions")
                    .Register(*registry_);
  ram_bytes_ = &prometheus::BuildCounter()
                    .Name("vandra_agent_migration_ram_bytes_total")
                    .Help("RAM bytes QEMU transferred for ended migrations")
                    .Register(*registry_);
  disk_bytes_ = &prometheus::BuildCounter()
                     .Name("vandra_agent_migration_disk_bytes_total")
                     .Help("Disk bytes the mirrors transferred for ended migrations")
                     .Register(*registry_);
  interruption_ = &prometheus::BuildHistogram()
                       .Name("vandra_agent_migration_interruption_seconds")
                       .Help(
                           "The guest's interruption in each live migration, as this agent "
                           "measured it (silence on the site LAN, else QEMU's downtime)")
                       .Register(*registry_)
                       .Add({}, kInterruptionSeconds);
  duration_ = &prometheus::BuildHistogram()
                   .Name("vandra_agent_migration_duration_seconds")
                   .Help("Time from a migration's record to its end phase, by role")
                   .Register(*registry_);
  vcpus_ = &prometheus::BuildGauge()
                .Name("vandra_agent_capacity_vcpus")
                .Help("vCPUs of this host: total, reserved for the host, allocated to VMs, free")
                .Register(*registry_);
  memory_mib_ = &prometheus::BuildGauge()
                     .Name("vandra_agent_capacity_memory_mib")
                     .Help("Memory of this host in MiB: total, reserved, allocated, free")
                     .Register(*registry_);
  disk_ = &prometheus::BuildGauge()
               .Name("vandra_agent_capacity_disk_bytes")
               .Help("Disk for VM images in bytes: total, reserved, allocated, free")
               .Register(*registry_);
  vms_ = &prometheus::BuildGauge()
              .Name("vandra_agent_vms")
              .Help("VMs registered at this agent, by state")
              .Register(*registry_);
  requests_ = &prometheus::BuildCounter()
                   .Name("vandra_agent_http_requests_total")
                   .Help("Agent API requests answered, by method and status class")
                   .Register(*registry_);
  // Every series a migration can add, at zero from the start: a scraper sees the families
  // before the first migration ends, and rate() counts that first one.
  for (const auto side : {MigrationSide::Source, MigrationSide::Target}) {
    for (const auto end :
         {MigrationPhase::Done, MigrationPhase::RolledBack, MigrationPhase::Failed}) {
      migrations_->Add({{"role", roleOf(side)}, {"result", std::string(toString(end))}});
    }
    migrationBytes(side, {});
    duration_->Add({{"role", roleOf(side)}}, kDurationSeconds);
  }
}

void AgentMetrics::migrationEnded(MigrationSide side, MigrationPhase result, double duration_s) {
  migrations_->Add({{"role", roleOf(side)}, {"result", std::string(toString(result))}}).Increment();
  duration_->Add({{"role", roleOf(side)}}, kDurationSeconds).Observe(duration_s);
}

void AgentMetrics::migrationBytes(MigrationSide side, const MigrationBytes& bytes) {
  const prometheus::Labels role{{"role", roleOf(side)}};
  wan_bytes_->Add(role).Increment(static_cast<double>(bytes.wan));
  ram_bytes_->Add(role).Increment(static_cast<double>(bytes.ram));
  disk_bytes_->Add(role).Increment(static_cast<double>(bytes.disk));
}

void AgentMetrics::migrationInterruption(double seconds) {
  interruption_->Observe(seconds);
}

void AgentMetrics::request(const std::string& method, int status) {
  requests_->Add({{"method", methodLabel(method)}, {"code", codeClass(status)}}).Increment();
}

std::string AgentMetrics::text(const HostUsage& host, const std::map<VmState, uint64_t>& vms) {
  std::lock_guard lock(scrape_mu_);
  const std::pair<const char*, Resources> kinds[] = {{"total", host.capacity.total},
                                                     {"reserved", host.capacity.reserved},
                                                     {"allocated", host.used},
                                                     {"free", host.free}};
  for (const auto& [kind, r] : kinds) {
    vcpus_->Add({{"kind", kind}}).Set(static_cast<double>(r.vcpus));
    memory_mib_->Add({{"kind", kind}}).Set(static_cast<double>(r.memory_mib));
    disk_->Add({{"kind", kind}}).Set(static_cast<double>(r.disk_bytes));
  }
  for (const VmState s : kAllVmStates) {
    const auto it = vms.find(s);
    vms_->Add({{"state", std::string(toString(s))}})
        .Set(it == vms.end() ? 0.0 : static_cast<double>(it->second));
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace vandra::agent
