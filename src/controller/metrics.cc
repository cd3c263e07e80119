#include "vandra/controller/metrics.h"

#include <prometheus/text_serializer.h>

namespace vandra::controller {

namespace {
// Interruptions around the budgets SLAs name (100 ms .. 10 s), and request latencies around the
// API's 50 ms target.
const prometheus::Histogram::BucketBoundaries kInterruptionMs{25,  50,   100,  200,  300,  500,
                                                              750, 1000, 1500, 2000, 5000, 10000};
const prometheus::Histogram::BucketBoundaries kSeconds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,   0.1,   0.25,   0.5,   1,    5};
}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  migrations_ = &prometheus::BuildCounter()
                     .Name("vandra_migrations_total")
                     .Help("Migrations ended, by result and reason")
                     .Register(*registry_);
  migration_bytes_ = &prometheus::BuildCounter()
                          .Name("vandra_migration_bytes_total")
                          .Help("Bytes migrations sent over the site tunnel")
                          .Register(*registry_);
  interruption_ = &prometheus::BuildHistogram()
                       .Name("vandra_migration_interruption_ms")
                       .Help("Measured interruption of each live migration, in ms")
                       .Register(*registry_);
  placement_latency_ = &prometheus::BuildHistogram()
                            .Name("vandra_placement_seconds")
                            .Help("Time of one placement or preflight decision")
                            .Register(*registry_)
                            .Add({}, kSeconds);
  capacity_ = &prometheus::BuildGauge()
                   .Name("vandra_site_capacity")
                   .Help("Capacity and use per site, as the agents reported")
                   .Register(*registry_);
  sla_violations_ = &prometheus::BuildGauge()
                         .Name("vandra_sla_violations")
                         .Help("VMs whose SLA their site breaks now")
                         .Register(*registry_)
                         .Add({});
  requests_ = &prometheus::BuildCounter()
                   .Name("vandra_api_requests_total")
                   .Help("API requests by method and status")
                   .Register(*registry_);
  request_seconds_ = &prometheus::BuildHistogram()
                          .Name("vandra_api_request_seconds")
                          .Help("API request latency")
                          .Register(*registry_);
}

void Metrics::migrationEnded(const std::string& result, const std::string& reason,
                             const double* interruption_ms, double bytes) {
  migrations_->Add({{"result", result}, {"reason", reason}}).Increment();
  if (bytes > 0) {
    migration_bytes_->Add({}).Increment(bytes);
  }
  if (interruption_ms != nullptr) {
    interruption_->Add({}, kInterruptionMs).Observe(*interruption_ms);
  }
}

void Metrics::placementLatency(double seconds) {
  placement_latency_->Observe(seconds);
}

void Metrics::siteCapacity(const std::string& site, double vcpus, double memory_mib,
                           double used_vcpus, double used_memory_mib) {
  capacity_->Add({{"site", site}, {"resource", "vcpus"}}).Set(vcpus);
  capacity_->Add({{"site", site}, {"resource", "memory_mib"}}).Set(memory_mib);
  capacity_->Add({{"site", site}, {"resource", "used_vcpus"}}).Set(used_vcpus);
  capacity_->Add({{"site", site}, {"resource", "used_memory_mib"}}).Set(used_memory_mib);
}

void Metrics::slaViolations(double count) {
  sla_violations_->Set(count);
}

void Metrics::request(const std::string& method, int status, double seconds) {
  requests_->Add({{"method", method}, {"status", std::to_string(status)}}).Increment();
  request_seconds_->Add({{"method", method}}, kSeconds).Observe(seconds);
}

std::string Metrics::text() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace vandra::controller
