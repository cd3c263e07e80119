#include "vandra/sqlite/database.h"

namespace vandra::sqlite {

Result<DbPtr> open(const std::string& path, int schema_version, const std::string& what) {
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    return fail(ErrorCode::Io, "Cannot open " + what + " '" + path + "': " +
                                   (raw != nullptr ? sqlite3_errmsg(raw) : "out of memory"));
  }
  sqlite3_busy_timeout(db.get(), 5000);
  VANDRA_TRY(exec(db.get(), "PRAGMA journal_mode=WAL"));
  VANDRA_TRY(exec(db.get(), "PRAGMA synchronous=FULL"));
  VANDRA_TRY_ASSIGN(Stmt v, prepare(db.get(), "PRAGMA user_version"));
  int version = 0;
  if (sqlite3_step(v.get()) == SQLITE_ROW) {
    version = sqlite3_column_int(v.get(), 0);
  }
  if (version > schema_version) {
    return fail(ErrorCode::Unsupported, "The " + what + " schema " + std::to_string(version) +
                                            " is newer than this agent understands (" +
                                            std::to_string(schema_version) + ")");
  }
  return db;
}

Result<void> setSchemaVersion(sqlite3* db, int schema_version) {
  return exec(db, "PRAGMA user_version=" + std::to_string(schema_version));
}

Result<Stmt> prepare(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    return fail(ErrorCode::Io, std::string("SQLite prepare failed: ") + sqlite3_errmsg(db));
  }
  return Stmt(s);
}

Result<void> exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : "unknown";
    sqlite3_free(err);
    return fail(ErrorCode::Io, "SQLite: " + msg);
  }
  return {};
}

Result<void> done(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    return fail(ErrorCode::Io, std::string("SQLite ") + what + " failed: " + sqlite3_errmsg(db));
  }
  return {};
}

void bindText(sqlite3_stmt* s, int index, const std::string& value) {
  sqlite3_bind_text(s, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
}

std::string columnText(sqlite3_stmt* s, int index) {
  const auto* p = sqlite3_column_text(s, index);
  return p == nullptr ? std::string()
                      : std::string(reinterpret_cast<const char*>(p),  // NOLINT: SQLite's type
                                    static_cast<size_t>(sqlite3_column_bytes(s, index)));
}

}  // namespace vandra::sqlite
