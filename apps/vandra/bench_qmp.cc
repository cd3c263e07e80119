#include "bench_qmp.h"

#include <nlohmann/json.hpp>

namespace vandra::cli::benchqmp {
namespace {

using nlohmann::json;

Result<json> run(qmp::QmpClient& c, const char* name, json args = json::object()) {
  return c.execute(qmp::makeCommand(name, std::move(args)));
}

Result<void> runVoid(qmp::QmpClient& c, const char* name, json args = json::object()) {
  VANDRA_TRY(run(c, name, std::move(args)));
  return {};
}

const char* capabilityName(Capability c) {
  switch (c) {
    case Capability::Xbzrle:
      return "xbzrle";
    case Capability::AutoConverge:
      return "auto-converge";
    case Capability::Multifd:
      return "multifd";
    case Capability::Events:
      return "events";
  }
  return "?";
}

std::string tcpUri(const Inet& a) {
  return "tcp:" + a.host + ":" + std::to_string(a.port);
}

template <class T>
void readIf(const json& j, const char* key, std::optional<T>& out) {
  if (const auto it = j.find(key); it != j.end() && it->is_number_unsigned()) {
    out = it->get<T>();
  }
}

}  // namespace

const char* toString(MultifdCompression m) {
  switch (m) {
    case MultifdCompression::None:
      return "none";
    case MultifdCompression::Zlib:
      return "zlib";
    case MultifdCompression::Zstd:
      return "zstd";
  }
  return "none";
}

Result<void> nbdServerStart(qmp::QmpClient& c, const Inet& at) {
  // SocketAddressLegacy (QEMU 7.2): {"type": "inet", "data": {host, port}}.
  return runVoid(
      c, "nbd-server-start",
      {{"addr",
        {{"type", "inet"}, {"data", {{"host", at.host}, {"port", std::to_string(at.port)}}}}}});
}

Result<void> nbdServerStop(qmp::QmpClient& c) {
  return runVoid(c, "nbd-server-stop");
}

Result<void> blockExportAddNbd(qmp::QmpClient& c, const std::string& node) {
  return runVoid(c, "block-export-add",
                 {{"type", "nbd"},
                  {"id", "exp-" + node},
                  {"node-name", node},
                  {"writable", true},
                  {"name", node}});
}

Result<void> blockdevAddNbd(qmp::QmpClient& c, const std::string& node_name, const Inet& server,
                            const std::string& export_name) {
  return runVoid(
      c, "blockdev-add",
      {{"driver", "nbd"},
       {"node-name", node_name},
       {"server", {{"type", "inet"}, {"host", server.host}, {"port", std::to_string(server.port)}}},
       {"export", export_name}});
}

Result<void> blockdevMirror(qmp::QmpClient& c, const std::string& job, const std::string& device,
                            const std::string& target) {
  return runVoid(c, "blockdev-mirror",
                 {{"job-id", job}, {"device", device}, {"target", target}, {"sync", "full"}});
}

Result<void> blockJobCancel(qmp::QmpClient& c, const std::string& job) {
  return runVoid(c, "block-job-cancel", {{"device", job}});
}

Result<std::vector<BlockJob>> queryBlockJobs(qmp::QmpClient& c) {
  VANDRA_TRY_ASSIGN(const json jobs, run(c, "query-block-jobs"));
  if (!jobs.is_array()) {
    return fail(ErrorCode::QmpProtocol, "query-block-jobs: not a list");
  }
  std::vector<BlockJob> out;
  for (const auto& j : jobs) {
    out.push_back({j.value("device", std::string()), j.value("ready", false),
                   j.value("offset", uint64_t{0}), j.value("len", uint64_t{0})});
  }
  return out;
}

Result<void> setCapabilities(qmp::QmpClient& c,
                             const std::vector<std::pair<Capability, bool>>& caps) {
  json list = json::array();
  for (const auto& [cap, on] : caps) {
    list.push_back({{"capability", capabilityName(cap)}, {"state", on}});
  }
  return runVoid(c, "migrate-set-capabilities", {{"capabilities", list}});
}

Result<void> setParameters(qmp::QmpClient& c, const MigrationParameters& p) {
  json a = json::object();
  if (p.downtime_limit_ms) {
    a["downtime-limit"] = *p.downtime_limit_ms;
  }
  if (p.max_bandwidth) {
    a["max-bandwidth"] = *p.max_bandwidth;
  }
  if (p.xbzrle_cache_size) {
    a["xbzrle-cache-size"] = *p.xbzrle_cache_size;
  }
  if (p.multifd_channels) {
    a["multifd-channels"] = *p.multifd_channels;
  }
  if (p.multifd_compression) {
    a["multifd-compression"] = toString(*p.multifd_compression);
  }
  if (p.multifd_zstd_level) {
    a["multifd-zstd-level"] = *p.multifd_zstd_level;
  }
  return runVoid(c, "migrate-set-parameters", a);
}

Result<MigrationParameters> queryParameters(qmp::QmpClient& c) {
  VANDRA_TRY_ASSIGN(const json j, run(c, "query-migrate-parameters"));
  MigrationParameters p;
  readIf(j, "downtime-limit", p.downtime_limit_ms);
  readIf(j, "max-bandwidth", p.max_bandwidth);
  readIf(j, "xbzrle-cache-size", p.xbzrle_cache_size);
  readIf(j, "multifd-channels", p.multifd_channels);
  readIf(j, "multifd-zstd-level", p.multifd_zstd_level);
  const std::string comp = j.value("multifd-compression", std::string());
  if (comp == "none") {
    p.multifd_compression = MultifdCompression::None;
  } else if (comp == "zlib") {
    p.multifd_compression = MultifdCompression::Zlib;
  } else if (comp == "zstd") {
    p.multifd_compression = MultifdCompression::Zstd;
  }
  return p;
}

Result<void> migrateIncoming(qmp::QmpClient& c, const Inet& at) {
  return runVoid(c, "migrate-incoming", {{"uri", tcpUri(at)}});
}

Result<void> migrate(qmp::QmpClient& c, const Inet& to) {
  return runVoid(c, "migrate", {{"uri", tcpUri(to)}});
}

Result<void> migrateCancel(qmp::QmpClient& c) {
  return runVoid(c, "migrate_cancel");
}

Result<void> cont(qmp::QmpClient& c) {
  return runVoid(c, "cont");
}

}  // namespace vandra::cli::benchqmp
