// What the controller knows about the world, as plain values: sites (with their agents' hosts,
// prices, jurisdiction labels, water marks and networks), links between sites, named user
// locations, the network mapping across sites, VMs with their SLA, migrations with their
// outcome, the audit log and events. The store (store.h) keeps them; the agents own what runs,
// so VM state here is what the agents last reported (reconcile, service.h).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vandra/ovf/sla.h"
#include "vandra/placement/fleet.h"
#include "vandra/placement/mobility.h"

namespace vandra::controller {

/// Fraction of a site's capacity (memory and effective vCPUs) above which automatic VMs leave
/// it, and below which those whose home it is come back (the band between is hysteresis): the
/// planner's own (placement/mobility.h), one pair for both resources.
using WaterMarks = placement::WaterMarks;

struct Site {
  std::string name;
  std::vector<std::string> jurisdictions;
  double vcpu_overcommit = 1.0;
  placement::Price price;
  WaterMarks water_marks;
  /// The networks VMs can attach to here (OVF network names as this site calls them).
  std::vector<std::string> networks;
  /// Where an imported VM's network goes when nothing maps it ("" = refuse unmapped networks).
  std::string default_network;
  bool operator==(const Site&) const = default;
};

/// One agent: a host of a site, with what it reported last.
struct Host {
  std::string name;
  std::string site;
  std::string endpoint;  // the agent's API, "10.10.0.1:8443"
  uint32_t vcpus = 0;    // capacity it offers (before the site's overcommit)
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;
  uint32_t used_vcpus = 0;
  uint64_t used_memory_mib = 0;
  uint64_t used_disk_gib = 0;
  bool reachable = false;
  int64_t last_seen_ms = 0;  // unix ms of the last good answer (0: never)
  std::string last_error;
};

/// A link between two sites. rtt_ms and mbps are what placement and the SLA use: measured by
/// the agents while the measurement is fresh (ServiceOptions::link_max_age_ms), else the
/// configured ones (the site file, PUT /v1/links), kept below as the fallback.
struct Link {
  std::string a;
  std::string b;
  double rtt_ms = 0;
  double mbps = 0;
  int64_t measured_at_ms = 0;  // unix ms these values were set (measured: the newest sample)
  std::string rtt_source = "configured";   // kConfigured or kMeasured
  std::string mbps_source = "configured";  // kConfigured or kMeasured
  std::string mbps_method{};               // measured: "migration" or "probe"; else ""
  double configured_rtt_ms = 0;            // the operator's values (the fallback)
  double configured_mbps = 0;
  int64_t rtt_measured_at_ms = 0;  // unix ms of the measurement in use (0: configured)
  int64_t mbps_measured_at_ms = 0;
};
inline constexpr const char* kConfigured = "configured";
inline constexpr const char* kMeasured = "measured";

struct Location {
  std::string name;
  std::map<std::string, double> rtt_ms;  // site -> ms
};

/// One network known under one name at several sites (HCX's network mapping, Proxmox's
/// --target-bridge): a VM on `members[a]` at site a lands on `members[b]` at site b.
struct NetworkMapping {
  std::string name;
  std::map<std::string, std::string> members;  // site -> that site's network name
};

/// How the networks of a VM's NICs at one site are called at another.
struct NetworkTranslation {
  std::map<std::string, std::string> renames;  // only those whose name changes
  std::vector<std::string> missing;            // with no counterpart at the other site
};

/// @p networks (a VM's NIC networks, by @p from's names) at site @p to, whose networks are
/// @p there: through the mapping whose member at @p from is the network (an operator's
/// mapping wins over a same-named network, so a move back is the exact reverse), else the
/// same name if @p to has it. A network whose counterpart @p to does not have is missing.
/// Preflight refuses a move with a missing network; the move sends the renames. Pure.
NetworkTranslation translateNetworks(const std::vector<std::string>& networks,
                                     const std::string& from, const std::string& to,
                                     const std::vector<std::string>& there,
                                     const std::vector<NetworkMapping>& mappings);

enum class VmState : uint8_t { Defined, Running, Stopped, Migrating, Missing, Failed };
std::string_view toString(VmState s);
/// From the agent's state names ("created", "running", ...) and our own.
VmState vmStateFromString(std::string_view s);

struct Vm {
  std::string name;
  std::string site;  // where it runs now ("" = nowhere yet)
  std::string host;
  std::string home_site;  // where it was first placed
  VmState state = VmState::Defined;
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;
  ovf::Sla sla;
  std::vector<std::string> networks;  // the site network of each NIC, at `site`
  int64_t placed_at_ms = 0;
  int64_t last_moved_at_ms = 0;
  std::optional<double> dirty_rate_mbps;
};

enum class MigrationState : uint8_t { Running, Done, Failed, Cancelled };
std::string_view toString(MigrationState s);
MigrationState migrationStateFromString(std::string_view s);

/// Why a migration was started: an operator's request, the mobility loop (leaving a site
/// above its high water mark, coming home), a drain, or an SLA violation being fixed.
enum class MoveReason : uint8_t { Operator, Wander, ComeHome, Drain, Sla };
std::string_view toString(MoveReason r);
std::optional<MoveReason> moveReasonFromString(std::string_view s);

struct Migration {
  int64_t id = 0;
  std::string vm;
  std::string from_site;
  std::string to_site;
  std::string agent_migration_id;  // the source agent's id
  MigrationState state = MigrationState::Running;
  MoveReason reason = MoveReason::Operator;
  std::string why;  // human text: "dc above its high water mark: memory 91% > 85%"
  std::string requested_by;
  int64_t epoch = 0;  // the controller epoch that started it
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;
  std::optional<double> downtime_ms;  // measured interruption
  std::optional<uint32_t> budget_ms;  // the SLA's downtime budget
  std::optional<bool> within_budget;  // downtime <= budget
  std::string error;                  // when failed
  std::string report_json;            // the agent's full report (stored as it came)
  /// The NICs' networks renamed for the target (sent to the source agent with the move): at
  /// its end the VM's networks are the target's.
  std::map<std::string, std::string> networks;
};

/// One request that changed something (or tried to): append-only.
struct AuditEntry {
  int64_t seq = 0;
  int64_t at_ms = 0;
  std::string who;     // client certificate CN, or "vandra" for the mobility loop
  std::string role;    // "operator", "viewer", "system"
  std::string action;  // "POST /v1/vms/web1/migrate"
  std::string target;  // the VM or site it was about
  int status = 0;      // HTTP status of the answer
  std::string result;  // "ok" or the error code
  std::string reason;  // the request's reason, or the error message
};

}  // namespace vandra::controller
