// Typed QMP commands the QEMU baselines of `vandra bench migrate` send over TCP (the
// migration engine, vandra/migration/qemu_migration.h, speaks unix sockets only, since
// vandra's streams go through the site tunnel). Each function builds its command with the
// project's catalogue (qmp::makeCommand: per-command timeouts) from typed values and sends
// it on a QmpClient; no command name or argument is spelled by the callers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::cli::benchqmp {

/// An inet endpoint (QEMU's InetSocketAddress).
struct Inet {
  std::string host;
  uint16_t port = 0;
};

enum class Capability : uint8_t { Xbzrle, AutoConverge, Multifd, Events };
enum class MultifdCompression : uint8_t { None, Zlib, Zstd };

/// migrate-set-parameters / query-migrate-parameters: the members the benchmark uses
/// (unset: left as they are / absent in the reply).
struct MigrationParameters {
  std::optional<uint64_t> downtime_limit_ms;
  std::optional<uint64_t> max_bandwidth;  // bytes/s; 0: no limit
  std::optional<uint64_t> xbzrle_cache_size;
  std::optional<uint32_t> multifd_channels;
  std::optional<MultifdCompression> multifd_compression;
  std::optional<uint32_t> multifd_zstd_level;
};

struct BlockJob {
  std::string device;  // job id
  bool ready = false;
  uint64_t offset = 0;
  uint64_t len = 0;
};

/// nbd-server-start on @p at.
[[nodiscard]] Result<void> nbdServerStart(qmp::QmpClient& c, const Inet& at);
/// nbd-server-stop (removes every export).
[[nodiscard]] Result<void> nbdServerStop(qmp::QmpClient& c);
/// block-export-add: a writable NBD export of node @p node named @p node.
[[nodiscard]] Result<void> blockExportAddNbd(qmp::QmpClient& c, const std::string& node);
/// blockdev-add of an NBD client node @p node_name for export @p export_name at @p server
/// (QEMU negotiates synchronously: round trips over the link).
[[nodiscard]] Result<void> blockdevAddNbd(qmp::QmpClient& c, const std::string& node_name,
                                          const Inet& server, const std::string& export_name);
/// blockdev-mirror sync=full, background copy mode (QEMU's default), job id @p job.
[[nodiscard]] Result<void> blockdevMirror(qmp::QmpClient& c, const std::string& job,
                                          const std::string& device, const std::string& target);
[[nodiscard]] Result<void> blockJobCancel(qmp::QmpClient& c, const std::string& job);
[[nodiscard]] Result<std::vector<BlockJob>> queryBlockJobs(qmp::QmpClient& c);
[[nodiscard]] Result<void> setCapabilities(qmp::QmpClient& c,
                                           const std::vector<std::pair<Capability, bool>>& caps);
[[nodiscard]] Result<void> setParameters(qmp::QmpClient& c, const MigrationParameters& p);
[[nodiscard]] Result<MigrationParameters> queryParameters(qmp::QmpClient& c);
/// migrate-incoming / migrate to tcp:HOST:PORT.
[[nodiscard]] Result<void> migrateIncoming(qmp::QmpClient& c, const Inet& at);
[[nodiscard]] Result<void> migrate(qmp::QmpClient& c, const Inet& to);
[[nodiscard]] Result<void> migrateCancel(qmp::QmpClient& c);
[[nodiscard]] Result<void> cont(qmp::QmpClient& c);

const char* toString(MultifdCompression m);

}  // namespace vandra::cli::benchqmp
