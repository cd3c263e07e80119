// Where an agent keeps its migrations (both roles): SQLite, WAL, synchronous=FULL, so a phase
// written before its side effect survives a crash or power cut, and a restarted agent can
// apply recoveryFor() to every migration that had not ended. At most one migration that has
// not ended per VM (a partial unique index): a second one is refused with Busy by the
// database itself, whoever asks.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/orchestrator/migration_phase.h"

namespace vandra::orchestrator {

struct MigrationRecord {
  std::string id;  // [A-Za-z0-9_.-]{1,64}, the same at both sites
  std::string vm_id;
  MigrationRole role = MigrationRole::Source;
  std::string peer_site;  // the other site's name
  MigrationPhase phase = MigrationPhase::Preflight;
  int64_t created_us = 0;  // microseconds since the epoch
  int64_t updated_us = 0;
  nlohmann::json timeline = nlohmann::json::array();  // [{"phase", "at_us"}] each phase entered
  std::string error;                                  // why it rolled back or failed ("" otherwise)
  nlohmann::json report = nlohmann::json::object();   // total_s, downtime_ms, wan_bytes, ...
  int64_t generation = 0;  // bumped on every write (optimistic concurrency)
};

class MigrationStore {
 public:
  virtual ~MigrationStore() = default;
  /// Errors: InvalidArgument (ids), AlreadyExists (id taken), Busy (the VM has a migration
  /// that has not ended), Io.
  [[nodiscard]] virtual Result<MigrationRecord> insert(const MigrationRecord& r) = 0;
  /// Writes @p r if its generation is current (bumps it). Errors: NotFound, Busy, Io.
  [[nodiscard]] virtual Result<MigrationRecord> update(const MigrationRecord& r) = 0;
  [[nodiscard]] virtual Result<std::optional<MigrationRecord>> get(const std::string& id) = 0;
  /// The VM's migration that has not ended, if any.
  [[nodiscard]] virtual Result<std::optional<MigrationRecord>> active(const std::string& vm_id) = 0;
  /// Newest first; @p vm_id "" = all.
  [[nodiscard]] virtual Result<std::vector<MigrationRecord>> list(const std::string& vm_id) = 0;
};
using MigrationStorePtr = std::unique_ptr<MigrationStore>;

/// Opens (creating) the store at @p path. A schema newer than this build is refused
/// (Unsupported).
[[nodiscard]] Result<MigrationStorePtr> openSqliteMigrationStore(const std::string& path);

/// A new record in phase preflight, its timeline started at @p now_us.
MigrationRecord newMigrationRecord(std::string id, std::string vm_id, MigrationRole role,
                                   std::string peer_site, int64_t now_us);

/// Applies @p event to @p r: new phase (or IllegalTransition), timeline entry, time. Pure.
[[nodiscard]] Result<MigrationRecord> advance(MigrationRecord r, MigrationEvent event,
                                              int64_t now_us);

}  // namespace vandra::orchestrator
