// The leader lease: one row per lease name, read and changed in one transaction, timed by the
// database's clock so that controllers with skewed clocks still agree on who leads.
#include <string>

#include "internal.h"

namespace vandra::db {

std::string leaseTableSql() {
  return "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
         "epoch BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL)";
}

Result<Lease> acquireOrRenewLease(Database& db, const std::string& name, const std::string& holder,
                                  int64_t ttl_ms) {
  if (name.empty() || holder.empty() || ttl_ms <= 0) {
    return fail(ErrorCode::InvalidArgument,
                "A lease needs a name, a holder and a positive ttl (got name '" + name +
                    "', holder '" + holder + "', ttl " + std::to_string(ttl_ms) + " ms)");
  }
  const std::string now_sql = "SELECT " + internal::nowMsSql(db.dialect());
  Lease lease;
  VANDRA_TRY(db.transaction([&](Session& s) -> Result<void> {
    lease = Lease{};
    VANDRA_TRY_ASSIGN(auto clock, s.query(now_sql));
    if (clock.empty()) {
      return fail(ErrorCode::Internal, "The database returned no time");
    }
    const int64_t now = clock[0].integer(0);
    VANDRA_TRY_ASSIGN(
        auto rows,
        s.query("SELECT holder, epoch, expires_at_ms FROM leases WHERE name = $1", {name}));
    if (rows.empty()) {
      VANDRA_TRY_ASSIGN(auto inserted,
                        s.execute("INSERT INTO leases (name, holder, epoch, expires_at_ms) "
                                  "VALUES ($1, $2, 1, $3) ON CONFLICT (name) DO NOTHING",
                                  {name, holder, now + ttl_ms}));
      if (inserted.rows_affected == 0) {
        // Another controller created it since we looked: transaction() retries on Busy.
        return fail(ErrorCode::Busy, "Lease '" + name + "' was created concurrently");
      }
      lease = Lease{true, 1, holder, ttl_ms};
      return {};
    }
    const std::string current = rows[0].text(0);
    const int64_t epoch = rows[0].integer(1);
    const int64_t expires_at = rows[0].integer(2);
    if (current == holder && expires_at > now) {
      // A renewal: the same term goes on.
      VANDRA_TRY(
          s.execute("UPDATE leases SET expires_at_ms = $2 WHERE name = $1", {name, now + ttl_ms}));
      lease = Lease{true, epoch, holder, ttl_ms};
      return {};
    }
    if (expires_at <= now) {
      // Free. Even its previous holder starts a new term (epoch+1): once its lease ran out it
      // had to stop acting, so what it does from now on must outrank anything from before.
      VANDRA_TRY(
          s.execute("UPDATE leases SET holder = $2, epoch = $3, expires_at_ms = $4 WHERE name = $1",
                    {name, holder, epoch + 1, now + ttl_ms}));
      lease = Lease{true, epoch + 1, holder, ttl_ms};
      return {};
    }
    lease = Lease{false, epoch, current, expires_at - now};
    return {};
  }));
  return lease;
}

Result<void> releaseLease(Database& db, const std::string& name, const std::string& holder) {
  // Expire it now and keep the epoch: the next holder, whoever it is, gets epoch+1.
  const std::string now = internal::nowMsSql(db.dialect());
  return db.transaction([&](Session& s) -> Result<void> {
    VANDRA_TRY(s.execute("UPDATE leases SET expires_at_ms = " + now +
                             " WHERE name = $1 AND holder = $2 AND expires_at_ms > " + now,
                         {name, holder}));
    return {};
  });
}

}  // namespace vandra::db
