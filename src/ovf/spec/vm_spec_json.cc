// VmSpec <-> JSON. The reader refuses unknown fields and wrong types, naming the JSON path,
// because the JSON comes from users and scripts (`vandra ovf export --spec FILE`).
#include "vandra/ovf/vm_spec_json.h"

#include <set>

namespace vandra::ovf {
namespace {

using nlohmann::json;

template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json toJson(const DiskSpec& d) {
  return {{"id", d.id},
          {"capacity_bytes", d.capacity_bytes},
          {"populated_bytes", opt(d.populated_bytes)},
          {"format", d.format},
          {"format_uri", d.format_uri},
          {"file", opt(d.file)},
          {"parent", opt(d.parent)},
          {"controller", d.controller},
          {"unit", d.unit}};
}

json toJson(const VirtualSystemSpec& vs) {
  json controllers = json::array();
  for (const auto& c : vs.controllers) {
    controllers.push_back({{"id", c.id}, {"kind", toString(c.kind)}, {"model", c.model}});
  }
  json disks = json::array();
  for (const auto& d : vs.disks) {
    disks.push_back(toJson(d));
  }
  json nics = json::array();
  for (const auto& n : vs.nics) {
    nics.push_back({{"network", n.network},
                    {"model", n.model},
                    {"mac", opt(n.mac)},
                    {"connected", n.connected}});
  }
  json media = json::array();
  for (const auto& m : vs.media) {
    media.push_back({{"kind", m.kind == MediaKind::Cdrom ? "cdrom" : "floppy"},
                     {"file", opt(m.file)},
                     {"controller", m.controller}});
  }
  json products = json::array();
  for (const auto& p : vs.products) {
    json props = json::array();
    for (const auto& pr : p.properties) {
      props.push_back({{"key", pr.key},
                       {"type", pr.type},
                       {"value", pr.value},
                       {"label", pr.label},
                       {"description", pr.description},
                       {"user_configurable", pr.user_configurable},
                       {"password", pr.password}});
    }
    products.push_back({{"class", p.class_id},
                        {"instance", p.instance},
                        {"product", p.product},
                        {"vendor", p.vendor},
                        {"version", p.version},
                        {"full_version", p.full_version},
                        {"product_url", p.product_url},
                        {"properties", props}});
  }
  json res = {{"memory_reservation_mib", opt(vs.resources.memory_reservation_mib)},
              {"memory_limit_mib", opt(vs.resources.memory_limit_mib)},
              {"cpu_reservation_mhz", opt(vs.resources.cpu_reservation_mhz)},
              {"cpu_limit_mhz", opt(vs.resources.cpu_limit_mhz)}};
  return {
      {"id", vs.id},
      {"name", vs.name},
      {"collection", vs.collection},
      {"vcpus", vs.vcpus},
      {"cores_per_socket", vs.cores_per_socket},
      {"memory_mib", vs.memory_mib},
      {"firmware", toString(vs.firmware)},
      {"hardware_family", vs.hardware_family},
      {"os",
       {{"cim_id", vs.os.cim_id}, {"family", vs.os.family}, {"description", vs.os.description}}},
      {"controllers", controllers},
      {"disks", disks},
      {"nics", nics},
      {"media", media},
      {"products", products},
      {"eulas", vs.eulas},
      {"sla", vs.sla ? toJson(*vs.sla) : json(nullptr)},
      {"resources", res}};
}

// Reads one JSON object, remembering which keys were consumed so that unknown ones are
// reported. Errors carry the JSON path ("virtual_systems[0].disks[1].capacity_bytes").
class ObjectReader {
 public:
  ObjectReader(const json& j, std::string path) : j_(j), path_(std::move(path)) {}

  Result<void> isObject() const {
    if (!j_.is_object()) {
      return fail(ErrorCode::InvalidArgument, "Field '" + path_ + "' must be an object");
    }
    return {};
  }

  template <class T>
  Result<void> get(const char* key, T& out, bool required = false) {
    seen_.insert(key);
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (required) {
        return fail(ErrorCode::InvalidArgument, "Field '" + sub(key) + "' is missing");
      }
      return {};
    }
    return convert(*it, out, sub(key));
  }

  template <class T>
  Result<void> get(const char* key, std::optional<T>& out) {
    seen_.insert(key);
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      out.reset();
      return {};
    }
    T v{};
    VANDRA_TRY(convert(*it, v, sub(key)));
    out = std::move(v);
    return {};
  }

  const json* raw(const char* key) {
    seen_.insert(key);
    auto it = j_.find(key);
    return (it == j_.end() || it->is_null()) ? nullptr : &*it;
  }

  Result<void> noUnknown() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (seen_.count(it.key()) == 0) {
        return fail(ErrorCode::InvalidArgument, "Unknown field '" + sub(it.key()) + "'");
      }
    }
    return {};
  }

  std::string sub(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  static Result<void> convert(const json& v, std::string& out, const std::string& path) {
    if (!v.is_string()) {
      return fail(ErrorCode::InvalidArgument, "Field '" + path + "' must be a string");
    }
    out = v.get<std::string>();
    return {};
  }
  static Result<void> convert(const json& v, bool& out, const std::string& path) {
    if (!v.is_boolean()) {
      return fail(ErrorCode::InvalidArgument, "Field '" + path + "' must be true or false");
    }
    out = v.get<bool>();
    return {};
  }
  static Result<void> convert(const json& v, double& out, const std::string& path) {
    if (!v.is_number()) {
      return fail(ErrorCode::InvalidArgument, "Field '" + path + "' must be a number");
    }
    out = v.get<double>();
    return {};
  }
  template <class I>
  requires std::is_integral_v<I>
  static Result<void> convert(const json& v, I& out, const std::string& path) {
    if (!v.is_number_integer()) {
      return fail(ErrorCode::InvalidArgument, "Field '" + path + "' must be a whole number");
    }
    if (v.is_number_unsigned()) {
      const auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<I>::max())) {
        return fail(ErrorCode::InvalidArgument, "Field '" + path + "' is out of range");
      }
      out = static_cast<I>(u);
      return {};
    }
    const auto s = v.get<int64_t>();
    if (s < static_cast<int64_t>(std::numeric_limits<I>::min()) ||
        (s > 0 &&
         static_cast<uint64_t>(s) > static_cast<uint64_t>(std::numeric_limits<I>::max()))) {
      return fail(ErrorCode::InvalidArgument, "Field '" + path + "' is out of range");
    }
    out = static_cast<I>(s);
    return {};
  }
  static Result<void> convert(const json& v, std::vector<std::string>& out,
                              const std::string& path) {
    if (!v.is_array()) {
      return fail(ErrorCode::InvalidArgument, "Field '" + path + "' must be an array");
    }
    out.clear();
    for (size_t i = 0; i < v.size(); ++i) {
      std::string s;
      VANDRA_TRY(convert(v[i], s, path + "[" + std::to_string(i) + "]"));
      out.push_back(std::move(s));
    }
    return {};
  }

  const json& j_;
  std::string path_;
  std::set<std::string> seen_;
};

template <class F>
Result<void> forEach(const json* arr, const std::string& path, F&& f) {
  if (arr == nullptr) {
    return {};
  }
  if (!arr->is_array()) {
    return fail(ErrorCode::InvalidArgument, "Field '" + path + "' must be an array");
  }
  if (arr->size() > 4096) {
    return fail(ErrorCode::LimitExceeded, "Field '" + path + "' has too many entries");
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    ObjectReader r((*arr)[i], path + "[" + std::to_string(i) + "]");
    VANDRA_TRY(r.isObject());
    VANDRA_TRY(f(r));
    VANDRA_TRY(r.noUnknown());
  }
  return {};
}

template <class E, class Fn>
Result<void> enumField(ObjectReader& r, const char* key, E& out, Fn&& parse,
                       bool required = false) {
  std::string s;
  VANDRA_TRY(r.get(key, s, required));
  if (s.empty() && !required) {
    return {};
  }
  auto v = parse(s);
  if (!v) {
    return fail(ErrorCode::InvalidArgument,
                "Field '" + r.sub(key) + "' has unknown value '" + s + "'");
  }
  out = *v;
  return {};
}

std::optional<OvfVersion> versionFrom(const std::string& s) {
  for (auto v :
       {OvfVersion::V0_9, OvfVersion::V1_0, OvfVersion::V1_1, OvfVersion::V2_0, OvfVersion::V2_1}) {
    if (toString(v) == s) {
      return v;
    }
  }
  return std::nullopt;
}
std::optional<Firmware> firmwareFrom(const std::string& s) {
  if (s == "bios") {
    return Firmware::Bios;
  }
  if (s == "efi") {
    return Firmware::Efi;
  }
  return std::nullopt;
}
std::optional<ControllerKind> controllerFrom(const std::string& s) {
  for (auto k :
       {ControllerKind::Ide, ControllerKind::Scsi, ControllerKind::Sata, ControllerKind::Nvme,
        ControllerKind::Virtio, ControllerKind::Floppy, ControllerKind::Usb}) {
    if (toString(k) == s) {
      return k;
    }
  }
  return std::nullopt;
}

Result<Sla> slaFrom(ObjectReader& r) {
  Sla sla;
  VANDRA_TRY(r.get("downtime_budget_ms", sla.downtime_budget_ms));
  VANDRA_TRY(r.get("jurisdictions", sla.jurisdictions));
  if (const json* rtt = r.raw("max_rtt")) {
    ObjectReader rr(*rtt, r.sub("max_rtt"));
    VANDRA_TRY(rr.isObject());
    MaxRtt m;
    VANDRA_TRY(rr.get("location", m.location, true));
    VANDRA_TRY(rr.get("ms", m.ms, true));
    VANDRA_TRY(rr.noUnknown());
    sla.max_rtt = m;
  }
  VANDRA_TRY(r.get("encryption_in_transit", sla.encryption_in_transit));
  VANDRA_TRY(r.get("anti_affinity_group", sla.anti_affinity_group));
  VANDRA_TRY(r.get("max_cost_per_hour", sla.max_cost_per_hour));
  VANDRA_TRY(r.get("currency", sla.currency));
  VANDRA_TRY(enumField(r, "mobility", sla.mobility,
                       [](const std::string& s) { return mobilityFromString(s); }));
  VANDRA_TRY(r.get("availability_percent", sla.availability_percent));
  VANDRA_TRY(r.get("max_migration_mbps", sla.max_migration_mbps));
  VANDRA_TRY(r.get("post_copy_allowed", sla.post_copy_allowed));
  VANDRA_TRY(r.get("required", sla.required));
  VANDRA_TRY(validateSla(sla));
  return sla;
}

Result<VirtualSystemSpec> systemFrom(ObjectReader& r) {
  VirtualSystemSpec vs;
  VANDRA_TRY(r.get("id", vs.id, true));
  VANDRA_TRY(r.get("name", vs.name));
  VANDRA_TRY(r.get("collection", vs.collection));
  VANDRA_TRY(r.get("vcpus", vs.vcpus, true));
  VANDRA_TRY(r.get("cores_per_socket", vs.cores_per_socket));
  VANDRA_TRY(r.get("memory_mib", vs.memory_mib, true));
  VANDRA_TRY(enumField(r, "firmware", vs.firmware, firmwareFrom));
  VANDRA_TRY(r.get("hardware_family", vs.hardware_family));
  if (const json* os = r.raw("os")) {
    ObjectReader o(*os, r.sub("os"));
    VANDRA_TRY(o.isObject());
    VANDRA_TRY(o.get("cim_id", vs.os.cim_id));
    VANDRA_TRY(o.get("family", vs.os.family));
    VANDRA_TRY(o.get("description", vs.os.description));
    VANDRA_TRY(o.noUnknown());
  }
  VANDRA_TRY(
      forEach(r.raw("controllers"), r.sub("controllers"), [&](ObjectReader& c) -> Result<void> {
        ControllerSpec cs;
        VANDRA_TRY(c.get("id", cs.id, true));
        VANDRA_TRY(enumField(c, "kind", cs.kind, controllerFrom, true));
        VANDRA_TRY(c.get("model", cs.model));
        vs.controllers.push_back(std::move(cs));
        return {};
      }));
  VANDRA_TRY(forEach(r.raw("disks"), r.sub("disks"), [&](ObjectReader& d) -> Result<void> {
    DiskSpec ds;
    VANDRA_TRY(d.get("id", ds.id, true));
    VANDRA_TRY(d.get("capacity_bytes", ds.capacity_bytes, true));
    VANDRA_TRY(d.get("populated_bytes", ds.populated_bytes));
    VANDRA_TRY(d.get("format", ds.format));
    VANDRA_TRY(d.get("format_uri", ds.format_uri));
    VANDRA_TRY(d.get("file", ds.file));
    VANDRA_TRY(d.get("parent", ds.parent));
    VANDRA_TRY(d.get("controller", ds.controller));
    VANDRA_TRY(d.get("unit", ds.unit));
    vs.disks.push_back(std::move(ds));
    return {};
  }));
  VANDRA_TRY(forEach(r.raw("nics"), r.sub("nics"), [&](ObjectReader& n) -> Result<void> {
    NicSpec ns;
    VANDRA_TRY(n.get("network", ns.network));
    VANDRA_TRY(n.get("model", ns.model));
    VANDRA_TRY(n.get("mac", ns.mac));
    VANDRA_TRY(n.get("connected", ns.connected));
    vs.nics.push_back(std::move(ns));
    return {};
  }));
  VANDRA_TRY(forEach(r.raw("media"), r.sub("media"), [&](ObjectReader& m) -> Result<void> {
    MediaSpec ms;
    VANDRA_TRY(enumField(
        m, "kind", ms.kind,
        [](const std::string& s) -> std::optional<MediaKind> {
          if (s == "cdrom") {
            return MediaKind::Cdrom;
          }
          if (s == "floppy") {
            return MediaKind::Floppy;
          }
          return std::nullopt;
        },
        true));
    VANDRA_TRY(m.get("file", ms.file));
    VANDRA_TRY(m.get("controller", ms.controller));
    vs.media.push_back(std::move(ms));
    return {};
  }));
  VANDRA_TRY(forEach(r.raw("products"), r.sub("products"), [&](ObjectReader& p) -> Result<void> {
    ProductSpec ps;
    VANDRA_TRY(p.get("class", ps.class_id));
    VANDRA_TRY(p.get("instance", ps.instance));
    VANDRA_TRY(p.get("product", ps.product));
    VANDRA_TRY(p.get("vendor", ps.vendor));
    VANDRA_TRY(p.get("version", ps.version));
    VANDRA_TRY(p.get("full_version", ps.full_version));
    VANDRA_TRY(p.get("product_url", ps.product_url));
    VANDRA_TRY(
        forEach(p.raw("properties"), p.sub("properties"), [&](ObjectReader& q) -> Result<void> {
          Property pr;
          VANDRA_TRY(q.get("key", pr.key, true));
          VANDRA_TRY(q.get("type", pr.type));
          VANDRA_TRY(q.get("value", pr.value));
          VANDRA_TRY(q.get("label", pr.label));
          VANDRA_TRY(q.get("description", pr.description));
          VANDRA_TRY(q.get("user_configurable", pr.user_configurable));
          VANDRA_TRY(q.get("password", pr.password));
          ps.properties.push_back(std::move(pr));
          return {};
        }));
    vs.products.push_back(std::move(ps));
    return {};
  }));
  VANDRA_TRY(r.get("eulas", vs.eulas));
  if (const json* s = r.raw("sla")) {
    ObjectReader sr(*s, r.sub("sla"));
    VANDRA_TRY(sr.isObject());
    VANDRA_TRY_ASSIGN(vs.sla, slaFrom(sr));
    VANDRA_TRY(sr.noUnknown());
  }
  if (const json* res = r.raw("resources")) {
    ObjectReader rr(*res, r.sub("resources"));
    VANDRA_TRY(rr.isObject());
    VANDRA_TRY(rr.get("memory_reservation_mib", vs.resources.memory_reservation_mib));
    VANDRA_TRY(rr.get("memory_limit_mib", vs.resources.memory_limit_mib));
    VANDRA_TRY(rr.get("cpu_reservation_mhz", vs.resources.cpu_reservation_mhz));
    VANDRA_TRY(rr.get("cpu_limit_mhz", vs.resources.cpu_limit_mhz));
    VANDRA_TRY(rr.noUnknown());
  }
  return vs;
}

}  // namespace

json toJson(const Sla& sla) {
  return {
      {"downtime_budget_ms", opt(sla.downtime_budget_ms)},
      {"jurisdictions", sla.jurisdictions},
      {"max_rtt", sla.max_rtt ? json{{"location", sla.max_rtt->location}, {"ms", sla.max_rtt->ms}}
                              : json(nullptr)},
      {"encryption_in_transit", sla.encryption_in_transit},
      {"anti_affinity_group", opt(sla.anti_affinity_group)},
      {"max_cost_per_hour", opt(sla.max_cost_per_hour)},
      {"currency", sla.currency},
      {"mobility", toString(sla.mobility)},
      {"availability_percent", opt(sla.availability_percent)},
      {"max_migration_mbps", opt(sla.max_migration_mbps)},
      {"post_copy_allowed", sla.post_copy_allowed},
      {"required", sla.required}};
}

json toJson(const VmSpec& spec) {
  json systems = json::array();
  for (const auto& vs : spec.virtual_systems) {
    systems.push_back(toJson(vs));
  }
  json networks = json::array();
  for (const auto& n : spec.networks) {
    networks.push_back({{"name", n.name}, {"description", n.description}});
  }
  json files = json::array();
  for (const auto& f : spec.files) {
    files.push_back({{"id", f.id},
                     {"href", f.href},
                     {"size", opt(f.size)},
                     {"compression", f.compression},
                     {"chunk_size", opt(f.chunk_size)}});
  }
  json options = json::array();
  for (const auto& o : spec.deployment_options) {
    options.push_back({{"id", o.id},
                       {"label", o.label},
                       {"description", o.description},
                       {"default", o.is_default}});
  }
  json startup = json::array();
  for (const auto& s : spec.startup) {
    startup.push_back({{"id", s.id},
                       {"order", s.order},
                       {"start_delay_s", s.start_delay_s},
                       {"stop_delay_s", s.stop_delay_s},
                       {"start_action", s.start_action},
                       {"stop_action", s.stop_action}});
  }
  // Top-level `sla` is the first virtual system's (the usual one-VM package); each virtual
  // system carries its own as well.
  json sla = nullptr;
  if (!spec.virtual_systems.empty() && spec.virtual_systems.front().sla) {
    sla = toJson(*spec.virtual_systems.front().sla);
  }
  return {{"ovf_version", toString(spec.ovf_version)},
          {"configuration", spec.configuration},
          {"virtual_systems", systems},
          {"networks", networks},
          {"files", files},
          {"deployment_options", options},
          {"startup", startup},
          {"sla", sla},
          {"warnings", spec.warnings}};
}

Result<Sla> slaFromJson(const json& j) {
  ObjectReader r(j, "sla");
  VANDRA_TRY(r.isObject());
  VANDRA_TRY_ASSIGN(Sla sla, slaFrom(r));
  VANDRA_TRY(r.noUnknown());
  return sla;
}

Result<VmSpec> vmSpecFromJson(const json& j) {
  ObjectReader r(j, "");
  VANDRA_TRY(r.isObject());
  VmSpec spec;
  VANDRA_TRY(enumField(r, "ovf_version", spec.ovf_version, versionFrom));
  VANDRA_TRY(r.get("configuration", spec.configuration));
  VANDRA_TRY(
      forEach(r.raw("virtual_systems"), "virtual_systems", [&](ObjectReader& v) -> Result<void> {
        VANDRA_TRY_ASSIGN(auto vs, systemFrom(v));
        spec.virtual_systems.push_back(std::move(vs));
        return {};
      }));
  VANDRA_TRY(forEach(r.raw("networks"), "networks", [&](ObjectReader& n) -> Result<void> {
    NetworkSpec ns;
    VANDRA_TRY(n.get("name", ns.name, true));
    VANDRA_TRY(n.get("description", ns.description));
    spec.networks.push_back(std::move(ns));
    return {};
  }));
  VANDRA_TRY(forEach(r.raw("files"), "files", [&](ObjectReader& f) -> Result<void> {
    FileSpec fs;
    VANDRA_TRY(f.get("id", fs.id, true));
    VANDRA_TRY(f.get("href", fs.href, true));
    VANDRA_TRY(f.get("size", fs.size));
    VANDRA_TRY(f.get("compression", fs.compression));
    VANDRA_TRY(f.get("chunk_size", fs.chunk_size));
    spec.files.push_back(std::move(fs));
    return {};
  }));
  VANDRA_TRY(forEach(r.raw("deployment_options"), "deployment_options",
                     [&](ObjectReader& o) -> Result<void> {
                       DeploymentOption d;
                       VANDRA_TRY(o.get("id", d.id, true));
                       VANDRA_TRY(o.get("label", d.label));
                       VANDRA_TRY(o.get("description", d.description));
                       VANDRA_TRY(o.get("default", d.is_default));
                       spec.deployment_options.push_back(std::move(d));
                       return {};
                     }));
  VANDRA_TRY(forEach(r.raw("startup"), "startup", [&](ObjectReader& o) -> Result<void> {
    StartupEntry s;
    VANDRA_TRY(o.get("id", s.id, true));
    VANDRA_TRY(o.get("order", s.order));
    VANDRA_TRY(o.get("start_delay_s", s.start_delay_s));
    VANDRA_TRY(o.get("stop_delay_s", s.stop_delay_s));
    VANDRA_TRY(o.get("start_action", s.start_action));
    VANDRA_TRY(o.get("stop_action", s.stop_action));
    spec.startup.push_back(std::move(s));
    return {};
  }));
  r.raw("sla");  // derived from virtual_systems[0].sla; accepted and ignored on input
  VANDRA_TRY(r.get("warnings", spec.warnings));
  VANDRA_TRY(r.noUnknown());
  return spec;
}

}  // namespace vandra::ovf
