// The controller's state in its database (db/database.h: SQLite by default, PostgreSQL when
// several controllers share it), behind typed calls. One schema for both, changed only by the
// versioned migrations in schemaMigrations(). Everything here is a plain value in and out;
// no SQL leaves this unit.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/controller/inventory.h"
#include "vandra/db/database.h"

namespace vandra::controller {

/// The controller's schema, oldest first (includes db::leaseTableSql()).
const std::vector<db::Migration>& schemaMigrations();

struct AuditQuery {
  int64_t after_seq = 0;  // entries with seq > this
  std::string who;        // "" = anyone
  std::string target;     // "" = anything
  size_t max = 100;
};

struct ControllerEvent {
  int64_t seq = 0;
  int64_t at_ms = 0;
  std::string kind;     // "sla", "host", "migration", "mobility", "leader"
  std::string subject;  // the VM, site or host it is about
  std::string message;
};

/// A person who may sign in to the web console (console_auth.h).
struct ConsoleUser {
  std::string name;
  std::string role;           // "operator" or "viewer"
  std::string password_hash;  // hashPassword()
  int64_t created_at_ms = 0;
};

/// One look at a running migration, for the history charts (about one a second).
struct MigrationSample {
  int64_t t_ms = 0;  // since the migration started
  std::string phase;
  double mbps = 0;
  uint64_t dirty_rate_bps = 0;
  uint64_t wan_bytes = 0;
};

class Store {
 public:
  /// Opens @p url (db::open) and brings the schema up to date. Errors: as db::open/migrate.
  [[nodiscard]] static Result<std::unique_ptr<Store>> open(const std::string& url);
  explicit Store(std::unique_ptr<db::Database> db) : db_(std::move(db)) {}

  db::Database& database() { return *db_; }
  /// Grows with every change this store makes to VMs or migrations: answers built from them
  /// may be cached while it stays (changes by another controller are not counted: such a
  /// cache must also age).
  uint64_t generation() const { return generation_.load(); }

  // Sites, hosts, links, locations, network mappings: upsert by name (a, b for links).
  [[nodiscard]] Result<void> putSite(const Site& site);
  [[nodiscard]] Result<std::vector<Site>> sites();
  [[nodiscard]] Result<Site> site(const std::string& name);  // NotFound
  [[nodiscard]] Result<void> putHost(const Host& host);
  [[nodiscard]] Result<std::vector<Host>> hosts();
  [[nodiscard]] Result<void> putLink(const Link& link);
  [[nodiscard]] Result<std::vector<Link>> links();
  [[nodiscard]] Result<void> putLocation(const Location& location);
  [[nodiscard]] Result<std::vector<Location>> locations();
  [[nodiscard]] Result<void> putNetworkMapping(const NetworkMapping& mapping);
  [[nodiscard]] Result<std::vector<NetworkMapping>> networkMappings();

  // VMs.
  [[nodiscard]] Result<void> putVm(const Vm& vm);
  [[nodiscard]] Result<std::vector<Vm>> vms();
  [[nodiscard]] Result<Vm> vm(const std::string& name);  // NotFound
  /// Every VM's JSON (toJson(Vm), as stored: a schema migration that changes the VM's JSON
  /// rewrites the stored documents), in name order: the VM list without decoding each.
  [[nodiscard]] Result<std::vector<std::string>> vmDocuments();
  [[nodiscard]] Result<void> deleteVm(const std::string& name);

  // Migrations: insert gives the id.
  [[nodiscard]] Result<int64_t> addMigration(const Migration& m);
  [[nodiscard]] Result<void> updateMigration(const Migration& m);
  [[nodiscard]] Result<Migration> migration(int64_t id);  // NotFound
  /// Newest first; @p vm "" = every VM; @p running_only: state running.
  [[nodiscard]] Result<std::vector<Migration>> migrations(const std::string& vm, size_t max,
                                                          bool running_only = false);

  // Settings: small named values ("mobility_paused", "draining:<site>").
  [[nodiscard]] Result<std::optional<std::string>> setting(const std::string& name);
  [[nodiscard]] Result<void> putSetting(const std::string& name, const std::string& value);
  [[nodiscard]] Result<void> deleteSetting(const std::string& name);
  [[nodiscard]] Result<std::vector<std::string>> settingNames(const std::string& prefix);

  // Console users: upsert by name.
  [[nodiscard]] Result<void> putUser(const ConsoleUser& user);
  [[nodiscard]] Result<std::optional<ConsoleUser>> user(const std::string& name);
  [[nodiscard]] Result<std::vector<ConsoleUser>> users();
  [[nodiscard]] Result<bool> deleteUser(const std::string& name);  // whether there was one

  // Samples of migration @p migration, oldest first (a sample at the same t_ms replaces it).
  [[nodiscard]] Result<void> addSample(int64_t migration, const MigrationSample& sample);
  [[nodiscard]] Result<std::vector<MigrationSample>> samples(int64_t migration, size_t max);

  // Audit log and events: append-only.
  [[nodiscard]] Result<int64_t> appendAudit(const AuditEntry& e);
  [[nodiscard]] Result<std::vector<AuditEntry>> audit(const AuditQuery& q);
  [[nodiscard]] Result<int64_t> appendEvent(const ControllerEvent& e);
  [[nodiscard]] Result<std::vector<ControllerEvent>> events(int64_t after_seq, size_t max);

 private:
  std::unique_ptr<db::Database> db_;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace vandra::controller
