// The PostgreSQL Database: a bounded pool of libpq connections, statements through
// PQexecParams with text parameters, SERIALIZABLE transactions retried on serialization
// failures. A connection that broke (server restart, failover) is dropped and replaced on the
// next use, and the idle ones beside it are checked before they are handed out.
#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "internal.h"

namespace vandra::db::internal {
namespace {

// Type OIDs (pg_type.dat; stable across versions).
constexpr Oid kBool = 16, kInt8 = 20, kInt2 = 21, kInt4 = 23, kOid = 26, kFloat4 = 700,
              kFloat8 = 701, kNumeric = 1700;

struct ConnClose {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultClear {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnClose>;
using PgResult = std::unique_ptr<PGresult, ResultClear>;

std::string excerpt(std::string_view sql) {
  constexpr size_t kMax = 80;
  return std::string(sql.substr(0, kMax)) + (sql.size() > kMax ? "..." : "");
}

std::string trimmed(const char* msg) {
  std::string s = msg != nullptr ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s.empty() ? "no message" : s;
}

// A statement's outcome, and whether the connection it ran on is still usable.
struct Outcome {
  PgResult result;
  std::optional<Error> error;
  bool broken = false;
};

Outcome check(PGconn* conn, PgResult res, std::string_view sql) {
  Outcome out;
  const ExecStatusType st = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
    out.result = std::move(res);
    return out;
  }
  const char* state_raw = res ? PQresultErrorField(res.get(), PG_DIAG_SQLSTATE) : nullptr;
  const std::string_view state = state_raw != nullptr ? state_raw : "";
  ErrorCode code = ErrorCode::Io;
  if (state == "40001" || state == "40P01" || state == "55P03") {
    code = ErrorCode::Busy;  // serialization failure, deadlock, lock_timeout
  } else if (state == "23505") {
    code = ErrorCode::AlreadyExists;
  }
  // Class 08 (connection exception) and 57P01-03 (shutdown, crash, starting up) end the
  // session; without a result libpq lost the connection itself.
  out.broken = PQstatus(conn) == CONNECTION_BAD || state.starts_with("08") || state == "57P01" ||
               state == "57P02" || state == "57P03" || !res;
  const std::string message = trimmed(res ? PQresultErrorMessage(res.get()) : PQerrorMessage(conn));
  out.error = Error(code, "PostgreSQL: " + message +
                              (state.empty() ? "" : " (SQLSTATE " + std::string(state) + ")") +
                              " (in '" + excerpt(sql) + "')");
  return out;
}

std::string formatDouble(double d) {
  if (d != d) {
    return "NaN";
  }
  if (d > 1.7976931348623157e308 || d < -1.7976931348623157e308) {
    return d > 0 ? "Infinity" : "-Infinity";
  }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), d);  // shortest that reads back exactly
  return std::string(buf, r.ptr);
}

Outcome execParams(PGconn* conn, std::string_view sql, const std::vector<Value>& params) {
  const size_t n = params.size();
  std::vector<std::string> text(n);
  std::vector<const char*> values(n, nullptr);
  std::vector<Oid> types(n, 0);  // 0: the server infers it (text, NULL)
  for (size_t i = 0; i < n; ++i) {
    if (const auto* v = std::get_if<int64_t>(&params[i])) {
      text[i] = std::to_string(*v);
      types[i] = kInt8;
    } else if (const auto* d = std::get_if<double>(&params[i])) {
      text[i] = formatDouble(*d);
      types[i] = kFloat8;
    } else if (const auto* s = std::get_if<std::string>(&params[i])) {
      text[i] = *s;
    } else {
      continue;  // NULL: a null pointer
    }
    values[i] = text[i].c_str();
  }
  const std::string statement(sql);
  PgResult res(PQexecParams(conn, statement.c_str(), static_cast<int>(n), types.data(),
                            values.data(), nullptr, nullptr, 0));
  return check(conn, std::move(res), sql);
}

Outcome execScript(PGconn* conn, std::string_view sql) {
  const std::string statement(sql);
  return check(conn, PgResult(PQexec(conn, statement.c_str())), sql);
}

Value convert(const PGresult* res, int row, int col) {
  if (PQgetisnull(res, row, col) != 0) {
    return std::monostate{};
  }
  const char* p = PQgetvalue(res, row, col);
  const size_t len = static_cast<size_t>(PQgetlength(res, row, col));
  switch (PQftype(res, col)) {
    case kBool:
      return int64_t{len > 0 && p[0] == 't' ? 1 : 0};
    case kInt2:
    case kInt4:
    case kInt8:
    case kOid: {
      int64_t v = 0;
      if (std::from_chars(p, p + len, v).ec == std::errc()) {
        return v;
      }
      break;
    }
    case kFloat4:
    case kFloat8:
    case kNumeric: {
      double v = 0;
      if (std::from_chars(p, p + len, v).ec == std::errc()) {
        return v;
      }
      break;
    }
    default:
      break;
  }
  return std::string(p, len);
}

std::vector<Row> rowsOf(const PGresult* res) {
  std::vector<Row> rows;
  const int nrows = PQntuples(res);
  const int ncols = PQnfields(res);
  rows.reserve(static_cast<size_t>(nrows));
  for (int r = 0; r < nrows; ++r) {
    Row row;
    row.columns.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      row.columns.push_back(convert(res, r, c));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

int64_t affected(const PGresult* res) {
  const char* p = PQcmdTuples(const_cast<PGresult*>(res));  // NOLINT: libpq's signature
  int64_t n = 0;
  std::from_chars(p, p + std::strlen(p), n);  // "" for statements that count nothing: 0
  return n;
}

// Is an idle connection still alive? A server that went away left an end-of-file (or an
// error message) on the socket, which one non-blocking poll finds.
bool healthy(PGconn* conn) {
  if (PQstatus(conn) != CONNECTION_OK) {
    return false;
  }
  pollfd p{PQsocket(conn), POLLIN, 0};
  if (::poll(&p, 1, 0) > 0) {
    if (PQconsumeInput(conn) == 0) {
      return false;
    }
  }
  return PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE;
}

class PgSession final : public SessionBase {
 public:
  explicit PgSession(PGconn* conn) : conn_(conn) {}
  Dialect dialect() const override { return Dialect::Postgres; }

  Result<std::vector<Row>> query(std::string_view sql, const std::vector<Value>& params) override {
    Outcome o = note(execParams(conn_, sql, params));
    if (o.error) {
      return fail(*o.error);
    }
    return rowsOf(o.result.get());
  }
  Result<ExecResult> execute(std::string_view sql, const std::vector<Value>& params) override {
    Outcome o = note(execParams(conn_, sql, params));
    if (o.error) {
      return fail(*o.error);
    }
    return ExecResult{affected(o.result.get())};
  }
  Result<void> script(std::string_view sql) override {
    Outcome o = note(execScript(conn_, sql));
    if (o.error) {
      return fail(*o.error);
    }
    return {};
  }

  const std::optional<Error>& firstError() const { return first_error_; }
  bool broken() const { return broken_; }
  Outcome note(Outcome o) {
    broken_ = broken_ || o.broken;
    if (o.error && !first_error_) {
      first_error_ = o.error;
    }
    return o;
  }

 private:
  PGconn* conn_;
  std::optional<Error> first_error_;
  bool broken_ = false;
};

class PgDatabase final : public DatabaseBase {
 public:
  PgDatabase(std::string url, OpenOptions options)
      : url_(std::move(url)), described_(redactUrl(url_)), options_(options) {}

  Dialect dialect() const override { return Dialect::Postgres; }
  std::string describe() const override { return described_; }

  Result<std::vector<Row>> query(std::string_view sql, const std::vector<Value>& params) override {
    VANDRA_TRY_ASSIGN(ConnPtr conn, take());
    Outcome o = execParams(conn.get(), sql, params);
    give(std::move(conn), o.broken);
    if (o.error) {
      return fail(*o.error);
    }
    return rowsOf(o.result.get());
  }

  Result<ExecResult> execute(std::string_view sql, const std::vector<Value>& params) override {
    VANDRA_TRY_ASSIGN(ConnPtr conn, take());
    Outcome o = execParams(conn.get(), sql, params);
    give(std::move(conn), o.broken);
    if (o.error) {
      return fail(*o.error);
    }
    return ExecResult{affected(o.result.get())};
  }

  Result<void> transaction(const std::function<Result<void>(Session&)>& body) override {
    return runTransaction("BEGIN ISOLATION LEVEL SERIALIZABLE", std::nullopt,
                          [&](PgSession& s) { return body(s); });
  }

  Result<void> exclusiveTransaction(
      int64_t lock_key, const std::function<Result<void>(SessionBase&)>& body) override {
    // READ COMMITTED: each statement after the lock sees what the previous holder committed.
    return runTransaction("BEGIN", lock_key, [&](PgSession& s) { return body(s); });
  }

  /// A new connection, set up. Errors: Io naming the server (never the password).
  Result<ConnPtr> connect() const {
    // Defaults first: the URL's own settings (expanded from dbname) override them.
    const char* keys[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
    const char* values[] = {"10", "vandra-controller", url_.c_str(), nullptr};
    ConnPtr conn(PQconnectdbParams(keys, values, 1));
    if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
      return fail(ErrorCode::Io, "Cannot connect to PostgreSQL at " + described_ + ": " +
                                     trimmed(conn ? PQerrorMessage(conn.get()) : "out of memory"));
    }
    // Notices ("relation already exists, skipping") are not errors: keep them off stderr.
    PQsetNoticeProcessor(
        conn.get(), [](void*, const char*) {}, nullptr);
    // Session-wide so single statements outside transactions are bounded too.
    // At least 1 ms: PostgreSQL reads 0 as "wait forever", SQLite as "never wait".
    Outcome o = execScript(
        conn.get(), "SET lock_timeout = " + std::to_string(std::max(1, options_.busy_timeout_ms)));
    if (o.error) {
      return fail(ErrorCode::Io,
                  "Cannot set up PostgreSQL connection to " + described_ + ": " + o.error->message);
    }
    return conn;
  }

  /// Puts a connection made outside take() into the pool.
  void adopt(ConnPtr conn) {
    std::lock_guard lock(mu_);
    ++open_;
    idle_.push_back(std::move(conn));
  }

 private:
  Result<void> runTransaction(const char* begin, std::optional<int64_t> lock_key,
                              const std::function<Result<void>(PgSession&)>& body) {
    for (int attempt = 1;; ++attempt) {
      VANDRA_TRY_ASSIGN(ConnPtr conn, take());
      PgSession session(conn.get());
      Outcome began = session.note(execScript(conn.get(), begin));
      if (began.error) {
        give(std::move(conn), session.broken());
        // Nothing ran yet: a connection found dead here is safe to replace and try again.
        if (session.broken() && attempt < kMaxTransactionAttempts) {
          continue;
        }
        return fail(*began.error);
      }
      Result<void> outcome;
      if (lock_key) {
        auto locked = session.query("SELECT pg_advisory_xact_lock($1)", {*lock_key});
        if (!locked) {
          outcome = fail(std::move(locked).error());
        }
      }
      if (outcome) {
        outcome = body(session);
      }
      if (outcome && session.firstError()) {
        outcome = fail(*session.firstError());  // the body ignored a failed statement
      }
      if (outcome) {
        Outcome committed = session.note(execScript(conn.get(), "COMMIT"));
        if (committed.error) {
          outcome = fail(*committed.error);
        } else if (std::string_view(PQcmdStatus(committed.result.get())) != "COMMIT") {
          outcome = fail(ErrorCode::Io, "PostgreSQL rolled the transaction back at COMMIT");
        }
      }
      if (!session.broken() && PQtransactionStatus(conn.get()) != PQTRANS_IDLE) {
        session.note(execScript(conn.get(), "ROLLBACK"));
      }
      const bool retry =
          !outcome && (outcome.error().code == ErrorCode::Busy ||
                       (session.firstError() && session.firstError()->code == ErrorCode::Busy));
      give(std::move(conn), session.broken());
      if (!retry || attempt >= kMaxTransactionAttempts) {
        return outcome;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(retryDelayUs(attempt)));
    }
  }

  Result<ConnPtr> take() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || open_ < options_.pool_size; });
    while (!idle_.empty()) {
      ConnPtr conn = std::move(idle_.back());
      idle_.pop_back();
      if (healthy(conn.get())) {
        return conn;
      }
      --open_;  // dead (the server restarted): close it, a fresh one replaces it
    }
    ++open_;
    lock.unlock();
    auto conn = connect();
    if (!conn) {
      lock.lock();
      --open_;
      cv_.notify_one();
    }
    return conn;
  }

  void give(ConnPtr conn, bool broken) {
    std::lock_guard lock(mu_);
    if (broken) {
      --open_;  // the connection closes as conn goes out of scope
    } else {
      idle_.push_back(std::move(conn));
    }
    cv_.notify_one();
  }

  const std::string url_;
  const std::string described_;
  const OpenOptions options_;
  std::mutex mu_;  // guards idle_, open_
  std::condition_variable cv_;
  std::vector<ConnPtr> idle_;
  int open_ = 0;  // connections out of the pool or idle in it
};

}  // namespace

Result<std::unique_ptr<Database>> openPostgres(const std::string& url, const OpenOptions& options) {
  auto db = std::make_unique<PgDatabase>(url, options);
  // Connect once now so a wrong URL fails here, not at the first query.
  VANDRA_TRY_ASSIGN(ConnPtr first, db->connect());
  db->adopt(std::move(first));
  return std::unique_ptr<Database>(std::move(db));
}

}  // namespace vandra::db::internal
