// The migration routes of the agent API (migration_api.h), on top of MigrationService.
#include "vandra/orchestrator/migration_api.h"

#include <set>

#include "vandra/agent/http_api.h"
#include "vandra/agent/vm_registry.h"

namespace vandra::orchestrator {
namespace {

using agent::sendError;
using agent::sendJson;
using nlohmann::json;

bool validMigrationId(const std::string& id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// A network name in the migrate request: 1..64 bytes, no control characters (OVF names
// have spaces: "VM Network").
bool validNetworkName(const std::string& n) {
  return !n.empty() && n.size() <= kMaxMigrateNetworkName &&
         std::none_of(n.begin(), n.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

}  // namespace

Result<MigrateOptions> parseMigrate(const std::string& body) {
  VANDRA_TRY_ASSIGN(const json j, agent::parseStrictBody(
                                      body, {"to", "bandwidth_mbps", "max_total_s",
                                             "downtime_limit_ms", "auto_converge", "disk_converge",
                                             "copy_mode", "networks", "content_refs"}));
  MigrateOptions o;
  if (!j.contains("to") || !j["to"].is_string() || j["to"].get<std::string>().empty() ||
      j["to"].get<std::string>().size() > 64) {
    return fail(ErrorCode::InvalidArgument, "Field 'to' must be a site name");
  }
  o.to = j["to"].get<std::string>();
  if (j.contains("bandwidth_mbps")) {
    if (!j["bandwidth_mbps"].is_number() || j["bandwidth_mbps"].get<double>() <= 0 ||
        j["bandwidth_mbps"].get<double>() > 1e6) {
      return fail(ErrorCode::InvalidArgument,
                  "Field 'bandwidth_mbps' must be a number in (0, 1000000]");
    }
    o.bandwidth_bytes_per_s = static_cast<uint64_t>(j["bandwidth_mbps"].get<double>() * 1e6 / 8);
  }
  auto integer = [&](const char* k, uint64_t lo, uint64_t hi, uint64_t& out) -> Result<void> {
    if (!j.contains(k)) {
      return {};
    }
    if (!j[k].is_number_unsigned() || j[k].get<uint64_t>() < lo || j[k].get<uint64_t>() > hi) {
      return fail(ErrorCode::InvalidArgument, std::string("Field '") + k +
                                                  "' must be an integer in " + std::to_string(lo) +
                                                  ".." + std::to_string(hi));
    }
    out = j[k].get<uint64_t>();
    return {};
  };
  uint64_t max_total = static_cast<uint64_t>(o.max_total.count());
  VANDRA_TRY(integer("max_total_s", 1, 86400, max_total));
  o.max_total = std::chrono::seconds(max_total);
  VANDRA_TRY(integer("downtime_limit_ms", 1, 60000, o.downtime_limit_ms));
  if (j.contains("auto_converge")) {
    if (!j["auto_converge"].is_boolean()) {
      return fail(ErrorCode::InvalidArgument, "Field 'auto_converge' must be true or false");
    }
    o.auto_converge = j["auto_converge"].get<bool>();
  }
  if (j.contains("disk_converge")) {
    if (!j["disk_converge"].is_boolean()) {
      return fail(ErrorCode::InvalidArgument, "Field 'disk_converge' must be true or false");
    }
    o.disk_converge = j["disk_converge"].get<bool>();
  }
  if (j.contains("content_refs")) {
    if (!j["content_refs"].is_boolean()) {
      return fail(ErrorCode::InvalidArgument, "Field 'content_refs' must be true or false");
    }
    o.content_refs = j["content_refs"].get<bool>();
  }
  if (j.contains("copy_mode")) {
    const std::string mode = j["copy_mode"].is_string() ? j["copy_mode"].get<std::string>() : "";
    if (mode == "background") {
      o.copy_mode = migration::CopyMode::Background;
    } else if (mode == "write-blocking") {
      o.copy_mode = migration::CopyMode::WriteBlocking;
    } else {
      return fail(ErrorCode::InvalidArgument,
                  "Field 'copy_mode' must be \"background\" or \"write-blocking\"");
    }
  }
  if (j.contains("networks")) {
    const json& n = j["networks"];
    if (!n.is_object() || n.size() > kMaxMigrateNetworks) {
      return fail(ErrorCode::InvalidArgument, "Field 'networks' must be an object of at most " +
                                                  std::to_string(kMaxMigrateNetworks) +
                                                  " entries {network here: network at the target}");
    }
    for (const auto& [from, to] : n.items()) {
      if (!validNetworkName(from) || !to.is_string() || !validNetworkName(to.get<std::string>())) {
        return fail(ErrorCode::InvalidArgument,
                    "Field 'networks': '" + from.substr(0, kMaxMigrateNetworkName) +
                        "' must map to a network name (1.." +
                        std::to_string(kMaxMigrateNetworkName) +
                        " characters, no control characters), and be one itself");
      }
      o.networks[from] = to.get<std::string>();
    }
  }
  return o;
}

Result<Resolution> parseResolve(const std::string& body) {
  VANDRA_TRY_ASSIGN(const json j, agent::parseStrictBody(body, {"action", "reason"}));
  Resolution how;
  const auto action = j.contains("action") && j["action"].is_string()
                          ? resolveActionFromString(j["action"].get<std::string>())
                          : std::nullopt;
  if (!action) {
    return fail(ErrorCode::InvalidArgument,
                "Field 'action' must be \"resume-source\" or \"abandon-source\"");
  }
  how.action = *action;
  if (!j.contains("reason") || !j["reason"].is_string() || j["reason"].get<std::string>().empty() ||
      j["reason"].get<std::string>().size() > 500) {
    return fail(ErrorCode::InvalidArgument,
                "Field 'reason' must say why, in 1..500 characters (it is kept in the record)");
  }
  how.reason = j["reason"].get<std::string>();
  if (std::any_of(how.reason.begin(), how.reason.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
    return fail(ErrorCode::InvalidArgument, "Field 'reason' must be one line of text");
  }
  return how;
}

json toJson(const std::optional<tunnel::ListenerStatus>& st) {
  if (!st) {
    return {{"state", "off"}};
  }
  json j = {{"state", std::string(tunnel::toString(st->state))},
            {"address", st->address},
            {"since_us", st->since_us},
            {"attempts", st->attempts}};
  if (st->state == tunnel::ListenerStatus::State::Listening) {
    j["port"] = st->port;
  }
  if (st->last_error) {
    j[st->state == tunnel::ListenerStatus::State::Retrying ? "last_error" : "bind_error_before"] =
        st->last_error->describe();
  }
  return j;
}

json toJson(const LinkMeasurement& m) {
  json j = {{"peer", m.peer}, {"connected", m.connected}, {"measured_at_ms", m.measured_at_ms}};
  if (m.rtt_ms) {
    j["rtt_ms"] = *m.rtt_ms;
    j["rtt_at_ms"] = m.rtt_at_ms;
  }
  if (m.throughput_mbps) {
    j["throughput_mbps"] = *m.throughput_mbps;
    j["throughput_method"] = std::string(toString(m.throughput_method));
    j["throughput_at_ms"] = m.throughput_at_ms;
  }
  return j;
}

void registerMigrationRoutes(httplib::Server& server, MigrationService& service) {
  server.Post(
      R"(/v1/vms/([^/]+)/migrate)", [&](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        if (!agent::validVmId(id)) {
          return sendError(res, Error(ErrorCode::InvalidArgument, "Bad VM id '" + id + "'"));
        }
        auto o = parseMigrate(req.body);
        if (!o) {
          return sendError(res, o.error());
        }
        auto r = service.begin(id, *o);
        r ? sendJson(res, 202, *r) : sendError(res, r.error());
      });
  server.Get("/v1/migrations", [&](const httplib::Request& req, httplib::Response& res) {
    std::string vm;
    for (const auto& [key, value] : req.params) {
      if (key != "vm" || !agent::validVmId(value)) {
        return sendError(res, Error(ErrorCode::InvalidArgument,
                                    "Bad query parameter '" + key + "' (only vm=ID)"));
      }
      vm = value;
    }
    auto r = service.list(vm);
    r ? sendJson(res, 200, *r) : sendError(res, r.error());
  });
  server.Get(R"(/v1/migrations/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    if (!validMigrationId(id)) {
      return sendError(res, Error(ErrorCode::InvalidArgument, "Bad migration id"));
    }
    uint64_t wait_ms = 0;
    for (const auto& [key, value] : req.params) {
      if (key != "wait_ms" || value.empty() || value.size() > 5 ||
          value.find_first_not_of("0123456789") != std::string::npos ||
          std::stoull(value) > kMaxMigrationWaitMs) {
        return sendError(res, Error(ErrorCode::InvalidArgument,
                                    "Bad query parameter '" + key + "' (only wait_ms=0.." +
                                        std::to_string(kMaxMigrationWaitMs) + ")"));
      }
      wait_ms = std::stoull(value);
    }
    auto r = wait_ms == 0 ? service.show(id)
                          : service.wait(id, std::chrono::steady_clock::now() +
                                                 std::chrono::milliseconds(wait_ms));
    if (!r && r.error().code == ErrorCode::Timeout) {
      r = service.show(id);  // not ended yet: the current state
    }
    r ? sendJson(res, 200, *r) : sendError(res, r.error());
  });
  server.Post(R"(/v1/migrations/([^/]+)/cancel)",
              [&](const httplib::Request& req, httplib::Response& res) {
                const std::string id = req.matches[1];
                if (!validMigrationId(id)) {
                  return sendError(res, Error(ErrorCode::InvalidArgument, "Bad migration id"));
                }
                auto r = service.cancel(id);
                r ? sendJson(res, 200, *r) : sendError(res, r.error());
              });
  server.Post(R"(/v1/migrations/([^/]+)/resolve)",
              [&](const httplib::Request& req, httplib::Response& res) {
                const std::string id = req.matches[1];
                if (!validMigrationId(id)) {
                  return sendError(res, Error(ErrorCode::InvalidArgument, "Bad migration id"));
                }
                auto how = parseResolve(req.body);
                if (!how) {
                  return sendError(res, how.error());
                }
                how->who = agent::clientName(req);
                auto r = service.resolve(id, *how);
                r ? sendJson(res, 200, *r) : sendError(res, r.error());
              });
  server.Post(
      R"(/v1/peers/([^/]+)/connect)", [&](const httplib::Request& req, httplib::Response& res) {
        const std::string site = req.matches[1];
        if (site.empty() || site.size() > 64 ||
            site.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
          return sendError(res,
                           Error(ErrorCode::InvalidArgument, "Bad site name (1..64 of a-z 0-9 -)"));
        }
        auto r = service.connect(site);
        r ? sendJson(res, 200, *r) : sendError(res, r.error());
      });
  server.Get("/v1/links", [&](const httplib::Request&, httplib::Response& res) {
    json out = json::array();
    for (const auto& m : service.links()) {
      out.push_back(toJson(m));
    }
    sendJson(res, 200, json{{"links", out}});
  });
  // {"bytes"?: 65536..kMaxProbeBytes} (default kMaxProbeBytes); an empty body is {}.
  server.Post(
      R"(/v1/links/([^/]+)/probe)", [&](const httplib::Request& req, httplib::Response& res) {
        const std::string site = req.matches[1];
        if (site.empty() || site.size() > 64 ||
            site.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
          return sendError(res,
                           Error(ErrorCode::InvalidArgument, "Bad site name (1..64 of a-z 0-9 -)"));
        }
        auto body = agent::parseStrictBody(req.body.empty() ? "{}" : req.body, {"bytes"});
        if (!body) {
          return sendError(res, body.error());
        }
        uint64_t bytes = kMaxProbeBytes;
        if (body->contains("bytes")) {
          const auto& b = (*body)["bytes"];
          if (!b.is_number_unsigned() || b.get<uint64_t>() < kMinProbeBytes ||
              b.get<uint64_t>() > kMaxProbeBytes) {
            return sendError(
                res, Error(ErrorCode::InvalidArgument, "Field 'bytes' must be an integer in " +
                                                           std::to_string(kMinProbeBytes) + ".." +
                                                           std::to_string(kMaxProbeBytes)));
          }
          bytes = b.get<uint64_t>();
        }
        auto r = service.probe(site, bytes);
        r ? sendJson(res, 200, toJson(*r)) : sendError(res, r.error());
      });
  server.Get("/v1/peers", [&](const httplib::Request&, httplib::Response& res) {
    sendJson(res, 200,
             json{{"site_tunnel_port", service.tunnelPort()},
                  {"listener", toJson(service.listenerStatus())},
                  {"peers", service.peers()}});
  });
}

}  // namespace vandra::orchestrator
