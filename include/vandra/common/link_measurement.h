// What an agent measured of its link to one peer site (GET /v1/links on the agent): typed here,
// shared by the agent (orchestrator/link_meter.h keeps it) and the controller (agent_link.h reads
// it). JSON only at the HTTP edges: the agent's migration_api.cc writes it, the controller's
// agent_link.cc reads it (as hostile input: bounded, validated).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vandra {

/// How a throughput figure was obtained: the best sustained rate of the newest bulk transfer
/// (migration RAM and disk streams) the tunnel carried, or an explicit bounded probe.
enum class ThroughputMethod : uint8_t { Migration = 1, Probe = 2 };
std::string_view toString(ThroughputMethod m);
std::optional<ThroughputMethod> throughputMethodFromString(std::string_view s);

struct LinkMeasurement {
  std::string peer;        // the peer site
  bool connected = false;  // a live tunnel to it now
  /// Smoothed round trip of the tunnel's PING/PONG probe, taken while the link was quiet;
  /// nullopt: never measured.
  std::optional<double> rtt_ms;
  int64_t rtt_at_ms = 0;  // unix ms of the newest RTT sample (0: none)
  std::optional<double> throughput_mbps;
  ThroughputMethod throughput_method = ThroughputMethod::Migration;
  int64_t throughput_at_ms = 0;  // unix ms (0: none)
  /// The newer of rtt_at_ms and throughput_at_ms (0: nothing measured yet).
  int64_t measured_at_ms = 0;
};

/// Bounds a reader applies to another party's measurements (and the meter to its own).
inline constexpr double kMaxLinkRttMs = 100000;   // 100 s
inline constexpr double kMaxLinkMbps = 10000000;  // 10 Tbit/s

}  // namespace vandra
