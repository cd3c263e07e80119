// A real, throw-away PostgreSQL server for a test: initdb into a fresh temporary folder, then
// `postgres` listening only on a Unix socket in that folder (no TCP port to collide on), with
// fsync off (the data dies with the test). As root it runs as the `postgres` user, since
// PostgreSQL refuses root. Stopped and removed when the object goes; crash() and restart() are
// for fault tests. Every process it ends, it ends by the pid it started.
//
//   if (auto why = PostgresServer::unavailable(); !why.empty()) { VANDRA_SKIP_OR_FAIL(why); }
//   auto server = PostgresServer::start();   // Result<std::unique_ptr<PostgresServer>>
//   auto db = vandra::db::open((*server)->url());
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "vandra/common/result.h"

namespace vandra::testing {

class PostgresServer {
 public:
  /// Why no server can run here ("" when one can): no PostgreSQL binaries, or root without a
  /// `postgres` user.
  static std::string unavailable();

  /// Creates and starts a server; returns once it accepts connections (at most 30 s).
  [[nodiscard]] static Result<std::unique_ptr<PostgresServer>> start();

  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;
  ~PostgresServer();

  /// libpq URL of the `postgres` database as the `postgres` superuser (trust auth).
  std::string url() const { return url(""); }
  /// The same for database @p dbname, with @p password in it (ignored by trust auth: for
  /// tests that check a password never shows).
  std::string url(const std::string& dbname, const std::string& password = "") const;
  const std::string& socketDir() const { return dir_; }
  pid_t pid() const { return pid_; }

  /// Kills the server and its backends at once (SIGKILL), as a power cut or an OOM kill would.
  [[nodiscard]] Result<void> crash();
  /// Starts it again on the same data (after crash() or stop()), waiting until it is ready.
  [[nodiscard]] Result<void> restart();
  /// Fast shutdown (SIGINT), then SIGKILL if it has not ended within 30 s.
  [[nodiscard]] Result<void> stop();

 private:
  PostgresServer() = default;
  Result<void> spawn();
  Result<void> waitReady();

  std::string bin_;   // .../postgresql/N/bin
  std::string dir_;   // the temporary folder: socket, log, data/
  std::string data_;  // dir_/data
  pid_t pid_ = -1;    // the postmaster, or -1 when it is not running
  uid_t run_uid_ = 0;
  gid_t run_gid_ = 0;
  bool switch_user_ = false;  // running as root: the server runs as `postgres`
};

}  // namespace vandra::testing
