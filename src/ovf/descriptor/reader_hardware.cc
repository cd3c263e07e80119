// The descriptor reader (reader.h): the VirtualHardwareSection's items.
#include <algorithm>
#include <map>
#include <set>

#include "os_types.h"
#include "ovf_names.h"
#include "reader.h"
#include "sla_section.h"
#include "units.h"

namespace vandra::ovf::reading {

ItemView Reader::itemView(xmlNode* n, ItemKind kind) {
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

std::optional<uint64_t> Reader::itemBytes(const ItemView& it, const std::string& field) {
  if (!it.has(field)) {
    return std::nullopt;
  }
  std::string units = it.get("AllocationUnits");
  if (units.empty()) {
    units = "byte * 2^20";  // memory without units: every producer means MB
  }
  return parseSize(it.get(field), units, it.node, "Memory " + field);
}

void Reader::applyAllocation(const ItemView& it, VirtualSystemSpec& vs) {
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

void Reader::readHardware(xmlNode* section, VirtualSystemSpec& vs) {
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
        problem(ErrorCode::OvfValue, "CPU count '" + it.get("VirtualQuantity") + "' is not 1..1024",
                it.node);
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
    problem(ErrorCode::OvfInvalid, "VirtualSystem '" + vs.id + "' states no memory size", section);
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
std::pair<std::string, std::string> Reader::hostResource(std::string v) {
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

void Reader::readDiskItem(const ItemView& it, VirtualSystemSpec& vs, const std::string& controller,
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
      problem(ErrorCode::OvfReference, "Disk drive refers to unknown disk '" + ref + "'", it.node);
      return;
    }
    used_disks_.insert(found->first);
    d = found->second.spec;
  } else {
    auto f = files_.find(ref);
    if (f == files_.end()) {
      problem(ErrorCode::OvfReference, "Disk drive refers to unknown File '" + ref + "'", it.node);
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

void Reader::checkUnusedDisks() {
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

}  // namespace vandra::ovf::reading
