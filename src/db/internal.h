// What the two database implementations share with migrate() and the lease, and nothing the
// public header should promise: the exclusive transaction a migration needs, running a script
// of several statements, the database clock, and the bounded retry of serialization failures.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "vandra/db/database.h"

namespace vandra::db::internal {

/// The Session both implementations hand to transaction bodies. A statement that fails inside
/// a transaction spoils it (PostgreSQL aborts the transaction; SQLite is made to agree): the
/// transaction then rolls back and returns that statement's error even if the body ignored it.
class SessionBase : public Session {
 public:
  /// Runs @p sql, which may hold several statements separated by ';', without parameters.
  [[nodiscard]] virtual Result<void> script(std::string_view sql) = 0;
};

class DatabaseBase : public Database {
 public:
  /// A transaction no other exclusiveTransaction() on the same database runs beside, whatever
  /// process it is in, and that sees everything committed before it began (SQLite: BEGIN
  /// IMMEDIATE; PostgreSQL: READ COMMITTED after pg_advisory_xact_lock(@p lock_key), since a
  /// SERIALIZABLE snapshot would be taken before the lock was granted). Retried on Busy (a
  /// lock not granted within the busy timeout) like transaction().
  [[nodiscard]] virtual Result<void> exclusiveTransaction(
      int64_t lock_key, const std::function<Result<void>(SessionBase&)>& body) = 0;
};

/// An SQL expression for the database's clock in milliseconds since 1970 (UTC).
std::string nowMsSql(Dialect dialect);

/// How many times transaction() runs a body that keeps meeting serialization failures, and
/// how long it waits before attempt @p attempt (1-based; full jitter, exponential, capped).
inline constexpr int kMaxTransactionAttempts = 30;
int64_t retryDelayUs(int attempt);

/// @p url with any password removed (from user:password@ and from a password= parameter).
std::string redactUrl(std::string_view url);

[[nodiscard]] Result<std::unique_ptr<Database>> openSqlite(const std::string& path,
                                                           const OpenOptions& options);
[[nodiscard]] Result<std::unique_ptr<Database>> openPostgres(const std::string& url,
                                                             const OpenOptions& options);

}  // namespace vandra::db::internal
