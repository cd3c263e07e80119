// MigrationStore on SQLite: prepared statements bound by parameter (no SQL built from input),
// schema version in PRAGMA user_version, one mutex around the connection.
#include <mutex>

#include "vandra/agent/vm_registry.h"
#include "vandra/orchestrator/migration_store.h"
#include "vandra/sqlite/database.h"

namespace vandra::orchestrator {
namespace {

constexpr int kSchemaVersion = 1;

using sqlite::Stmt;

class SqliteMigrationStore final : public MigrationStore {
 public:
  explicit SqliteMigrationStore(sqlite::DbPtr db) : db_(std::move(db)) {}

  Result<void> init() {
    VANDRA_TRY(
        exec("CREATE TABLE IF NOT EXISTS migrations ("
             " id TEXT PRIMARY KEY NOT NULL, vm_id TEXT NOT NULL, role INTEGER NOT NULL,"
             " peer_site TEXT NOT NULL, phase INTEGER NOT NULL, created_us INTEGER NOT NULL,"
             " updated_us INTEGER NOT NULL, timeline TEXT NOT NULL, error TEXT NOT NULL,"
             " report TEXT NOT NULL, generation INTEGER NOT NULL)"));
    // One migration that has not ended (phases 7 done, 9 rolled_back, 10 failed end) per VM.
    VANDRA_TRY(
        exec("CREATE UNIQUE INDEX IF NOT EXISTS one_active_per_vm ON migrations(vm_id)"
             " WHERE phase NOT IN (7, 9, 10)"));
    return sqlite::setSchemaVersion(db_.get(), kSchemaVersion);
  }

  Result<MigrationRecord> insert(const MigrationRecord& r) override {
    if (!agent::validVmId(r.id) || !agent::validVmId(r.vm_id)) {
      return fail(ErrorCode::InvalidArgument, "Migration '" + r.id + "' / VM '" + r.vm_id +
                                                  "': ids must be 1..64 of A-Z a-z 0-9 - _ .");
    }
    std::lock_guard lock(mu_);
    VANDRA_TRY_ASSIGN(
        Stmt s,
        prepare("INSERT INTO migrations (id, vm_id, role, peer_site, phase, created_us, updated_us,"
                " timeline, error, report, generation) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,1)"));
    bind(s.get(), r);
    const int rc = sqlite3_step(s.get());
    if (rc == SQLITE_CONSTRAINT) {
      VANDRA_TRY_ASSIGN(auto same, getLocked(r.id));
      if (same) {
        return fail(ErrorCode::AlreadyExists, "A migration named '" + r.id + "' exists");
      }
      return fail(ErrorCode::Busy,
                  "VM '" + r.vm_id + "' is already being migrated; wait for it or cancel it");
    }
    VANDRA_TRY(done(rc, "insert"));
    MigrationRecord out = r;
    out.generation = 1;
    return out;
  }

  Result<MigrationRecord> update(const MigrationRecord& r) override {
    std::lock_guard lock(mu_);
    VANDRA_TRY_ASSIGN(
        Stmt s,
        prepare("UPDATE migrations SET vm_id=?2, role=?3, peer_site=?4, phase=?5, created_us=?6,"
                " updated_us=?7, timeline=?8, error=?9, report=?10, generation=generation+1"
                " WHERE id=?1 AND generation=?11"));
    bind(s.get(), r);
    sqlite3_bind_int64(s.get(), 11, r.generation);
    const int rc = sqlite3_step(s.get());
    if (rc == SQLITE_CONSTRAINT) {
      return fail(ErrorCode::Busy, "VM '" + r.vm_id + "' has another migration that has not ended");
    }
    VANDRA_TRY(done(rc, "update"));
    if (sqlite3_changes(db_.get()) == 0) {
      VANDRA_TRY_ASSIGN(auto current, getLocked(r.id));
      if (!current) {
        return fail(ErrorCode::NotFound, "No migration named '" + r.id + "'");
      }
      return fail(ErrorCode::Busy, "Migration '" + r.id + "' was changed by another operation");
    }
    MigrationRecord out = r;
    ++out.generation;
    return out;
  }

  Result<std::optional<MigrationRecord>> get(const std::string& id) override {
    std::lock_guard lock(mu_);
    return getLocked(id);
  }

  Result<std::optional<MigrationRecord>> active(const std::string& vm_id) override {
    std::lock_guard lock(mu_);
    VANDRA_TRY_ASSIGN(
        auto rows,
        query("SELECT * FROM migrations WHERE vm_id=?1 AND phase NOT IN (7, 9, 10)", vm_id));
    if (rows.empty()) {
      return std::optional<MigrationRecord>();
    }
    return std::optional<MigrationRecord>(rows.front());
  }

  Result<std::vector<MigrationRecord>> list(const std::string& vm_id) override {
    std::lock_guard lock(mu_);
    return vm_id.empty()
               ? query("SELECT * FROM migrations ORDER BY created_us DESC, id", "")
               : query("SELECT * FROM migrations WHERE vm_id=?1 ORDER BY created_us DESC, id",
                       vm_id);
  }

 private:
  static void text(sqlite3_stmt* s, int i, const std::string& v) { sqlite::bindText(s, i, v); }
  static void bind(sqlite3_stmt* s, const MigrationRecord& r) {
    text(s, 1, r.id);
    text(s, 2, r.vm_id);
    sqlite3_bind_int(s, 3, static_cast<int>(r.role));
    text(s, 4, r.peer_site);
    sqlite3_bind_int(s, 5, static_cast<int>(r.phase));
    sqlite3_bind_int64(s, 6, r.created_us);
    sqlite3_bind_int64(s, 7, r.updated_us);
    text(s, 8, r.timeline.dump());
    text(s, 9, r.error);
    text(s, 10, r.report.dump());
  }
  static std::string column(sqlite3_stmt* s, int i) { return sqlite::columnText(s, i); }
  Result<MigrationRecord> row(sqlite3_stmt* s) {
    MigrationRecord r;
    r.id = column(s, 0);
    r.vm_id = column(s, 1);
    const int role = sqlite3_column_int(s, 2);
    const int phase = sqlite3_column_int(s, 4);
    if ((role != 1 && role != 2) || phase < 1 || phase > 10) {
      return fail(ErrorCode::Internal,
                  "Migration '" + r.id + "' has an unknown role or phase in the store");
    }
    r.role = static_cast<MigrationRole>(role);
    r.peer_site = column(s, 3);
    r.phase = static_cast<MigrationPhase>(phase);
    r.created_us = sqlite3_column_int64(s, 5);
    r.updated_us = sqlite3_column_int64(s, 6);
    r.timeline = nlohmann::json::parse(column(s, 7), nullptr, false);
    r.error = column(s, 8);
    r.report = nlohmann::json::parse(column(s, 9), nullptr, false);
    if (r.timeline.is_discarded() || r.report.is_discarded()) {
      return fail(ErrorCode::Internal, "Migration '" + r.id + "' has unreadable JSON in the store");
    }
    r.generation = sqlite3_column_int64(s, 10);
    return r;
  }
  Result<std::vector<MigrationRecord>> query(const std::string& sql, const std::string& arg) {
    VANDRA_TRY_ASSIGN(Stmt s, prepare(sql));
    if (!arg.empty()) {
      text(s.get(), 1, arg);
    }
    std::vector<MigrationRecord> out;
    int rc = 0;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      VANDRA_TRY_ASSIGN(auto r, row(s.get()));
      out.push_back(std::move(r));
    }
    VANDRA_TRY(done(rc, "query"));
    return out;
  }
  Result<std::optional<MigrationRecord>> getLocked(const std::string& id) {
    VANDRA_TRY_ASSIGN(auto rows, query("SELECT * FROM migrations WHERE id=?1", id));
    if (rows.empty()) {
      return std::optional<MigrationRecord>();
    }
    return std::optional<MigrationRecord>(rows.front());
  }
  Result<Stmt> prepare(const std::string& sql) { return sqlite::prepare(db_.get(), sql); }
  Result<void> exec(const std::string& sql) { return sqlite::exec(db_.get(), sql); }
  Result<void> done(int rc, const char* what) { return sqlite::done(db_.get(), rc, what); }

  std::mutex mu_;
  sqlite::DbPtr db_;
};

}  // namespace

Result<MigrationStorePtr> openSqliteMigrationStore(const std::string& path) {
  VANDRA_TRY_ASSIGN(auto db, sqlite::open(path, kSchemaVersion, "migration store"));
  auto store = std::make_unique<SqliteMigrationStore>(std::move(db));
  VANDRA_TRY(store->init());
  return MigrationStorePtr(std::move(store));
}

MigrationRecord newMigrationRecord(std::string id, std::string vm_id, MigrationRole role,
                                   std::string peer_site, int64_t now_us) {
  MigrationRecord r;
  r.id = std::move(id);
  r.vm_id = std::move(vm_id);
  r.role = role;
  r.peer_site = std::move(peer_site);
  r.phase = MigrationPhase::Preflight;
  r.created_us = r.updated_us = now_us;
  r.timeline = nlohmann::json::array({{{"phase", "preflight"}, {"at_us", now_us}}});
  return r;
}

Result<MigrationRecord> advance(MigrationRecord r, MigrationEvent event, int64_t now_us) {
  VANDRA_TRY_ASSIGN(const MigrationPhase next, transition(r.phase, event));
  if (next != r.phase) {
    if (!r.timeline.is_array()) {
      r.timeline = nlohmann::json::array();
    }
    r.timeline.push_back(
        {{"phase", toString(next)}, {"at_us", now_us}, {"event", toString(event)}});
  }
  r.phase = next;
  r.updated_us = now_us;
  return r;
}

}  // namespace vandra::orchestrator
