// The agent API's live-migration routes (served by vandrad beside http_api.h's):
//
//   POST /v1/vms/{id}/migrate        {"to", "bandwidth_mbps"?, "max_total_s"?,
//                                     "downtime_limit_ms"?, "auto_converge"?, "disk_converge"?,
//                                     "copy_mode"?, "networks"?}  202: {"id", ...}
//   GET  /v1/migrations              ?vm=ID   newest first
//   GET  /v1/migrations/{id}         ?wait_ms=N (up to 30000: answers when it ends or then);
//                                    the record, and "progress" while it runs
//   POST /v1/migrations/{id}/cancel  the migration rolls back (the VM runs on at the source)
//   POST /v1/migrations/{id}/resolve {"action": "resume-source"|"abandon-source", "reason"}:
//                                    the operator ends a source waiting for its peer (resolve.h)
//   GET  /v1/peers                   site tunnel port, the listener's state (listening, or
//                                    retrying with its last error), links to peer sites (up/down)
//   GET  /v1/links                   what is measured of each peer link (RTT, throughput)
//   POST /v1/links/{peer}/probe      {"bytes"?}: a bounded throughput probe (409 while busy)
#pragma once

#include <httplib.h>

#include "vandra/orchestrator/migration_service.h"

namespace vandra::orchestrator {

inline constexpr uint64_t kMaxMigrationWaitMs = 30000;
inline constexpr size_t kMaxMigrateNetworks = 64;     // entries of the migrate's "networks"
inline constexpr size_t kMaxMigrateNetworkName = 64;  // bytes of a network name in it

/// The body of POST /v1/vms/{id}/migrate: {"to": site, "bandwidth_mbps"?: number > 0,
/// "max_total_s"?: 1..86400, "downtime_limit_ms"?: 1..60000, "auto_converge"?: bool,
/// "disk_converge"?: bool, "copy_mode"?: "background" | "write-blocking", "networks"?:
/// {network here: network at the target} (at most 64, names 1..64 without control
/// characters)}; nothing else. Whether each key is a network of the VM's NICs is the
/// service's check (MigrationService::begin). Errors: InvalidArgument, LimitExceeded.
[[nodiscard]] Result<MigrateOptions> parseMigrate(const std::string& body);

/// The body of POST /v1/migrations/{id}/resolve: {"action", "reason"} and nothing else
/// (`who` is filled in from the client certificate). Errors: InvalidArgument, LimitExceeded.
[[nodiscard]] Result<Resolution> parseResolve(const std::string& body);
nlohmann::json toJson(const std::optional<tunnel::ListenerStatus>& status);
/// One entry of GET /v1/links: rtt_ms and the throughput fields only when measured.
nlohmann::json toJson(const LinkMeasurement& m);

/// @p service must outlive the server.
void registerMigrationRoutes(httplib::Server& server, MigrationService& service);

}  // namespace vandra::orchestrator
