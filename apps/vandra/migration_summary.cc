#include "migration_summary.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace vandra::cli {

using nlohmann::json;

std::string formatSeconds(double s) {
  char buf[32];
  if (s >= 100) {
    std::snprintf(buf, sizeof buf, "%.0f s", s);
  } else if (s >= 1) {
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  }
  return buf;
}

std::string formatMs(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 10 ? "%.1f ms" : "%.0f ms", ms);
  return buf;
}

std::string formatBytes(uint64_t bytes) {
  char buf[32];
  const double v = static_cast<double>(bytes);
  if (v >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.2f GB", v / 1e9);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MB", v / 1e6);
  }
  return buf;
}

namespace {

// A count from the report (0 when absent, negative or not a number).
uint64_t u64(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) {
    return 0;
  }
  const double v = j[key].get<double>();
  return v > 0 ? static_cast<uint64_t>(v) : 0;
}

// The phases in the order they ran (the record's timeline), each with its duration.
std::string phaseLine(const json& m) {
  if (!m.contains("timeline") || !m["timeline"].is_array()) {
    return "";
  }
  const json& t = m["timeline"];
  std::string line;
  for (size_t i = 0; i + 1 < t.size(); ++i) {
    const double s =
        static_cast<double>(t[i + 1].value("at_us", int64_t{0}) - t[i].value("at_us", int64_t{0})) /
        1e6;
    line +=
        (line.empty() ? "" : ", ") + t[i].value("phase", std::string("?")) + " " + formatSeconds(s);
  }
  return line;
}

}  // namespace

std::string migrationSummary(const json& m) {
  const json rep = m.contains("report") && m["report"].is_object() ? m["report"] : json::object();
  std::string out = "migration " + m.value("id", std::string()) + " of " +
                    m.value("vm", std::string()) + " to " + m.value("peer", std::string()) + ": " +
                    m.value("phase", std::string());
  if (const std::string e = m.value("error", std::string()); !e.empty()) {
    out += " (" + e + ")";
  }
  out += "\n";
  if (rep.contains("total_s") && rep["total_s"].is_number()) {
    out += "  total " + formatSeconds(rep["total_s"].get<double>());
    if (const uint64_t d = u64(rep, "downtime_ms"); d != 0) {
      out += "; guest paused " + formatMs(static_cast<double>(d)) + " (QEMU)";
    }
    if (rep.contains("lan_silence_ms") && rep["lan_silence_ms"].is_number()) {
      out += "; silent on the LAN " + formatMs(rep["lan_silence_ms"].get<double>());
    }
    if (rep.contains("downtime_budget_ms") && rep["downtime_budget_ms"].is_number()) {
      out += "; SLA budget " + formatMs(rep["downtime_budget_ms"].get<double>());
      const json& met = rep.contains("sla_met") ? rep["sla_met"] : json();
      out += met.is_boolean() ? (met.get<bool>() ? ": met" : ": NOT met") : ": not judged";
    }
    out += "\n";
    // The tunnel's account: the streams' payloads, and the rest of the wire (both ways).
    const uint64_t wan = u64(rep, "wan_bytes");
    const uint64_t ram = u64(rep, "wan_bytes_migration");
    const uint64_t nbd = u64(rep, "wan_bytes_nbd");
    out += "  over the WAN " + formatBytes(wan);
    if (ram + nbd != 0 && ram + nbd <= wan) {
      out += ": RAM stream " + formatBytes(ram) + " + disk mirrors " + formatBytes(nbd) +
             " + LAN, control and TLS " + formatBytes(wan - ram - nbd);
    }
    std::vector<std::string> copied;
    if (const uint64_t d = u64(rep, "disk_bytes"); d != 0) {
      copied.push_back("disk data copied " + formatBytes(d));
    }
    if (const uint64_t r = u64(rep, "ram_bytes"); r != 0) {
      copied.push_back("RAM sent by QEMU " + formatBytes(r));
    }
    if (!copied.empty()) {
      out += " (" + copied[0] + (copied.size() > 1 ? "; " + copied[1] : "") + ")";
    }
    out += "\n";
    // The streams before compression: what compressing saved.
    const uint64_t plain = u64(rep, "plain_bytes_migration") + u64(rep, "plain_bytes_nbd");
    if (plain > 0 && ram + nbd > 0 && plain > ram + nbd) {
      char ratio[32];
      std::snprintf(ratio, sizeof ratio, "%.2fx",
                    static_cast<double>(plain) / static_cast<double>(ram + nbd));
      out += "  compressed: streams of " + formatBytes(plain) + " sent in " +
             formatBytes(ram + nbd) + " (" + ratio + ")\n";
    }
  }
  // Content references (ADR 0030): pages the target read from its own copy of a base image.
  if (rep.contains("content_refs") && rep["content_refs"].is_object()) {
    const json& c = rep["content_refs"];
    if (const uint64_t refs = u64(c, "refs"); refs > 0) {
      out += "  RAM pages sent as references to the target's copy: " + std::to_string(refs) +
             " of " + std::to_string(u64(c, "pages")) + " (" + formatBytes(refs * 4096) +
             " not sent)\n";
    }
  }
  if (rep.contains("migration_stream_error") && rep["migration_stream_error"].is_string()) {
    out += "  migration stream: " + rep["migration_stream_error"].get<std::string>() + "\n";
  }
  if (const std::string phases = phaseLine(m); !phases.empty()) {
    out += "  phases: " + phases + "\n";
  }
  // Disk convergence: per device, the hardest limit its writes got, and from when.
  if (rep.contains("disk_write_throttle") && rep["disk_write_throttle"].is_array()) {
    std::vector<std::pair<std::string, const json*>> hardest;
    for (const auto& step : rep["disk_write_throttle"]) {
      if (!step.is_object()) {
        continue;
      }
      const std::string device = step.value("device", std::string("?"));
      auto it = std::find_if(hardest.begin(), hardest.end(),
                             [&](const auto& h) { return h.first == device; });
      if (it == hardest.end()) {
        hardest.emplace_back(device, &step);
      } else if (u64(step, "level") > u64(*it->second, "level")) {
        it->second = &step;
      }
    }
    for (const auto& [device, step] : hardest) {
      out += "  disk writes of " + device + " throttled so its mirror converges (hardest: " +
             formatBytes(u64(*step, "bytes_per_s")) + "/s";
      if (const uint64_t w = u64(*step, "writes_per_s"); w != 0) {
        out += ", " + std::to_string(w) + " writes/s";
      }
      out += ", from " + formatSeconds(step->value("at_s", 0.0)) + " into the mirrors)\n";
    }
  }
  return out;
}

std::string fitToWidth(const std::string& line, size_t columns) {
  if (columns < 2) {
    return line;
  }
  const size_t room = columns - 1;  // the last column would make some terminals wrap
  size_t cols = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if ((c & 0xC0) == 0x80) {
      continue;  // a UTF-8 continuation byte: same column
    }
    if (cols == room - 1) {
      // One column left: keep the rest only if it fits entirely.
      size_t rest = 0;
      for (size_t k = i; k < line.size(); ++k) {
        rest += (static_cast<unsigned char>(line[k]) & 0xC0) != 0x80 ? size_t{1} : size_t{0};
      }
      return rest <= 1 ? line : line.substr(0, i) + "\xE2\x80\xA6";  // U+2026
    }
    ++cols;
  }
  return line;
}

}  // namespace vandra::cli
