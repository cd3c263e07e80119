// The agent's registry of VMs, persisted in SQLite (WAL) so that a restarted agent knows
// every VM, its state and its QEMU process. Callers write the new state BEFORE the side
// effect it announces (launching QEMU, deleting disks), so a crash in between is recoverable.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vandra/agent/vm_state.h"
#include "vandra/common/result.h"

namespace vandra::agent {

struct VmRecord {
  std::string id;  // plain name: [A-Za-z0-9_.-], 1..64, not starting with '.'
  VmState state = VmState::Created;
  std::string spec_json;        // VmSpec (one virtual system) as imported
  int64_t pid = 0;              // QEMU pid while Starting/Running/Stopping, else 0
  uint64_t pid_start_time = 0;  // /proc/<pid>/stat starttime: tells a reused pid apart
  std::string run_dir;          // QMP sockets, serial log, pidfile
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_bytes = 0;
  int64_t generation = 0;  // bumped on every write (optimistic concurrency)
  bool operator==(const VmRecord&) const = default;
};

/// True for ids vandra accepts (they become file and socket names).
bool validVmId(const std::string& id);

class VmRegistry {
 public:
  virtual ~VmRegistry() = default;
  /// Adds a new VM. Errors: AlreadyExists, InvalidArgument (bad id), Io.
  [[nodiscard]] virtual Result<void> insert(const VmRecord& record) = 0;
  /// Replaces the record whose generation matches @p record.generation, bumping it.
  /// Errors: NotFound, Busy (generation changed underneath: re-read and retry), Io.
  [[nodiscard]] virtual Result<VmRecord> update(const VmRecord& record) = 0;
  [[nodiscard]] virtual Result<std::optional<VmRecord>> get(const std::string& id) = 0;
  [[nodiscard]] virtual Result<std::vector<VmRecord>> list() = 0;
  /// Errors: NotFound, Io.
  [[nodiscard]] virtual Result<void> remove(const std::string& id) = 0;
};
using VmRegistryPtr = std::unique_ptr<VmRegistry>;

/// Opens (creating if needed) the SQLite registry at @p path with WAL and a schema version
/// check: a database written by a newer major version is refused (Unsupported).
[[nodiscard]] Result<VmRegistryPtr> openSqliteRegistry(const std::string& path);

}  // namespace vandra::agent
