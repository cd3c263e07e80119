// Typed QMP commands for block jobs, NBD and migration: each function builds its command
// with the catalogue (makeCommand: per-command timeouts) from typed values and sends it on a
// QmpClient, so no caller spells a command name or argument. Shapes are QEMU 7.2's
// (qapi/block-core.json, block-export.json, migration.json). Used by the benchmark's QEMU
// baselines (over TCP) and by the migration engine (disk convergence).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::qmp {

/// An inet endpoint (QEMU's InetSocketAddress).
struct InetAddress {
  std::string host;
  uint16_t port = 0;
};

enum class MigrationCapability : uint8_t { Xbzrle, AutoConverge, Multifd, Events };
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

/// One external snapshot: node @p node gets the existing qcow2 @p file (its backing file
/// already names the image under @p node) as its overlay, new node @p overlay_node; the
/// devices reading @p node read the overlay from then on.
struct SnapshotAction {
  std::string node;
  std::string file;
  std::string overlay_node;
};
/// `transaction` of blockdev-snapshot-sync (format qcow2, mode existing): every overlay at
/// one instant of the guest's disks, or none when QEMU refuses one.
[[nodiscard]] Result<void> snapshotAll(QmpClient& c, const std::vector<SnapshotAction>& actions);

/// nbd-server-start on @p at.
[[nodiscard]] Result<void> nbdServerStart(QmpClient& c, const InetAddress& at);
/// nbd-server-stop (removes every export).
[[nodiscard]] Result<void> nbdServerStop(QmpClient& c);
/// block-export-add: a writable NBD export of node @p node named @p node.
[[nodiscard]] Result<void> blockExportAddNbd(QmpClient& c, const std::string& node);
/// blockdev-add of an NBD client node @p node_name for export @p export_name at @p server
/// (QEMU negotiates synchronously: round trips over the link).
[[nodiscard]] Result<void> blockdevAddNbd(QmpClient& c, const std::string& node_name,
                                          const InetAddress& server,
                                          const std::string& export_name);
/// blockdev-mirror sync=full, background copy mode (QEMU's default), job id @p job.
[[nodiscard]] Result<void> blockdevMirror(QmpClient& c, const std::string& job,
                                          const std::string& device, const std::string& target);
[[nodiscard]] Result<void> blockJobCancel(QmpClient& c, const std::string& job);
[[nodiscard]] Result<std::vector<BlockJob>> queryBlockJobs(QmpClient& c);
[[nodiscard]] Result<void> setCapabilities(
    QmpClient& c, const std::vector<std::pair<MigrationCapability, bool>>& caps);
[[nodiscard]] Result<void> setParameters(QmpClient& c, const MigrationParameters& p);
[[nodiscard]] Result<MigrationParameters> queryParameters(QmpClient& c);
/// migrate-incoming / migrate to tcp:HOST:PORT.
[[nodiscard]] Result<void> migrateIncoming(QmpClient& c, const InetAddress& at);
[[nodiscard]] Result<void> migrate(QmpClient& c, const InetAddress& to);
[[nodiscard]] Result<void> migrateCancel(QmpClient& c);
[[nodiscard]] Result<void> cont(QmpClient& c);

/// block_set_io_throttle on the guest device with qdev id @p device_id (found in query-block:
/// QEMU 7.2 wants a virtio-blk-pci's backend path, not the id): limits its writes to
/// @p bytes_per_s and @p writes_per_s (0: no limit), leaves reads unlimited. Both 0 lifts
/// every limit of the device. NotFound when no block device has that id.
[[nodiscard]] Result<void> setWriteThrottle(QmpClient& c, const std::string& device_id,
                                            uint64_t bytes_per_s, uint64_t writes_per_s);
/// The write limits on the device with qdev id @p device_id (query-block's bps_wr, iops_wr),
/// {0, 0} when none; NotFound when no block device has that id.
[[nodiscard]] Result<std::pair<uint64_t, uint64_t>> queryWriteThrottle(
    QmpClient& c, const std::string& device_id);

const char* toString(MultifdCompression m);

}  // namespace vandra::qmp
