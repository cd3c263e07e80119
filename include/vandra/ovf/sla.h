// The vandra SLA: what a VM's owner requires wherever it runs. It travels inside the OVF
// descriptor as a section in vandra's own namespace (schema: docs/ovf/sla-section.md).
// This unit holds the value type, its validation and its XML names; it does no I/O.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::ovf {

/// Namespace of the SLA section. Matched by URI, never by prefix.
inline constexpr std::string_view kSlaNamespace = "urn:vandra:ovf:sla:1";
inline constexpr std::string_view kSlaPrefix = "vandra";
inline constexpr std::string_view kSlaSectionName = "SlaSection";

enum class Mobility : uint8_t { Pinned, OnRequest, Automatic };
std::string_view toString(Mobility m);
std::optional<Mobility> mobilityFromString(std::string_view s);

struct MaxRtt {
  std::string location;  // a named user location, e.g. "stockholm-office"
  uint32_t ms = 0;
  bool operator==(const MaxRtt&) const = default;
};

struct Sla {
  std::optional<uint32_t> downtime_budget_ms;      // max guest pause during live migration
  std::vector<std::string> jurisdictions;          // allowed jurisdictions/regions; empty = any
  std::optional<MaxRtt> max_rtt;                   // max round trip to a user location
  bool encryption_in_transit = true;               // migration/tunnel traffic must be encrypted
  std::optional<std::string> anti_affinity_group;  // VMs of one group never share a host
  std::optional<double> max_cost_per_hour;         // in `currency`
  std::string currency = "EUR";                    // ISO 4217 code
  Mobility mobility = Mobility::OnRequest;
  std::optional<double> availability_percent;  // e.g. 99.95
  std::optional<uint32_t> max_migration_mbps;  // most a live migration of it may send, Mbit/s
  // The owner allows a migration that cannot converge within the downtime budget to finish in
  // post-copy: the guest runs at the target while its memory is still partly at the source,
  // so losing the link for good, or either site, mid-way loses the VM. Never by default.
  bool post_copy_allowed = false;
  bool required = false;  // emit ovf:required="true": importers that do not know it refuse

  bool operator==(const Sla&) const = default;
};

/// Checks every field; the error (SlaInvalid) names the first bad field and its value.
[[nodiscard]] Result<void> validateSla(const Sla& sla);

/// Applies "field=value" assignments (CLI `vandra ovf sla set`), then validates.
/// Fields: downtime-budget-ms, jurisdictions (comma list), max-rtt (LOCATION:MS),
/// encryption (required|optional), anti-affinity-group, max-cost-per-hour, currency,
/// mobility (pinned|on-request|automatic), availability (percent), max-migration-mbps (N),
/// post-copy (allowed|never), required (true|false).
/// Errors: SlaInvalid naming the field.
[[nodiscard]] Result<void> applySlaAssignment(Sla& sla, std::string_view field,
                                              std::string_view value);

}  // namespace vandra::ovf
