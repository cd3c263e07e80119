// The SQLite Database: one writer connection behind a mutex (SQLite allows one writer at a
// time anyway; waiting on a mutex is fair and quick where SQLite's busy handler polls with
// sleeps) and a small pool of reader connections, so reads run beside a long write (WAL).
#include <sqlite3.h>

#include <charconv>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "internal.h"
#include "vandra/sqlite/database.h"

namespace vandra::db::internal {
namespace {

using sqlite::DbPtr;
using sqlite::Stmt;

// The start of a statement, for messages.
std::string excerpt(std::string_view sql) {
  constexpr size_t kMax = 80;
  return std::string(sql.substr(0, kMax)) + (sql.size() > kMax ? "..." : "");
}

Error sqliteError(sqlite3* db, std::string_view sql) {
  const int ext = sqlite3_extended_errcode(db);
  const int primary = ext & 0xff;
  ErrorCode code = ErrorCode::Io;
  if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY) {
    code = ErrorCode::AlreadyExists;
  } else if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    code = ErrorCode::Busy;
  }
  return Error(code, std::string("SQLite: ") + sqlite3_errmsg(db) + " (in '" + excerpt(sql) + "')");
}

// SQLite reads "$1" as a parameter *named* "$1" and numbers parameters in order of first
// appearance, so "$2 ... $1" would bind backwards by index: bind by name instead.
Result<void> bindAll(sqlite3_stmt* s, std::string_view sql, const std::vector<Value>& params) {
  const int count = sqlite3_bind_parameter_count(s);
  for (int idx = 1; idx <= count; ++idx) {
    const char* raw = sqlite3_bind_parameter_name(s, idx);
    const std::string_view name = raw != nullptr ? raw : "?";
    size_t n = 0;
    const auto r = std::from_chars(name.data() + 1, name.data() + name.size(), n);
    if (name.size() < 2 || name[0] != '$' || r.ec != std::errc() ||
        r.ptr != name.data() + name.size() || n == 0) {
      return fail(
          ErrorCode::InvalidArgument,
          "Parameter '" + std::string(name) + "' is not $1, $2, ... (in '" + excerpt(sql) + "')");
    }
    if (n > params.size()) {
      return fail(ErrorCode::InvalidArgument,
                  "Statement uses $" + std::to_string(n) + " but " + std::to_string(params.size()) +
                      " parameters were given (in '" + excerpt(sql) + "')");
    }
    const Value& v = params[n - 1];
    int rc = SQLITE_OK;
    if (const auto* i = std::get_if<int64_t>(&v)) {
      rc = sqlite3_bind_int64(s, idx, *i);
    } else if (const auto* d = std::get_if<double>(&v)) {
      rc = sqlite3_bind_double(s, idx, *d);
    } else if (const auto* t = std::get_if<std::string>(&v)) {
      rc = sqlite3_bind_text64(s, idx, t->data(), t->size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    } else {
      rc = sqlite3_bind_null(s, idx);
    }
    if (rc != SQLITE_OK) {
      return fail(sqliteError(sqlite3_db_handle(s), sql));
    }
  }
  return {};
}

Result<Stmt> prepareOne(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, &tail) != SQLITE_OK) {
    return fail(sqliteError(db, sql));
  }
  Stmt s(raw);
  if (raw == nullptr) {
    return fail(ErrorCode::InvalidArgument, "Empty SQL statement");
  }
  // One statement per call, as PostgreSQL's extended protocol demands (migrations may hold
  // several: they run through Session scripts).
  for (const char* p = tail; p != nullptr && p < sql.data() + sql.size(); ++p) {
    if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != ';') {
      return fail(ErrorCode::InvalidArgument,
                  "Several SQL statements in one call (in '" + excerpt(sql) + "')");
    }
  }
  return s;
}

Value column(sqlite3_stmt* s, int i) {
  switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER:
      return int64_t{sqlite3_column_int64(s, i)};
    case SQLITE_FLOAT:
      return sqlite3_column_double(s, i);
    case SQLITE_NULL:
      return std::monostate{};
    default:
      return sqlite::columnText(s, i);  // TEXT, and a BLOB read as bytes
  }
}

Result<ExecResult> step(sqlite3_stmt* s, std::string_view sql, std::vector<Row>* rows) {
  sqlite3* db = sqlite3_db_handle(s);
  const int ncols = sqlite3_column_count(s);
  for (;;) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
      break;
    }
    if (rc != SQLITE_ROW) {
      return fail(sqliteError(db, sql));
    }
    if (rows != nullptr) {
      Row row;
      row.columns.reserve(static_cast<size_t>(ncols));
      for (int i = 0; i < ncols; ++i) {
        row.columns.push_back(column(s, i));
      }
      rows->push_back(std::move(row));
    }
  }
  return ExecResult{sqlite3_stmt_readonly(s) != 0 ? 0 : sqlite3_changes64(db)};
}

Result<ExecResult> run(sqlite3* db, std::string_view sql, const std::vector<Value>& params,
                       std::vector<Row>* rows) {
  VANDRA_TRY_ASSIGN(Stmt s, prepareOne(db, sql));
  VANDRA_TRY(bindAll(s.get(), sql, params));
  return step(s.get(), sql, rows);
}

Result<void> execRaw(sqlite3* db, std::string_view sql) {
  const std::string text(sql);  // sqlite3_exec wants a terminated string
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail(sqliteError(db, sql));
  }
  return {};
}

Result<DbPtr> connect(const std::string& path, const OpenOptions& options) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                     SQLITE_OPEN_NOMUTEX,  // one thread at a time uses it
                                 nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    return fail(ErrorCode::Io, "Cannot open SQLite database '" + path + "': " +
                                   (raw != nullptr ? sqlite3_errmsg(raw) : "out of memory"));
  }
  sqlite3_busy_timeout(db.get(), options.busy_timeout_ms);
  // WAL: readers never block the writer; FULL: a commit survives a power cut; foreign keys
  // on, as PostgreSQL always enforces them.
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (auto r = execRaw(db.get(), pragma); !r) {
      return fail(ErrorCode::Io,
                  "Cannot set up SQLite database '" + path + "': " + r.error().message);
    }
  }
  return db;
}

class SqliteSession final : public SessionBase {
 public:
  explicit SqliteSession(sqlite3* db) : db_(db) {}
  Dialect dialect() const override { return Dialect::Sqlite; }

  Result<std::vector<Row>> query(std::string_view sql, const std::vector<Value>& params) override {
    std::vector<Row> rows;
    VANDRA_TRY(note(run(db_, sql, params, &rows)));
    return rows;
  }
  Result<ExecResult> execute(std::string_view sql, const std::vector<Value>& params) override {
    return note(run(db_, sql, params, nullptr));
  }
  Result<void> script(std::string_view sql) override {
    VANDRA_TRY(note(execRaw(db_, sql).map([] { return ExecResult{}; })));
    return {};
  }
  const std::optional<Error>& firstError() const { return first_error_; }

 private:
  Result<ExecResult> note(Result<ExecResult> r) {
    if (!r && !first_error_) {
      first_error_ = r.error();
    }
    return r;
  }
  sqlite3* db_;
  std::optional<Error> first_error_;
};

class SqliteDatabase final : public DatabaseBase {
 public:
  SqliteDatabase(std::string path, OpenOptions options, DbPtr writer)
      : path_(std::move(path)), options_(options), writer_(std::move(writer)) {}

  Dialect dialect() const override { return Dialect::Sqlite; }
  std::string describe() const override { return "sqlite:" + path_; }

  Result<std::vector<Row>> query(std::string_view sql, const std::vector<Value>& params) override {
    std::vector<Row> rows;
    VANDRA_TRY_ASSIGN(bool done, readOnReader(sql, params, rows));
    if (done) {
      return rows;
    }
    // It writes (INSERT ... RETURNING): the writer runs it.
    std::lock_guard lock(write_mu_);
    VANDRA_TRY(run(writer_.get(), sql, params, &rows));
    return rows;
  }

  Result<ExecResult> execute(std::string_view sql, const std::vector<Value>& params) override {
    std::lock_guard lock(write_mu_);
    return run(writer_.get(), sql, params, nullptr);
  }

  Result<void> transaction(const std::function<Result<void>(Session&)>& body) override {
    return runTransaction([&](SqliteSession& s) { return body(s); }, kMaxTransactionAttempts);
  }

  Result<void> exclusiveTransaction(
      int64_t /*lock_key: BEGIN IMMEDIATE already excludes every other writer*/,
      const std::function<Result<void>(SessionBase&)>& body) override {
    return runTransaction([&](SqliteSession& s) { return body(s); }, kMaxTransactionAttempts);
  }

 private:
  // Runs a read-only statement on a pooled reader; false (nothing run) when it would write.
  Result<bool> readOnReader(std::string_view sql, const std::vector<Value>& params,
                            std::vector<Row>& rows) {
    VANDRA_TRY_ASSIGN(DbPtr reader, takeReader());
    Result<bool> outcome = prepareOne(reader.get(), sql).and_then([&](Stmt s) -> Result<bool> {
      if (sqlite3_stmt_readonly(s.get()) == 0) {
        return false;
      }
      VANDRA_TRY(bindAll(s.get(), sql, params));
      VANDRA_TRY(step(s.get(), sql, &rows));
      return true;
    });  // the statement is finalized here, before another thread may take the reader
    returnReader(std::move(reader));
    return outcome;
  }

  Result<void> runTransaction(const std::function<Result<void>(SqliteSession&)>& body,
                              int attempts) {
    std::lock_guard lock(write_mu_);
    sqlite3* db = writer_.get();
    for (int attempt = 1;; ++attempt) {
      // BEGIN IMMEDIATE takes the write lock now (waiting up to the busy timeout for another
      // process), so the body never fails half-way to upgrade a read lock.
      Result<void> outcome = execRaw(db, "BEGIN IMMEDIATE");
      bool busy = false;
      if (outcome) {
        SqliteSession session(db);
        outcome = body(session);
        if (outcome && session.firstError()) {
          outcome = fail(*session.firstError());  // the body ignored a failed statement
        }
        if (outcome) {
          outcome = execRaw(db, "COMMIT");
        }
        if (!outcome && sqlite3_get_autocommit(db) == 0) {
          if (auto rb = execRaw(db, "ROLLBACK"); !rb) {
            outcome.error().secondary.push_back(rb.error());
          }
        }
        // The body may have wrapped a statement's Busy in its own error: still retry.
        busy = session.firstError() && session.firstError()->code == ErrorCode::Busy;
      }
      busy = busy || (!outcome && outcome.error().code == ErrorCode::Busy);
      if (outcome || !busy || attempt >= attempts) {
        return outcome;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(retryDelayUs(attempt)));
    }
  }

  Result<DbPtr> takeReader() {
    std::unique_lock lock(pool_mu_);
    pool_cv_.wait(lock, [&] { return !idle_.empty() || readers_ < options_.pool_size; });
    if (!idle_.empty()) {
      DbPtr db = std::move(idle_.back());
      idle_.pop_back();
      return db;
    }
    ++readers_;
    lock.unlock();
    auto db = connect(path_, options_);
    if (!db) {
      lock.lock();
      --readers_;
      pool_cv_.notify_one();
    }
    return db;
  }

  void returnReader(DbPtr db) {
    std::lock_guard lock(pool_mu_);
    idle_.push_back(std::move(db));
    pool_cv_.notify_one();
  }

 private:
  const std::string path_;
  const OpenOptions options_;
  std::mutex write_mu_;  // guards writer_
  DbPtr writer_;
  std::mutex pool_mu_;  // guards idle_, readers_
  std::condition_variable pool_cv_;
  std::vector<DbPtr> idle_;
  int readers_ = 0;
};

}  // namespace

Result<std::unique_ptr<Database>> openSqlite(const std::string& path, const OpenOptions& options) {
  VANDRA_TRY_ASSIGN(DbPtr writer, connect(path, options));
  return std::unique_ptr<Database>(
      std::make_unique<SqliteDatabase>(path, options, std::move(writer)));
}

}  // namespace vandra::db::internal
