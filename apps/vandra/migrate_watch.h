// Following a live migration on its source agent (GET /v1/migrations/{id}?wait_ms=): the
// progress bar of `vandra vm migrate`, and the demo's and the benchmark's wait for the end.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_support.h"
#include "vandra/agent/agent_client.h"

namespace vandra::cli {

/// "WAN 330.2 MB, RAM 312.4 MB sent, 20.1 MB left, dirty 48.0 MB/s, expected downtime 84 ms" for
/// a migration record with its "progress".
std::string migrationProgressLine(const nlohmann::json& m);
/// "waiting for peer cloud unreachable: ... since 2026-12-06T07:49:34.000Z (41 s)" for a
/// source that waits for its target's word (its record's waiting_for), else "".
std::string migrationWaitingLine(const nlohmann::json& m);
/// "resolved by operator: resume-source (cloud burnt down) at ...: resumed here" when an
/// operator ended it (report.resolution), else "".
std::string migrationResolutionLine(const nlohmann::json& m);
/// 0..1 of the phase's work (mirror: disk bytes; RAM: bytes sent of sent + remaining).
double migrationProgressFraction(const nlohmann::json& m);

/// Polls (long-polling 500 ms at a time, no sleeps) until migration @p id has ended at the
/// agent or @p deadline passes; draws @p bar when enabled. Returns the final record.
/// Errors: the agent's (NotFound, ...), Timeout.
[[nodiscard]] Result<nlohmann::json> followMigration(
    agent::AgentClient& agent, const std::string& id, ProgressBar& bar,
    std::chrono::steady_clock::time_point deadline);

/// The same through the controller (GET /v1/migrations/{id}?wait_ms=): its record until its
/// state is no longer "running", with the source agent's live progress on @p bar.
[[nodiscard]] Result<nlohmann::json> followControllerMigration(
    agent::AgentClient& controller, int64_t id, ProgressBar& bar,
    std::chrono::steady_clock::time_point deadline);

}  // namespace vandra::cli
