// The closing summary of `vandra vm migrate` (and `vandra demo`): what each number is, in the
// order things happened, at a sensible precision, with parts that add up to their whole.
//
//   migration 1a2b3c of web1 to cloud: done
//     total 4.6 s; guest paused 277 ms (QEMU); silent on the LAN 312 ms; SLA budget 500 ms: met
//     over the WAN 140.8 MB: RAM stream 123.0 MB + disk mirrors 15.2 MB + LAN, control and
//       TLS 2.6 MB (disk data copied 100.7 MB; RAM sent 121.9 MB)
//     phases: preflight 0.05 s, prepare_target 0.41 s, mirror_disks 2.1 s, ...
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace vandra::cli {

/// The summary of a migration record (GET /v1/migrations/{id}), lines ending in '\n'.
std::string migrationSummary(const nlohmann::json& m);

/// "4.61791" s as people read it: "4.6 s", "0.41 s", "0.05 s", "612 s".
std::string formatSeconds(double s);
/// Milliseconds as "312 ms", or "2.2 ms" under 10.
std::string formatMs(double ms);
/// Bytes as "100.7 MB" (10^6), "1.21 GB" past 10^9.
std::string formatBytes(uint64_t bytes);

/// @p line cut to @p columns - 1 display columns (an ellipsis where it was cut), so a
/// progress line redrawn with '\r' never wraps. Counts UTF-8 code points as one column.
std::string fitToWidth(const std::string& line, size_t columns);

}  // namespace vandra::cli
