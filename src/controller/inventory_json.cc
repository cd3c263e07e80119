#include "vandra/controller/inventory_json.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "json_numbers.h"
#include "vandra/common/link_measurement.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::controller {
namespace {

using nlohmann::json;

constexpr size_t kMaxList = 256;   // jurisdictions, networks, members per record
constexpr size_t kMaxText = 4096;  // a reason, an error message

Unexpected bad(const std::string& path, const std::string& what) {
  return fail(ErrorCode::InvalidArgument, path + ": " + what);
}

// An object whose members are all in @p known.
Result<void> objectWith(const json& j, const std::string& path,
                        const std::set<std::string>& known) {
  if (!j.is_object()) {
    return bad(path.empty() ? "body" : path, "must be an object");
  }
  for (const auto& [k, v] : j.items()) {
    if (!known.contains(k)) {
      return bad(path.empty() ? k : path + "." + k, "unknown field");
    }
  }
  return {};
}

Result<std::string> text(const json& j, const std::string& path, size_t max = kMaxText) {
  if (!j.is_string()) {
    return bad(path, "must be a string");
  }
  const auto& s = j.get_ref<const std::string&>();
  if (s.size() > max) {
    return fail(ErrorCode::LimitExceeded, path + ": longer than " + std::to_string(max));
  }
  return s;
}

Result<double> number(const json& j, const std::string& path, double min, double max) {
  if (!j.is_number()) {
    return bad(path, "must be a number");
  }
  const double v = j.get<double>();
  if (!std::isfinite(v) || v < min || v > max) {
    return bad(path, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return v;
}

Result<uint64_t> count(const json& j, const std::string& path, uint64_t max) {
  if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0)) {
    return bad(path, "must be a whole number >= 0");
  }
  const auto v = j.get<uint64_t>();
  if (v > max) {
    return bad(path, "must be at most " + std::to_string(max));
  }
  return v;
}

Result<std::vector<std::string>> names(const json& j, const std::string& path, const char* what) {
  if (!j.is_array()) {
    return bad(path, "must be an array");
  }
  if (j.size() > kMaxList) {
    return fail(ErrorCode::LimitExceeded, path + ": more than " + std::to_string(kMaxList));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < j.size(); ++i) {
    VANDRA_TRY_ASSIGN(auto s, text(j[i], path + "[" + std::to_string(i) + "]", 64));
    // Networks are named by the hypervisor ("VM Network"); the rest appear in URLs.
    VANDRA_TRY(std::string_view(what) == "Network" ? checkNetworkName(s) : checkName(s, what));
    out.push_back(std::move(s));
  }
  return out;
}

Result<placement::Price> price(const json& j, const std::string& path) {
  VANDRA_TRY(objectWith(j, path, {"currency", "vcpu_hour", "memory_gib_hour"}));
  placement::Price p;
  if (j.contains("currency")) {
    VANDRA_TRY_ASSIGN(p.currency, text(j["currency"], path + ".currency", 64));
    if (p.currency.size() != 3) {
      return bad(path + ".currency", "must be an ISO 4217 code such as EUR");
    }
  }
  if (j.contains("vcpu_hour")) {
    VANDRA_TRY_ASSIGN(p.vcpu_hour, number(j["vcpu_hour"], path + ".vcpu_hour", 0, 1e6));
  }
  if (j.contains("memory_gib_hour")) {
    VANDRA_TRY_ASSIGN(p.memory_gib_hour,
                      number(j["memory_gib_hour"], path + ".memory_gib_hour", 0, 1e6));
  }
  return p;
}

Result<WaterMarks> waterMarks(const json& j, const std::string& path) {
  VANDRA_TRY(objectWith(j, path, {"high", "low"}));
  WaterMarks w;
  if (j.contains("high")) {
    VANDRA_TRY_ASSIGN(w.high, number(j["high"], path + ".high", 0.01, 1.0));
  }
  if (j.contains("low")) {
    VANDRA_TRY_ASSIGN(w.low, number(j["low"], path + ".low", 0.0, 1.0));
  }
  if (w.low >= w.high) {
    return bad(path, "low (" + std::to_string(w.low) + ") must be below high (" +
                         std::to_string(w.high) + ")");
  }
  return w;
}

template <class E, class F>
Result<E> enumOf(const json& j, const std::string& path, F from) {
  VANDRA_TRY_ASSIGN(auto s, text(j, path, 32));
  return from(s);
}

json optionalNumber(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

}  // namespace

Result<void> checkName(const std::string& name, const char* what) {
  const bool ok = !name.empty() && name.size() <= 64 && name[0] != '.' && name[0] != '-' &&
                  name.find_first_not_of(
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789._-") == std::string::npos;
  if (!ok) {
    return fail(ErrorCode::InvalidArgument,
                std::string(what) + " name '" + name.substr(0, 80) +
                    "' must be 1..64 of A-Z a-z 0-9 . _ - (not starting with . or -)");
  }
  return {};
}

Result<void> checkNetworkName(const std::string& name) {
  const bool printable =
      std::all_of(name.begin(), name.end(), [](char c) { return c >= ' ' && c <= '~'; });
  if (name.empty() || name.size() > 64 || !printable || name.front() == ' ' || name.back() == ' ') {
    return fail(ErrorCode::InvalidArgument,
                "Network name '" + name.substr(0, 80) +
                    "' must be 1..64 printable ASCII characters, no leading or trailing space");
  }
  return {};
}

std::string_view toString(VmState s) {
  switch (s) {
    case VmState::Defined:
      return "defined";
    case VmState::Running:
      return "running";
    case VmState::Stopped:
      return "stopped";
    case VmState::Migrating:
      return "migrating";
    case VmState::Missing:
      return "missing";
    case VmState::Failed:
      return "failed";
  }
  return "failed";
}

VmState vmStateFromString(std::string_view s) {
  if (s == "running" || s == "paused") {
    return VmState::Running;
  }
  if (s == "stopped" || s == "stopping") {
    return VmState::Stopped;
  }
  if (s == "migrating" || s == "migrating_out" || s == "incoming") {
    return VmState::Migrating;
  }
  if (s == "missing") {
    return VmState::Missing;
  }
  if (s == "failed" || s == "crashed") {
    return VmState::Failed;
  }
  return VmState::Defined;  // "created", "defined", "starting": not running yet
}

std::string_view toString(MigrationState s) {
  switch (s) {
    case MigrationState::Running:
      return "running";
    case MigrationState::Done:
      return "done";
    case MigrationState::Failed:
      return "failed";
    case MigrationState::Cancelled:
      return "cancelled";
  }
  return "failed";
}

MigrationState migrationStateFromString(std::string_view s) {
  if (s == "running") {
    return MigrationState::Running;
  }
  if (s == "done") {
    return MigrationState::Done;
  }
  if (s == "cancelled") {
    return MigrationState::Cancelled;
  }
  return MigrationState::Failed;
}

std::string_view toString(MoveReason r) {
  switch (r) {
    case MoveReason::Operator:
      return "operator";
    case MoveReason::Wander:
      return "wander";
    case MoveReason::ComeHome:
      return "come_home";
    case MoveReason::Drain:
      return "drain";
    case MoveReason::Sla:
      return "sla";
  }
  return "operator";
}

std::optional<MoveReason> moveReasonFromString(std::string_view s) {
  for (auto r : {MoveReason::Operator, MoveReason::Wander, MoveReason::ComeHome, MoveReason::Drain,
                 MoveReason::Sla}) {
    if (toString(r) == s) {
      return r;
    }
  }
  return std::nullopt;
}

json toJson(const Site& s) {
  return {{"name", s.name},
          {"jurisdictions", s.jurisdictions},
          {"vcpu_overcommit", s.vcpu_overcommit},
          {"price",
           {{"currency", s.price.currency},
            {"vcpu_hour", s.price.vcpu_hour},
            {"memory_gib_hour", s.price.memory_gib_hour}}},
          {"water_marks", {{"high", s.water_marks.high}, {"low", s.water_marks.low}}},
          {"networks", s.networks},
          {"default_network", s.default_network}};
}

json toJson(const Host& h) {
  return {
      {"name", h.name},
      {"site", h.site},
      {"endpoint", h.endpoint},
      {"capacity", {{"vcpus", h.vcpus}, {"memory_mib", h.memory_mib}, {"disk_gib", h.disk_gib}}},
      {"used",
       {{"vcpus", h.used_vcpus}, {"memory_mib", h.used_memory_mib}, {"disk_gib", h.used_disk_gib}}},
      {"reachable", h.reachable},
      {"last_seen_ms", h.last_seen_ms},
      {"last_error", h.last_error}};
}

json toJson(const Link& l) {
  return {{"a", l.a},
          {"b", l.b},
          {"rtt_ms", l.rtt_ms},
          {"mbps", l.mbps},
          {"measured_at_ms", l.measured_at_ms},
          {"rtt_source", l.rtt_source},
          {"mbps_source", l.mbps_source},
          {"mbps_method", l.mbps_method},
          {"configured_rtt_ms", l.configured_rtt_ms},
          {"configured_mbps", l.configured_mbps},
          {"rtt_measured_at_ms", l.rtt_measured_at_ms},
          {"mbps_measured_at_ms", l.mbps_measured_at_ms}};
}

json toJson(const Location& l) {
  return {{"name", l.name}, {"rtt_ms", l.rtt_ms}};
}

json toJson(const NetworkMapping& m) {
  return {{"name", m.name}, {"members", m.members}};
}

json toJson(const Vm& v) {
  return {{"name", v.name},
          {"site", v.site},
          {"host", v.host},
          {"home_site", v.home_site},
          {"state", toString(v.state)},
          {"vcpus", v.vcpus},
          {"memory_mib", v.memory_mib},
          {"disk_gib", v.disk_gib},
          {"sla", ovf::toJson(v.sla)},
          {"networks", v.networks},
          {"placed_at_ms", v.placed_at_ms},
          {"last_moved_at_ms", v.last_moved_at_ms},
          {"dirty_rate_mbps", optionalNumber(v.dirty_rate_mbps)}};
}

json toJson(const Migration& m) {
  json j{{"id", m.id},
         {"vm", m.vm},
         {"from", m.from_site},
         {"to", m.to_site},
         {"agent_migration_id", m.agent_migration_id},
         {"state", toString(m.state)},
         {"reason", toString(m.reason)},
         {"why", m.why},
         {"requested_by", m.requested_by},
         {"epoch", m.epoch},
         {"started_at_ms", m.started_at_ms},
         {"finished_at_ms", m.finished_at_ms},
         {"downtime_ms", optionalNumber(m.downtime_ms)},
         {"budget_ms", m.budget_ms ? json(*m.budget_ms) : json(nullptr)},
         {"within_budget", m.within_budget ? json(*m.within_budget) : json(nullptr)},
         {"error", m.error},
         {"networks", m.networks}};
  return j;
}

json toJson(const AuditEntry& e) {
  return {{"seq", e.seq},       {"at_ms", e.at_ms},   {"who", e.who},
          {"role", e.role},     {"action", e.action}, {"target", e.target},
          {"status", e.status}, {"result", e.result}, {"reason", e.reason}};
}

json toJson(const ControllerEvent& e) {
  return {{"seq", e.seq},
          {"at_ms", e.at_ms},
          {"kind", e.kind},
          {"subject", e.subject},
          {"message", e.message}};
}

Result<Site> siteFromJson(const json& j) {
  VANDRA_TRY(objectWith(j, "site",
                        {"name", "jurisdictions", "vcpu_overcommit", "price", "water_marks",
                         "networks", "default_network"}));
  Site s;
  if (!j.contains("name")) {
    return bad("site.name", "missing");
  }
  VANDRA_TRY_ASSIGN(s.name, text(j["name"], "site.name", 64));
  VANDRA_TRY(checkName(s.name, "Site"));
  VANDRA_TRY(patchSite(s, [&] {
    json p = j;
    p.erase("name");
    return p;
  }()));
  return s;
}

Result<void> patchSite(Site& site, const json& patch) {
  VANDRA_TRY(objectWith(
      patch, "",
      {"jurisdictions", "vcpu_overcommit", "price", "water_marks", "networks", "default_network"}));
  Site s = site;  // all or nothing
  if (patch.contains("jurisdictions")) {
    VANDRA_TRY_ASSIGN(s.jurisdictions,
                      names(patch["jurisdictions"], "jurisdictions", "Jurisdiction"));
  }
  if (patch.contains("vcpu_overcommit")) {
    VANDRA_TRY_ASSIGN(s.vcpu_overcommit,
                      number(patch["vcpu_overcommit"], "vcpu_overcommit", 1.0, 64.0));
  }
  if (patch.contains("price")) {
    VANDRA_TRY_ASSIGN(s.price, price(patch["price"], "price"));
  }
  if (patch.contains("water_marks")) {
    VANDRA_TRY_ASSIGN(s.water_marks, waterMarks(patch["water_marks"], "water_marks"));
  }
  if (patch.contains("networks")) {
    VANDRA_TRY_ASSIGN(s.networks, names(patch["networks"], "networks", "Network"));
  }
  if (patch.contains("default_network")) {
    VANDRA_TRY_ASSIGN(s.default_network, text(patch["default_network"], "default_network", 64));
    if (!s.default_network.empty()) {
      VANDRA_TRY(checkNetworkName(s.default_network));
    }
  }
  if (!s.default_network.empty() &&
      std::find(s.networks.begin(), s.networks.end(), s.default_network) == s.networks.end()) {
    return bad("default_network", "'" + s.default_network + "' is not one of the site's networks");
  }
  site = std::move(s);
  return {};
}

Result<Host> hostFromJson(const json& j) {
  try {
    Host h;
    h.name = j.at("name").get<std::string>();
    h.site = j.at("site").get<std::string>();
    h.endpoint = j.value("endpoint", "");
    const auto& c = j.at("capacity");
    h.vcpus = internal::whole<uint32_t>(c.at("vcpus"));
    h.memory_mib = internal::whole<uint64_t>(c.at("memory_mib"));
    h.disk_gib = internal::whole<uint64_t>(c.at("disk_gib"));
    const auto& u = j.at("used");
    h.used_vcpus = internal::whole<uint32_t>(u.at("vcpus"));
    h.used_memory_mib = internal::whole<uint64_t>(u.at("memory_mib"));
    h.used_disk_gib = internal::whole<uint64_t>(u.at("disk_gib"));
    h.reachable = j.value("reachable", false);
    h.last_seen_ms = internal::wholeOr<int64_t>(j, "last_seen_ms", 0);
    h.last_error = j.value("last_error", "");
    return h;
  } catch (const std::exception& e) {
    return bad("host", e.what());
  }
}

Result<Link> linkFromJson(const json& j) {
  VANDRA_TRY(objectWith(
      j, "link",
      {"a", "b", "rtt_ms", "mbps", "measured_at_ms", "rtt_source", "mbps_source", "mbps_method",
       "configured_rtt_ms", "configured_mbps", "rtt_measured_at_ms", "mbps_measured_at_ms"}));
  if (!j.contains("a") || !j.contains("b") || !j.contains("rtt_ms") || !j.contains("mbps")) {
    return bad("link", "needs a, b, rtt_ms and mbps");
  }
  Link l;
  VANDRA_TRY_ASSIGN(l.a, text(j["a"], "link.a", 64));
  VANDRA_TRY_ASSIGN(l.b, text(j["b"], "link.b", 64));
  VANDRA_TRY(checkName(l.a, "Site"));
  VANDRA_TRY(checkName(l.b, "Site"));
  if (l.a == l.b) {
    return bad("link", "joins site '" + l.a + "' to itself");
  }
  VANDRA_TRY_ASSIGN(l.rtt_ms, number(j["rtt_ms"], "link.rtt_ms", 0, 1e5));
  VANDRA_TRY_ASSIGN(l.mbps, number(j["mbps"], "link.mbps", 0, 1e7));
  if (j.contains("measured_at_ms")) {
    VANDRA_TRY_ASSIGN(auto at, count(j["measured_at_ms"], "link.measured_at_ms", INT64_MAX));
    l.measured_at_ms = static_cast<int64_t>(at);
  }
  // Where the values come from (a document written before links were measured has none:
  // configured, and the values in use are the configured ones).
  for (auto [key, out] :
       {std::pair{"rtt_source", &l.rtt_source}, {"mbps_source", &l.mbps_source}}) {
    if (j.contains(key)) {
      VANDRA_TRY_ASSIGN(*out, text(j[key], std::string("link.") + key, 16));
      if (*out != kConfigured && *out != kMeasured) {
        return bad("link", std::string(key) + " must be configured or measured");
      }
    }
  }
  if (j.contains("mbps_method")) {
    VANDRA_TRY_ASSIGN(l.mbps_method, text(j["mbps_method"], "link.mbps_method", 16));
    if (!l.mbps_method.empty() && !throughputMethodFromString(l.mbps_method)) {
      return bad("link", "mbps_method must be migration, probe or empty");
    }
  }
  l.configured_rtt_ms = l.rtt_ms;
  l.configured_mbps = l.mbps;
  if (j.contains("configured_rtt_ms")) {
    VANDRA_TRY_ASSIGN(l.configured_rtt_ms,
                      number(j["configured_rtt_ms"], "link.configured_rtt_ms", 0, 1e5));
  }
  if (j.contains("configured_mbps")) {
    VANDRA_TRY_ASSIGN(l.configured_mbps,
                      number(j["configured_mbps"], "link.configured_mbps", 0, 1e7));
  }
  for (auto [key, out] : {std::pair{"rtt_measured_at_ms", &l.rtt_measured_at_ms},
                          {"mbps_measured_at_ms", &l.mbps_measured_at_ms}}) {
    if (j.contains(key)) {
      VANDRA_TRY_ASSIGN(auto at, count(j[key], std::string("link.") + key, INT64_MAX));
      *out = static_cast<int64_t>(at);
    }
  }
  return l;
}

Result<Location> locationFromJson(const json& j) {
  VANDRA_TRY(objectWith(j, "location", {"name", "rtt_ms"}));
  if (!j.contains("name") || !j.contains("rtt_ms") || !j["rtt_ms"].is_object()) {
    return bad("location", "needs name and rtt_ms (an object: site -> ms)");
  }
  Location l;
  VANDRA_TRY_ASSIGN(l.name, text(j["name"], "location.name", 64));
  VANDRA_TRY(checkName(l.name, "Location"));
  if (j["rtt_ms"].size() > kMaxList) {
    return fail(ErrorCode::LimitExceeded, "location.rtt_ms: too many sites");
  }
  for (const auto& [site, ms] : j["rtt_ms"].items()) {
    VANDRA_TRY(checkName(site, "Site"));
    VANDRA_TRY_ASSIGN(l.rtt_ms[site], number(ms, "location.rtt_ms." + site, 0, 1e5));
  }
  return l;
}

Result<NetworkMapping> networkMappingFromJson(const json& j) {
  VANDRA_TRY(objectWith(j, "network", {"name", "members"}));
  if (!j.contains("name") || !j.contains("members") || !j["members"].is_object()) {
    return bad("network", "needs name and members (an object: site -> that site's network)");
  }
  NetworkMapping m;
  VANDRA_TRY_ASSIGN(m.name, text(j["name"], "network.name", 64));
  VANDRA_TRY(checkName(m.name, "Network"));
  if (j["members"].size() > kMaxList) {
    return fail(ErrorCode::LimitExceeded, "network.members: too many sites");
  }
  for (const auto& [site, net] : j["members"].items()) {
    VANDRA_TRY(checkName(site, "Site"));
    VANDRA_TRY_ASSIGN(auto n, text(net, "network.members." + site, 64));
    VANDRA_TRY(checkNetworkName(n));
    m.members[site] = n;
  }
  return m;
}

Result<Vm> vmFromJson(const json& j) {
  try {
    Vm v;
    v.name = j.at("name").get<std::string>();
    v.site = j.value("site", "");
    v.host = j.value("host", "");
    v.home_site = j.value("home_site", "");
    v.state = vmStateFromString(j.value("state", "defined"));
    v.vcpus = internal::wholeOr<uint32_t>(j, "vcpus", 0);
    v.memory_mib = internal::wholeOr<uint64_t>(j, "memory_mib", 0);
    v.disk_gib = internal::wholeOr<uint64_t>(j, "disk_gib", 0);
    if (j.contains("sla")) {
      VANDRA_TRY_ASSIGN(v.sla, ovf::slaFromJson(j["sla"]));
    }
    v.networks = j.value("networks", std::vector<std::string>{});
    v.placed_at_ms = internal::wholeOr<int64_t>(j, "placed_at_ms", 0);
    v.last_moved_at_ms = internal::wholeOr<int64_t>(j, "last_moved_at_ms", 0);
    if (j.contains("dirty_rate_mbps") && j["dirty_rate_mbps"].is_number()) {
      v.dirty_rate_mbps = j["dirty_rate_mbps"].get<double>();
    }
    return v;
  } catch (const std::exception& e) {
    return bad("vm", e.what());
  }
}

Result<Migration> migrationFromJson(const json& j) {
  try {
    Migration m;
    m.id = internal::whole<int64_t>(j.at("id"));
    m.vm = j.at("vm").get<std::string>();
    m.from_site = j.value("from", "");
    m.to_site = j.value("to", "");
    m.agent_migration_id = j.value("agent_migration_id", "");
    m.state = migrationStateFromString(j.value("state", "failed"));
    m.reason = moveReasonFromString(j.value("reason", "operator")).value_or(MoveReason::Operator);
    m.why = j.value("why", "");
    m.requested_by = j.value("requested_by", "");
    m.epoch = internal::wholeOr<int64_t>(j, "epoch", 0);
    m.started_at_ms = internal::wholeOr<int64_t>(j, "started_at_ms", 0);
    m.finished_at_ms = internal::wholeOr<int64_t>(j, "finished_at_ms", 0);
    if (j.contains("downtime_ms") && j["downtime_ms"].is_number()) {
      m.downtime_ms = j["downtime_ms"].get<double>();
    }
    if (j.contains("budget_ms") && j["budget_ms"].is_number()) {
      m.budget_ms = internal::whole<uint32_t>(j["budget_ms"]);
    }
    if (j.contains("within_budget") && j["within_budget"].is_boolean()) {
      m.within_budget = j["within_budget"].get<bool>();
    }
    m.error = j.value("error", "");
    if (m.error.size() > kMaxText) {
      m.error.resize(kMaxText);
    }
    if (j.contains("networks")) {  // absent in a record from before the field
      const json& n = j["networks"];
      if (!n.is_object() || n.size() > 64) {
        return bad("migration", "networks must be an object of at most 64 names");
      }
      for (const auto& [from, to] : n.items()) {
        VANDRA_TRY(checkNetworkName(from));
        VANDRA_TRY(checkNetworkName(to.get<std::string>()));
        m.networks[from] = to.get<std::string>();
      }
    }
    return m;
  } catch (const std::exception& e) {
    return bad("migration", e.what());
  }
}

}  // namespace vandra::controller
