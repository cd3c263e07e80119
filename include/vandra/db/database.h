// The controller's database: one small typed interface over SQLite (embedded, the default) and
// PostgreSQL (libpq, when several controllers share state). SQL is written once, in the common
// subset of both, with numbered parameters $1, $2, ... (never built from input); the few places
// where the dialects differ ask dialect(). A Database is safe to use from many threads.
//
//   open("sqlite:/var/lib/vandra/controller.db")  or a plain path   -> SQLite, WAL
//   open("postgresql://user@host:5432/vandra")                     -> PostgreSQL, a small pool
//
// Schema changes are versioned migrations (migrate()): a table schema_migrations records which
// ran; each runs in one transaction; a database whose newest version is above what this build
// knows is refused (Unsupported), never written.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::db {

enum class Dialect : uint8_t { Sqlite, Postgres };

/// A parameter or a column value. SQL NULL is monostate.
using Value = std::variant<std::monostate, int64_t, double, std::string>;

struct Row {
  std::vector<Value> columns;

  /// Accessors never fail: a column index past the end reads as NULL.
  bool isNull(size_t i) const;
  /// The column as an integer (a text column holding a number is converted; NULL is 0).
  int64_t integer(size_t i) const;
  double real(size_t i) const;
  /// The column as text (numbers are formatted; NULL is "").
  std::string text(size_t i) const;
};

/// What a statement changed: rows affected.
struct ExecResult {
  int64_t rows_affected = 0;
};

/// One connection inside a transaction (see Database::transaction).
class Session {
 public:
  virtual ~Session() = default;
  virtual Dialect dialect() const = 0;
  /// Runs @p sql with @p params bound to $1.. and returns every row. Errors: Io (naming the
  /// database's message), AlreadyExists (a unique or primary key violated), Busy (the
  /// statement could not get its lock in time / a serialization failure: retry the whole
  /// transaction). One statement per call. A statement that fails spoils the transaction
  /// (PostgreSQL aborts it; SQLite is made to agree): it rolls back and returns that error even
  /// if the body went on.
  [[nodiscard]] virtual Result<std::vector<Row>> query(std::string_view sql,
                                                       const std::vector<Value>& params = {}) = 0;
  [[nodiscard]] virtual Result<ExecResult> execute(std::string_view sql,
                                                   const std::vector<Value>& params = {}) = 0;
};

class Database {
 public:
  virtual ~Database() = default;
  virtual Dialect dialect() const = 0;
  /// Where it is, with any password left out (for logs and `vandra-controller --version`).
  virtual std::string describe() const = 0;

  /// One statement in its own transaction (same errors as Session).
  [[nodiscard]] virtual Result<std::vector<Row>> query(std::string_view sql,
                                                       const std::vector<Value>& params = {}) = 0;
  [[nodiscard]] virtual Result<ExecResult> execute(std::string_view sql,
                                                   const std::vector<Value>& params = {}) = 0;

  /// Runs @p body in one transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: SERIALIZABLE) on
  /// one connection, committed when it returns a value and rolled back when it returns an
  /// error. A Busy/serialization failure is retried (up to 30 attempts, with jittered
  /// exponential backoff), so the body may run more than once: it must only touch the database,
  /// through @p Session (calling this Database from the body may deadlock on SQLite's writer).
  /// Errors: the body's error, or the database's.
  [[nodiscard]] virtual Result<void> transaction(
      const std::function<Result<void>(Session&)>& body) = 0;
};

struct OpenOptions {
  /// Connections a PostgreSQL database keeps open at most (SQLite: one writer, readers share).
  int pool_size = 8;
  /// How long a statement waits for a lock before Busy.
  int busy_timeout_ms = 5000;
};

/// "sqlite:PATH", a plain PATH (SQLite, created with its folder's permissions, WAL,
/// synchronous=FULL, foreign keys on; not ":memory:", as each pooled connection opens the file), or
/// "postgresql://..." / "postgres://..." (a libpq URI). Errors: InvalidArgument (not one of those),
/// Io (cannot open or connect; the message names where, never the password).
[[nodiscard]] Result<std::unique_ptr<Database>> open(const std::string& url,
                                                     const OpenOptions& options = {});

/// One schema change. Versions start at 1 and have no gaps; the SQL may hold several
/// statements separated by ';'. Either dialect's text may be empty when it equals the other's.
struct Migration {
  int version = 0;
  std::string name;  // "inventory", "audit log", ...
  std::string sqlite_sql;
  std::string postgres_sql;
};

/// Brings the schema to the newest of @p migrations, each in one transaction, recording each in
/// schema_migrations(version, name, applied_at_ms: the database's clock). Safe when several
/// controllers start at once (PostgreSQL: serialised by a transaction-scoped advisory lock).
/// Returns the version now. Errors: Unsupported (the database has a version this build does not
/// know: a newer vandra wrote it), InvalidArgument (migrations not 1..N, or @p db not from
/// open()), the database's errors.
[[nodiscard]] Result<int> migrate(Database& db, const std::vector<Migration>& migrations);

// ---- Leadership -------------------------------------------------------------------------
//
// A lease row in the database, renewed by its holder; whoever holds it leads. Each new holder
// gets epoch+1 (a fencing token): agents refuse commands that carry an epoch lower than one
// they have seen, so a paused old leader that wakes up cannot act. Time is the database's clock
// (one clock for every controller), never the callers'.
//
//   standby --acquire(expired or free)--> leader(epoch+1) --renew--> leader(same epoch)
//      ^                                      |
//      +------ renew refused (lost it) -------+     release() ends it at once (clean stop)

struct Lease {
  bool leader = false;        // the caller holds it now
  int64_t epoch = 0;          // the current holder's epoch (0: nobody ever held it)
  std::string holder;         // current holder's id ("" when free)
  int64_t expires_in_ms = 0;  // how long the current holder's lease still runs (<= 0: expired)
};

/// Takes the lease named @p name for @p holder when it is free, expired, or already @p holder's
/// (then renewed, same epoch), for @p ttl_ms. A holder whose own lease ran out starts a new term
/// (epoch+1) like anyone else: it had to stop acting when it expired. Otherwise reports who
/// holds it. Never blocks on another holder. Errors: InvalidArgument (empty name or holder,
/// ttl_ms <= 0), the database's.
[[nodiscard]] Result<Lease> acquireOrRenewLease(Database& db, const std::string& name,
                                                const std::string& holder, int64_t ttl_ms);

/// Ends @p holder's lease at once, keeping its epoch so the next holder gets epoch+1 (no-op if
/// someone else holds it).
[[nodiscard]] Result<void> releaseLease(Database& db, const std::string& name,
                                        const std::string& holder);

/// The table migrate() expects the lease functions to find: include it in the caller's
/// migrations (it is migration-agnostic SQL for both dialects).
std::string leaseTableSql();

}  // namespace vandra::db
