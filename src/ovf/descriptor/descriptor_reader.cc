// OVF descriptor -> VmSpec. One pass over a libxml2 tree that xml_document.cc already
// checked for DTDs, size and depth. Every element is matched by namespace URI; OVF 0.9's
// <Section xsi:type="ovf:X_Type"> form is resolved to X. Faults that still allow a VmSpec
// are collected (never only the first) so that `vandra ovf validate` can list them all.
#include "vandra/ovf/descriptor_reader.h"

#include <algorithm>
#include <map>
#include <set>

#include "os_types.h"
#include "ovf_names.h"
#include "sla_section.h"
#include "units.h"
#include "xml_document.h"

namespace vandra::ovf {
namespace {

using xml::attr;
using xml::children;
using xml::lineOf;
using xml::nameOf;
using xml::nsOf;
using xml::text;

std::string lower(std::string_view s) {
  std::string o;
  for (const char c : s) {
    o.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return o;
}

bool iequals(std::string_view a, std::string_view b) {
  return lower(a) == lower(b);
}

std::vector<std::string> splitSpaces(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) {
      ++i;
    }
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) {
      ++j;
    }
    if (j > i) {
      out.emplace_back(s.substr(i, j - i));
    }
    i = j;
  }
  return out;
}

std::string diskFormatFromUri(std::string_view uri) {
  const std::string u = lower(uri);
  auto has = [&](std::string_view s) { return u.find(s) != std::string::npos; };
  if (u.empty()) {
    return "unknown";
  }
  if (has("vmdk")) {
    if (has("#streamoptimized") || has("#compressed")) {
      return "vmdk-stream";
    }
    if (has("#sparse") || has("#monolithicsparse")) {
      return "vmdk-sparse";
    }
    if (has("#flat") || has("#monolithicflat")) {
      return "vmdk-flat";
    }
    return "vmdk";
  }
  if (has("qcow")) {
    return "qcow2";
  }
  if (has("vhdx")) {
    return "vhdx";
  }
  // XenServer/XenCenter name VHD by Microsoft's specification page.
  if (has("technet.microsoft.com/en-us/library/bb676673")) {
    return "vhd";
  }
  if (has("vhd")) {
    return "vhd";
  }
  if (has("vdi")) {
    return "vdi";
  }
  if (has("iso")) {
    return "iso";
  }
  // oVirt writes raw volumes as "http://en.wikipedia.org/wiki/Byte".
  if (has("raw") || has("wiki/byte")) {
    return "raw";
  }
  return "unknown";
}

std::string nicModel(std::string_view subtype) {
  const std::string s = lower(subtype);
  if (s.empty()) {
    return "e1000";  // what most importers assume when none is given
  }
  if (s == "e1000" || s == "e1000e" || s == "vmxnet3" || s == "rtl8139" || s == "ne2k_pci") {
    return s;
  }
  if (s == "vmxnet" || s == "vmxnet2") {
    return "vmxnet";
  }
  if (s.starts_with("pcnet") || s == "am79c970a" || s == "am79c973") {
    return "pcnet";
  }
  if (s.starts_with("virtio")) {
    return "virtio";
  }
  if (s == "i82540em" || s == "i82543gc" || s == "i82545em") {
    return "e1000";  // VirtualBox names of its e1000 variants
  }
  return s;
}

std::optional<std::string> normaliseMac(std::string_view raw) {
  std::string hex;
  for (const char c : raw) {
    if (std::isxdigit(static_cast<unsigned char>(c))) {
      hex.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    } else if (c != ':' && c != '-' && c != '.') {
      return std::nullopt;
    }
  }
  if (hex.size() != 12) {
    return std::nullopt;
  }
  std::string out;
  for (size_t i = 0; i < 12; i += 2) {
    if (!out.empty()) {
      out.push_back(':');
    }
    out.append(hex, i, 2);
  }
  return out;
}

enum class ItemKind : uint8_t { Rasd, Storage, Ethernet };

// One hardware Item, with its CIM child elements by local name.
struct ItemView {
  xmlNode* node = nullptr;
  ItemKind kind = ItemKind::Rasd;
  std::map<std::string, std::string> fields;  // local name -> text (first)
  std::vector<std::string> host_resources;
  std::vector<xmlNode*> extensions;  // non-CIM children (vmw:Config, ...)

  std::string get(const std::string& k) const {
    auto it = fields.find(k);
    return it == fields.end() ? std::string{} : it->second;
  }
  bool has(const std::string& k) const { return fields.count(k) != 0; }
};

struct DiskEntry {
  DiskSpec spec;
  std::string file_ref;
  int line = 0;
};

class Reader {
 public:
  Reader(xmlDoc* doc, const ReadOptions& options) : doc_(doc), options_(options) {}

  Result<DescriptorReadResult> run() {
    xmlNode* root = xmlDocGetRootElement(doc_);
    if (root == nullptr) {
      return fail(ErrorCode::OvfInvalid, "Descriptor has no root element");
    }
    env_ns_ = std::string(nsOf(root));
    auto version = names::versionOf(env_ns_, attr(root, env_ns_, "version").value_or(""),
                                    attr(root, names::kXsi, "schemaLocation").value_or(""));
    if (nameOf(root) != "Envelope" || !version) {
      return fail(Error(ErrorCode::OvfInvalid,
                        "Root element is {" + env_ns_ + "}" + std::string(nameOf(root)) +
                            ", not an OVF Envelope (namespace URIs of OVF 0.9 to 2.1)")
                      .atLine(lineOf(root)));
    }
    spec_.ovf_version = *version;
    // oVirt (engine exports, virt-v2v -o ovirt) writes its own dialect under an envelope URI
    // with a trailing slash: sizes in GiB, CPU topology fields, GUID OS ids, own sections.
    ovirt_ = env_ns_ == names::kEnvelopeOvirt;

    checkExtensions(root);
    xmlNode* references = nullptr;
    xmlNode* disk_section = nullptr;
    xmlNode* network_section = nullptr;
    xmlNode* options_section = nullptr;
    std::vector<xmlNode*> content;
    for (xmlNode* c : children(root)) {
      if (!isOvf(c)) {
        continue;
      }
      const std::string n = effectiveName(c);
      if (n == "References") {
        references = c;
      } else if (n == "DiskSection") {
        disk_section = c;
      } else if (n == "NetworkSection") {
        network_section = c;
      } else if (n == "DeploymentOptionSection") {
        options_section = c;
      } else if (n == "VirtualSystem" || n == "VirtualSystemCollection") {
        content.push_back(c);
      }
    }
    if (options_section != nullptr) {
      VANDRA_TRY(readDeploymentOptions(options_section));
    } else if (!options_.configuration.empty()) {
      return fail(ErrorCode::InvalidArgument, "Deployment option '" + options_.configuration +
                                                  "' requested, but the descriptor has none");
    }
    collectProperties(root);
    if (references != nullptr) {
      readReferences(references);
    }
    if (disk_section != nullptr) {
      readDisks(disk_section);
    }
    if (network_section != nullptr) {
      readNetworks(network_section);
    }
    if (content.empty()) {
      problem(ErrorCode::OvfInvalid, "Descriptor has no VirtualSystem or VirtualSystemCollection",
              root);
    }
    for (xmlNode* c : content) {
      readContent(c, "", 0);
    }
    if (!content.empty() && spec_.virtual_systems.empty()) {
      problem(ErrorCode::OvfInvalid, "Descriptor has no VirtualSystem", root);
    }
    checkUnusedDisks();

    DescriptorReadResult out;
    if (options_.lax) {
      for (auto& p : problems_) {
        spec_.warnings.push_back(p.describe());
      }
      problems_.clear();
    }
    out.spec = std::move(spec_);
    out.problems = std::move(problems_);
    return out;
  }

 private:
  // --- helpers -------------------------------------------------------------------------

  // OVF elements are those in the Envelope's namespace. Unqualified elements count too:
  // OVF 0.9 producers and the DMTF draft wrote children without a prefix.
  bool isOvf(const xmlNode* n) const {
    const auto ns = nsOf(n);
    return ns == env_ns_ || ns.empty();
  }

  std::optional<std::string> ovfAttr(const xmlNode* n, std::string_view local) const {
    if (auto v = attr(n, env_ns_, local)) {
      return v;
    }
    return attr(n, "", local);
  }

  // Name of an OVF element, with 0.9's <Section xsi:type="ovf:DiskSection_Type"> and
  // <Content xsi:type="ovf:VirtualSystem_Type"> resolved through the in-scope namespaces.
  std::string effectiveName(xmlNode* n) const {
    const std::string local(nameOf(n));
    if (local != "Section" && local != "Content") {
      return local;
    }
    auto type = attr(n, names::kXsi, "type");
    if (!type) {
      return local;
    }
    auto q = xml::resolveQName(n, *type);
    if (!q || q->first != env_ns_ || !q->second.ends_with("_Type")) {
      return local;
    }
    return q->second.substr(0, q->second.size() - 5);
  }

  void problem(ErrorCode code, std::string msg, const xmlNode* at) {
    Error e(code, std::move(msg));
    if (at != nullptr && lineOf(at) > 0) {
      e.atLine(lineOf(at));
    }
    problems_.push_back(std::move(e));
  }

  void warn(std::string msg, const xmlNode* at) {
    if (at != nullptr && lineOf(at) > 0) {
      msg += " (line " + std::to_string(lineOf(at)) + ")";
    }
    spec_.warnings.push_back(std::move(msg));
  }

  bool isRequired(const xmlNode* n) const {
    auto r = ovfAttr(n, "required");
    return !r || (*r != "false" && *r != "0");
  }

  bool selected(const xmlNode* n) const {
    auto cfg = ovfAttr(n, "configuration");
    if (!cfg) {
      return true;
    }
    const auto list = splitSpaces(*cfg);
    return std::find(list.begin(), list.end(), spec_.configuration) != list.end();
  }

  std::string infoOf(const xmlNode* section) {
    for (xmlNode* c : children(section)) {
      if (isOvf(c) && nameOf(c) == "Info") {
        return text(c);
      }
    }
    return {};
  }

  bool hasInfo(const xmlNode* section) {
    for (xmlNode* c : children(section)) {
      if (isOvf(c) && nameOf(c) == "Info") {
        return true;
      }
    }
    return false;
  }

  void requireInfo(const xmlNode* section, const std::string& what) {
    if (!hasInfo(section)) {
      problem(ErrorCode::OvfInvalid, what + " has no Info element", section);
    }
  }

  // --- extensions (DSP0243: anything not understood is required unless it says not) ----

  void checkExtensions(xmlNode* n) {
    for (xmlNode* c : children(n)) {
      const std::string_view ns = nsOf(c);
      if (ns == env_ns_ || ns.empty()) {
        const std::string name = effectiveName(c);
        const bool sectionLike =
            name.ends_with("Section") || name == "Section" || name == "Content";
        if (sectionLike && !names::isStandardSection(name)) {
          if (ovirt_ && name != "Section" && name != "Content") {
            warn("Ignoring oVirt section " + name, c);
          } else {
            reportUnknown(c, "section " + describeName(c, name));
          }
          continue;
        }
        checkExtensions(c);
      } else if (names::isKnownNamespace(ns)) {
        if (ns == kSlaNamespace) {
          continue;  // read by sla_section.cc
        }
        // Known extension (VMware, VirtualBox, vCloud, oVirt, ...): mapped where it matters
        // (firmware, cores per socket, OS type) and otherwise deliberately ignored.
        if (isRequired(c) && !ns.starts_with(names::kCimPrefix) && isSectionOrTopLevel(c)) {
          warn("Ignoring required extension " + describeName(c, std::string(nameOf(c))) +
                   " (known producer extension; vandra does not need it)",
               c);
        }
      } else {
        reportUnknown(c, "element " + describeName(c, std::string(nameOf(c))));
      }
    }
  }

  bool isSectionOrTopLevel(const xmlNode* c) const {
    const std::string_view name = nameOf(c);
    return name.ends_with("Section") && c->parent != nullptr &&
           (nameOf(c->parent) == "Envelope" || nameOf(c->parent) == "VirtualSystem" ||
            nameOf(c->parent) == "VirtualSystemCollection");
  }

  std::string describeName(const xmlNode* c, const std::string& name) const {
    const std::string_view ns = nsOf(c);
    return "{" + std::string(ns) + "}" + name;
  }

  void reportUnknown(const xmlNode* c, const std::string& what) {
    if (isRequired(c)) {
      problem(ErrorCode::OvfUnsupportedRequired,
              "Unsupported required " + what +
                  " (DSP0243: extensions are required unless ovf:required=\"false\"; use --lax "
                  "to import anyway)",
              c);
    } else {
      warn("Ignoring optional " + what, c);
    }
  }

  // --- envelope-level sections ---------------------------------------------------------

  Result<void> readDeploymentOptions(xmlNode* section) {
    requireInfo(section, "DeploymentOptionSection");
    for (xmlNode* c : children(section)) {
      if (!isOvf(c) || nameOf(c) != "Configuration") {
        continue;
      }
      DeploymentOption d;
      d.id = ovfAttr(c, "id").value_or("");
      if (d.id.empty()) {
        problem(ErrorCode::OvfInvalid, "Configuration without ovf:id", c);
        continue;
      }
      auto def = ovfAttr(c, "default");
      d.is_default = def && (*def == "true" || *def == "1");
      for (xmlNode* cc : children(c)) {
        if (isOvf(cc) && nameOf(cc) == "Label") {
          d.label = text(cc);
        } else if (isOvf(cc) && nameOf(cc) == "Description") {
          d.description = text(cc);
        }
      }
      if (!option_ids_.insert(d.id).second) {
        problem(ErrorCode::OvfReference, "Duplicate Configuration id '" + d.id + "'", c);
        continue;
      }
      spec_.deployment_options.push_back(std::move(d));
    }
    if (!options_.configuration.empty()) {
      const bool known =
          std::any_of(spec_.deployment_options.begin(), spec_.deployment_options.end(),
                      [&](const auto& o) { return o.id == options_.configuration; });
      if (!known) {
        std::string list;
        for (const auto& o : spec_.deployment_options) {
          list += (list.empty() ? "" : ", ") + o.id;
        }
        return fail(
            ErrorCode::InvalidArgument,
            "Unknown deployment option '" + options_.configuration + "' (known: " + list + ")");
      }
      spec_.configuration = options_.configuration;
    } else if (!spec_.deployment_options.empty()) {
      // DSP0243: the default is the one marked ovf:default="true", else the first.
      spec_.configuration = spec_.deployment_options.front().id;
      for (const auto& o : spec_.deployment_options) {
        if (o.is_default) {
          spec_.configuration = o.id;
          break;
        }
      }
    }
    if (options_.configuration.empty() && spec_.deployment_options.empty()) {
      spec_.configuration.clear();
    }
    return {};
  }

  void collectProperties(xmlNode* n) {
    for (xmlNode* c : children(n)) {
      if (!isOvf(c)) {
        continue;
      }
      const std::string name = effectiveName(c);
      if (name == "ProductSection") {
        const std::string cls = ovfAttr(c, "class").value_or("");
        const std::string inst = ovfAttr(c, "instance").value_or("");
        forEachProperty(c, [&](xmlNode* p, const Property& prop) {
          (void)p;
          std::string full = prop.key;
          if (!cls.empty()) {
            full = cls + "." + full;
          }
          if (!inst.empty()) {
            full += "." + inst;
          }
          properties_[full] = prop.value;
          properties_.emplace(prop.key, prop.value);
        });
      } else {
        collectProperties(c);
      }
    }
  }

  template <class F>
  void forEachProperty(xmlNode* product, F&& f) {
    auto visit = [&](xmlNode* container, auto& self) -> void {
      for (xmlNode* p : children(container)) {
        if (!isOvf(p)) {
          continue;
        }
        if (nameOf(p) == "Category") {
          continue;
        }
        if (nameOf(p) != "Property") {
          continue;
        }
        Property prop;
        prop.key = ovfAttr(p, "key").value_or("");
        prop.type = ovfAttr(p, "type").value_or("");
        prop.value = ovfAttr(p, "value").value_or("");
        auto uc = ovfAttr(p, "userConfigurable");
        prop.user_configurable = uc && (*uc == "true" || *uc == "1");
        auto pw = ovfAttr(p, "password");
        prop.password = pw && (*pw == "true" || *pw == "1");
        for (xmlNode* pc : children(p)) {
          if (!isOvf(pc)) {
            continue;
          }
          if (nameOf(pc) == "Label") {
            prop.label = text(pc);
          } else if (nameOf(pc) == "Description") {
            prop.description = text(pc);
          } else if (nameOf(pc) == "Value" && !spec_.configuration.empty()) {
            // <Value ovf:value="..." ovf:configuration="x"/> overrides per configuration.
            auto cfg = ovfAttr(pc, "configuration");
            if (cfg) {
              const auto list = splitSpaces(*cfg);
              if (std::find(list.begin(), list.end(), spec_.configuration) != list.end()) {
                prop.value = ovfAttr(pc, "value").value_or(prop.value);
              }
            }
          }
        }
        if (prop.key.empty()) {
          problem(ErrorCode::OvfInvalid, "Property without ovf:key", p);
          continue;
        }
        f(p, prop);
      }
      (void)self;
    };
    visit(product, visit);
  }

  std::optional<uint64_t> parseSize(const std::string& raw, const std::string& units,
                                    const xmlNode* at, const std::string& what) {
    std::string value = raw;
    // ${name} refers to a ProductSection property (DSP0243 9.1: capacity may be a reference).
    if (value.size() > 3 && value.starts_with("${") && value.back() == '}') {
      const std::string key = value.substr(2, value.size() - 3);
      auto it = properties_.find(key);
      if (it == properties_.end()) {
        problem(ErrorCode::OvfReference, what + " refers to unknown property '" + key + "'", at);
        return std::nullopt;
      }
      value = it->second;
    }
    auto v = parseUint(value);
    if (!v) {
      problem(ErrorCode::OvfValue, what + " '" + raw + "' is not a whole number", at);
      return std::nullopt;
    }
    uint64_t mult = 1;
    if (!units.empty()) {
      auto m = bytesPerUnit(units);
      if (!m) {
        problem(ErrorCode::OvfValue, what + " has unknown allocation units '" + units + "'", at);
        return std::nullopt;
      }
      mult = *m;
    }
    auto total = checkedMul(*v, mult);
    if (!total) {
      problem(ErrorCode::OvfValue, what + " overflows 64 bits", at);
    }
    return total;
  }

  static bool unsafeHref(const std::string& href) {
    if (href.empty() || href.front() == '/' || href.find('\\') != std::string::npos) {
      return true;
    }
    size_t i = 0;
    while (i <= href.size()) {
      const size_t j = href.find('/', i);
      const std::string part = href.substr(i, j == std::string::npos ? std::string::npos : j - i);
      if (part == "..") {
        return true;
      }
      if (j == std::string::npos) {
        break;
      }
      i = j + 1;
    }
    return false;
  }

  void readReferences(xmlNode* refs) {
    std::set<std::string> hrefs;
    for (xmlNode* c : children(refs)) {
      if (!isOvf(c) || nameOf(c) != "File") {
        continue;
      }
      FileSpec f;
      f.id = ovfAttr(c, "id").value_or("");
      f.href = ovfAttr(c, "href").value_or("");
      if (f.id.empty() || f.href.empty()) {
        problem(ErrorCode::OvfInvalid, "File needs ovf:id and ovf:href", c);
        continue;
      }
      if (files_.count(f.id) != 0) {
        problem(ErrorCode::OvfReference, "Duplicate File id '" + f.id + "'", c);
        continue;
      }
      if (auto s = ovfAttr(c, "size")) {
        f.size = parseSize(*s, "", c, "File '" + f.id + "' size");
      }
      f.compression = ovfAttr(c, "compression").value_or("");
      if (!f.compression.empty() && f.compression != "gzip" && f.compression != "identity") {
        problem(ErrorCode::OvfValue,
                "File '" + f.id + "' has unsupported compression '" + f.compression + "'", c);
      }
      if (f.compression == "identity") {
        f.compression.clear();
      }
      if (auto cs = ovfAttr(c, "chunkSize")) {
        f.chunk_size = parseSize(*cs, "", c, "File '" + f.id + "' chunkSize");
        if (f.chunk_size && *f.chunk_size == 0) {
          problem(ErrorCode::OvfValue, "File '" + f.id + "' has chunkSize 0", c);
        }
      }
      const std::string scheme = lower(f.href.substr(0, f.href.find(':') + 1));
      if (scheme == "http:" || scheme == "https:" || scheme == "ftp:" || scheme == "file:") {
        warn("File '" + f.id + "' refers to '" + f.href +
                 "' outside the package; vandra never fetches it",
             c);
      } else if (unsafeHref(f.href)) {
        problem(ErrorCode::OvfReference,
                "File '" + f.id + "' href '" + f.href + "' leaves the package folder", c);
      } else if (!hrefs.insert(f.href).second) {
        problem(ErrorCode::OvfReference, "Two File elements name '" + f.href + "'", c);
      }
      files_[f.id] = f;
      file_by_href_.emplace(f.href, f.id);
      spec_.files.push_back(std::move(f));
    }
  }

  void readDisks(xmlNode* section) {
    requireInfo(section, "DiskSection");
    for (xmlNode* c : children(section)) {
      if (!isOvf(c) || nameOf(c) != "Disk") {
        continue;
      }
      DiskEntry d;
      d.line = lineOf(c);
      d.spec.id = ovfAttr(c, "diskId").value_or("");
      if (d.spec.id.empty()) {
        problem(ErrorCode::OvfInvalid, "Disk without ovf:diskId", c);
        continue;
      }
      if (disks_.count(d.spec.id) != 0) {
        problem(ErrorCode::OvfReference, "Duplicate Disk id '" + d.spec.id + "'", c);
        continue;
      }
      auto cap = ovfAttr(c, "capacity");
      if (!cap && ovirt_) {
        if (auto gib = ovfAttr(c, "size")) {
          d.spec.capacity_bytes =
              parseSize(*gib, "byte * 2^30", c, "Disk '" + d.spec.id + "' size").value_or(0);
        } else {
          warn("oVirt disk '" + d.spec.id + "' states no size (a LUN or external disk)", c);
        }
      } else if (!cap) {
        problem(ErrorCode::OvfInvalid, "Disk '" + d.spec.id + "' has no ovf:capacity", c);
      } else {
        auto v = parseSize(*cap, ovfAttr(c, "capacityAllocationUnits").value_or(""), c,
                           "Disk '" + d.spec.id + "' capacity");
        d.spec.capacity_bytes = v.value_or(0);
      }
      if (auto ps = ovfAttr(c, "populatedSize")) {
        d.spec.populated_bytes = parseSize(*ps, "", c, "Disk '" + d.spec.id + "' populatedSize");
        if (d.spec.populated_bytes && *d.spec.populated_bytes > d.spec.capacity_bytes &&
            d.spec.capacity_bytes != 0) {
          problem(ErrorCode::OvfValue,
                  "Disk '" + d.spec.id + "' populatedSize " +
                      std::to_string(*d.spec.populated_bytes) + " is larger than its capacity " +
                      std::to_string(d.spec.capacity_bytes),
                  c);
        }
      }
      d.spec.format_uri = ovfAttr(c, "format").value_or("");
      d.spec.format = diskFormatFromUri(d.spec.format_uri);
      d.file_ref = ovfAttr(c, "fileRef").value_or("");
      if (!d.file_ref.empty()) {
        auto it = files_.find(d.file_ref);
        if (it == files_.end()) {
          // oVirt writes the File's href instead of its id.
          if (file_by_href_.count(d.file_ref) != 0) {
            d.spec.file = d.file_ref;
          } else {
            problem(ErrorCode::OvfReference,
                    "Disk '" + d.spec.id + "' refers to unknown File '" + d.file_ref + "'", c);
          }
        } else {
          d.spec.file = it->second.href;
        }
      }
      if (auto parent = ovfAttr(c, "parentRef"); parent && !parent->empty()) {
        d.spec.parent = *parent;
      }
      if (!d.file_ref.empty()) {
        disk_by_file_.emplace(d.file_ref, d.spec.id);
      }
      if (d.spec.file) {
        disk_by_file_.emplace(*d.spec.file, d.spec.id);
      }
      if (d.spec.parent) {
        parent_disks_.insert(*d.spec.parent);
      }
      disks_[d.spec.id] = d;
      disk_order_.push_back(d.spec.id);
    }
    for (const auto& id : disk_order_) {
      const auto& d = disks_[id];
      if (d.spec.parent && disks_.count(*d.spec.parent) == 0) {
        problem(ErrorCode::OvfReference,
                "Disk '" + id + "' has unknown parentRef '" + *d.spec.parent + "'", nullptr);
        problems_.back().atLine(d.line);
      }
    }
  }

  void readNetworks(xmlNode* section) {
    requireInfo(section, "NetworkSection");
    for (xmlNode* c : children(section)) {
      if (!isOvf(c) || nameOf(c) != "Network") {
        continue;
      }
      NetworkSpec n;
      n.name = ovfAttr(c, "name").value_or("");
      if (n.name.empty()) {
        problem(ErrorCode::OvfInvalid, "Network without ovf:name", c);
        continue;
      }
      for (xmlNode* cc : children(c)) {
        if (isOvf(cc) && nameOf(cc) == "Description") {
          n.description = text(cc);
        }
      }
      if (!network_names_.insert(n.name).second) {
        problem(ErrorCode::OvfReference, "Duplicate Network name '" + n.name + "'", c);
        continue;
      }
      spec_.networks.push_back(std::move(n));
    }
  }

  // --- content -------------------------------------------------------------------------

  void readContent(xmlNode* c, const std::string& collection, int depth) {
    const std::string name = effectiveName(c);
    if (name == "VirtualSystem") {
      readVirtualSystem(c, collection);
      return;
    }
    const std::string id = ovfAttr(c, "id").value_or("");
    if (id.empty()) {
      problem(ErrorCode::OvfInvalid, "VirtualSystemCollection without ovf:id", c);
    }
    checkId(id, c);
    for (xmlNode* cc : children(c)) {
      if (!isOvf(cc)) {
        continue;
      }
      const std::string n = effectiveName(cc);
      if (n == "VirtualSystem" || n == "VirtualSystemCollection") {
        readContent(cc, id, depth + 1);
      } else if (n == "StartupSection") {
        readStartup(cc);
      }
    }
  }

  void checkId(const std::string& id, const xmlNode* at) {
    if (!id.empty() && !content_ids_.insert(id).second) {
      problem(ErrorCode::OvfReference, "Duplicate content id '" + id + "'", at);
    }
  }

  void readStartup(xmlNode* section) {
    for (xmlNode* it : children(section)) {
      if (!isOvf(it) || nameOf(it) != "Item") {
        continue;
      }
      StartupEntry e;
      e.id = ovfAttr(it, "id").value_or("");
      auto num = [&](const char* k) {
        auto v = ovfAttr(it, k);
        if (!v) {
          return 0;
        }
        auto p = parseUint(*v);
        if (!p || *p > 1000000) {
          problem(ErrorCode::OvfValue,
                  std::string("StartupSection ") + k + " '" + *v + "' is not a small whole number",
                  it);
          return 0;
        }
        return static_cast<int>(*p);
      };
      e.order = num("order");
      e.start_delay_s = num("startDelay");
      e.stop_delay_s = num("stopDelay");
      e.start_action = ovfAttr(it, "startAction").value_or("");
      e.stop_action = ovfAttr(it, "stopAction").value_or("");
      spec_.startup.push_back(std::move(e));
    }
  }

  void readVirtualSystem(xmlNode* vsNode, const std::string& collection) {
    VirtualSystemSpec vs;
    vs.collection = collection;
    vs.id = ovfAttr(vsNode, "id").value_or("");
    if (vs.id.empty()) {
      problem(ErrorCode::OvfInvalid, "VirtualSystem without ovf:id", vsNode);
    }
    checkId(vs.id, vsNode);
    xmlNode* hardware = nullptr;
    for (xmlNode* c : children(vsNode)) {
      if (nsOf(c) == kSlaNamespace && nameOf(c) == kSlaSectionName) {
        auto sla = readSlaSection(c, env_ns_);
        if (!sla) {
          problems_.push_back(sla.error());
        } else {
          vs.sla = *sla;
        }
        continue;
      }
      if (nsOf(c) == names::kVbox && nameOf(c) == "Machine") {
        readVboxMachine(c, vs);
        continue;
      }
      if (!isOvf(c)) {
        continue;
      }
      const std::string n = effectiveName(c);
      if (n == "Name") {
        vs.name = text(c);
      } else if (n == "VirtualHardwareSection") {
        // Several hardware sections are alternatives (per transport / platform); the first
        // is the one every producer writes for itself.
        if (hardware == nullptr) {
          hardware = c;
        }
      } else if (n == "OperatingSystemSection") {
        readOs(c, vs);
      } else if (n == "ProductSection") {
        readProduct(c, vs);
      } else if (n == "EulaSection") {
        requireInfo(c, "EulaSection");
        for (xmlNode* l : children(c)) {
          if (isOvf(l) && nameOf(l) == "License") {
            vs.eulas.push_back(text(l));
          }
        }
      } else if (n == "ResourceAllocationSection") {
        readResourceAllocation(c, vs);
      }
    }
    if (hardware == nullptr) {
      problem(ErrorCode::OvfInvalid, "VirtualSystem '" + vs.id + "' has no VirtualHardwareSection",
              vsNode);
    } else {
      readHardware(hardware, vs);
    }
    if (vs.name.empty()) {
      vs.name = vs.id;
    }
    spec_.virtual_systems.push_back(std::move(vs));
  }

  void readVboxMachine(xmlNode* machine, VirtualSystemSpec& vs) {
    // VirtualBox keeps its full settings here; only firmware and OS type matter to vandra.
    auto visit = [&](xmlNode* n, auto& self) -> void {
      for (xmlNode* c : children(n)) {
        if (nameOf(c) == "Firmware") {
          if (auto t = attr(c, "", "type"); t && lower(*t).starts_with("efi")) {
            vs.firmware = Firmware::Efi;
          }
        }
        self(c, self);
      }
    };
    visit(machine, visit);
    if (vs.os.description.empty()) {
      if (auto t = attr(machine, "", "OSType")) {
        vs.os.description = *t;
        vs.os.family = osFamilyFromName(*t);
      }
    }
  }

  void readOs(xmlNode* section, VirtualSystemSpec& vs) {
    requireInfo(section, "OperatingSystemSection");
    auto id = ovfAttr(section, "id");
    if (!id) {
      problem(ErrorCode::OvfInvalid, "OperatingSystemSection has no ovf:id", section);
    } else if (auto v = parseUint(*id); v && *v < 100000) {
      vs.os.cim_id = static_cast<int>(*v);
    } else if (!ovirt_) {
      problem(ErrorCode::OvfValue, "OperatingSystemSection ovf:id '" + *id + "' is not a number",
              section);
    }
    std::string desc;
    for (xmlNode* c : children(section)) {
      if (isOvf(c) && nameOf(c) == "Description") {
        desc = text(c);
      }
    }
    const auto vmwType = attr(section, names::kVmw, "osType");
    vs.os.description = vmwType ? *vmwType : desc;
    vs.os.family = osFamilyFromCimId(vs.os.cim_id);
    if (vs.os.family.empty() || vs.os.family == "other") {
      const std::string guess =
          osFamilyFromName(vs.os.description.empty() ? desc : vs.os.description);
      if (!guess.empty()) {
        vs.os.family = guess;
      }
    }
    if (vs.os.family.empty()) {
      vs.os.family = "other";
    }
  }

  void readProduct(xmlNode* section, VirtualSystemSpec& vs) {
    ProductSpec p;
    p.class_id = ovfAttr(section, "class").value_or("");
    p.instance = ovfAttr(section, "instance").value_or("");
    for (xmlNode* c : children(section)) {
      if (!isOvf(c)) {
        continue;
      }
      const std::string_view n = nameOf(c);
      if (n == "Product") {
        p.product = text(c);
      } else if (n == "Vendor") {
        p.vendor = text(c);
      } else if (n == "Version") {
        p.version = text(c);
      } else if (n == "FullVersion") {
        p.full_version = text(c);
      } else if (n == "ProductUrl") {
        p.product_url = text(c);
      }
    }
    forEachProperty(section, [&](xmlNode*, const Property& prop) { p.properties.push_back(prop); });
    vs.products.push_back(std::move(p));
  }

  void readResourceAllocation(xmlNode* section, VirtualSystemSpec& vs) {
    for (xmlNode* c : children(section)) {
      if (isOvf(c) && nameOf(c) == "Item" && selected(c)) {
        ItemView it = itemView(c, ItemKind::Rasd);
        applyAllocation(it, vs);
      }
    }
  }

  ItemView itemView(xmlNode* n, ItemKind kind) {
    ItemView v;
    v.node = n;
    v.kind = kind;
    for (xmlNode* c : children(n)) {
      const std::string_view ns = nsOf(c);
      if (ns.starts_with(names::kCimPrefix)) {
        std::string local(nameOf(c));
        if (iequals(local, "InstanceID")) {
          local = "InstanceID";  // OVF 0.9 producers wrote InstanceId
        }
        if (local == "HostResource") {
          v.host_resources.push_back(text(c));
        }
        v.fields.emplace(local, text(c));
      } else {
        v.extensions.push_back(c);
      }
    }
    return v;
  }

  std::optional<uint64_t> itemBytes(const ItemView& it, const std::string& field) {
    if (!it.has(field)) {
      return std::nullopt;
    }
    std::string units = it.get("AllocationUnits");
    if (units.empty()) {
      units = "byte * 2^20";  // memory without units: every producer means MB
    }
    return parseSize(it.get(field), units, it.node, "Memory " + field);
  }

  void applyAllocation(const ItemView& it, VirtualSystemSpec& vs) {
    const std::string type = it.get("ResourceType");
    if (type == "4") {
      if (auto r = itemBytes(it, "Reservation"); r && *r > 0) {
        vs.resources.memory_reservation_mib = *r >> 20;
      }
      if (auto l = itemBytes(it, "Limit"); l && *l > 0) {
        vs.resources.memory_limit_mib = *l >> 20;
      }
    } else if (type == "3") {
      if (auto r = parseUint(it.get("Reservation")); r && *r > 0) {
        vs.resources.cpu_reservation_mhz = *r;
      }
      if (auto l = parseUint(it.get("Limit")); l && *l > 0) {
        vs.resources.cpu_limit_mhz = *l;
      }
    }
  }

  void readHardware(xmlNode* section, VirtualSystemSpec& vs) {
    requireInfo(section, "VirtualHardwareSection");
    vs_disk_ids_.clear();
    std::vector<ItemView> items;
    std::map<std::string, size_t> item_by_iid;  // linear, not quadratic, in hostile input
    bool have_system = false;
    for (xmlNode* c : children(section)) {
      if (nsOf(c) == names::kVmw && nameOf(c) == "Config") {
        auto key = attr(c, names::kVmw, "key");
        auto value = attr(c, names::kVmw, "value");
        if (key && value && *key == "firmware") {
          vs.firmware = lower(*value) == "efi" ? Firmware::Efi : Firmware::Bios;
        }
        continue;
      }
      if (!isOvf(c) && nsOf(c) != env_ns_) {
        continue;
      }
      const std::string_view n = nameOf(c);
      if (n == "System") {
        have_system = true;
        for (xmlNode* s : children(c)) {
          if (nameOf(s) == "VirtualSystemType") {
            vs.hardware_family = text(s);
          } else if (nameOf(s) == "VirtualSystemIdentifier" && vs.name.empty()) {
            vs.name = text(s);
          }
        }
      } else if (n == "Item" || n == "StorageItem" || n == "EthernetPortItem") {
        ItemView view = itemView(c, n == "Item"          ? ItemKind::Rasd
                                    : n == "StorageItem" ? ItemKind::Storage
                                                         : ItemKind::Ethernet);
        for (const auto& hr : view.host_resources) {
          referenced_disks_.insert(hostResource(hr).second);
        }
        if (auto cfg = ovfAttr(c, "configuration")) {
          for (const auto& name : splitSpaces(*cfg)) {
            if (option_ids_.count(name) == 0) {
              problem(ErrorCode::OvfReference,
                      "Item is for deployment option '" + name +
                          "', which the descriptor does not declare",
                      c);
            }
          }
        }
        if (!selected(c)) {
          continue;
        }
        if (auto bound = ovfAttr(c, "bound"); bound && *bound != "normal") {
          continue;  // min/max bounds of a range; the normal value is what runs
        }
        // An Item for the selected configuration overrides a generic one with the same
        // InstanceID (how VMware writes per-configuration CPU and memory).
        const std::string iid = view.get("InstanceID");
        auto found = iid.empty() ? item_by_iid.end() : item_by_iid.find(iid);
        if (found != item_by_iid.end()) {
          ItemView* same = &items[found->second];
          const bool oldConfigured = ovfAttr(same->node, "configuration").has_value();
          const bool newConfigured = ovfAttr(c, "configuration").has_value();
          if (newConfigured && !oldConfigured) {
            *same = std::move(view);
            continue;
          }
          if (oldConfigured && !newConfigured) {
            continue;
          }
        }
        if (!iid.empty()) {
          item_by_iid.emplace(iid, items.size());
        }
        items.push_back(std::move(view));
      }
    }
    (void)have_system;  // optional in DSP8023 (minOccurs 0)
    std::map<std::string, std::string> controller_by_instance;
    std::map<ControllerKind, int> kind_count;
    std::set<std::string> instance_ids;
    bool have_cpu = false;
    bool have_memory = false;
    struct PendingController {
      ControllerSpec spec;
      std::string iid;
      std::optional<uint64_t> address;
      size_t order = 0;
    };
    std::vector<PendingController> pending;

    // Pass 1: everything that others refer to (controllers), CPU, memory.
    for (const auto& it : items) {
      const std::string iid = it.get("InstanceID");
      if (iid.empty() && !it.has("ResourceType")) {
        warn("Ignoring hardware Item with neither InstanceID nor ResourceType", it.node);
        continue;
      }
      if (!iid.empty() && !instance_ids.insert(iid).second) {
        problem(ErrorCode::OvfReference, "Duplicate hardware InstanceID '" + iid + "'", it.node);
      }
      const std::string type = it.get("ResourceType");
      if (type.empty()) {
        warn("Ignoring hardware Item '" + iid + "' without ResourceType", it.node);
        continue;
      }
      const std::string sub = lower(it.get("ResourceSubType"));
      std::optional<ControllerKind> kind;
      if (type == "3") {
        have_cpu = true;
        auto n = parseUint(it.get("VirtualQuantity"));
        if (!it.has("VirtualQuantity") && it.has("num_of_sockets")) {
          // oVirt: sockets x cores per socket x threads per core.
          const uint64_t sockets = parseUint(it.get("num_of_sockets")).value_or(1);
          const uint64_t cores = parseUint(it.get("cpu_per_socket")).value_or(1);
          const uint64_t threads = parseUint(it.get("threads_per_cpu")).value_or(1);
          if (sockets <= 1024 && cores <= 1024 && threads <= 16) {
            n = sockets * cores * threads;
            vs.cores_per_socket = static_cast<uint32_t>(cores);
          }
        }
        if (!n || *n == 0 || *n > 1024) {
          problem(ErrorCode::OvfValue,
                  "CPU count '" + it.get("VirtualQuantity") + "' is not 1..1024", it.node);
        } else {
          vs.vcpus = static_cast<uint32_t>(*n);
        }
        for (xmlNode* e : it.extensions) {
          if (nsOf(e) == names::kVmw && nameOf(e) == "CoresPerSocket") {
            if (auto cps = parseUint(text(e)); cps && *cps > 0 && *cps <= 1024) {
              vs.cores_per_socket = static_cast<uint32_t>(*cps);
            }
          }
        }
        applyAllocation(it, vs);
      } else if (type == "4") {
        have_memory = true;
        auto bytes = itemBytes(it, "VirtualQuantity");
        if (!it.has("VirtualQuantity")) {
          problem(ErrorCode::OvfInvalid, "Memory Item has no VirtualQuantity", it.node);
        } else if (bytes) {
          vs.memory_mib = (*bytes + (1U << 20) - 1) >> 20;
          if (vs.memory_mib == 0) {
            problem(ErrorCode::OvfValue, "Memory size is 0", it.node);
          }
        }
        applyAllocation(it, vs);
      } else if (type == "5") {
        kind = ControllerKind::Ide;
      } else if (type == "6") {
        kind = ControllerKind::Scsi;
      } else if (type == "20") {
        if (sub.find("nvme") != std::string::npos) {
          kind = ControllerKind::Nvme;
        } else if (sub.find("virtio") != std::string::npos) {
          kind = ControllerKind::Virtio;
        } else {
          kind = ControllerKind::Sata;  // "AHCI", "vmware.sata.ahci"
        }
      } else if (type == "23") {
        kind = ControllerKind::Usb;
      }
      if (kind && *kind == ControllerKind::Sata && ovirt_ && it.has("Device")) {
        kind.reset();  // oVirt: ResourceType 20 with rasd:Device is a graphics device (qxl, vga)
      }
      if (kind) {
        ControllerSpec cs;
        cs.kind = *kind;
        cs.model = sub;
        if (cs.model == "virtualscsi") {
          cs.model = "pvscsi";
        }
        pending.push_back({std::move(cs), iid, parseUint(it.get("Address")), pending.size()});
      }
    }
    // Controllers are named and listed by kind (in the order kinds first appear) and bus
    // address: ovftool writes "IDE 1" before "IDE 0"; without an address, document order.
    std::map<ControllerKind, size_t> kind_first;
    for (const auto& p : pending) {
      kind_first.emplace(p.spec.kind, p.order);
    }
    std::stable_sort(pending.begin(), pending.end(),
                     [&](const PendingController& a, const PendingController& b) {
                       const size_t ka = kind_first[a.spec.kind];
                       const size_t kb = kind_first[b.spec.kind];
                       if (ka != kb) {
                         return ka < kb;
                       }
                       const uint64_t aa = a.address.value_or(UINT64_MAX);
                       const uint64_t ba = b.address.value_or(UINT64_MAX);
                       return aa != ba ? aa < ba : a.order < b.order;
                     });
    for (auto& p : pending) {
      p.spec.id = std::string(toString(p.spec.kind)) + std::to_string(kind_count[p.spec.kind]++);
      controller_by_instance[p.iid] = p.spec.id;
    }
    for (auto& p : pending) {
      vs.controllers.push_back(std::move(p.spec));
    }
    if (!have_cpu) {
      warn("VirtualSystem '" + vs.id + "' states no CPU count; assuming 1", section);
    }
    if (!have_memory) {
      problem(ErrorCode::OvfInvalid, "VirtualSystem '" + vs.id + "' states no memory size",
              section);
    }

    // Pass 2: devices attached to controllers.
    for (const auto& it : items) {
      const std::string type = it.get("ResourceType");
      const std::string parent = it.get("Parent");
      std::string controller;
      if (!parent.empty() && parent.find_first_not_of("0-") != std::string::npos) {
        auto p = controller_by_instance.find(parent);
        if (p == controller_by_instance.end() && instance_ids.count(parent) != 0) {
          warn("Hardware Item '" + it.get("InstanceID") + "' has Parent '" + parent +
                   "', which is not a controller; the device is attached to a default one",
               it.node);
        } else if (p == controller_by_instance.end()) {
          if (type == "17" || type == "15" || type == "16" || type == "14") {
            problem(
                ErrorCode::OvfReference,
                "Hardware Item '" + it.get("InstanceID") + "' has unknown Parent '" + parent + "'",
                it.node);
          }
        } else {
          controller = p->second;
        }
      }
      int unit = 0;
      if (auto a = parseUint(it.get("AddressOnParent")); a && *a < 1024) {
        unit = static_cast<int>(*a);
      }
      if (type == "17" || (it.kind == ItemKind::Storage && type == "31")) {
        readDiskItem(it, vs, controller, unit);
      } else if (type == "15" || type == "16" || type == "14") {
        MediaSpec m;
        m.kind = type == "14" ? MediaKind::Floppy : MediaKind::Cdrom;
        m.controller = controller;
        for (const auto& hr : it.host_resources) {
          auto ref = hostResource(hr);
          if (!ref.second.empty() && ref.first == "file") {
            auto f = files_.find(ref.second);
            if (f == files_.end()) {
              problem(ErrorCode::OvfReference, "Drive refers to unknown File '" + ref.second + "'",
                      it.node);
            } else {
              m.file = f->second.href;
            }
          }
        }
        vs.media.push_back(std::move(m));
      } else if (type == "10" || type == "11" || it.kind == ItemKind::Ethernet) {
        NicSpec nic;
        nic.network = it.get("Connection");
        nic.model = nicModel(it.get("ResourceSubType"));
        if (ovirt_) {
          // oVirt numbers its NIC types: 1 rtl8139, 2 e1000, 3 virtio (pv).
          const std::string sub = it.get("ResourceSubType");
          nic.model = sub == "1"   ? "rtl8139"
                      : sub == "2" ? "e1000"
                      : sub == "3" ? "virtio"
                                   : nic.model;
        }
        auto ac = it.get("AutomaticAllocation");
        nic.connected = !(lower(ac) == "false" || ac == "0");
        if (!nic.network.empty() && !network_names_.empty() &&
            network_names_.count(nic.network) == 0) {
          problem(ErrorCode::OvfReference,
                  "Network adapter connects to unknown network '" + nic.network + "'", it.node);
        }
        std::string addr = it.get("Address");
        if (addr.empty()) {
          addr = it.get("MACAddress");  // oVirt
        }
        if (!addr.empty()) {
          nic.mac = normaliseMac(addr);
          if (!nic.mac) {
            warn("Ignoring network adapter address '" + addr + "' (not a MAC address)", it.node);
          }
        }
        vs.nics.push_back(std::move(nic));
      }
    }
  }

  // "ovf:/disk/ID", "/disk/ID", "ovf://disk/ID", "ovf:/file/ID" -> {"disk"|"file", ID};
  // anything else (oVirt: "group/image") -> {"", value}.
  static std::pair<std::string, std::string> hostResource(std::string v) {
    if (v.starts_with("ovf:")) {
      v = v.substr(4);
    }
    while (v.starts_with("/")) {
      v = v.substr(1);
    }
    for (const char* kind : {"disk", "file"}) {
      const std::string prefix = std::string(kind) + "/";
      if (v.starts_with(prefix)) {
        return {kind, v.substr(prefix.size())};
      }
    }
    return {"", v};
  }

  void readDiskItem(const ItemView& it, VirtualSystemSpec& vs, const std::string& controller,
                    int unit) {
    if (it.host_resources.empty()) {
      warn("Ignoring disk drive Item '" + it.get("InstanceID") + "' with no HostResource", it.node);
      return;
    }
    const auto resource = hostResource(it.host_resources.front());
    const std::string& kind = resource.first;
    const std::string& ref = resource.second;
    DiskSpec d;
    if (kind == "disk" || kind.empty()) {
      auto found = disks_.find(ref);
      if (found == disks_.end() && kind.empty()) {
        // oVirt: HostResource names the image path, which is the Disk's fileRef.
        if (auto byRef = disk_by_file_.find(ref); byRef != disk_by_file_.end()) {
          found = disks_.find(byRef->second);
        }
      }
      if (found == disks_.end()) {
        problem(ErrorCode::OvfReference, "Disk drive refers to unknown disk '" + ref + "'",
                it.node);
        return;
      }
      used_disks_.insert(found->first);
      d = found->second.spec;
    } else {
      auto f = files_.find(ref);
      if (f == files_.end()) {
        problem(ErrorCode::OvfReference, "Disk drive refers to unknown File '" + ref + "'",
                it.node);
        return;
      }
      d.id = ref;
      d.file = f->second.href;
      d.format = diskFormatFromUri(f->second.href);
      warn("Disk drive '" + it.get("InstanceID") +
               "' points at a File directly; its capacity comes from the image",
           it.node);
    }
    d.controller = controller;
    d.unit = unit;
    // Several drives may instantiate one blank Disk definition (vCSA does); each drive is
    // its own disk, so ids are kept unique within the virtual system.
    const std::string base = d.id;
    for (int n = 2; vs_disk_ids_.count(d.id) != 0; ++n) {
      d.id = base + "-" + std::to_string(n);
    }
    vs_disk_ids_.insert(d.id);
    vs.disks.push_back(std::move(d));
  }

  void checkUnusedDisks() {
    for (const auto& id : disk_order_) {
      if (used_disks_.count(id) == 0 && referenced_disks_.count(id) == 0) {
        // A parent of a delta disk is used through its child.
        const bool isParent = parent_disks_.count(id) != 0;
        if (!isParent) {
          spec_.warnings.push_back("Disk '" + id + "' is not attached to any virtual system");
        }
      }
    }
  }

  xmlDoc* doc_;
  const ReadOptions& options_;
  std::string env_ns_;
  VmSpec spec_;
  std::vector<Error> problems_;
  std::map<std::string, std::string> properties_;
  std::map<std::string, FileSpec> files_;
  std::map<std::string, DiskEntry> disks_;
  std::vector<std::string> disk_order_;
  std::set<std::string> used_disks_;
  std::set<std::string> network_names_;
  std::set<std::string> content_ids_;
  std::set<std::string> referenced_disks_;           // by any Item, in any configuration
  std::map<std::string, std::string> disk_by_file_;  // fileRef or href -> disk id (oVirt)
  std::set<std::string> parent_disks_;
  std::map<std::string, std::string> file_by_href_;  // href -> File id
  std::set<std::string> option_ids_;
  std::set<std::string> vs_disk_ids_;  // disk ids of the virtual system being read
  bool ovirt_ = false;
};

}  // namespace

Result<DescriptorReadResult> readDescriptor(std::string_view xml_text, const ReadOptions& options) {
  VANDRA_TRY_ASSIGN(auto doc, xml::parse(xml_text));
  Reader reader(doc.get(), options);
  return reader.run();
}

}  // namespace vandra::ovf
