// The few SQLite helpers the agent's stores share (the VM registry, the migration store):
// one way to open a store (WAL, synchronous=FULL so a state written before a side effect
// survives a power cut, a busy timeout, and a refusal of schemas newer than this build),
// prepared statements owned by unique_ptr, and errors as values. No SQL is built from input:
// callers bind parameters.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>

#include "vandra/common/result.h"

namespace vandra::sqlite {

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalize {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbClose>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

/// Opens (creating) @p path for the store called @p what ("registry", "migration store"),
/// with WAL and synchronous=FULL. Errors: Io, Unsupported (its user_version is above
/// @p schema_version: written by a newer vandra).
[[nodiscard]] Result<DbPtr> open(const std::string& path, int schema_version,
                                 const std::string& what);
/// Records @p schema_version as the file's user_version (after the tables exist).
[[nodiscard]] Result<void> setSchemaVersion(sqlite3* db, int schema_version);

[[nodiscard]] Result<Stmt> prepare(sqlite3* db, const std::string& sql);
[[nodiscard]] Result<void> exec(sqlite3* db, const std::string& sql);
/// Ok for SQLITE_DONE/SQLITE_ROW, else Io naming @p what and SQLite's message.
[[nodiscard]] Result<void> done(sqlite3* db, int rc, const char* what);

void bindText(sqlite3_stmt* s, int index, const std::string& value);
std::string columnText(sqlite3_stmt* s, int index);

}  // namespace vandra::sqlite
