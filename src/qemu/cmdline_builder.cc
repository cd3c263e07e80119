// VirtualSystemSpec -> qemu-system-x86_64 argv. Pure: must not touch files, sockets, clocks
// or the environment (golden tests depend on it). Option values that QEMU splits on commas
// are escaped (",," ); block nodes use -blockdev JSON so paths need no escaping there.
#include "vandra/qemu/cmdline_builder.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <set>

namespace vandra::qemu {
namespace {

using nlohmann::json;
using ovf::ControllerKind;

Unexpected invalid(std::string what) { return fail(ErrorCode::InvalidArgument, std::move(what)); }

// QemuOpts values: a comma ends the value unless doubled.
std::string escapeOpt(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    out += c;
    if (c == ',') {
      out += ',';
    }
  }
  return out;
}

bool isAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// QEMU node-names and device ids: a letter, then letters, digits, '-', '.', '_'; node-names
// are limited to 31 bytes, and "file-"/"fmt-"/"disk-" prefixes need room.
bool isSafeId(std::string_view id) {
  if (id.empty() || id.size() > 24 || !((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z'))) {
    return false;
  }
  for (char c : id) {
    if (!isAlnum(c) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

bool isTapName(std::string_view t) {
  if (t.empty() || t.size() > 15) {  // IFNAMSIZ - 1
    return false;
  }
  for (char c : t) {
    if (!isAlnum(c) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

bool isHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return c - 'A' + 10;
}

// "xx:xx:xx:xx:xx:xx", unicast (the group bit of the first octet clear).
Result<std::string> normaliseMac(std::string_view mac, size_t nic) {
  std::string out;
  bool ok = mac.size() == 17;
  for (size_t i = 0; ok && i < mac.size(); ++i) {
    ok = (i % 3 == 2) ? mac[i] == ':' : isHex(mac[i]);
  }
  if (ok && (hexValue(mac[1]) & 1) != 0) {
    ok = false;
  }
  if (!ok) {
    return invalid("NIC " + std::to_string(nic) + " MAC '" + std::string(mac) +
                   "' is not a unicast xx:xx:xx:xx:xx:xx address");
  }
  for (char c : mac) {
    out += (c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return out;
}

bool isUuid(std::string_view u) {
  if (u.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < u.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? u[i] != '-' : !isHex(u[i])) {
      return false;
    }
  }
  return true;
}

Result<std::string> nicModel(const ovf::NicSpec& nic, size_t index) {
  const std::string& m = nic.model;
  if (m.empty() || m == "virtio" || m == "virtio-net") {
    return std::string("virtio-net-pci");
  }
  if (m == "e1000" || m == "e1000e" || m == "vmxnet3" || m == "rtl8139") {
    return m;
  }
  if (m == "vmxnet") {
    return std::string("vmxnet3");  // QEMU emulates only vmxnet3; VMware Tools drives both
  }
  if (m == "pcnet" || m == "pcnet32") {
    return std::string("pcnet");
  }
  return fail(ErrorCode::Unsupported,
              "NIC " + std::to_string(index) + " model '" + m + "' has no QEMU device");
}

// Node/device stem per disk: the OVF id when it is a safe QEMU id, else "d<index>".
Result<std::vector<std::string>> diskStems(const std::vector<ovf::DiskSpec>& disks) {
  std::vector<std::string> stems;
  std::set<std::string> seen;
  for (size_t i = 0; i < disks.size(); ++i) {
    std::string stem = isSafeId(disks[i].id) ? disks[i].id : "d" + std::to_string(i);
    if (!seen.insert(stem).second) {
      return invalid("Disk '" + disks[i].id + "' maps to QEMU node name '" + stem +
                     "' that another disk already uses");
    }
    stems.push_back(std::move(stem));
  }
  return stems;
}

void add(std::vector<std::string>& argv, std::string opt, std::string value) {
  argv.push_back(std::move(opt));
  argv.push_back(std::move(value));
}

std::string dumpJson(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Result<void> requirePath(const std::string& value, const char* what) {
  if (value.empty()) {
    return invalid(std::string("QemuRunConfig.") + what + " is empty");
  }
  if (value.find('\n') != std::string::npos || value.find('\0') != std::string::npos) {
    return invalid(std::string("QemuRunConfig.") + what + " contains a newline or NUL");
  }
  return {};
}

} // namespace

std::string stableMac(std::string_view vm_id, size_t nic_index) {
  // FNV-1a 64 over "<vm id>\0<index>": fixed, platform-independent, no randomness.
  uint64_t h = 14695981039346656037ULL;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ULL;
  };
  for (char c : vm_id) {
    mix(static_cast<unsigned char>(c));
  }
  mix(0);
  for (char c : std::to_string(nic_index)) {
    mix(static_cast<unsigned char>(c));
  }
  constexpr std::array<char, 16> kHex{'0', '1', '2', '3', '4', '5', '6', '7',
                                      '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  std::string mac = "52:54:00";
  for (int shift = 16; shift >= 0; shift -= 8) {
    const auto byte = static_cast<unsigned>((h >> shift) & 0xffU);
    mac += ':';
    mac += kHex[byte >> 4];
    mac += kHex[byte & 0xfU];
  }
  return mac;
}

Result<std::vector<std::string>> buildCommandLine(const ovf::VirtualSystemSpec& vs,
                                                  const QemuRunConfig& cfg) {
  if (cfg.accel != "kvm" && cfg.accel != "tcg") {
    return invalid("QemuRunConfig.accel '" + cfg.accel + "' is neither kvm nor tcg");
  }
  if (cfg.machine.empty() || cfg.cpu.empty() || cfg.binary.empty()) {
    return invalid("QemuRunConfig binary, machine and cpu must be set");
  }
  if (vs.vcpus == 0) {
    return invalid("Virtual system '" + vs.id + "' has 0 vCPUs");
  }
  if (vs.memory_mib == 0) {
    return invalid("Virtual system '" + vs.id + "' has no memory");
  }
  VANDRA_TRY(requirePath(cfg.qmp_socket, "qmp_socket"));
  VANDRA_TRY(requirePath(cfg.qmp_event_socket, "qmp_event_socket"));
  VANDRA_TRY(requirePath(cfg.serial_log, "serial_log"));
  VANDRA_TRY(requirePath(cfg.pidfile, "pidfile"));
  // sockaddr_un.sun_path is 108 bytes with the NUL; QEMU refuses longer paths at start-up.
  for (const std::string* sock : {&cfg.qmp_socket, &cfg.qmp_event_socket}) {
    if (sock->size() > 107) {
      return invalid("QMP socket path '" + *sock + "' is longer than 107 bytes");
    }
  }
  if (cfg.qmp_socket == cfg.qmp_event_socket) {
    return invalid("The QMP command and event sockets must differ");
  }
  if (vs.firmware == ovf::Firmware::Efi && !cfg.ovmf_code) {
    return fail(ErrorCode::Unsupported,
                "Virtual system '" + vs.id +
                    "' needs EFI firmware: install the Debian package 'ovmf' and pass its "
                    "OVMF_CODE.fd");
  }
  if (cfg.uuid && !isUuid(*cfg.uuid)) {
    return invalid("UUID '" + *cfg.uuid + "' is not 8-4-4-4-12 hex");
  }
  if (cfg.nics.size() != vs.nics.size()) {
    return invalid("Virtual system '" + vs.id + "' has " + std::to_string(vs.nics.size()) +
                   " NICs but the run config has " + std::to_string(cfg.nics.size()) + " taps");
  }

  std::vector<std::string> argv{cfg.binary};
  add(argv, "-name", "guest=" + escapeOpt(vs.id) + ",debug-threads=on");
  if (cfg.uuid) {
    add(argv, "-uuid", *cfg.uuid);
  }
  add(argv, "-machine", escapeOpt(cfg.machine));
  add(argv, "-accel", cfg.accel);
  add(argv, "-cpu", escapeOpt(cfg.cpu));
  add(argv, "-m", std::to_string(vs.memory_mib) + "M");
  std::string smp = std::to_string(vs.vcpus);
  if (vs.cores_per_socket > 0 && vs.cores_per_socket <= vs.vcpus &&
      vs.vcpus % vs.cores_per_socket == 0) {
    smp += ",sockets=" + std::to_string(vs.vcpus / vs.cores_per_socket) +
           ",cores=" + std::to_string(vs.cores_per_socket) + ",threads=1";
  }
  add(argv, "-smp", smp);
  argv.insert(argv.end(), {"-nodefaults", "-no-user-config", "-display", "none"});

  if (vs.firmware == ovf::Firmware::Efi) {
    VANDRA_TRY(requirePath(*cfg.ovmf_code, "ovmf_code"));
    add(argv, "-drive",
        "if=pflash,format=raw,unit=0,readonly=on,file=" + escapeOpt(*cfg.ovmf_code));
    if (cfg.ovmf_vars) {
      VANDRA_TRY(requirePath(*cfg.ovmf_vars, "ovmf_vars"));
      add(argv, "-drive", "if=pflash,format=raw,unit=1,file=" + escapeOpt(*cfg.ovmf_vars));
    }
  }

  add(argv, "-chardev",
      "socket,id=qmp,path=" + escapeOpt(cfg.qmp_socket) + ",server=on,wait=off");
  add(argv, "-mon", "chardev=qmp,mode=control");
  add(argv, "-chardev",
      "socket,id=qmp-event,path=" + escapeOpt(cfg.qmp_event_socket) + ",server=on,wait=off");
  add(argv, "-mon", "chardev=qmp-event,mode=control");
  add(argv, "-serial", "file:" + cfg.serial_log);  // "file:" takes the rest literally
  add(argv, "-pidfile", cfg.pidfile);

  // Controllers that need a device of their own; IDE uses the q35 built-in AHCI.
  std::map<std::string, ControllerKind> controller_kind;
  std::vector<std::string> controller_args;
  std::set<std::string> controller_used;
  for (const auto& d : vs.disks) {
    controller_used.insert(d.controller);
  }
  for (const auto& c : vs.controllers) {
    if (!controller_kind.emplace(c.id, c.kind).second) {
      return invalid("Controller id '" + c.id + "' appears twice");
    }
    if (controller_used.count(c.id) == 0) {
      continue;  // nothing attached: a guest-visible device would only confuse it
    }
    if (!isSafeId(c.id)) {
      return invalid("Controller id '" + c.id + "' is not usable as a QEMU device id");
    }
    switch (c.kind) {
      case ControllerKind::Scsi:
        controller_args.insert(controller_args.end(), {"-device", "virtio-scsi-pci,id=" + c.id});
        break;
      case ControllerKind::Sata:
        controller_args.insert(controller_args.end(), {"-device", "ahci,id=" + c.id});
        break;
      case ControllerKind::Nvme:
        controller_args.insert(controller_args.end(),
                               {"-device", "nvme,id=" + c.id + ",serial=" + c.id});
        break;
      case ControllerKind::Ide:
      case ControllerKind::Virtio:
        break;
      case ControllerKind::Floppy:
      case ControllerKind::Usb:
        return fail(ErrorCode::Unsupported, "Disks on " + std::string(ovf::toString(c.kind)) +
                                                " controller '" + c.id + "' are not supported");
    }
  }

  VANDRA_TRY_ASSIGN(auto stems, diskStems(vs.disks));
  std::vector<std::string> disk_args;
  int ide_index = -1;  // ide controllers in spec order map to AHCI port pairs
  std::map<std::string, int> ide_ports;
  for (const auto& c : vs.controllers) {
    if (c.kind == ControllerKind::Ide) {
      ide_ports[c.id] = ++ide_index;
    }
  }
  for (size_t i = 0; i < vs.disks.size(); ++i) {
    const auto& d = vs.disks[i];
    const std::string& stem = stems[i];
    auto overlay = cfg.disk_overlays.find(d.id);
    if (overlay == cfg.disk_overlays.end() || overlay->second.empty()) {
      return invalid("Disk '" + d.id + "' has no qcow2 overlay in the run config");
    }
    VANDRA_TRY(requirePath(overlay->second, "disk_overlays"));
    add(argv, "-blockdev",
        dumpJson(json{{"driver", "file"},
                      {"filename", overlay->second},
                      {"node-name", "file-" + stem},
                      {"discard", "unmap"}}));
    add(argv, "-blockdev",
        dumpJson(json{{"driver", "qcow2"},
                      {"file", "file-" + stem},
                      {"node-name", "fmt-" + stem},
                      {"discard", "unmap"}}));

    const std::string common = ",drive=fmt-" + stem + ",id=disk-" + stem +
                               ",bootindex=" + std::to_string(i + 1);
    ControllerKind kind = ControllerKind::Virtio;
    if (!d.controller.empty()) {
      auto k = controller_kind.find(d.controller);
      if (k == controller_kind.end()) {
        return invalid("Disk '" + d.id + "' names unknown controller '" + d.controller + "'");
      }
      kind = k->second;
    }
    if (d.unit < 0) {
      return invalid("Disk '" + d.id + "' has a negative unit");
    }
    const auto unit = static_cast<unsigned>(d.unit);
    switch (kind) {
      case ControllerKind::Virtio:
        disk_args.insert(disk_args.end(), {"-device", "virtio-blk-pci" + common});
        break;
      case ControllerKind::Scsi:
        if (unit > 255) {
          return invalid("Disk '" + d.id + "' SCSI unit " + std::to_string(unit) + " > 255");
        }
        disk_args.insert(disk_args.end(),
                         {"-device", "scsi-hd,bus=" + d.controller + ".0,channel=0,scsi-id=" +
                                         std::to_string(unit) + ",lun=0" + common});
        break;
      case ControllerKind::Ide: {
        // Two IDE channels' master/slave -> four of the six q35 AHCI ports (ide.0 - ide.3).
        const int port = ide_ports.at(d.controller) * 2 + static_cast<int>(unit);
        if (unit > 1 || port > 5) {
          return invalid("Disk '" + d.id + "' IDE address does not fit the q35 AHCI ports");
        }
        disk_args.insert(disk_args.end(),
                         {"-device", "ide-hd,bus=ide." + std::to_string(port) + common});
        break;
      }
      case ControllerKind::Sata:
        if (unit > 5) {
          return invalid("Disk '" + d.id + "' SATA port " + std::to_string(unit) + " > 5");
        }
        disk_args.insert(disk_args.end(), {"-device", "ide-hd,bus=" + d.controller + "." +
                                                          std::to_string(unit) + common});
        break;
      case ControllerKind::Nvme:
        disk_args.insert(disk_args.end(),
                         {"-device", "nvme-ns,bus=" + d.controller + ",nsid=" +
                                         std::to_string(unit + 1) + common});
        break;
      case ControllerKind::Floppy:
      case ControllerKind::Usb:
        return fail(ErrorCode::Internal, "unreachable: refused with its controller");
    }
  }
  argv.insert(argv.end(), controller_args.begin(), controller_args.end());
  argv.insert(argv.end(), disk_args.begin(), disk_args.end());

  for (size_t i = 0; i < vs.nics.size(); ++i) {
    const auto& nic = vs.nics[i];
    const auto& host = cfg.nics[i];
    if (!isTapName(host.tap)) {
      return invalid("NIC " + std::to_string(i) + " tap name '" + host.tap + "' is not valid");
    }
    VANDRA_TRY_ASSIGN(const std::string model, nicModel(nic, i));
    std::string mac;
    if (host.mac) {
      VANDRA_TRY_ASSIGN(mac, normaliseMac(*host.mac, i));
    } else if (nic.mac) {
      VANDRA_TRY_ASSIGN(mac, normaliseMac(*nic.mac, i));
    } else {
      mac = stableMac(vs.id, i);
    }
    const std::string n = std::to_string(i);
    add(argv, "-netdev", "tap,id=net" + n + ",ifname=" + host.tap + ",script=no,downscript=no");
    add(argv, "-device", model + ",netdev=net" + n + ",mac=" + mac + ",id=nic" + n);
  }

  if (cfg.kernel) {
    VANDRA_TRY(requirePath(*cfg.kernel, "kernel"));
    add(argv, "-kernel", *cfg.kernel);
  }
  if (cfg.initrd) {
    if (!cfg.kernel) {
      return invalid("QemuRunConfig.initrd needs kernel");
    }
    VANDRA_TRY(requirePath(*cfg.initrd, "initrd"));
    add(argv, "-initrd", *cfg.initrd);
  }
  if (cfg.append) {
    if (!cfg.kernel) {
      return invalid("QemuRunConfig.append needs kernel");
    }
    add(argv, "-append", *cfg.append);
  }
  if (cfg.incoming) {
    if (cfg.incoming->empty()) {
      return invalid("QemuRunConfig.incoming is empty");
    }
    add(argv, "-incoming", *cfg.incoming);
  }
  return argv;
}

} // namespace vandra::qemu
