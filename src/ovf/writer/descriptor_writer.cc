// VmSpec -> OVF descriptor text (OVF 1.0 or 2.0). Pure: no I/O, deterministic output (the
// golden tests compare bytes). Follows what ovftool and VirtualBox import: RASD children in
// schema (alphabetical) order, bytes as disk capacity unit, vmw:Config for EFI firmware.
// It must not invent hardware the spec does not state, nor accept values XML cannot carry.
#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <set>

#include "os_ids.h"
#include "vandra/ovf/writer.h"
#include "xml_builder.h"

namespace vandra::ovf {
namespace {

using detail::Attrs;
using detail::XmlBuilder;

constexpr std::string_view kOvf1Ns = "http://schemas.dmtf.org/ovf/envelope/1";
constexpr std::string_view kOvf2Ns = "http://schemas.dmtf.org/ovf/envelope/2";
constexpr std::string_view kRasdNs =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
constexpr std::string_view kVssdNs =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
constexpr std::string_view kSasdNs =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData";
constexpr std::string_view kEpasdNs =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData";
constexpr std::string_view kVmwNs = "http://www.vmware.com/schema/ovf";
constexpr std::string_view kStreamOptimizedUri =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

Unexpected invalid(const std::string& field, const std::string& why) {
  return fail(ErrorCode::InvalidArgument, "Field '" + field + "' " + why);
}

std::string num(uint64_t v) {
  return std::to_string(v);
}

// Shortest round-trip form, independent of the C locale.
std::string num(double v) {
  std::array<char, 64> buf{};
  auto [p, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return ec == std::errc() ? std::string(buf.data(), p) : std::string("0");
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// Format names of VmSpec -> the format URIs importers recognise.
std::optional<std::string_view> formatUri(std::string_view format) {
  if (format.empty() || format == "vmdk-stream") {
    return kStreamOptimizedUri;
  }
  if (format == "vmdk-sparse") {
    return "http://www.vmware.com/interfaces/specifications/vmdk.html#sparse";
  }
  if (format == "vmdk-flat") {
    return "http://www.vmware.com/interfaces/specifications/vmdk.html#monolithicFlat";
  }
  if (format == "qcow2") {
    return "http://www.gnome.org/~markmc/qcow-image-format.html";
  }
  if (format == "vhd") {
    return "http://technet.microsoft.com/en-us/virtualserver/bb676673.aspx";
  }
  if (format == "iso") {
    return "http://www.ecma-international.org/publications/standards/Ecma-119.htm";
  }
  return std::nullopt;
}

// Normalised model names -> the spelling ovftool / VirtualBox write; unknown ones pass as given.
std::string controllerSubtype(const ControllerSpec& c) {
  static const std::map<std::string, std::string, std::less<>> kNames = {
      {"piix3", "PIIX3"},
      {"piix4", "PIIX4"},
      {"ich6", "ICH6"},
      {"ahci", "AHCI"},
      {"lsilogic", "lsilogic"},
      {"lsilogicsas", "lsilogicsas"},
      {"buslogic", "buslogic"},
      {"pvscsi", "VirtualSCSI"},
      {"virtualscsi", "VirtualSCSI"},
      {"virtio-scsi", "virtio-scsi"},
      {"nvme", "vmware.nvme.controller"},
      {"vmware.sata.ahci", "vmware.sata.ahci"},
      {"ehci", "vmware.usb.ehci"},
      {"xhci", "vmware.usb.xhci"},
  };
  if (c.model.empty()) {
    switch (c.kind) {
      case ControllerKind::Ide:
        return "PIIX4";
      case ControllerKind::Scsi:
        return "lsilogic";
      case ControllerKind::Sata:
        return "AHCI";
      case ControllerKind::Nvme:
        return "vmware.nvme.controller";
      case ControllerKind::Virtio:
        return "virtio-blk";
      case ControllerKind::Usb:
        return "vmware.usb.ehci";
      case ControllerKind::Floppy:
        return "";
    }
    return "";
  }
  auto it = kNames.find(lower(c.model));
  return it == kNames.end() ? c.model : it->second;
}

std::string nicSubtype(const std::string& model) {
  static const std::map<std::string, std::string, std::less<>> kNames = {
      {"e1000", "E1000"},   {"e1000e", "E1000e"}, {"vmxnet3", "VmxNet3"}, {"vmxnet2", "VmxNet2"},
      {"virtio", "virtio"}, {"pcnet", "PCNet32"}, {"pcnet32", "PCNet32"}, {"rtl8139", "RTL8139"},
  };
  auto it = kNames.find(lower(model));
  return it == kNames.end() ? model : it->second;
}

// One RASD/SASD/EPASD item: children are sorted by name when written, because the CIM
// schemas declare them as an alphabetical xs:sequence and ovftool rejects other orders.
struct Item {
  std::string element = "Item";  // "Item", "StorageItem", "EthernetPortItem"
  std::string prefix = "rasd";
  std::vector<std::pair<std::string, std::string>> fields;
  std::vector<std::pair<std::string, std::string>> vendor;  // vmw:* after the CIM fields
  std::string instance_id;

  void add(std::string name, std::string value) {
    fields.emplace_back(std::move(name), std::move(value));
  }
};

void writeItem(XmlBuilder& x, Item item) {
  std::ranges::sort(item.fields, {}, &std::pair<std::string, std::string>::first);
  x.open(item.element);
  for (const auto& [name, value] : item.fields) {
    x.leaf(item.prefix + ":" + name, value);
  }
  for (const auto& [name, value] : item.vendor) {
    x.leaf(name, value, {{"ovf:required", "false"}});
  }
  x.close();
}

struct Ctx {
  const VmSpec& spec;
  WriteVersion version;
  std::map<std::string, std::string> file_id_by_href;  // References href -> ovf:id
};

Result<void> writeSla(XmlBuilder& x, const Sla& sla, const std::string& field) {
  if (auto ok = validateSla(sla); !ok) {
    Error e = ok.error();
    e.message = field + ": " + e.message;
    return fail(std::move(e));
  }
  const std::string p(kSlaPrefix);
  x.open(p + ":" + std::string(kSlaSectionName),
         {{"xmlns:" + p, std::string(kSlaNamespace)},
          {"ovf:required", sla.required ? "true" : "false"}});
  x.leaf("Info", "vandra service-level agreement");
  if (sla.downtime_budget_ms) {
    x.leaf(p + ":DowntimeBudgetMs", num(uint64_t{*sla.downtime_budget_ms}));
  }
  if (!sla.jurisdictions.empty()) {
    x.open(p + ":Jurisdictions");
    for (const auto& j : sla.jurisdictions) {
      x.leaf(p + ":Jurisdiction", j);
    }
    x.close();
  }
  if (sla.max_rtt) {
    x.empty(p + ":MaxRtt", {{p + ":location", sla.max_rtt->location},
                            {p + ":ms", num(uint64_t{sla.max_rtt->ms})}});
  }
  x.leaf(p + ":EncryptionInTransit", sla.encryption_in_transit ? "required" : "optional");
  if (sla.anti_affinity_group) {
    x.leaf(p + ":AntiAffinityGroup", *sla.anti_affinity_group);
  }
  if (sla.max_cost_per_hour) {
    x.leaf(p + ":MaxCostPerHour", num(*sla.max_cost_per_hour), {{p + ":currency", sla.currency}});
  }
  x.leaf(p + ":Mobility", std::string(toString(sla.mobility)));
  if (sla.availability_percent) {
    x.leaf(p + ":Availability", num(*sla.availability_percent));
  }
  if (sla.max_migration_mbps) {
    x.leaf(p + ":MaxMigrationMbps", num(uint64_t{*sla.max_migration_mbps}));
  }
  if (sla.post_copy_allowed) {
    x.leaf(p + ":PostCopy", "allowed");
  }
  x.close();
  return {};
}

void writeOs(XmlBuilder& x, const OsSpec& os) {
  const detail::OsIdInfo* info = detail::osIdInfo(os.cim_id);
  // A description that is itself a VMware guest id ("ubuntu64Guest") is passed through.
  const bool desc_is_vmw =
      os.description.size() > 5 &&
      (os.description.ends_with("Guest") || os.description.ends_with("Guest64")) &&
      std::ranges::all_of(os.description, [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
      });
  Attrs attrs{{"ovf:id", std::to_string(os.cim_id)}};
  if (desc_is_vmw) {
    attrs.emplace_back("vmw:osType", os.description);
  } else if (info != nullptr && !info->vmw_os_type.empty()) {
    attrs.emplace_back("vmw:osType", std::string(info->vmw_os_type));
  }
  x.open("OperatingSystemSection", attrs);
  x.leaf("Info", "The kind of installed guest operating system");
  // A VMware guest id already went into vmw:osType; Description gets the human-readable name.
  if (!os.description.empty() && !(desc_is_vmw && info != nullptr)) {
    x.leaf("Description", os.description);
  } else if (info != nullptr) {
    x.leaf("Description", std::string(info->name));
  }
  x.close();
}

Result<void> writeHardware(XmlBuilder& x, Ctx& ctx, const VirtualSystemSpec& vs,
                           const std::string& field) {
  const bool v2 = ctx.version == WriteVersion::V2_0;
  x.open("VirtualHardwareSection");
  x.leaf("Info", "Virtual hardware requirements");
  std::string family = vs.hardware_family;
  if (family.empty()) {
    // NVMe needs VMware hardware version 13; otherwise 10 imports on every supported ESXi.
    const bool nvme = std::ranges::any_of(
        vs.controllers, [](const ControllerSpec& c) { return c.kind == ControllerKind::Nvme; });
    family = nvme ? "vmx-13 virtualbox-2.2" : "vmx-10 virtualbox-2.2";
  }
  x.open("System");
  x.leaf("vssd:ElementName", "Virtual Hardware Family");
  x.leaf("vssd:InstanceID", "0");
  x.leaf("vssd:VirtualSystemIdentifier", vs.name.empty() ? vs.id : vs.name);
  x.leaf("vssd:VirtualSystemType", family);
  x.close();

  int next_id = 1;
  if (vs.vcpus == 0) {
    return invalid(field + ".vcpus", "must be at least 1");
  }
  if (vs.memory_mib == 0) {
    return invalid(field + ".memory_mib", "must be at least 1");
  }
  {
    Item cpu;
    cpu.add("AllocationUnits", "hertz * 10^6");
    cpu.add("Description", "Number of Virtual CPUs");
    cpu.add("ElementName", std::to_string(vs.vcpus) + " virtual CPU(s)");
    cpu.add("InstanceID", std::to_string(next_id++));
    cpu.add("ResourceType", "3");
    cpu.add("VirtualQuantity", std::to_string(vs.vcpus));
    if (vs.resources.cpu_reservation_mhz) {
      cpu.add("Reservation", num(*vs.resources.cpu_reservation_mhz));
    }
    if (vs.resources.cpu_limit_mhz) {
      cpu.add("Limit", num(*vs.resources.cpu_limit_mhz));
    }
    if (vs.cores_per_socket != 0) {
      cpu.vendor.emplace_back("vmw:CoresPerSocket", std::to_string(vs.cores_per_socket));
    }
    writeItem(x, std::move(cpu));
  }
  {
    Item mem;
    mem.add("AllocationUnits", "byte * 2^20");
    mem.add("Description", "Memory Size");
    mem.add("ElementName", std::to_string(vs.memory_mib) + "MB of memory");
    mem.add("InstanceID", std::to_string(next_id++));
    mem.add("ResourceType", "4");
    mem.add("VirtualQuantity", num(vs.memory_mib));
    if (vs.resources.memory_reservation_mib) {
      mem.add("Reservation", num(*vs.resources.memory_reservation_mib));
    }
    if (vs.resources.memory_limit_mib) {
      mem.add("Limit", num(*vs.resources.memory_limit_mib));
    }
    writeItem(x, std::move(mem));
  }

  // Controllers first: disks and drives refer to them by InstanceID.
  std::map<std::string, std::string> ctrl_instance;  // controller id -> InstanceID ("" = none)
  std::map<std::string, std::set<int>> used_units;
  std::map<ControllerKind, int> kind_count;
  for (size_t i = 0; i < vs.controllers.size(); ++i) {
    const auto& c = vs.controllers[i];
    const std::string cf = field + ".controllers[" + std::to_string(i) + "]";
    if (c.id.empty()) {
      return invalid(cf + ".id", "is empty");
    }
    if (ctrl_instance.count(c.id) != 0) {
      return invalid(cf + ".id", "'" + c.id + "' is used twice");
    }
    const int address = kind_count[c.kind]++;
    if (c.kind == ControllerKind::Floppy) {
      // OVF floppy drives (ResourceType 14) hang off no controller item.
      ctrl_instance[c.id] = "";
      continue;
    }
    Item item;
    const std::string iid = std::to_string(next_id++);
    ctrl_instance[c.id] = iid;
    item.add("InstanceID", iid);
    item.add("Address", std::to_string(address));
    const std::string sub = controllerSubtype(c);
    if (!sub.empty()) {
      item.add("ResourceSubType", sub);
    }
    switch (c.kind) {
      case ControllerKind::Ide:
        item.add("Description", "IDE Controller");
        item.add("ResourceType", "5");
        break;
      case ControllerKind::Scsi:
        item.add("Description", "SCSI Controller");
        item.add("ResourceType", "6");
        break;
      case ControllerKind::Sata:
        item.add("Description", "SATA Controller");
        item.add("ResourceType", "20");
        break;
      case ControllerKind::Nvme:
        item.add("Description", "NVMe Controller");
        item.add("ResourceType", "20");
        break;
      case ControllerKind::Virtio:
        item.add("Description", "VirtIO Controller");
        item.add("ResourceType", "20");
        break;
      case ControllerKind::Usb:
        item.add("Description", "USB Controller");
        item.add("ResourceType", "23");
        break;
      case ControllerKind::Floppy:
        break;
    }
    item.add("ElementName", c.id);
    writeItem(x, std::move(item));
  }

  auto parentOf = [&](const std::string& ctrl, const std::string& f) -> Result<std::string> {
    auto it = ctrl_instance.find(ctrl);
    if (it == ctrl_instance.end()) {
      return invalid(f, "names controller '" + ctrl + "' which the virtual system does not have");
    }
    return it->second;
  };

  for (size_t i = 0; i < vs.disks.size(); ++i) {
    const auto& d = vs.disks[i];
    const std::string df = field + ".disks[" + std::to_string(i) + "]";
    VANDRA_TRY_ASSIGN(const std::string parent, parentOf(d.controller, df + ".controller"));
    if (d.unit < 0) {
      return invalid(df + ".unit", "must not be negative");
    }
    if (!used_units[d.controller].insert(d.unit).second) {
      return invalid(df + ".unit", std::to_string(d.unit) + " is used twice on controller '" +
                                       d.controller + "'");
    }
    Item item;
    if (v2) {
      item.element = "StorageItem";
      item.prefix = "sasd";
    }
    item.add("AddressOnParent", std::to_string(d.unit));
    item.add("Description", "Hard disk");
    item.add("ElementName", "disk" + std::to_string(i));
    item.add("HostResource", "ovf:/disk/" + d.id);
    item.add("InstanceID", std::to_string(next_id++));
    if (!parent.empty()) {
      item.add("Parent", parent);
    }
    item.add("ResourceType", "17");
    writeItem(x, std::move(item));
  }

  int cd_n = 0;
  int fd_n = 0;
  for (size_t i = 0; i < vs.media.size(); ++i) {
    const auto& m = vs.media[i];
    const std::string mf = field + ".media[" + std::to_string(i) + "]";
    std::string parent;
    if (!(m.kind == MediaKind::Floppy && m.controller.empty())) {
      VANDRA_TRY_ASSIGN(parent, parentOf(m.controller, mf + ".controller"));
    }
    Item item;
    if (!parent.empty()) {
      // Drives take the lowest unit the disks left free on their controller.
      int unit = 0;
      auto& used = used_units[m.controller];
      while (used.count(unit) != 0) {
        ++unit;
      }
      used.insert(unit);
      item.add("AddressOnParent", std::to_string(unit));
      item.add("Parent", parent);
    }
    item.add("AutomaticAllocation", m.file ? "true" : "false");
    if (m.file) {
      auto it = ctx.file_id_by_href.find(*m.file);
      if (it == ctx.file_id_by_href.end()) {
        return invalid(mf + ".file", "'" + *m.file + "' is not in files");
      }
      item.add("HostResource", "ovf:/file/" + it->second);
    }
    item.add("InstanceID", std::to_string(next_id++));
    if (m.kind == MediaKind::Cdrom) {
      item.add("Description", "CD-ROM drive");
      item.add("ElementName", "cdrom" + std::to_string(cd_n++));
      item.add("ResourceType", "15");
    } else {
      item.add("Description", "Floppy drive");
      item.add("ElementName", "floppy" + std::to_string(fd_n++));
      item.add("ResourceType", "14");
    }
    writeItem(x, std::move(item));
  }

  for (size_t i = 0; i < vs.nics.size(); ++i) {
    const auto& n = vs.nics[i];
    const std::string nf = field + ".nics[" + std::to_string(i) + "]";
    if (!n.network.empty() && std::ranges::none_of(ctx.spec.networks, [&](const NetworkSpec& net) {
          return net.name == n.network;
        })) {
      return invalid(nf + ".network", "'" + n.network + "' is not in networks");
    }
    Item item;
    if (v2) {
      item.element = "EthernetPortItem";
      item.prefix = "epasd";
    }
    if (n.mac) {
      item.add("Address", *n.mac);
    }
    item.add("AutomaticAllocation", n.connected ? "true" : "false");
    if (!n.network.empty()) {
      item.add("Connection", n.network);
    }
    const std::string sub = nicSubtype(n.model);
    item.add("Description", (sub.empty() ? std::string("Ethernet") : sub) + " ethernet adapter" +
                                (n.network.empty() ? "" : " on \"" + n.network + "\""));
    item.add("ElementName", "ethernet" + std::to_string(i));
    item.add("InstanceID", std::to_string(next_id++));
    if (!sub.empty()) {
      item.add("ResourceSubType", sub);
    }
    item.add("ResourceType", "10");
    writeItem(x, std::move(item));
  }

  if (vs.firmware == Firmware::Efi) {
    x.empty("vmw:Config",
            {{"ovf:required", "false"}, {"vmw:key", "firmware"}, {"vmw:value", "efi"}});
  }
  x.close();
  return {};
}

Result<void> writeProduct(XmlBuilder& x, const ProductSpec& p, const std::string& field) {
  Attrs attrs;
  if (!p.class_id.empty()) {
    attrs.emplace_back("ovf:class", p.class_id);
  }
  if (!p.instance.empty()) {
    attrs.emplace_back("ovf:instance", p.instance);
  }
  x.open("ProductSection", attrs);
  x.leaf("Info", "Information about the installed software");
  // Element order of ProductSection_Type.
  if (!p.product.empty()) {
    x.leaf("Product", p.product);
  }
  if (!p.vendor.empty()) {
    x.leaf("Vendor", p.vendor);
  }
  if (!p.version.empty()) {
    x.leaf("Version", p.version);
  }
  if (!p.full_version.empty()) {
    x.leaf("FullVersion", p.full_version);
  }
  if (!p.product_url.empty()) {
    x.leaf("ProductUrl", p.product_url);
  }
  std::set<std::string> keys;
  for (size_t i = 0; i < p.properties.size(); ++i) {
    const auto& pr = p.properties[i];
    const std::string pf = field + ".properties[" + std::to_string(i) + "]";
    if (pr.key.empty()) {
      return invalid(pf + ".key", "is empty");
    }
    if (!keys.insert(pr.key).second) {
      return invalid(pf + ".key", "'" + pr.key + "' is used twice");
    }
    Attrs pa{{"ovf:key", pr.key}, {"ovf:type", pr.type.empty() ? "string" : pr.type}};
    if (pr.user_configurable) {
      pa.emplace_back("ovf:userConfigurable", "true");
    }
    if (pr.password) {
      pa.emplace_back("ovf:password", "true");
    }
    pa.emplace_back("ovf:value", pr.value);
    if (pr.label.empty() && pr.description.empty()) {
      x.empty("Property", pa);
      continue;
    }
    x.open("Property", pa);
    if (!pr.label.empty()) {
      x.leaf("Label", pr.label);
    }
    if (!pr.description.empty()) {
      x.leaf("Description", pr.description);
    }
    x.close();
  }
  x.close();
  return {};
}

Result<void> writeVirtualSystem(XmlBuilder& x, Ctx& ctx, const VirtualSystemSpec& vs,
                                const std::string& field) {
  x.open("VirtualSystem", {{"ovf:id", vs.id}});
  x.leaf("Info", "A virtual machine");
  x.leaf("Name", vs.name.empty() ? vs.id : vs.name);
  writeOs(x, vs.os);
  VANDRA_TRY(writeHardware(x, ctx, vs, field));
  for (size_t i = 0; i < vs.products.size(); ++i) {
    VANDRA_TRY(writeProduct(x, vs.products[i], field + ".products[" + std::to_string(i) + "]"));
  }
  for (const auto& eula : vs.eulas) {
    x.open("EulaSection");
    x.leaf("Info", "An end-user license agreement");
    x.leaf("License", eula);
    x.close();
  }
  if (vs.sla) {
    VANDRA_TRY(writeSla(x, *vs.sla, field + ".sla"));
  }
  x.close();
  return {};
}

// Checks the envelope-wide references before anything is written.
Result<void> checkReferences(Ctx& ctx) {
  const VmSpec& spec = ctx.spec;
  if (spec.virtual_systems.empty()) {
    return invalid("virtual_systems", "is empty");
  }
  std::set<std::string> file_ids;
  for (size_t i = 0; i < spec.files.size(); ++i) {
    const auto& f = spec.files[i];
    const std::string ff = "files[" + std::to_string(i) + "]";
    if (f.id.empty() || !file_ids.insert(f.id).second) {
      return invalid(ff + ".id", "'" + f.id + "' is empty or used twice");
    }
    if (f.href.empty() || !ctx.file_id_by_href.emplace(f.href, f.id).second) {
      return invalid(ff + ".href", "'" + f.href + "' is empty or used twice");
    }
  }
  std::set<std::string> vs_ids;
  std::set<std::string> disk_ids;
  for (size_t v = 0; v < spec.virtual_systems.size(); ++v) {
    const auto& vs = spec.virtual_systems[v];
    const std::string vf = "virtual_systems[" + std::to_string(v) + "]";
    if (vs.id.empty() || !vs_ids.insert(vs.id).second) {
      return invalid(vf + ".id", "'" + vs.id + "' is empty or used twice");
    }
    for (size_t i = 0; i < vs.disks.size(); ++i) {
      const auto& d = vs.disks[i];
      const std::string df = vf + ".disks[" + std::to_string(i) + "]";
      if (d.id.empty() || !disk_ids.insert(d.id).second) {
        return invalid(df + ".id", "'" + d.id + "' is empty or used twice");
      }
      if (d.capacity_bytes == 0) {
        return invalid(df + ".capacity_bytes", "must be greater than 0");
      }
      if (d.file && ctx.file_id_by_href.count(*d.file) == 0) {
        return invalid(df + ".file", "'" + *d.file + "' is not in files");
      }
      if (d.format_uri.empty() && !formatUri(d.format)) {
        return invalid(df + ".format",
                       "'" + d.format + "' has no known format URI; set format_uri");
      }
    }
  }
  for (size_t v = 0; v < spec.virtual_systems.size(); ++v) {
    for (size_t i = 0; i < spec.virtual_systems[v].disks.size(); ++i) {
      const auto& d = spec.virtual_systems[v].disks[i];
      if (d.parent && disk_ids.count(*d.parent) == 0) {
        return invalid(
            "virtual_systems[" + std::to_string(v) + "].disks[" + std::to_string(i) + "].parent",
            "'" + *d.parent + "' is not a disk");
      }
    }
  }
  for (size_t i = 0; i < spec.startup.size(); ++i) {
    if (vs_ids.count(spec.startup[i].id) == 0) {
      return invalid("startup[" + std::to_string(i) + "].id",
                     "'" + spec.startup[i].id + "' is not a virtual system");
    }
  }
  return {};
}

}  // namespace

Result<std::string> writeDescriptor(const VmSpec& spec, WriteVersion version) {
  Ctx ctx{spec, version, {}};
  VANDRA_TRY(checkReferences(ctx));
  const bool v2 = version == WriteVersion::V2_0;
  const std::string ovf_ns(v2 ? kOvf2Ns : kOvf1Ns);

  XmlBuilder x;
  Attrs env{{"xmlns", ovf_ns},
            {"xmlns:ovf", ovf_ns},
            {"xmlns:rasd", std::string(kRasdNs)},
            {"xmlns:vssd", std::string(kVssdNs)}};
  if (v2) {
    env.emplace_back("xmlns:sasd", std::string(kSasdNs));
    env.emplace_back("xmlns:epasd", std::string(kEpasdNs));
  }
  env.emplace_back("xmlns:vmw", std::string(kVmwNs));
  env.emplace_back("xmlns:" + std::string(kSlaPrefix), std::string(kSlaNamespace));
  env.emplace_back("ovf:version", v2 ? "2.0" : "1.0");
  x.open("Envelope", env);

  x.open("References");
  for (const auto& f : spec.files) {
    Attrs a{{"ovf:href", f.href}, {"ovf:id", f.id}};
    if (f.size) {
      a.emplace_back("ovf:size", num(*f.size));
    }
    if (!f.compression.empty()) {
      a.emplace_back("ovf:compression", f.compression);
    }
    if (f.chunk_size) {
      a.emplace_back("ovf:chunkSize", num(*f.chunk_size));
    }
    x.empty("File", a);
  }
  x.close();

  const bool any_disk = std::ranges::any_of(
      spec.virtual_systems, [](const VirtualSystemSpec& vs) { return !vs.disks.empty(); });
  if (any_disk) {
    x.open("DiskSection");
    x.leaf("Info", "Virtual disk information");
    for (const auto& vs : spec.virtual_systems) {
      for (const auto& d : vs.disks) {
        Attrs a{{"ovf:capacity", num(d.capacity_bytes)},
                {"ovf:capacityAllocationUnits", "byte"},
                {"ovf:diskId", d.id}};
        if (d.file) {
          a.emplace_back("ovf:fileRef", ctx.file_id_by_href.at(*d.file));
        }
        a.emplace_back("ovf:format",
                       d.format_uri.empty() ? std::string(*formatUri(d.format)) : d.format_uri);
        if (d.parent) {
          a.emplace_back("ovf:parentRef", *d.parent);
        }
        if (d.populated_bytes) {
          a.emplace_back("ovf:populatedSize", num(*d.populated_bytes));
        }
        x.empty("Disk", a);
      }
    }
    x.close();
  }

  if (!spec.networks.empty()) {
    x.open("NetworkSection");
    x.leaf("Info", "The list of logical networks");
    for (const auto& n : spec.networks) {
      x.open("Network", {{"ovf:name", n.name}});
      x.leaf("Description", n.description.empty() ? "The " + n.name + " network" : n.description);
      x.close();
    }
    x.close();
  }

  if (!spec.deployment_options.empty()) {
    x.open("DeploymentOptionSection");
    x.leaf("Info", "Deployment configurations");
    for (const auto& o : spec.deployment_options) {
      Attrs a{{"ovf:id", o.id}};
      if (o.is_default) {
        a.emplace_back("ovf:default", "true");
      }
      x.open("Configuration", a);
      x.leaf("Label", o.label.empty() ? o.id : o.label);
      x.leaf("Description", o.description.empty() ? o.id : o.description);
      x.close();
    }
    x.close();
  }

  // Several systems (or a start order) need a VirtualSystemCollection around them.
  std::string collection = spec.virtual_systems.front().collection;
  for (size_t i = 0; i < spec.virtual_systems.size(); ++i) {
    if (spec.virtual_systems[i].collection != collection) {
      return invalid("virtual_systems[" + std::to_string(i) + "].collection",
                     "differs from the first system's; nested collections are not written");
    }
  }
  const bool wrap = spec.virtual_systems.size() > 1 || !spec.startup.empty() || !collection.empty();
  if (wrap) {
    if (collection.empty()) {
      collection = "vApp";
    }
    x.open("VirtualSystemCollection", {{"ovf:id", collection}});
    x.leaf("Info", "A collection of virtual machines");
    x.leaf("Name", collection);
    if (!spec.startup.empty()) {
      x.open("StartupSection");
      x.leaf("Info", "VM start order");
      for (const auto& s : spec.startup) {
        x.empty("Item", {{"ovf:id", s.id},
                         {"ovf:order", std::to_string(s.order)},
                         {"ovf:startAction", s.start_action.empty() ? "powerOn" : s.start_action},
                         {"ovf:startDelay", std::to_string(s.start_delay_s)},
                         {"ovf:stopAction", s.stop_action.empty() ? "powerOff" : s.stop_action},
                         {"ovf:stopDelay", std::to_string(s.stop_delay_s)}});
      }
      x.close();
    }
  }
  for (size_t v = 0; v < spec.virtual_systems.size(); ++v) {
    VANDRA_TRY(writeVirtualSystem(x, ctx, spec.virtual_systems[v],
                                  "virtual_systems[" + std::to_string(v) + "]"));
  }
  if (wrap) {
    x.close();
  }
  x.close();
  return x.finish();
}

}  // namespace vandra::ovf
