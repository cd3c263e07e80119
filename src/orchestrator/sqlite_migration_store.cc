// MigrationStore on SQLite: prepared statements bound by parameter (no SQL built from input),
// schema version in PRAGMA user_version, one mutex around the connection.
#include <sqlite3.h>

#include <mutex>

#include "vandra/orchestrator/migration_store.h"

namespace vandra::orchestrator {
namespace {

constexpr int kSchemaVersion = 1;

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalize {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

bool validId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id.front() == '.') {
    return false;
  }
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok) {
      return false;
    }
  }
  return true;
}

class SqliteMigrationStore final : public MigrationStore {
public:
  explicit SqliteMigrationStore(std::unique_ptr<sqlite3, DbClose> db) : db_(std::move(db)) {}

  Result<void> init() {
    VANDRA_TRY(exec("PRAGMA journal_mode=WAL"));
    VANDRA_TRY(exec("PRAGMA synchronous=FULL"));
    VANDRA_TRY_ASSIGN(Stmt v, prepare("PRAGMA user_version"));
    int version = 0;
    if (sqlite3_step(v.get()) == SQLITE_ROW) {
      version = sqlite3_column_int(v.get(), 0);
    }
    if (version > kSchemaVersion) {
      return fail(ErrorCode::Unsupported, "Migration store schema " + std::to_string(version) +
                                              " is newer than this agent understands (" + std::to_string(kSchemaVersion) + ")");
    }
    VANDRA_TRY(exec("CREATE TABLE IF NOT EXISTS migrations ("
                    " id TEXT PRIMARY KEY NOT NULL, vm_id TEXT NOT NULL, role INTEGER NOT NULL,"
                    " peer_site TEXT NOT NULL, phase INTEGER NOT NULL, created_us INTEGER NOT NULL,"
                    " updated_us INTEGER NOT NULL, timeline TEXT NOT NULL, error TEXT NOT NULL,"
                    " report TEXT NOT NULL, generation INTEGER NOT NULL)"));
    // One migration that has not ended (phases 7 done, 9 rolled_back, 10 failed end) per VM.
    VANDRA_TRY(exec("CREATE UNIQUE INDEX IF NOT EXISTS one_active_per_vm ON migrations(vm_id)"
                    " WHERE phase NOT IN (7, 9, 10)"));
    return exec("PRAGMA user_version=" + std::to_string(kSchemaVersion));
  }

  Result<MigrationRecord> insert(const MigrationRecord& r) override {
    if (!validId(r.id) || !validId(r.vm_id)) {
      return fail(ErrorCode::InvalidArgument, "Migration '" + r.id + "' / VM '" + r.vm_id + "': ids must be 1..64 of A-Z a-z 0-9 - _ .");
    }
    std::lock_guard lock(mu_);
    VANDRA_TRY_ASSIGN(Stmt s, prepare("INSERT INTO migrations (id, vm_id, role, peer_site, phase, created_us, updated_us,"
                                      " timeline, error, report, generation) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,1)"));
    bind(s.get(), r);
    const int rc = sqlite3_step(s.get());
    if (rc == SQLITE_CONSTRAINT) {
      VANDRA_TRY_ASSIGN(auto same, getLocked(r.id));
      if (same) {
        return fail(ErrorCode::AlreadyExists, "A migration named '" + r.id + "' exists");
      }
      return fail(ErrorCode::Busy, "VM '" + r.vm_id + "' is already being migrated; wait for it or cancel it");
    }
    VANDRA_TRY(done(rc, "insert"));
    MigrationRecord out = r;
    out.generation = 1;
    return out;
  }

  Result<MigrationRecord> update(const MigrationRecord& r) override {
    std::lock_guard lock(mu_);
    VANDRA_TRY_ASSIGN(Stmt s, prepare("UPDATE migrations SET vm_id=?2, role=?3, peer_site=?4, phase=?5, created_us=?6,"
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
    VANDRA_TRY_ASSIGN(auto rows, query("SELECT * FROM migrations WHERE vm_id=?1 AND phase NOT IN (7, 9, 10)", vm_id));
    if (rows.empty()) {
      return std::optional<MigrationRecord>();
    }
    return std::optional<MigrationRecord>(rows.front());
  }

  Result<std::vector<MigrationRecord>> list(const std::string& vm_id) override {
    std::lock_guard lock(mu_);
    return vm_id.empty() ? query("SELECT * FROM migrations ORDER BY created_us DESC, id", "")
                         : query("SELECT * FROM migrations WHERE vm_id=?1 ORDER BY created_us DESC, id", vm_id);
  }

private:
  static void text(sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
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
  static std::string column(sqlite3_stmt* s, int i) {
    const auto* p = sqlite3_column_text(s, i);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p),  // NOLINT: SQLite's type
                                                      static_cast<size_t>(sqlite3_column_bytes(s, i)));
  }
  Result<MigrationRecord> row(sqlite3_stmt* s) {
    MigrationRecord r;
    r.id = column(s, 0);
    r.vm_id = column(s, 1);
    const int role = sqlite3_column_int(s, 2);
    const int phase = sqlite3_column_int(s, 4);
    if ((role != 1 && role != 2) || phase < 1 || phase > 10) {
      return fail(ErrorCode::Internal, "Migration '" + r.id + "' has an unknown role or phase in the store");
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
  Result<Stmt> prepare(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      return fail(ErrorCode::Io, std::string("SQLite prepare failed: ") + sqlite3_errmsg(db_.get()));
    }
    return Stmt(s);
  }
  Result<void> exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "unknown";
      sqlite3_free(err);
      return fail(ErrorCode::Io, "SQLite: " + msg);
    }
    return {};
  }
  Result<void> done(int rc, const char* what) {
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
      return fail(ErrorCode::Io, std::string("SQLite ") + what + " failed: " + sqlite3_errmsg(db_.get()));
    }
    return {};
  }

  std::mutex mu_;
  std::unique_ptr<sqlite3, DbClose> db_;
};

} // namespace

Result<MigrationStorePtr> openSqliteMigrationStore(const std::string& path) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  std::unique_ptr<sqlite3, DbClose> db(raw);
  if (rc != SQLITE_OK) {
    return fail(ErrorCode::Io, "Cannot open the migration store '" + path + "': " +
                                   (raw != nullptr ? sqlite3_errmsg(raw) : "out of memory"));
  }
  sqlite3_busy_timeout(raw, 5000);
  auto store = std::make_unique<SqliteMigrationStore>(std::move(db));
  VANDRA_TRY(store->init());
  return MigrationStorePtr(std::move(store));
}

Result<MigrationRecord> advance(MigrationRecord r, MigrationEvent event, int64_t now_us) {
  VANDRA_TRY_ASSIGN(const MigrationPhase next, transition(r.phase, event));
  if (next != r.phase) {
    if (!r.timeline.is_array()) {
      r.timeline = nlohmann::json::array();
    }
    r.timeline.push_back({{"phase", toString(next)}, {"at_us", now_us}, {"event", toString(event)}});
  }
  r.phase = next;
  r.updated_us = now_us;
  return r;
}

} // namespace vandra::orchestrator
