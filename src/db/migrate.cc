// migrate(): versioned schema changes, each in one exclusive transaction that records itself in
// schema_migrations, so two controllers starting at once apply each change exactly once.
#include <algorithm>
#include <string>

#include "internal.h"

namespace vandra::db {
namespace {

// pg_advisory_xact_lock's key for migrations: any constant no other vandra lock uses
// ("vandramg" in ASCII).
constexpr int64_t kMigrationLockKey = 0x76616e6472616d67;

constexpr const char* kCreateTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";

Result<int> currentVersion(Session& s) {
  VANDRA_TRY_ASSIGN(auto rows, s.query("SELECT max(version) FROM schema_migrations"));
  return rows.empty() ? 0 : static_cast<int>(rows[0].integer(0));
}

Unexpected tooNew(int found, int known) {
  return fail(ErrorCode::Unsupported, "The database's schema is at version " +
                                          std::to_string(found) +
                                          ", newer than this build knows (" +
                                          std::to_string(known) + "): a newer vandra wrote it");
}

}  // namespace

Result<int> migrate(Database& db, const std::vector<Migration>& migrations) {
  auto* impl = dynamic_cast<internal::DatabaseBase*>(&db);
  if (impl == nullptr) {
    return fail(ErrorCode::InvalidArgument, "migrate() needs a Database from vandra::db::open()");
  }
  std::vector<const Migration*> sorted;
  for (const Migration& m : migrations) {
    sorted.push_back(&m);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const Migration* a, const Migration* b) { return a->version < b->version; });
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i]->version != static_cast<int>(i + 1)) {
      return fail(ErrorCode::InvalidArgument, "Migrations must be numbered 1.." +
                                                  std::to_string(sorted.size()) +
                                                  " without gaps or repeats; found version " +
                                                  std::to_string(sorted[i]->version) + " where " +
                                                  std::to_string(i + 1) + " belongs");
    }
    if (sorted[i]->sqlite_sql.empty() && sorted[i]->postgres_sql.empty()) {
      return fail(ErrorCode::InvalidArgument,
                  "Migration " + std::to_string(i + 1) + " (" + sorted[i]->name + ") has no SQL");
    }
  }
  const int newest = static_cast<int>(sorted.size());
  const std::string now = internal::nowMsSql(db.dialect());

  // First look, before writing anything: a database from a newer build is left untouched.
  // The table is created here too (under the same lock: PostgreSQL's CREATE TABLE IF NOT
  // EXISTS is not safe against a concurrent one).
  int version = 0;
  VANDRA_TRY(impl->exclusiveTransaction(kMigrationLockKey, [&](Session& s) -> Result<void> {
    VANDRA_TRY(s.execute(kCreateTable));
    VANDRA_TRY_ASSIGN(version, currentVersion(s));
    return {};
  }));
  if (version > newest) {
    return tooNew(version, newest);
  }
  for (const Migration* m : sorted) {
    if (m->version <= version) {
      continue;
    }
    const std::string& sql = db.dialect() == Dialect::Postgres
                                 ? (m->postgres_sql.empty() ? m->sqlite_sql : m->postgres_sql)
                                 : (m->sqlite_sql.empty() ? m->postgres_sql : m->sqlite_sql);
    auto applied = impl->exclusiveTransaction(
        kMigrationLockKey, [&](internal::SessionBase& s) -> Result<void> {
          // Another controller may have got here first: look again under the lock.
          VANDRA_TRY_ASSIGN(version, currentVersion(s));
          if (version > newest) {
            return tooNew(version, newest);
          }
          if (version >= m->version) {
            return {};
          }
          VANDRA_TRY(s.script(sql));
          VANDRA_TRY(
              s.execute("INSERT INTO schema_migrations (version, name, applied_at_ms) "
                        "VALUES ($1, $2, " +
                            now + ")",
                        {int64_t{m->version}, m->name}));
          version = m->version;
          return {};
        });
    if (!applied) {
      Error e = std::move(applied).error();
      if (e.code == ErrorCode::Unsupported) {
        return fail(std::move(e));
      }
      return fail(Error(e.code, "Migration " + std::to_string(m->version) + " (" + m->name +
                                    ") failed: " + e.message));
    }
  }
  return version;
}

}  // namespace vandra::db
