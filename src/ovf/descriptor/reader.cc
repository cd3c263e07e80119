// The descriptor reader (reader.h): the envelope and everything but the hardware items.
#include "reader.h"

#include <algorithm>
#include <map>
#include <set>

#include "os_types.h"
#include "ovf_names.h"
#include "sla_section.h"
#include "units.h"

namespace vandra::ovf::reading {

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

Result<DescriptorReadResult> Reader::run() {
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

// OVF elements are those in the Envelope's namespace. Unqualified elements count too:
// OVF 0.9 producers and the DMTF draft wrote children without a prefix.
bool Reader::isOvf(const xmlNode* n) const {
  const auto ns = nsOf(n);
  return ns == env_ns_ || ns.empty();
}

std::optional<std::string> Reader::ovfAttr(const xmlNode* n, std::string_view local) const {
  if (auto v = attr(n, env_ns_, local)) {
    return v;
  }
  return attr(n, "", local);
}

// Name of an OVF element, with 0.9's <Section xsi:type="ovf:DiskSection_Type"> and
// <Content xsi:type="ovf:VirtualSystem_Type"> resolved through the in-scope namespaces.
std::string Reader::effectiveName(xmlNode* n) const {
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

void Reader::problem(ErrorCode code, std::string msg, const xmlNode* at) {
  Error e(code, std::move(msg));
  if (at != nullptr && lineOf(at) > 0) {
    e.atLine(lineOf(at));
  }
  problems_.push_back(std::move(e));
}

void Reader::warn(std::string msg, const xmlNode* at) {
  if (at != nullptr && lineOf(at) > 0) {
    msg += " (line " + std::to_string(lineOf(at)) + ")";
  }
  spec_.warnings.push_back(std::move(msg));
}

bool Reader::isRequired(const xmlNode* n) const {
  auto r = ovfAttr(n, "required");
  return !r || (*r != "false" && *r != "0");
}

bool Reader::selected(const xmlNode* n) const {
  auto cfg = ovfAttr(n, "configuration");
  if (!cfg) {
    return true;
  }
  const auto list = splitSpaces(*cfg);
  return std::find(list.begin(), list.end(), spec_.configuration) != list.end();
}

std::string Reader::infoOf(const xmlNode* section) {
  for (xmlNode* c : children(section)) {
    if (isOvf(c) && nameOf(c) == "Info") {
      return text(c);
    }
  }
  return {};
}

bool Reader::hasInfo(const xmlNode* section) {
  for (xmlNode* c : children(section)) {
    if (isOvf(c) && nameOf(c) == "Info") {
      return true;
    }
  }
  return false;
}

void Reader::requireInfo(const xmlNode* section, const std::string& what) {
  if (!hasInfo(section)) {
    problem(ErrorCode::OvfInvalid, what + " has no Info element", section);
  }
}

void Reader::checkExtensions(xmlNode* n) {
  for (xmlNode* c : children(n)) {
    const std::string_view ns = nsOf(c);
    if (ns == env_ns_ || ns.empty()) {
      const std::string name = effectiveName(c);
      const bool sectionLike = name.ends_with("Section") || name == "Section" || name == "Content";
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

bool Reader::isSectionOrTopLevel(const xmlNode* c) const {
  const std::string_view name = nameOf(c);
  return name.ends_with("Section") && c->parent != nullptr &&
         (nameOf(c->parent) == "Envelope" || nameOf(c->parent) == "VirtualSystem" ||
          nameOf(c->parent) == "VirtualSystemCollection");
}

std::string Reader::describeName(const xmlNode* c, const std::string& name) const {
  const std::string_view ns = nsOf(c);
  return "{" + std::string(ns) + "}" + name;
}

void Reader::reportUnknown(const xmlNode* c, const std::string& what) {
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

void Reader::readContent(xmlNode* c, const std::string& collection, int depth) {
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

void Reader::checkId(const std::string& id, const xmlNode* at) {
  if (!id.empty() && !content_ids_.insert(id).second) {
    problem(ErrorCode::OvfReference, "Duplicate content id '" + id + "'", at);
  }
}

void Reader::readStartup(xmlNode* section) {
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

void Reader::readVirtualSystem(xmlNode* vsNode, const std::string& collection) {
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

void Reader::readVboxMachine(xmlNode* machine, VirtualSystemSpec& vs) {
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

void Reader::readOs(xmlNode* section, VirtualSystemSpec& vs) {
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

void Reader::readProduct(xmlNode* section, VirtualSystemSpec& vs) {
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

void Reader::readResourceAllocation(xmlNode* section, VirtualSystemSpec& vs) {
  for (xmlNode* c : children(section)) {
    if (isOvf(c) && nameOf(c) == "Item" && selected(c)) {
      ItemView it = itemView(c, ItemKind::Rasd);
      applyAllocation(it, vs);
    }
  }
}

}  // namespace vandra::ovf::reading
