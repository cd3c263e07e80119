// VmRegistry on SQLite: one table, WAL journal, synchronous=FULL (a state written before a
// side effect must survive a power cut), prepared statements bound by parameter (no SQL is
// built from input), schema version in PRAGMA user_version.
#include <mutex>

#include "vandra/agent/vm_registry.h"
#include "vandra/sqlite/database.h"

namespace vandra::agent {
namespace {

constexpr int kSchemaVersion = 1;
using sqlite::Stmt;

class SqliteRegistry final : public VmRegistry {
 public:
  explicit SqliteRegistry(sqlite::DbPtr db) : db_(std::move(db)) {}

  Result<void> init() {
    VANDRA_TRY(exec("PRAGMA foreign_keys=ON"));
    VANDRA_TRY(exec(
        "CREATE TABLE IF NOT EXISTS vms ("
        " id TEXT PRIMARY KEY NOT NULL, state INTEGER NOT NULL, spec_json TEXT NOT NULL,"
        " pid INTEGER NOT NULL DEFAULT 0, pid_start_time INTEGER NOT NULL DEFAULT 0,"
        " run_dir TEXT NOT NULL DEFAULT '', vcpus INTEGER NOT NULL, memory_mib INTEGER NOT NULL,"
        " disk_bytes INTEGER NOT NULL, generation INTEGER NOT NULL)"));
    return sqlite::setSchemaVersion(db_.get(), kSchemaVersion);
  }

  Result<void> insert(const VmRecord& r) override {
    if (!validVmId(r.id)) {
      return fail(ErrorCode::InvalidArgument,
                  "VM id '" + r.id + "' must be 1..64 characters of A-Z a-z 0-9 - _ .");
    }
    std::lock_guard lock(mu_);
    VANDRA_TRY_ASSIGN(
        Stmt s,
        prepare("INSERT INTO vms (id, state, spec_json, pid, pid_start_time, run_dir,"
                " vcpus, memory_mib, disk_bytes, generation) VALUES (?,?,?,?,?,?,?,?,?,1)"));
    bind(s.get(), r);
    const int rc = sqlite3_step(s.get());
    if (rc == SQLITE_CONSTRAINT) {
      return fail(ErrorCode::AlreadyExists, "A VM named '" + r.id + "' already exists");
    }
    return done(rc, "insert");
  }

  Result<VmRecord> update(const VmRecord& r) override {
    std::lock_guard lock(mu_);
    VANDRA_TRY_ASSIGN(
        Stmt s,
        prepare("UPDATE vms SET state=?2, spec_json=?3, pid=?4, pid_start_time=?5, run_dir=?6,"
                " vcpus=?7, memory_mib=?8, disk_bytes=?9, generation=generation+1"
                " WHERE id=?1 AND generation=?10"));
    bind(s.get(), r);
    sqlite3_bind_int64(s.get(), 10, r.generation);
    VANDRA_TRY(done(sqlite3_step(s.get()), "update"));
    if (sqlite3_changes(db_.get()) == 0) {
      VANDRA_TRY_ASSIGN(auto current, getLocked(r.id));
      if (!current) {
        return fail(ErrorCode::NotFound, "No VM named '" + r.id + "'");
      }
      return fail(ErrorCode::Busy, "VM '" + r.id + "' was changed by another operation");
    }
    VmRecord out = r;
    out.generation = r.generation + 1;
    return out;
  }

  Result<std::optional<VmRecord>> get(const std::string& id) override {
    std::lock_guard lock(mu_);
    return getLocked(id);
  }

  Result<std::vector<VmRecord>> list() override {
    std::lock_guard lock(mu_);
    VANDRA_TRY_ASSIGN(Stmt s, prepare(std::string(kSelect) + " ORDER BY id"));
    std::vector<VmRecord> out;
    int rc = 0;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      out.push_back(row(s.get()));
    }
    VANDRA_TRY(done(rc, "list"));
    return out;
  }

  Result<void> remove(const std::string& id) override {
    std::lock_guard lock(mu_);
    VANDRA_TRY_ASSIGN(Stmt s, prepare("DELETE FROM vms WHERE id=?"));
    sqlite3_bind_text(s.get(), 1, id.c_str(), -1, SQLITE_TRANSIENT);
    VANDRA_TRY(done(sqlite3_step(s.get()), "delete"));
    if (sqlite3_changes(db_.get()) == 0) {
      return fail(ErrorCode::NotFound, "No VM named '" + id + "'");
    }
    return {};
  }

 private:
  static constexpr const char* kSelect =
      "SELECT id, state, spec_json, pid, pid_start_time, run_dir, vcpus, memory_mib, disk_bytes, "
      "generation FROM vms";

  Result<std::optional<VmRecord>> getLocked(const std::string& id) {
    VANDRA_TRY_ASSIGN(Stmt s, prepare(std::string(kSelect) + " WHERE id=?"));
    sqlite3_bind_text(s.get(), 1, id.c_str(), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(s.get());
    if (rc == SQLITE_ROW) {
      return std::optional<VmRecord>(row(s.get()));
    }
    VANDRA_TRY(done(rc, "get"));
    return std::optional<VmRecord>();
  }

  static void bind(sqlite3_stmt* s, const VmRecord& r) {
    sqlite3_bind_text(s, 1, r.id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, static_cast<int>(r.state));
    sqlite3_bind_text(s, 3, r.spec_json.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, r.pid);
    sqlite3_bind_int64(s, 5, static_cast<sqlite3_int64>(r.pid_start_time));
    sqlite3_bind_text(s, 6, r.run_dir.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 7, r.vcpus);
    sqlite3_bind_int64(s, 8, static_cast<sqlite3_int64>(r.memory_mib));
    sqlite3_bind_int64(s, 9, static_cast<sqlite3_int64>(r.disk_bytes));
  }

  static std::string text(sqlite3_stmt* s, int col) { return sqlite::columnText(s, col); }

  static VmRecord row(sqlite3_stmt* s) {
    VmRecord r;
    r.id = text(s, 0);
    const int st = sqlite3_column_int(s, 1);
    r.state = (st >= 1 && st <= static_cast<int>(VmState::Incoming)) ? static_cast<VmState>(st)
                                                                     : VmState::Invalid;
    r.spec_json = text(s, 2);
    r.pid = sqlite3_column_int64(s, 3);
    r.pid_start_time = static_cast<uint64_t>(sqlite3_column_int64(s, 4));
    r.run_dir = text(s, 5);
    r.vcpus = static_cast<uint32_t>(sqlite3_column_int64(s, 6));
    r.memory_mib = static_cast<uint64_t>(sqlite3_column_int64(s, 7));
    r.disk_bytes = static_cast<uint64_t>(sqlite3_column_int64(s, 8));
    r.generation = sqlite3_column_int64(s, 9);
    return r;
  }

  Result<Stmt> prepare(const std::string& sql) { return sqlite::prepare(db_.get(), sql); }
  Result<void> exec(const std::string& sql) { return sqlite::exec(db_.get(), sql); }
  Result<void> done(int rc, const char* what) { return sqlite::done(db_.get(), rc, what); }

  sqlite::DbPtr db_;
  std::mutex mu_;  // one connection, used from the API threads one at a time
};

}  // namespace

bool validVmId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id.front() == '.') {
    return false;
  }
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) {
      return false;
    }
  }
  return true;
}

Result<VmRegistryPtr> openSqliteRegistry(const std::string& path) {
  VANDRA_TRY_ASSIGN(auto db, sqlite::open(path, kSchemaVersion, "registry"));
  auto reg = std::make_unique<SqliteRegistry>(std::move(db));
  VANDRA_TRY(reg->init());
  return VmRegistryPtr(std::move(reg));
}

}  // namespace vandra::agent
