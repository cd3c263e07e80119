// Control-message codec. Hostile text is bounded before nlohmann::json sees it (size, then a
// string-aware scan of the nesting depth), parsed without exceptions, refused on duplicate
// keys, and read member by member: every member is required, every other member is refused.
// The encoder runs the same decoder over its own output, so both sides apply one rule set.
#include "vandra/tunnel/control.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <set>
#include <type_traits>

#include "wire.h"

namespace vandra::tunnel {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, std::variant_size_v<ControlMessage>> kTypeNames = {
    "preflight", "preflight_result", "prepare",   "prepared", "switchover", "started",
    "confirm",   "confirmed",        "abort",     "aborted",  "progress",   "query",
    "status",    "recover",          "recovering"};

constexpr size_t kMaxJurisdiction = 64;
constexpr size_t kMaxQemuName = 128;
constexpr uint64_t kMaxPid = 0x7FFFFFFF;

Unexpected bad(std::string what) {
  return fail(ErrorCode::TunnelProtocol, std::move(what));
}

std::string dumpCompact(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Nesting depth of JSON text, lexing strings exactly as a JSON lexer does, so that for every
// prefix the parser accepts the count equals the parser's depth. Linear, no allocation.
Result<void> checkDepth(std::string_view text) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxControlDepth) {
        return fail(ErrorCode::LimitExceeded, "Control message nests arrays/objects deeper than " +
                                                  std::to_string(kMaxControlDepth) + " levels");
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return {};
}

// min(depth of @p j, limit + 1): the recursion never goes more than limit + 1 levels down.
size_t depthOf(const json& j, size_t limit) {
  if (!j.is_structured()) {
    return 0;
  }
  if (limit == 0) {
    return 1;
  }
  size_t deepest = 0;
  for (const auto& child : j) {
    const size_t d = depthOf(child, limit - 1);
    deepest = d > deepest ? d : deepest;
    if (deepest == limit) {
      break;  // already beyond the limit
    }
  }
  return deepest + 1;
}

// Parses one JSON value, refusing duplicate object keys (nlohmann would keep the last one).
Result<json> parseStrict(std::string_view text) {
  std::vector<std::set<std::string>> keys;  // one set per open object or array
  std::string duplicate;
  bool has_duplicate = false;
  json::parser_callback_t cb = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!keys.empty()) {
          keys.pop_back();
        }
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() &&
            !keys.back().insert(parsed.get_ref<const std::string&>()).second && !has_duplicate) {
          has_duplicate = true;
          duplicate = parsed.get_ref<const std::string&>();
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  json j = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return bad("Control message is not valid JSON");
  }
  if (has_duplicate) {
    return bad("Control message has the key '" + wire::printable(duplicate) + "' twice");
  }
  return j;
}

std::string jsonType(const json& j) {
  if (j.is_number_float()) {
    return "a non-integer number";
  }
  if (j.is_number_integer() && !j.is_number_unsigned() && j.get<int64_t>() < 0) {
    return "a negative number";
  }
  return std::string("a ") + j.type_name();
}

// Reads the members of one object; finish() refuses the members nobody asked for.
class Members {
 public:
  Members(const json& obj, std::string context) : obj_(obj), ctx_(std::move(context)) {}

  Result<const json*> get(const char* key) {
    const auto it = obj_.find(key);
    if (it == obj_.end()) {
      return bad(ctx_ + ": member '" + key + "' is missing");
    }
    used_.insert(key);
    return &*it;
  }

  Result<std::string> string(const char* key) {
    VANDRA_TRY_ASSIGN(const json* v, get(key));
    if (!v->is_string()) {
      return bad(ctx_ + ": member '" + key + "' must be a string, not " + jsonType(*v));
    }
    return v->get<std::string>();
  }

  Result<std::string> id(const char* key) {
    VANDRA_TRY_ASSIGN(std::string s, string(key));
    if (!wire::isId(s)) {
      return bad(ctx_ + ": member '" + key + "' is '" + wire::printable(s) +
                 "', not an id [A-Za-z0-9_.-]{1,64}");
    }
    return s;
  }

  Result<std::string> site(const char* key) {
    VANDRA_TRY_ASSIGN(std::string s, string(key));
    if (!wire::isSiteName(s)) {
      return bad(ctx_ + ": member '" + key + "' is '" + wire::printable(s) +
                 "', not a site name [a-z0-9-]{1,64}");
    }
    return s;
  }

  Result<std::string> text(const char* key, size_t min, size_t max) {
    VANDRA_TRY_ASSIGN(std::string s, string(key));
    VANDRA_TRY(checkText(ctx_ + ": member '" + key + "'", s, min, max));
    return s;
  }

  Result<std::string> qemuName(const char* key) {
    VANDRA_TRY_ASSIGN(std::string s, string(key));
    bool ok = !s.empty() && s.size() <= kMaxQemuName;
    for (const char c : s) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == ',' || c == '+' || c == '=' || c == '-');
    }
    if (!ok) {
      return bad(ctx_ + ": member '" + key + "' is '" + wire::printable(s) +
                 "', not [A-Za-z0-9_.:,+=-]{1,128}");
    }
    return s;
  }

  Result<std::string> digest(const char* key, bool allow_empty) {
    VANDRA_TRY_ASSIGN(std::string s, string(key));
    VANDRA_TRY(checkDigest(ctx_ + ": member '" + key + "'", s, allow_empty));
    return s;
  }

  Result<uint64_t> u64(const char* key, uint64_t min, uint64_t max) {
    VANDRA_TRY_ASSIGN(const json* v, get(key));
    const bool non_negative_int =
        v->is_number_unsigned() || (v->is_number_integer() && v->get<int64_t>() >= 0);
    if (!non_negative_int) {
      return bad(ctx_ + ": member '" + key + "' must be a non-negative integer, not " +
                 jsonType(*v));
    }
    const auto n =
        v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
    if (n < min || n > max) {
      return bad(ctx_ + ": member '" + key + "' must be " + std::to_string(min) + ".." +
                 std::to_string(max) + ", not " + std::to_string(n));
    }
    return n;
  }

  Result<uint32_t> u32(const char* key, uint32_t min, uint32_t max) {
    VANDRA_TRY_ASSIGN(const uint64_t n, u64(key, min, max));
    return static_cast<uint32_t>(n);
  }

  Result<bool> boolean(const char* key) {
    VANDRA_TRY_ASSIGN(const json* v, get(key));
    if (!v->is_boolean()) {
      return bad(ctx_ + ": member '" + key + "' must be true or false, not " + jsonType(*v));
    }
    return v->get<bool>();
  }

  Result<MigrationPhase> phase(const char* key) {
    VANDRA_TRY_ASSIGN(const std::string s, string(key));
    const auto p = migrationPhaseFromString(s);
    if (p && static_cast<int>(*p) >= static_cast<int>(MigrationPhase::Preflight) &&
        static_cast<int>(*p) <= static_cast<int>(MigrationPhase::Confirm)) {
      return *p;
    }
    return bad(ctx_ + ": member '" + key + "' is '" + wire::printable(s) +
               "', not one of preflight, prepare_target, mirror_disks, precopy_ram, "
               "switchover, confirm");
  }

  /// Whether the optional member @p key is present (a later read of it marks it used).
  bool has(const char* key) const { return obj_.contains(key); }

  Result<json> object(const char* key, size_t max_bytes) {
    VANDRA_TRY_ASSIGN(const json* v, get(key));
    if (!v->is_object()) {
      return bad(ctx_ + ": member '" + key + "' must be an object, not " + jsonType(*v));
    }
    const size_t size = dumpCompact(*v).size();
    if (size > max_bytes) {
      return fail(ErrorCode::LimitExceeded,
                  ctx_ + ": member '" + key + "' is " + std::to_string(size) +
                      " bytes of JSON, the limit is " + std::to_string(max_bytes));
    }
    return *v;
  }

  /// The array @p key (0..kMaxControlList elements), each read by @p read(element, context).
  template <class F>
  auto list(const char* key, F&& read) -> Result<
      std::vector<typename std::invoke_result_t<F, const json&, std::string>::value_type>> {
    using T = typename std::invoke_result_t<F, const json&, std::string>::value_type;
    VANDRA_TRY_ASSIGN(const json* v, get(key));
    if (!v->is_array()) {
      return bad(ctx_ + ": member '" + key + "' must be an array, not " + jsonType(*v));
    }
    if (v->size() > kMaxControlList) {
      return bad(ctx_ + ": member '" + key + "' has " + std::to_string(v->size()) +
                 " elements, the limit is " + std::to_string(kMaxControlList));
    }
    std::vector<T> out;
    out.reserve(v->size());
    for (size_t i = 0; i < v->size(); ++i) {
      VANDRA_TRY_ASSIGN(T t, read((*v)[i], ctx_ + ": " + key + "[" + std::to_string(i) + "]"));
      out.push_back(std::move(t));
    }
    return out;
  }

  Result<void> finish() const {
    for (const auto& [k, v] : obj_.items()) {
      if (used_.count(k) == 0) {
        return bad(ctx_ + ": unknown member '" + wire::printable(k) + "'");
      }
    }
    return {};
  }

  static Result<void> checkText(const std::string& what, const std::string& s, size_t min,
                                size_t max) {
    if (s.size() < min || s.size() > max) {
      return bad(what + " must be " + std::to_string(min) + ".." + std::to_string(max) +
                 " bytes, not " + std::to_string(s.size()));
    }
    if (!wire::isCleanUtf8(s)) {
      return bad(what + " '" + wire::printable(s) + "' contains control characters");
    }
    return {};
  }

  static Result<void> checkDigest(const std::string& what, const std::string& s, bool allow_empty) {
    bool ok = s.size() == 64 || (allow_empty && s.empty());
    for (const char c : s) {
      ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    }
    if (!ok) {
      return bad(what + " is '" + wire::printable(s) + "', not " + (allow_empty ? "\"\" or " : "") +
                 "a sha256 digest (64 lowercase hex digits)");
    }
    return {};
  }

 private:
  const json& obj_;
  std::string ctx_;
  std::set<std::string> used_;
};

Result<Members> elementObject(const json& e, const std::string& ctx) {
  if (!e.is_object()) {
    return bad(ctx + " must be an object, not " + jsonType(e));
  }
  return Members(e, ctx);
}

Result<std::string> textElement(const json& e, const std::string& ctx, size_t max) {
  if (!e.is_string()) {
    return bad(ctx + " must be a string, not " + jsonType(e));
  }
  std::string s = e.get<std::string>();
  VANDRA_TRY(Members::checkText(ctx, s, 1, max));
  return s;
}

// ---- one reader per message type ---------------------------------------------------------

// preflight.network_map: {source network: target network}, each key one of the networks the
// message offers (a rename of anything else would be the peer's invention).
Result<std::map<std::string, std::string>> readNetworkMap(Members& m,
                                                          const std::vector<std::string>& offered) {
  const std::string ctx = "Control message preflight: network_map";
  VANDRA_TRY_ASSIGN(const json* v, m.get("network_map"));
  if (!v->is_object()) {
    return bad(ctx + " must be an object, not " + jsonType(*v));
  }
  if (v->size() > kMaxControlList) {
    return bad(ctx + " has " + std::to_string(v->size()) + " entries, the limit is " +
               std::to_string(kMaxControlList));
  }
  std::map<std::string, std::string> out;
  for (const auto& [from, to] : v->items()) {
    VANDRA_TRY(Members::checkText(ctx + " key", from, 1, kMaxNetworkName));
    VANDRA_TRY_ASSIGN(std::string name, textElement(to, ctx + "['" + from + "']", kMaxNetworkName));
    if (std::find(offered.begin(), offered.end(), from) == offered.end()) {
      return bad(ctx + " renames '" + from + "', which is not one of the VM's networks");
    }
    out.emplace(from, std::move(name));
  }
  return out;
}

Result<Preflight> readPreflight(Members& m) {
  Preflight p;
  VANDRA_TRY_ASSIGN(p.migration_id, m.id("migration_id"));
  VANDRA_TRY_ASSIGN(p.vm_id, m.id("vm_id"));
  VANDRA_TRY_ASSIGN(p.spec, m.object("spec", kMaxControlSpec));
  VANDRA_TRY_ASSIGN(p.source_site, m.site("source_site"));
  VANDRA_TRY_ASSIGN(p.sla, m.object("sla", kMaxControlSla));
  VANDRA_TRY_ASSIGN(
      p.disks, m.list("disks", [](const json& e, std::string ctx) -> Result<PreflightDisk> {
        VANDRA_TRY_ASSIGN(Members d, elementObject(e, ctx));
        PreflightDisk disk;
        VANDRA_TRY_ASSIGN(disk.id, d.id("id"));
        VANDRA_TRY_ASSIGN(disk.virtual_size, d.u64("virtual_size", 1, UINT64_MAX));
        VANDRA_TRY_ASSIGN(disk.base_digest, d.digest("base_digest", /*allow_empty=*/true));
        VANDRA_TRY(d.finish());
        return disk;
      }));
  std::set<std::string> ids;
  for (const auto& d : p.disks) {
    if (!ids.insert(d.id).second) {
      return bad("Control message preflight: disk id '" + d.id + "' appears twice");
    }
  }
  VANDRA_TRY_ASSIGN(p.machine_type, m.qemuName("machine_type"));
  VANDRA_TRY_ASSIGN(p.cpu_model, m.qemuName("cpu_model"));
  VANDRA_TRY_ASSIGN(p.networks, m.list("networks", [](const json& e, std::string ctx) {
    return textElement(e, ctx, kMaxControlText);
  }));
  VANDRA_TRY_ASSIGN(p.memory_mib, m.u64("memory_mib", 1, UINT64_MAX));
  VANDRA_TRY_ASSIGN(p.vcpus, m.u32("vcpus", 1, kMaxVcpus));
  if (m.has("network_map")) {
    VANDRA_TRY_ASSIGN(p.network_map, readNetworkMap(m, p.networks));
  }
  return p;
}

Result<PreflightResult> readPreflightResult(Members& m) {
  PreflightResult r;
  VANDRA_TRY_ASSIGN(r.migration_id, m.id("migration_id"));
  VANDRA_TRY_ASSIGN(r.ok, m.boolean("ok"));
  VANDRA_TRY_ASSIGN(r.reasons, m.list("reasons", [](const json& e, std::string ctx) {
    return textElement(e, ctx, kMaxControlText);
  }));
  if (r.ok != r.reasons.empty()) {
    return bad(std::string("Control message preflight_result: ") +
               (r.ok ? "ok is true but reasons are given" : "ok is false but no reason is given"));
  }
  VANDRA_TRY_ASSIGN(r.target_site, m.site("target_site"));
  VANDRA_TRY_ASSIGN(r.jurisdiction, m.text("jurisdiction", 0, kMaxJurisdiction));
  VANDRA_TRY_ASSIGN(const json* free, m.get("free"));
  {
    VANDRA_TRY_ASSIGN(Members f, elementObject(*free, "Control message preflight_result: free"));
    VANDRA_TRY_ASSIGN(r.free.vcpus, f.u32("vcpus", 0, UINT32_MAX));
    VANDRA_TRY_ASSIGN(r.free.memory_mib, f.u64("memory_mib", 0, UINT64_MAX));
    VANDRA_TRY_ASSIGN(r.free.disk_bytes, f.u64("disk_bytes", 0, UINT64_MAX));
    VANDRA_TRY(f.finish());
  }
  VANDRA_TRY_ASSIGN(
      r.bases_present,
      m.list("bases_present", [](const json& e, std::string ctx) -> Result<std::string> {
        if (!e.is_string()) {
          return bad(ctx + " must be a string, not " + jsonType(e));
        }
        std::string s = e.get<std::string>();
        VANDRA_TRY(Members::checkDigest(ctx, s, /*allow_empty=*/false));
        return s;
      }));
  return r;
}

Result<Prepared> readPrepared(Members& m) {
  Prepared p;
  VANDRA_TRY_ASSIGN(p.migration_id, m.id("migration_id"));
  VANDRA_TRY_ASSIGN(p.exports,
                    m.list("exports", [](const json& e, std::string ctx) -> Result<NbdExport> {
                      VANDRA_TRY_ASSIGN(Members x, elementObject(e, ctx));
                      NbdExport ex;
                      VANDRA_TRY_ASSIGN(ex.disk_id, x.id("disk_id"));
                      VANDRA_TRY_ASSIGN(ex.export_name, x.id("export_name"));
                      VANDRA_TRY(x.finish());
                      return ex;
                    }));
  std::set<std::string> disks;
  std::set<std::string> names;
  for (const auto& ex : p.exports) {
    if (!disks.insert(ex.disk_id).second || !names.insert(ex.export_name).second) {
      return bad("Control message prepared: disk id '" + ex.disk_id + "' or export name '" +
                 ex.export_name + "' appears twice");
    }
  }
  VANDRA_TRY_ASSIGN(p.ready, m.boolean("ready"));
  return p;
}

Result<Started> readStarted(Members& m) {
  Started s;
  VANDRA_TRY_ASSIGN(s.migration_id, m.id("migration_id"));
  VANDRA_TRY_ASSIGN(s.target_pid, m.u64("target_pid", 1, kMaxPid));
  return s;
}

Result<Abort> readAbort(Members& m) {
  Abort a;
  VANDRA_TRY_ASSIGN(a.migration_id, m.id("migration_id"));
  VANDRA_TRY_ASSIGN(a.reason, m.text("reason", 1, kMaxAbortReason));
  VANDRA_TRY_ASSIGN(a.phase, m.phase("phase"));
  return a;
}

Result<Aborted> readAborted(Members& m) {
  Aborted a;
  VANDRA_TRY_ASSIGN(a.migration_id, m.id("migration_id"));
  VANDRA_TRY_ASSIGN(a.cleaned, m.boolean("cleaned"));
  VANDRA_TRY_ASSIGN(a.leftovers, m.list("leftovers", [](const json& e, std::string ctx) {
    return textElement(e, ctx, kMaxControlText);
  }));
  if (a.cleaned && !a.leftovers.empty()) {
    return bad("Control message aborted: cleaned is true but leftovers are listed");
  }
  return a;
}

Result<Progress> readProgress(Members& m) {
  Progress p;
  VANDRA_TRY_ASSIGN(p.migration_id, m.id("migration_id"));
  VANDRA_TRY_ASSIGN(p.phase, m.phase("phase"));
  VANDRA_TRY_ASSIGN(p.bytes_sent, m.u64("bytes_sent", 0, UINT64_MAX));
  VANDRA_TRY_ASSIGN(p.bytes_remaining, m.u64("bytes_remaining", 0, UINT64_MAX));
  VANDRA_TRY_ASSIGN(p.dirty_rate_bps, m.u64("dirty_rate_bps", 0, UINT64_MAX));
  return p;
}

Result<Status> readStatus(Members& m) {
  Status s;
  VANDRA_TRY_ASSIGN(s.migration_id, m.id("migration_id"));
  VANDRA_TRY_ASSIGN(s.known, m.boolean("known"));
  VANDRA_TRY_ASSIGN(s.phase, m.text("phase", 0, kMaxStatusPhase));
  if (s.phase.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") != std::string::npos) {
    return bad("Control message status: phase '" + wire::printable(s.phase) + "' is not a-z and _");
  }
  if (s.known == s.phase.empty()) {
    return bad(
        std::string("Control message status: ") +
        (s.known ? "a known migration needs its phase" : "an unknown migration has no phase"));
  }
  VANDRA_TRY_ASSIGN(s.guest_running, m.boolean("guest_running"));
  if (!s.known && s.guest_running) {
    return bad("Control message status: guest_running for a migration that is not known");
  }
  return s;
}

// recover and recovering: the id and the attempt.
template <class T>
Result<T> readAttempt(Members& m) {
  T t;
  VANDRA_TRY_ASSIGN(t.migration_id, m.id("migration_id"));
  VANDRA_TRY_ASSIGN(const uint64_t attempt, m.u64("attempt", 1, kMaxRecoverAttempt));
  t.attempt = static_cast<uint32_t>(attempt);
  return t;
}

// The messages that carry only their migration id.
template <class T>
Result<T> readIdOnly(Members& m) {
  T t;
  VANDRA_TRY_ASSIGN(t.migration_id, m.id("migration_id"));
  return t;
}

Result<ControlMessage> readMessage(size_t index, Members& m) {
  switch (index) {
    case 0:
      return readPreflight(m);
    case 1:
      return readPreflightResult(m);
    case 2:
      return readIdOnly<Prepare>(m);
    case 3:
      return readPrepared(m);
    case 4:
      return readIdOnly<Switchover>(m);
    case 5:
      return readStarted(m);
    case 6:
      return readIdOnly<Confirm>(m);
    case 7:
      return readIdOnly<Confirmed>(m);
    case 8:
      return readAbort(m);
    case 9:
      return readAborted(m);
    case 10:
      return readProgress(m);
    case 11:
      return readIdOnly<Query>(m);
    case 12:
      return readStatus(m);
    case 13:
      return readAttempt<Recover>(m);
    case 14:
      return readAttempt<Recovering>(m);
    default:
      break;
  }
  return fail(ErrorCode::Internal, "Control message type index out of range");
}

// ---- encoding -------------------------------------------------------------------------------

json stringList(const std::vector<std::string>& v) {
  json a = json::array();
  for (const auto& s : v) {
    a.push_back(s);
  }
  return a;
}

void addFields(json& j, const Preflight& p) {
  j["vm_id"] = p.vm_id;
  j["spec"] = p.spec;
  j["source_site"] = p.source_site;
  j["sla"] = p.sla;
  json disks = json::array();
  for (const auto& d : p.disks) {
    disks.push_back(
        {{"id", d.id}, {"virtual_size", d.virtual_size}, {"base_digest", d.base_digest}});
  }
  j["disks"] = std::move(disks);
  j["machine_type"] = p.machine_type;
  j["cpu_model"] = p.cpu_model;
  j["networks"] = stringList(p.networks);
  j["memory_mib"] = p.memory_mib;
  j["vcpus"] = p.vcpus;
  if (!p.network_map.empty()) {
    j["network_map"] = p.network_map;
  }
}

void addFields(json& j, const PreflightResult& r) {
  j["ok"] = r.ok;
  j["reasons"] = stringList(r.reasons);
  j["target_site"] = r.target_site;
  j["jurisdiction"] = r.jurisdiction;
  j["free"] = {{"vcpus", r.free.vcpus},
               {"memory_mib", r.free.memory_mib},
               {"disk_bytes", r.free.disk_bytes}};
  j["bases_present"] = stringList(r.bases_present);
}

void addFields(json& j, const Prepared& p) {
  json exports = json::array();
  for (const auto& e : p.exports) {
    exports.push_back({{"disk_id", e.disk_id}, {"export_name", e.export_name}});
  }
  j["exports"] = std::move(exports);
  j["ready"] = p.ready;
}

void addFields(json& j, const Started& s) {
  j["target_pid"] = s.target_pid;
}

void addFields(json& j, const Abort& a) {
  j["reason"] = a.reason;
  j["phase"] = toString(a.phase);
}

void addFields(json& j, const Aborted& a) {
  j["cleaned"] = a.cleaned;
  j["leftovers"] = stringList(a.leftovers);
}

void addFields(json& j, const Progress& p) {
  j["phase"] = toString(p.phase);
  j["bytes_sent"] = p.bytes_sent;
  j["bytes_remaining"] = p.bytes_remaining;
  j["dirty_rate_bps"] = p.dirty_rate_bps;
}

void addFields(json& j, const Recover& r) {
  j["attempt"] = r.attempt;
}

void addFields(json& j, const Recovering& r) {
  j["attempt"] = r.attempt;
}

void addFields(json&, const Prepare&) {}
void addFields(json&, const Switchover&) {}
void addFields(json&, const Confirm&) {}
void addFields(json&, const Confirmed&) {}
void addFields(json&, const Query&) {}

void addFields(json& j, const Status& s) {
  j["known"] = s.known;
  j["phase"] = s.phase;
  j["guest_running"] = s.guest_running;
}

}  // namespace

std::string_view typeName(const ControlMessage& m) {
  return kTypeNames[m.index()];
}

const std::string& migrationId(const ControlMessage& m) {
  return std::visit([](const auto& x) -> const std::string& { return x.migration_id; }, m);
}

Result<ControlMessage> decodeControl(std::string_view text) {
  if (text.size() > kMaxControlMessage) {
    return fail(ErrorCode::LimitExceeded, "Control message of " + std::to_string(text.size()) +
                                              " bytes exceeds " +
                                              std::to_string(kMaxControlMessage));
  }
  VANDRA_TRY(checkDepth(text));
  VANDRA_TRY_ASSIGN(const json j, parseStrict(text));
  if (!j.is_object()) {
    return bad("Control message is " + jsonType(j) + ", not a JSON object");
  }
  const auto type_it = j.find("type");
  if (type_it == j.end() || !type_it->is_string()) {
    return bad("Control message has no string member 'type'");
  }
  const auto& type = type_it->get_ref<const std::string&>();
  size_t index = kTypeNames.size();
  for (size_t i = 0; i < kTypeNames.size(); ++i) {
    if (type == kTypeNames[i]) {
      index = i;
    }
  }
  if (index == kTypeNames.size()) {
    return bad("Control message has unknown type '" + wire::printable(type) + "'");
  }
  Members m(j, "Control message " + type);
  VANDRA_TRY(m.get("type"));
  VANDRA_TRY_ASSIGN(ControlMessage msg, readMessage(index, m));
  VANDRA_TRY(m.finish());
  // The compact form can be longer than the text received ("1e9" becomes "1000000000.0"):
  // bound it too, so that whatever is accepted can be encoded (forwarded, logged) again.
  if (const size_t compact = dumpCompact(j).size(); compact > kMaxControlMessage) {
    return fail(ErrorCode::LimitExceeded, "Control message is " + std::to_string(compact) +
                                              " bytes in compact JSON, the limit is " +
                                              std::to_string(kMaxControlMessage));
  }
  return msg;
}

Result<std::string> encodeControl(const ControlMessage& m) {
  // A caller's spec/sla are bounded before anything copies, dumps or compares them (all of
  // which recurse); the message object and the member are two of the levels.
  if (const auto* p = std::get_if<Preflight>(&m)) {
    for (const json* v : {&p->spec, &p->sla}) {
      if (depthOf(*v, kMaxControlDepth) > kMaxControlDepth - 1) {
        return fail(ErrorCode::LimitExceeded,
                    "Cannot encode control message preflight: spec or sla nests deeper than " +
                        std::to_string(kMaxControlDepth) + " levels");
      }
    }
  }
  json j = json::object();
  j["type"] = typeName(m);
  j["migration_id"] = migrationId(m);
  std::visit([&j](const auto& x) { addFields(j, x); }, m);
  std::string text = dumpCompact(j);
  auto back = decodeControl(text);
  if (!back) {
    Error e = back.error();
    if (e.code == ErrorCode::TunnelProtocol) {
      e.code = ErrorCode::InvalidArgument;
    }
    e.message = "Cannot encode: " + e.message;
    return fail(std::move(e));
  }
  if (!(*back == m)) {
    // dump() replaced invalid UTF-8, or spec/sla hold a value JSON cannot carry (NaN).
    return fail(ErrorCode::InvalidArgument, "Cannot encode control message " +
                                                std::string(typeName(m)) +
                                                ": a value does not survive JSON (invalid "
                                                "UTF-8 or a non-finite number?)");
  }
  return text;
}

}  // namespace vandra::tunnel
