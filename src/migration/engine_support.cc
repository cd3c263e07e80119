// The engine's QMP helpers (engine_support.h).
#include "engine_support.h"

#include <thread>

namespace vandra::migration::engine {

Result<json> exec(qmp::QmpClient& c, std::string name, json args) {
  return c.execute(qmp::makeCommand(std::move(name), std::move(args)));
}

uint64_t u64(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return 0;
  }
  auto it = obj.find(key);
  if (it == obj.end()) {
    return 0;
  }
  if (it->is_number_unsigned()) {
    return it->get<uint64_t>();
  }
  if (it->is_number_integer()) {
    const int64_t v = it->get<int64_t>();
    return v < 0 ? 0 : static_cast<uint64_t>(v);
  }
  if (it->is_number_float()) {
    const double v = it->get<double>();
    return v < 0 ? 0 : static_cast<uint64_t>(v);
  }
  return 0;
}

double f64(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return 0;
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return {};
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool boolean(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return false;
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

// query-migrate's status ("none" when QEMU has no migration state to report).
Result<std::string> migrationStatus(qmp::QmpClient& c) {
  VANDRA_TRY_ASSIGN(json r, exec(c, "query-migrate"));
  std::string s = str(r, "status");
  return s.empty() ? std::string("none") : s;
}

// A migration is under way in these states (QEMU's migration_is_running() plus pre-
// switchover): migrate_cancel applies, a new migrate is refused.
bool migrationRunning(const std::string& s) {
  static const std::set<std::string> running = {
      "setup",      "active",          "pre-switchover",  "device",           "wait-unplug",
      "cancelling", "postcopy-active", "postcopy-paused", "postcopy-recover", "colo"};
  return running.count(s) != 0;
}

Result<json> blockJobs(qmp::QmpClient& c) {
  VANDRA_TRY_ASSIGN(json r, exec(c, "query-block-jobs"));
  if (!r.is_array()) {
    return fail(ErrorCode::QmpProtocol, "Reply to query-block-jobs is not an array");
  }
  return r;
}

const json* findJob(const json& jobs, const std::string& id) {
  for (const auto& j : jobs) {
    if (str(j, "device") == id) {
      return &j;
    }
  }
  return nullptr;
}

Result<std::set<std::string>> nodeNames(qmp::QmpClient& c) {
  VANDRA_TRY_ASSIGN(json r, exec(c, "query-named-block-nodes", {{"flat", true}}));
  std::set<std::string> names;
  if (r.is_array()) {
    for (const auto& n : r) {
      if (std::string name = str(n, "node-name"); !name.empty()) {
        names.insert(std::move(name));
      }
    }
  }
  return names;
}

// The next matching event, or Timeout after one poll interval. @p interruptible: an
// operator's cancel (EventWaiter::interrupt) ends the wait with Cancelled.
Result<qmp::QmpEvent> nextEvent(EventWaiter& events,
                                const std::function<bool(const qmp::QmpEvent&)>& match,
                                Clock::time_point deadline, bool interruptible) {
  return events.waitForAny(match, std::min(deadline, Clock::now() + kPollInterval), interruptible);
}

bool isCancelled(const Result<qmp::QmpEvent>& r) {
  return !r && r.error().code == ErrorCode::Cancelled;
}

bool isMigrationEvent(const qmp::QmpEvent& e) {
  return e.name == "MIGRATION";
}

bool isJobEvent(const qmp::QmpEvent& e) {
  return e.name == "BLOCK_JOB_READY" || e.name == "BLOCK_JOB_COMPLETED" ||
         e.name == "BLOCK_JOB_CANCELLED" || e.name == "BLOCK_JOB_ERROR";
}

// Waits until query-migrate / MIGRATION events report a status in @p wanted (returned) or in
// @p bad (error). Events of other statuses are consumed on the way.
Result<std::string> waitMigrationStatus(qmp::QmpClient& c, EventWaiter& events,
                                        const std::set<std::string>& wanted,
                                        const std::set<std::string>& bad,
                                        Clock::time_point deadline, const char* what,
                                        bool interruptible) {
  // query-migrate decides; a MIGRATION event (or the poll interval) only wakes the wait. An
  // event may be stale: from an earlier, cancelled attempt, or from the incoming migration
  // that brought the VM to this QEMU. Every state waited for lasts until the engine acts
  // (pre-switchover) or for good (completed, failed, cancelled), so a query cannot miss it.
  for (;;) {
    VANDRA_TRY_ASSIGN(std::string status, migrationStatus(c));
    if (wanted.count(status) != 0) {
      return status;
    }
    if (bad.count(status) != 0) {
      std::string desc;
      if (auto q = exec(c, "query-migrate"); q) {
        desc = str(*q, "error-desc");
      }
      return fail(ErrorCode::Io, std::string("Migration ") + status + " while waiting for " + what +
                                     (desc.empty() ? "" : ": " + desc));
    }
    if (Clock::now() >= deadline) {
      return fail(ErrorCode::Timeout, std::string("Migration still '") + status +
                                          "' at the deadline, waiting for " + what);
    }
    if (auto ev = nextEvent(events, isMigrationEvent, deadline, interruptible); isCancelled(ev)) {
      return fail(std::move(ev).error());
    }
  }
}

json capabilitiesArg(const std::vector<std::pair<std::string, bool>>& caps) {
  json a = json::array();
  for (const auto& [name, on] : caps) {
    a.push_back({{"capability", name}, {"state", on}});
  }
  return a;
}

bool validUnixUri(const std::string& uri) {
  return uri.rfind("unix:", 0) == 0 && uri.size() > 5 && uri.size() - 5 <= 107;
}

Error withSecondary(Error primary, std::vector<Error> more) {
  for (auto& e : more) {
    primary.secondary.push_back(std::move(e));
  }
  return primary;
}

Result<void> recordRunState(qmp::QmpClient& source, SourceMigration& m) {
  if (m.state_known) {
    return {};
  }
  VANDRA_TRY_ASSIGN(json st, exec(source, "query-status"));
  m.vm_was_running = boolean(st, "running");
  m.state_known = true;
  return {};
}

// Removes the NBD client nodes that exist; returns the failures.
std::vector<Error> deleteNbdNodes(qmp::QmpClient& source, SourceMigration& m) {
  std::vector<Error> errors;
  auto names = nodeNames(source);
  for (auto& j : m.mirrors) {
    if (!j.nbd_node_added) {
      continue;
    }
    if (names && names->count(j.nbd_node) == 0) {
      j.nbd_node_added = false;
      continue;
    }
    auto del = exec(source, "blockdev-del", {{"node-name", j.nbd_node}});
    if (del) {
      j.nbd_node_added = false;
    } else {
      errors.push_back(
          Error(del.error().code, "blockdev-del " + j.nbd_node).withCause(del.error()));
    }
  }
  return errors;
}

}  // namespace vandra::migration::engine
