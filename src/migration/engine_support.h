// Private to src/migration: the QMP helpers both halves of the engine use (qemu_migration.cc:
// names, target side, mirrors; qemu_migration_ram.cc: RAM pre-copy, switchover, cancel).
// Readers of QEMU's replies are lenient (a missing member reads as 0 or ""); waits poll QEMU
// once per kPollInterval when no event comes, so a lost event never hangs a wait.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/migration/qemu_migration.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::migration::engine {

using nlohmann::json;

/// How often a wait re-checks QEMU's state by query when no event came.
inline constexpr std::chrono::milliseconds kPollInterval{500};
/// After the pre-switchover pause the engine needs at least this long to finish or undo.
inline constexpr std::chrono::seconds kMinPausedBudget{60};

Result<json> exec(qmp::QmpClient& c, std::string name, json args = json::object());
uint64_t u64(const json& obj, const char* key);
double f64(const json& obj, const char* key);
std::string str(const json& obj, const char* key);
bool boolean(const json& obj, const char* key);

/// query-migrate's status ("none" before any migration).
Result<std::string> migrationStatus(qmp::QmpClient& c);
/// A migration is under way in these states (QEMU's migration_is_running() and more).
bool migrationRunning(const std::string& s);
Result<json> blockJobs(qmp::QmpClient& c);
const json* findJob(const json& jobs, const std::string& id);
Result<std::set<std::string>> nodeNames(qmp::QmpClient& c);

/// The next event @p match accepts, or Timeout after one poll interval. @p interruptible:
/// an interrupt of @p events (a cancel) ends the wait with Cancelled.
Result<qmp::QmpEvent> nextEvent(EventWaiter& events,
                                const std::function<bool(const qmp::QmpEvent&)>& match,
                                Clock::time_point deadline, bool interruptible = false);
bool isCancelled(const Result<qmp::QmpEvent>& r);
bool isMigrationEvent(const qmp::QmpEvent& e);
bool isJobEvent(const qmp::QmpEvent& e);
/// Waits until query-migrate / MIGRATION events report a status in @p wanted (returned) or
/// in @p bad (error). Events of other statuses are consumed on the way.
Result<std::string> waitMigrationStatus(qmp::QmpClient& c, EventWaiter& events,
                                        const std::set<std::string>& wanted,
                                        const std::set<std::string>& bad,
                                        Clock::time_point deadline, const char* what,
                                        bool interruptible = false);
json capabilitiesArg(const std::vector<std::pair<std::string, bool>>& caps);
bool validUnixUri(const std::string& uri);
Error withSecondary(Error primary, std::vector<Error> more);
/// Records once whether the VM ran before the migration touched it.
Result<void> recordRunState(qmp::QmpClient& source, SourceMigration& m);
/// Removes the NBD client nodes that exist; returns the failures.
std::vector<Error> deleteNbdNodes(qmp::QmpClient& source, SourceMigration& m);

}  // namespace vandra::migration::engine
