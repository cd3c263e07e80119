// Each record is one row: the columns a query filters on, and `doc`, the record's JSON
// (inventory_json.h), so that adding a field needs no schema change. The migration report is
// kept in its own column as the agent sent it.
#include "vandra/controller/store.h"

#include "vandra/controller/inventory_json.h"

namespace vandra::controller {
namespace {

using db::Value;
using nlohmann::json;

const char* kSchemaV1 = R"SQL(
CREATE TABLE sites (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE hosts (name TEXT PRIMARY KEY, site TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE links (a TEXT NOT NULL, b TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (a, b));
CREATE TABLE locations (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE networks (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE vms (name TEXT PRIMARY KEY, site TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX vms_site ON vms (site);
CREATE TABLE migrations (id BIGINT PRIMARY KEY, vm TEXT NOT NULL, state TEXT NOT NULL,
                         doc TEXT NOT NULL, report TEXT NOT NULL);
CREATE INDEX migrations_vm ON migrations (vm, id);
CREATE TABLE audit (seq BIGINT PRIMARY KEY, at_ms BIGINT NOT NULL, who TEXT NOT NULL,
                    target TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE events (seq BIGINT PRIMARY KEY, at_ms BIGINT NOT NULL, doc TEXT NOT NULL);
)SQL";

const char* kSchemaV4 = R"SQL(
CREATE TABLE users (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE migration_samples (migration BIGINT NOT NULL, t_ms BIGINT NOT NULL, doc TEXT NOT NULL,
                                PRIMARY KEY (migration, t_ms));
)SQL";

Result<json> parseDoc(const std::string& text, const char* what) {
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::Internal, std::string("Stored ") + what + " is not JSON");
  }
  return j;
}

template <class T, class F>
Result<std::vector<T>> readAll(db::Database& d, const std::string& sql,
                               const std::vector<Value>& params, const char* what, F from) {
  VANDRA_TRY_ASSIGN(auto rows, d.query(sql, params));
  std::vector<T> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    VANDRA_TRY_ASSIGN(auto j, parseDoc(r.text(0), what));
    VANDRA_TRY_ASSIGN(auto v, from(j));
    out.push_back(std::move(v));
  }
  return out;
}

// Appends to an append-only table: the next seq in the same transaction (max+1), so two
// controllers (PostgreSQL, serialisable) never share one.
Result<int64_t> appendRow(db::Database& d, const std::string& table,
                          const std::function<std::vector<Value>(int64_t)>& values,
                          const std::string& columns, const std::string& value_params) {
  int64_t seq = 0;
  VANDRA_TRY(d.transaction([&](db::Session& s) -> Result<void> {
    VANDRA_TRY_ASSIGN(auto rows, s.query("SELECT COALESCE(MAX(seq), 0) FROM " + table));
    seq = rows.empty() ? 1 : rows[0].integer(0) + 1;
    VANDRA_TRY(s.execute(
        "INSERT INTO " + table + " (" + columns + ") VALUES (" + value_params + ")", values(seq)));
    return {};
  }));
  return seq;
}

std::string upsert(const std::string& table, const std::string& key_cols,
                   const std::vector<std::string>& cols) {
  // Both dialects accept INSERT ... ON CONFLICT (...) DO UPDATE SET c = excluded.c.
  std::string names, params, sets;
  for (size_t i = 0; i < cols.size(); ++i) {
    names += (i ? ", " : "") + cols[i];
    params += (i ? ", $" : "$") + std::to_string(i + 1);
  }
  bool first = true;
  for (const auto& c : cols) {
    if (key_cols.find(c) != std::string::npos) {
      continue;
    }
    sets += (first ? "" : ", ") + c + " = excluded." + c;
    first = false;
  }
  return "INSERT INTO " + table + " (" + names + ") VALUES (" + params + ") ON CONFLICT (" +
         key_cols + ") DO UPDATE SET " + sets;
}

}  // namespace

const std::vector<db::Migration>& schemaMigrations() {
  static const std::vector<db::Migration> migrations = [] {
    std::vector<db::Migration> m;
    m.push_back({1, "inventory, migrations, audit log, events", kSchemaV1, ""});
    m.push_back({2, "leader lease", db::leaseTableSql(), ""});
    m.push_back(
        {3, "settings", "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);", ""});
    m.push_back({4, "console users, migration samples", kSchemaV4, ""});
    return m;
  }();
  return migrations;
}

Result<std::unique_ptr<Store>> Store::open(const std::string& url) {
  VANDRA_TRY_ASSIGN(auto d, db::open(url));
  VANDRA_TRY(db::migrate(*d, schemaMigrations()));
  return std::make_unique<Store>(std::move(d));
}

Result<void> Store::putSite(const Site& site) {
  VANDRA_TRY(
      db_->execute(upsert("sites", "name", {"name", "doc"}), {site.name, toJson(site).dump()}));
  return {};
}

Result<std::vector<Site>> Store::sites() {
  return readAll<Site>(*db_, "SELECT doc FROM sites ORDER BY name", {}, "site", siteFromJson);
}

Result<Site> Store::site(const std::string& name) {
  VANDRA_TRY_ASSIGN(auto all, readAll<Site>(*db_, "SELECT doc FROM sites WHERE name = $1", {name},
                                            "site", siteFromJson));
  if (all.empty()) {
    return fail(ErrorCode::NotFound, "No site '" + name + "'");
  }
  return all.front();
}

Result<void> Store::putHost(const Host& host) {
  VANDRA_TRY(db_->execute(upsert("hosts", "name", {"name", "site", "doc"}),
                          {host.name, host.site, toJson(host).dump()}));
  return {};
}

Result<std::vector<Host>> Store::hosts() {
  return readAll<Host>(*db_, "SELECT doc FROM hosts ORDER BY site, name", {}, "host", hostFromJson);
}

Result<void> Store::putLink(const Link& link) {
  // One row per pair whichever way round it was given.
  Link l = link;
  if (l.b < l.a) {
    std::swap(l.a, l.b);
  }
  // A value in use that is configured is the configured one (the fallback once measured).
  if (l.rtt_source != kMeasured) {
    l.configured_rtt_ms = l.rtt_ms;
  }
  if (l.mbps_source != kMeasured) {
    l.configured_mbps = l.mbps;
  }
  VANDRA_TRY(
      db_->execute(upsert("links", "a, b", {"a", "b", "doc"}), {l.a, l.b, toJson(l).dump()}));
  return {};
}

Result<std::vector<Link>> Store::links() {
  return readAll<Link>(*db_, "SELECT doc FROM links ORDER BY a, b", {}, "link", linkFromJson);
}

Result<void> Store::putLocation(const Location& location) {
  VANDRA_TRY(db_->execute(upsert("locations", "name", {"name", "doc"}),
                          {location.name, toJson(location).dump()}));
  return {};
}

Result<std::vector<Location>> Store::locations() {
  return readAll<Location>(*db_, "SELECT doc FROM locations ORDER BY name", {}, "location",
                           locationFromJson);
}

Result<void> Store::putNetworkMapping(const NetworkMapping& mapping) {
  VANDRA_TRY(db_->execute(upsert("networks", "name", {"name", "doc"}),
                          {mapping.name, toJson(mapping).dump()}));
  return {};
}

Result<std::vector<NetworkMapping>> Store::networkMappings() {
  return readAll<NetworkMapping>(*db_, "SELECT doc FROM networks ORDER BY name", {}, "network",
                                 networkMappingFromJson);
}

Result<void> Store::putVm(const Vm& vm) {
  ++generation_;
  VANDRA_TRY(db_->execute(upsert("vms", "name", {"name", "site", "doc"}),
                          {vm.name, vm.site, toJson(vm).dump()}));
  return {};
}

Result<std::vector<Vm>> Store::vms() {
  return readAll<Vm>(*db_, "SELECT doc FROM vms ORDER BY name", {}, "vm", vmFromJson);
}

Result<std::vector<std::string>> Store::vmDocuments() {
  VANDRA_TRY_ASSIGN(auto rows, db_->query("SELECT doc FROM vms ORDER BY name"));
  std::vector<std::string> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    out.push_back(r.text(0));
  }
  return out;
}

Result<Vm> Store::vm(const std::string& name) {
  VANDRA_TRY_ASSIGN(
      auto all, readAll<Vm>(*db_, "SELECT doc FROM vms WHERE name = $1", {name}, "vm", vmFromJson));
  if (all.empty()) {
    return fail(ErrorCode::NotFound, "No VM '" + name + "'");
  }
  return all.front();
}

Result<void> Store::deleteVm(const std::string& name) {
  ++generation_;
  VANDRA_TRY(db_->execute("DELETE FROM vms WHERE name = $1", {name}));
  return {};
}

Result<int64_t> Store::addMigration(const Migration& m) {
  ++generation_;
  int64_t id = 0;
  VANDRA_TRY(db_->transaction([&](db::Session& s) -> Result<void> {
    VANDRA_TRY_ASSIGN(auto rows, s.query("SELECT COALESCE(MAX(id), 0) FROM migrations"));
    id = rows.empty() ? 1 : rows[0].integer(0) + 1;
    Migration copy = m;
    copy.id = id;
    VANDRA_TRY(
        s.execute("INSERT INTO migrations (id, vm, state, doc, report) VALUES ($1, $2, $3, $4, $5)",
                  {id, m.vm, std::string(toString(m.state)), toJson(copy).dump(), m.report_json}));
    return {};
  }));
  return id;
}

Result<void> Store::updateMigration(const Migration& m) {
  ++generation_;
  VANDRA_TRY_ASSIGN(auto r, db_->execute("UPDATE migrations SET state = $2, doc = $3, report = $4 "
                                         "WHERE id = $1",
                                         {m.id, std::string(toString(m.state)), toJson(m).dump(),
                                          m.report_json}));
  if (r.rows_affected == 0) {
    return fail(ErrorCode::NotFound, "No migration " + std::to_string(m.id));
  }
  return {};
}

namespace {
Result<Migration> migrationFromRow(const db::Row& r) {
  VANDRA_TRY_ASSIGN(auto j, parseDoc(r.text(0), "migration"));
  VANDRA_TRY_ASSIGN(auto m, migrationFromJson(j));
  m.report_json = r.text(1);
  return m;
}
}  // namespace

Result<Migration> Store::migration(int64_t id) {
  VANDRA_TRY_ASSIGN(auto rows,
                    db_->query("SELECT doc, report FROM migrations WHERE id = $1", {id}));
  if (rows.empty()) {
    return fail(ErrorCode::NotFound, "No migration " + std::to_string(id));
  }
  return migrationFromRow(rows.front());
}

Result<std::vector<Migration>> Store::migrations(const std::string& vm, size_t max,
                                                 bool running_only) {
  std::string sql = "SELECT doc, report FROM migrations WHERE ($1 = '' OR vm = $1)";
  if (running_only) {
    sql += " AND state = 'running'";
  }
  sql += " ORDER BY id DESC LIMIT $2";
  VANDRA_TRY_ASSIGN(auto rows, db_->query(sql, {vm, static_cast<int64_t>(max)}));
  std::vector<Migration> out;
  for (const auto& r : rows) {
    VANDRA_TRY_ASSIGN(auto m, migrationFromRow(r));
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::optional<std::string>> Store::setting(const std::string& name) {
  VANDRA_TRY_ASSIGN(auto rows, db_->query("SELECT value FROM settings WHERE name = $1", {name}));
  if (rows.empty()) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(rows.front().text(0));
}

Result<void> Store::putSetting(const std::string& name, const std::string& value) {
  VANDRA_TRY(db_->execute(upsert("settings", "name", {"name", "value"}), {name, value}));
  return {};
}

Result<void> Store::deleteSetting(const std::string& name) {
  VANDRA_TRY(db_->execute("DELETE FROM settings WHERE name = $1", {name}));
  return {};
}

Result<std::vector<std::string>> Store::settingNames(const std::string& prefix) {
  VANDRA_TRY_ASSIGN(auto rows, db_->query("SELECT name FROM settings ORDER BY name"));
  std::vector<std::string> out;
  for (const auto& r : rows) {
    if (r.text(0).rfind(prefix, 0) == 0) {
      out.push_back(r.text(0));
    }
  }
  return out;
}

Result<void> Store::putUser(const ConsoleUser& u) {
  const json doc = {
      {"role", u.role}, {"password_hash", u.password_hash}, {"created_at_ms", u.created_at_ms}};
  VANDRA_TRY(db_->execute(upsert("users", "name", {"name", "doc"}), {u.name, doc.dump()}));
  return {};
}

namespace {
Result<ConsoleUser> userFromRow(const db::Row& r) {
  VANDRA_TRY_ASSIGN(auto j, parseDoc(r.text(1), "user"));
  try {
    return ConsoleUser{r.text(0), j.at("role").get<std::string>(),
                       j.at("password_hash").get<std::string>(),
                       j.value("created_at_ms", int64_t{0})};
  } catch (const json::exception& e) {
    return fail(ErrorCode::Internal, std::string("Stored user: ") + e.what());
  }
}
}  // namespace

Result<std::optional<ConsoleUser>> Store::user(const std::string& name) {
  VANDRA_TRY_ASSIGN(auto rows, db_->query("SELECT name, doc FROM users WHERE name = $1", {name}));
  if (rows.empty()) {
    return std::optional<ConsoleUser>();
  }
  VANDRA_TRY_ASSIGN(auto u, userFromRow(rows.front()));
  return std::optional<ConsoleUser>(std::move(u));
}

Result<std::vector<ConsoleUser>> Store::users() {
  VANDRA_TRY_ASSIGN(auto rows, db_->query("SELECT name, doc FROM users ORDER BY name"));
  std::vector<ConsoleUser> out;
  for (const auto& r : rows) {
    VANDRA_TRY_ASSIGN(auto u, userFromRow(r));
    out.push_back(std::move(u));
  }
  return out;
}

Result<bool> Store::deleteUser(const std::string& name) {
  VANDRA_TRY_ASSIGN(auto r, db_->execute("DELETE FROM users WHERE name = $1", {name}));
  return r.rows_affected > 0;
}

Result<void> Store::addSample(int64_t migration, const MigrationSample& s) {
  const json doc = {{"phase", s.phase},
                    {"mbps", s.mbps},
                    {"dirty_rate_bps", s.dirty_rate_bps},
                    {"wan_bytes", s.wan_bytes}};
  VANDRA_TRY(
      db_->execute(upsert("migration_samples", "migration, t_ms", {"migration", "t_ms", "doc"}),
                   {migration, s.t_ms, doc.dump()}));
  return {};
}

Result<std::vector<MigrationSample>> Store::samples(int64_t migration, size_t max) {
  VANDRA_TRY_ASSIGN(auto rows, db_->query("SELECT t_ms, doc FROM migration_samples WHERE "
                                          "migration = $1 ORDER BY t_ms LIMIT $2",
                                          {migration, static_cast<int64_t>(max)}));
  std::vector<MigrationSample> out;
  for (const auto& r : rows) {
    VANDRA_TRY_ASSIGN(auto j, parseDoc(r.text(1), "migration sample"));
    MigrationSample s;
    s.t_ms = r.integer(0);
    s.phase = j.value("phase", "");
    s.mbps = j.value("mbps", 0.0);
    s.dirty_rate_bps = j.value("dirty_rate_bps", uint64_t{0});
    s.wan_bytes = j.value("wan_bytes", uint64_t{0});
    out.push_back(std::move(s));
  }
  return out;
}

Result<int64_t> Store::appendAudit(const AuditEntry& e) {
  return appendRow(
      *db_, "audit",
      [&](int64_t seq) {
        AuditEntry c = e;
        c.seq = seq;
        return std::vector<Value>{seq, e.at_ms, e.who, e.target, toJson(c).dump()};
      },
      "seq, at_ms, who, target, doc", "$1, $2, $3, $4, $5");
}

Result<std::vector<AuditEntry>> Store::audit(const AuditQuery& q) {
  VANDRA_TRY_ASSIGN(auto rows,
                    db_->query("SELECT doc FROM audit WHERE seq > $1 AND ($2 = '' OR who = $2) "
                               "AND ($3 = '' OR target = $3) ORDER BY seq LIMIT $4",
                               {q.after_seq, q.who, q.target, static_cast<int64_t>(q.max)}));
  std::vector<AuditEntry> out;
  for (const auto& r : rows) {
    VANDRA_TRY_ASSIGN(auto j, parseDoc(r.text(0), "audit entry"));
    AuditEntry e;
    e.seq = j.value("seq", int64_t{0});
    e.at_ms = j.value("at_ms", int64_t{0});
    e.who = j.value("who", "");
    e.role = j.value("role", "");
    e.action = j.value("action", "");
    e.target = j.value("target", "");
    e.status = j.value("status", 0);
    e.result = j.value("result", "");
    e.reason = j.value("reason", "");
    out.push_back(std::move(e));
  }
  return out;
}

Result<int64_t> Store::appendEvent(const ControllerEvent& e) {
  return appendRow(
      *db_, "events",
      [&](int64_t seq) {
        ControllerEvent c = e;
        c.seq = seq;
        return std::vector<Value>{seq, e.at_ms, toJson(c).dump()};
      },
      "seq, at_ms, doc", "$1, $2, $3");
}

Result<std::vector<ControllerEvent>> Store::events(int64_t after_seq, size_t max) {
  VANDRA_TRY_ASSIGN(auto rows, db_->query("SELECT doc FROM events WHERE seq > $1 ORDER BY seq "
                                          "LIMIT $2",
                                          {after_seq, static_cast<int64_t>(max)}));
  std::vector<ControllerEvent> out;
  for (const auto& r : rows) {
    VANDRA_TRY_ASSIGN(auto j, parseDoc(r.text(0), "event"));
    ControllerEvent e;
    e.seq = j.value("seq", int64_t{0});
    e.at_ms = j.value("at_ms", int64_t{0});
    e.kind = j.value("kind", "");
    e.subject = j.value("subject", "");
    e.message = j.value("message", "");
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace vandra::controller
