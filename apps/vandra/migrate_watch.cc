#include "migrate_watch.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace vandra::cli {

using nlohmann::json;

namespace {
std::string utc(int64_t us) {
  const auto secs = static_cast<time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

std::string mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}
}  // namespace

std::string migrationProgressLine(const json& m) {
  // A controller's live record has "progress": null until the agent's first sample.
  if (!m.contains("progress") || !m["progress"].is_object()) {
    return "";
  }
  const json& p = m["progress"];
  std::string line = "WAN " + mb(p.value("wan_bytes", uint64_t{0}));
  if (p.contains("disk_total") && m.value("phase", "") == "mirror_disks") {
    line += ", disks " + mb(p.value("disk_copied", uint64_t{0})) + " of " +
            mb(p.value("disk_total", uint64_t{0}));
  }
  if (p.contains("ram_total") && p.value("ram_transferred", uint64_t{0}) > 0) {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  ", RAM %s sent, %s left, dirty %.1f MB/s, expected downtime %llu ms",
                  mb(p.value("ram_transferred", uint64_t{0})).c_str(),
                  mb(p.value("ram_remaining", uint64_t{0})).c_str(),
                  static_cast<double>(p.value("dirty_rate_bps", uint64_t{0})) / 1e6,
                  static_cast<unsigned long long>(p.value("expected_downtime_ms", uint64_t{0})));
    line += buf;
  }
  // A source that waits for the target's word (docs/migration/orchestrator.md, "Settling with
  // the peer") says so in its record's error: show it, or the bar would look stuck.
  const std::string phase = m.value("phase", "");
  if (const std::string w = migrationWaitingLine(m); !w.empty()) {
    line = w.substr(0, 200) + " (an operator may --resolve it) | " + line;
  } else if (const std::string waiting = m.value("error", "");
             !waiting.empty() && (phase == "switchover" || phase == "confirm")) {
    line = waiting.substr(0, 160) + " | " + line;
  }
  return line;
}

std::string migrationWaitingLine(const json& m) {
  if (!m.contains("waiting_for") || !m["waiting_for"].is_string()) {
    return "";
  }
  const int64_t since = m.value("waiting_since_us", int64_t{0});
  const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  return "waiting for " + m["waiting_for"].get<std::string>() + " since " + utc(since) + " (" +
         std::to_string(std::max<int64_t>(0, now - since) / 1000000) + " s)";
}

std::string migrationResolutionLine(const json& m) {
  if (!m.contains("report") || !m["report"].is_object() || !m["report"].contains("resolution") ||
      !m["report"]["resolution"].is_object()) {
    return "";
  }
  const json& r = m["report"]["resolution"];
  const std::string who =
      r.contains("who") && r["who"].is_string() ? r["who"].get<std::string>() : "an operator";
  return "resolved by " + who + ": " + r.value("action", "?") + " (" + r.value("reason", "") +
         ") at " + utc(r.value("at_us", int64_t{0})) + ": " + r.value("result", "");
}

double migrationProgressFraction(const json& m) {
  if (!m.contains("progress") || !m["progress"].is_object()) {
    return 0;
  }
  const json& p = m["progress"];
  const std::string phase = m.value("phase", "");
  if (phase == "mirror_disks") {
    const auto total = p.value("disk_total", uint64_t{0});
    return total == 0 ? 0
                      : static_cast<double>(p.value("disk_copied", uint64_t{0})) /
                            static_cast<double>(total);
  }
  if (phase == "precopy_ram" || phase == "switchover") {
    const auto sent = static_cast<double>(p.value("ram_transferred", uint64_t{0}));
    const auto left = static_cast<double>(p.value("ram_remaining", uint64_t{0}));
    return sent + left <= 0 ? 0 : sent / (sent + left);
  }
  return phase == "done" || phase == "confirm" ? 1.0 : 0.0;
}

Result<json> followMigration(agent::AgentClient& agent, const std::string& id, ProgressBar& bar,
                             std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    VANDRA_TRY_ASSIGN(json m, agent.get("/v1/migrations/" + id + "?wait_ms=500"));
    if (m.value("ended", false)) {
      bar.finish();
      return m;
    }
    bar.update(m.value("phase", "?"), migrationProgressFraction(m), migrationProgressLine(m));
    if (std::chrono::steady_clock::now() >= deadline) {
      bar.finish();
      return fail(ErrorCode::Timeout, "Migration " + id + " has not ended in time (phase " +
                                          m.value("phase", "?") + ")");
    }
  }
}

Result<nlohmann::json> followControllerMigration(agent::AgentClient& controller, int64_t id,
                                                 ProgressBar& bar,
                                                 std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    VANDRA_TRY_ASSIGN(nlohmann::json m,
                      controller.get("/v1/migrations/" + std::to_string(id) + "?wait_ms=1000",
                                     std::chrono::seconds(60)));
    if (m.value("state", "") != "running") {
      bar.finish();
      return m;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      bar.finish();
      return fail(ErrorCode::Timeout, "Migration " + std::to_string(id) + " still running");
    }
    if (m.contains("live") && m["live"].is_object()) {
      const nlohmann::json live = {{"phase", m["live"].value("phase", "")},
                                   {"progress", m["live"].value("progress", nlohmann::json())}};
      bar.update(m.value("vm", "") + " " + m["live"].value("phase", ""),
                 migrationProgressFraction(live), migrationProgressLine(live));
    }
  }
}

}  // namespace vandra::cli
