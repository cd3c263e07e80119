#include "vandra/qmp/commands.h"

#include <nlohmann/json.hpp>

namespace vandra::qmp {
namespace {

using nlohmann::json;

Result<json> run(QmpClient& c, const char* name, json args = json::object()) {
  return c.execute(makeCommand(name, std::move(args)));
}

Result<void> runVoid(QmpClient& c, const char* name, json args = json::object()) {
  VANDRA_TRY(run(c, name, std::move(args)));
  return {};
}

const char* capabilityName(MigrationCapability c) {
  switch (c) {
    case MigrationCapability::Xbzrle:
      return "xbzrle";
    case MigrationCapability::AutoConverge:
      return "auto-converge";
    case MigrationCapability::Multifd:
      return "multifd";
    case MigrationCapability::Events:
      return "events";
  }
  return "?";
}

std::string tcpUri(const InetAddress& a) {
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

Result<void> nbdServerStart(QmpClient& c, const InetAddress& at) {
  // SocketAddressLegacy (QEMU 7.2): {"type": "inet", "data": {host, port}}.
  return runVoid(
      c, "nbd-server-start",
      {{"addr",
        {{"type", "inet"}, {"data", {{"host", at.host}, {"port", std::to_string(at.port)}}}}}});
}

Result<void> snapshotAll(QmpClient& c, const std::vector<SnapshotAction>& actions) {
  json list = json::array();
  for (const auto& a : actions) {
    list.push_back({{"type", "blockdev-snapshot-sync"},
                    {"data",
                     {{"node-name", a.node},
                      {"snapshot-file", a.file},
                      {"snapshot-node-name", a.overlay_node},
                      {"format", "qcow2"},
                      {"mode", "existing"}}}});
  }
  return runVoid(c, "transaction", {{"actions", list}});
}

Result<void> nbdServerStop(QmpClient& c) {
  return runVoid(c, "nbd-server-stop");
}

Result<void> blockExportAddNbd(QmpClient& c, const std::string& node) {
  return runVoid(c, "block-export-add",
                 {{"type", "nbd"},
                  {"id", "exp-" + node},
                  {"node-name", node},
                  {"writable", true},
                  {"name", node}});
}

Result<void> blockdevAddNbd(QmpClient& c, const std::string& node_name, const InetAddress& server,
                            const std::string& export_name) {
  return runVoid(
      c, "blockdev-add",
      {{"driver", "nbd"},
       {"node-name", node_name},
       {"server", {{"type", "inet"}, {"host", server.host}, {"port", std::to_string(server.port)}}},
       {"export", export_name}});
}

Result<void> blockdevMirror(QmpClient& c, const std::string& job, const std::string& device,
                            const std::string& target) {
  return runVoid(c, "blockdev-mirror",
                 {{"job-id", job}, {"device", device}, {"target", target}, {"sync", "full"}});
}

Result<void> blockJobCancel(QmpClient& c, const std::string& job) {
  return runVoid(c, "block-job-cancel", {{"device", job}});
}

Result<std::vector<BlockJob>> queryBlockJobs(QmpClient& c) {
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

Result<void> setCapabilities(QmpClient& c,
                             const std::vector<std::pair<MigrationCapability, bool>>& caps) {
  json list = json::array();
  for (const auto& [cap, on] : caps) {
    list.push_back({{"capability", capabilityName(cap)}, {"state", on}});
  }
  return runVoid(c, "migrate-set-capabilities", {{"capabilities", list}});
}

Result<void> setParameters(QmpClient& c, const MigrationParameters& p) {
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

Result<MigrationParameters> queryParameters(QmpClient& c) {
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

Result<void> migrateIncoming(QmpClient& c, const InetAddress& at) {
  return runVoid(c, "migrate-incoming", {{"uri", tcpUri(at)}});
}

Result<void> migrate(QmpClient& c, const InetAddress& to) {
  return runVoid(c, "migrate", {{"uri", tcpUri(to)}});
}

Result<void> migrateCancel(QmpClient& c) {
  return runVoid(c, "migrate_cancel");
}

Result<void> cont(QmpClient& c) {
  return runVoid(c, "cont");
}

namespace {

// query-block's entry for the device with qdev id @p device_id. Its "qdev" is the id itself
// (scsi-hd, ide-hd) or, for virtio-blk-pci, the QOM path of the proxy's backend
// (/machine/peripheral/<id>/virtio-backend): block_set_io_throttle needs that one.
Result<json> blockDevice(QmpClient& c, const std::string& device_id) {
  VANDRA_TRY_ASSIGN(const json devices, run(c, "query-block"));
  if (!devices.is_array()) {
    return fail(ErrorCode::QmpProtocol, "query-block: not a list");
  }
  const std::string path = "/machine/peripheral/" + device_id + "/";
  for (const auto& d : devices) {
    const std::string qdev = d.is_object() ? d.value("qdev", std::string()) : std::string();
    if (!qdev.empty() && (qdev == device_id || qdev.rfind(path, 0) == 0)) {
      return d;
    }
  }
  return fail(ErrorCode::NotFound, "No block device has the id '" + device_id + "'");
}

}  // namespace

Result<void> setWriteThrottle(QmpClient& c, const std::string& device_id, uint64_t bytes_per_s,
                              uint64_t writes_per_s) {
  VANDRA_TRY_ASSIGN(const json device, blockDevice(c, device_id));
  // QEMU 7.2's BlockIOThrottle: the six rates are mandatory; 0 means unlimited.
  return runVoid(c, "block_set_io_throttle",
                 {{"id", device["qdev"]},
                  {"bps", 0},
                  {"bps_rd", 0},
                  {"bps_wr", bytes_per_s},
                  {"iops", 0},
                  {"iops_rd", 0},
                  {"iops_wr", writes_per_s}});
}

Result<std::pair<uint64_t, uint64_t>> queryWriteThrottle(QmpClient& c,
                                                         const std::string& device_id) {
  VANDRA_TRY_ASSIGN(const json device, blockDevice(c, device_id));
  const json inserted = device.value("inserted", json::object());
  return std::pair{inserted.value("bps_wr", uint64_t{0}), inserted.value("iops_wr", uint64_t{0})};
}

}  // namespace vandra::qmp
