// The controller's Prometheus metrics (served at /metrics in the text format), kept with
// prometheus-cpp's registry (ADR 0021). Typed members, so that a metric's name and labels are
// written once.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

namespace vandra::controller {

class Metrics {
 public:
  Metrics();

  /// A migration ended: @p result "done", "failed" or "cancelled"; @p interruption_ms when the
  /// agent measured one; @p bytes sent, when known.
  void migrationEnded(const std::string& result, const std::string& reason,
                      const double* interruption_ms, double bytes);
  /// One placement or preflight decision took @p seconds.
  void placementLatency(double seconds);
  /// A site's capacity and use as the agents last reported them.
  void siteCapacity(const std::string& site, double vcpus, double memory_mib, double used_vcpus,
                    double used_memory_mib);
  void slaViolations(double count);
  /// One API request answered with @p status.
  void request(const std::string& method, int status, double seconds);

  /// Every metric in the Prometheus text exposition format.
  std::string text() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* migrations_;
  prometheus::Family<prometheus::Counter>* migration_bytes_;
  prometheus::Family<prometheus::Histogram>* interruption_;
  prometheus::Histogram* placement_latency_;
  prometheus::Family<prometheus::Gauge>* capacity_;
  prometheus::Gauge* sla_violations_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* request_seconds_;
};

}  // namespace vandra::controller
