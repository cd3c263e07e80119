// VirtualSystemSpec -> qemu-system-x86_64 argv. Pure: must not touch files, sockets, clocks
// or the environment (golden tests depend on it). Option values that QEMU splits on commas
// are escaped (",," ); block nodes use -blockdev JSON so paths need no escaping there.
#include "vandra/qemu/cmdline_builder.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>

#include "vandra/qemu/names.h"

namespace vandra::qemu {
namespace {

using nlohmann::json;
using ovf::ControllerKind;

Unexpected invalid(std::string what) {
  return fail(ErrorCode::InvalidArgument, std::move(what));
}

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

bool isHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

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

void add(std::vector<std::string>& argv, std::string opt, std::string value) {
  argv.push_back(std::move(opt));
  argv.push_back(std::move(value));
}

std::string dumpJson(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<void> requirePath(const std::string& value, const char* what) {
  if (value.empty()) {
    return invalid(std::string("QemuRunConfig.") + what + " is empty");
  }
  if (value.find('\n') != std::string::npos || value.find('\0') != std::string::npos) {
    return invalid(std::string("QemuRunConfig.") + what + " contains a newline or NUL");
  }
  return {};
}

// The NIC's QEMU device id; startupQmpCommands() names NICs by it.
std::string nicDeviceId(size_t index) {
  return "nic" + std::to_string(index);
}

}  // namespace

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

Result<std::string> nicMac(const ovf::VirtualSystemSpec& vs, size_t nic_index) {
  if (nic_index >= vs.nics.size()) {
    return fail(ErrorCode::InvalidArgument, "No NIC " + std::to_string(nic_index));
  }
  const auto& nic = vs.nics[nic_index];
  return nic.mac ? normaliseMac(*nic.mac, nic_index)
                 : Result<std::string>(stableMac(vs.id, nic_index));
}

std::vector<std::string> mediaIds(const ovf::VirtualSystemSpec& vs) {
  std::vector<std::string> ids;
  size_t cdroms = 0;
  size_t floppies = 0;
  for (const auto& m : vs.media) {
    ids.push_back(m.kind == ovf::MediaKind::Floppy ? "floppy" + std::to_string(floppies++)
                                                   : "cdrom" + std::to_string(cdroms++));
  }
  return ids;
}

std::vector<std::string> unbackedMedia(const ovf::VirtualSystemSpec& vs, const QemuRunConfig& cfg) {
  const std::vector<std::string> ids = mediaIds(vs);
  std::vector<std::string> out;
  for (size_t i = 0; i < vs.media.size(); ++i) {
    if (vs.media[i].file && cfg.media_files.count(ids[i]) == 0) {
      out.push_back(ids[i]);
    }
  }
  return out;
}

std::vector<QmpStartupCommand> startupQmpCommands(const ovf::VirtualSystemSpec& vs) {
  std::vector<QmpStartupCommand> out;
  for (size_t i = 0; i < vs.nics.size(); ++i) {
    if (!vs.nics[i].connected) {
      // The NIC's device id, not the tap's netdev id: the guest is told the link is down.
      out.push_back({"set_link", json{{"name", nicDeviceId(i)}, {"up", false}}});
    }
  }
  return out;
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
  if (cfg.accel == "tcg") {
    // QEMU 7.2 under TCG loses guest writes during a live migration when the RAM size is a
    // multiple of 256 KiB: its dirty-bitmap fast path clears the bits without re-arming the
    // TCG TLB's write tracking, so pages written through cached TLB entries are not re-sent
    // and the target runs on stale memory (later QEMUs reset the TLB there). 8 KiB more
    // RAM takes QEMU's slow path, which re-arms them. KVM tracks writes itself: there the
    // size is exactly the OVF's. docs/migration/qemu-engine.md ("TCG and dirty pages").
    add(argv, "-m", std::to_string(vs.memory_mib * 1024 + kTcgExtraRamKib) + "k");
  } else {
    add(argv, "-m", std::to_string(vs.memory_mib) + "M");
  }
  std::string smp = std::to_string(vs.vcpus);
  if (vs.cores_per_socket > 0 && vs.cores_per_socket <= vs.vcpus &&
      vs.vcpus % vs.cores_per_socket == 0) {
    smp += ",sockets=" + std::to_string(vs.vcpus / vs.cores_per_socket) +
           ",cores=" + std::to_string(vs.cores_per_socket) + ",threads=1";
  }
  add(argv, "-smp", smp);
  argv.insert(argv.end(), {"-nodefaults", "-no-user-config", "-display", "none"});
  if (cfg.start_paused) {
    argv.push_back("-S");
  }

  if (vs.firmware == ovf::Firmware::Efi) {
    VANDRA_TRY(requirePath(*cfg.ovmf_code, "ovmf_code"));
    add(argv, "-drive",
        "if=pflash,format=raw,unit=0,readonly=on,file=" + escapeOpt(*cfg.ovmf_code));
    if (cfg.ovmf_vars) {
      VANDRA_TRY(requirePath(*cfg.ovmf_vars, "ovmf_vars"));
      add(argv, "-drive", "if=pflash,format=raw,unit=1,file=" + escapeOpt(*cfg.ovmf_vars));
    }
  }

  add(argv, "-chardev", "socket,id=qmp,path=" + escapeOpt(cfg.qmp_socket) + ",server=on,wait=off");
  add(argv, "-mon", "chardev=qmp,mode=control");
  add(argv, "-chardev",
      "socket,id=qmp-event,path=" + escapeOpt(cfg.qmp_event_socket) + ",server=on,wait=off");
  add(argv, "-mon", "chardev=qmp-event,mode=control");
  add(argv, "-serial", "file:" + cfg.serial_log);  // "file:" takes the rest literally
  add(argv, "-pidfile", cfg.pidfile);

  // Controllers that need a device of their own; IDE uses the q35 built-in AHCI and floppies
  // the one isa-fdc added with the first floppy drive.
  std::map<std::string, ControllerKind> controller_kind;
  std::vector<std::string> controller_args;
  std::set<std::string> disk_controllers;
  std::set<std::string> media_controllers;
  std::set<std::string> device_ids;  // controller devices, kept apart from media ids
  for (const auto& d : vs.disks) {
    disk_controllers.insert(d.controller);
  }
  for (const auto& m : vs.media) {
    media_controllers.insert(m.controller);
  }
  for (const auto& c : vs.controllers) {
    if (!controller_kind.emplace(c.id, c.kind).second) {
      return invalid("Controller id '" + c.id + "' appears twice");
    }
    const bool has_disks = disk_controllers.count(c.id) != 0;
    if (!has_disks && media_controllers.count(c.id) == 0) {
      continue;  // nothing attached: a guest-visible device would only confuse it
    }
    if (!isSafeQemuId(c.id)) {
      return invalid("Controller id '" + c.id + "' is not usable as a QEMU device id");
    }
    switch (c.kind) {
      case ControllerKind::Scsi:
        controller_args.insert(controller_args.end(), {"-device", "virtio-scsi-pci,id=" + c.id});
        device_ids.insert(c.id);
        break;
      case ControllerKind::Sata:
        controller_args.insert(controller_args.end(), {"-device", "ahci,id=" + c.id});
        device_ids.insert(c.id);
        break;
      case ControllerKind::Nvme:
        controller_args.insert(controller_args.end(),
                               {"-device", "nvme,id=" + c.id + ",serial=" + c.id});
        device_ids.insert(c.id);
        break;
      case ControllerKind::Ide:
      case ControllerKind::Virtio:
        break;
      case ControllerKind::Floppy:
      case ControllerKind::Usb:
        if (has_disks) {
          return fail(ErrorCode::Unsupported, "Disks on " + std::string(ovf::toString(c.kind)) +
                                                  " controller '" + c.id + "' are not supported");
        }
        break;  // media: decided per drive below
    }
  }

  // Bus address -> who uses it ("disk 'x'", "CD-ROM 'cdrom0'"): two devices on one address
  // would make QEMU refuse the whole command line.
  std::map<std::string, std::string> taken;
  auto claim = [&taken](const std::string& address, const std::string& who) -> Result<void> {
    auto [it, fresh] = taken.emplace(address, who);
    if (!fresh) {
      return invalid("Bus address " + address + " is used by both " + it->second + " and " + who);
    }
    return {};
  };

  VANDRA_TRY_ASSIGN(const auto names, diskNames(vs.disks));
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
    const DiskNames& n = names[i];
    auto overlay = cfg.disk_overlays.find(d.id);
    if (overlay == cfg.disk_overlays.end() || overlay->second.empty()) {
      return invalid("Disk '" + d.id + "' has no qcow2 overlay in the run config");
    }
    VANDRA_TRY(requirePath(overlay->second, "disk_overlays"));
    add(argv, "-blockdev",
        dumpJson(json{{"driver", "file"},
                      {"filename", overlay->second},
                      {"node-name", n.file_node},
                      {"discard", "unmap"}}));
    add(argv, "-blockdev",
        dumpJson(json{{"driver", "qcow2"},
                      {"file", n.file_node},
                      {"node-name", n.format_node},
                      {"discard", "unmap"}}));

    const std::string common =
        ",drive=" + n.format_node + ",id=" + n.device_id + ",bootindex=" + std::to_string(i + 1);
    const std::string who = "disk '" + d.id + "'";
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
        VANDRA_TRY(claim(d.controller + ".0 scsi-id " + std::to_string(unit), who));
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
        VANDRA_TRY(claim("ide." + std::to_string(port), who));
        disk_args.insert(disk_args.end(),
                         {"-device", "ide-hd,bus=ide." + std::to_string(port) + common});
        break;
      }
      case ControllerKind::Sata:
        if (unit > 5) {
          return invalid("Disk '" + d.id + "' SATA port " + std::to_string(unit) + " > 5");
        }
        VANDRA_TRY(claim(d.controller + "." + std::to_string(unit), who));
        disk_args.insert(disk_args.end(), {"-device", "ide-hd,bus=" + d.controller + "." +
                                                          std::to_string(unit) + common});
        break;
      case ControllerKind::Nvme:
        VANDRA_TRY(claim(d.controller + " nsid " + std::to_string(unit + 1), who));
        disk_args.insert(disk_args.end(), {"-device", "nvme-ns,bus=" + d.controller + ",nsid=" +
                                                          std::to_string(unit + 1) + common});
        break;
      case ControllerKind::Floppy:
      case ControllerKind::Usb:
        return fail(ErrorCode::Internal, "unreachable: refused with its controller");
    }
  }

  // Removable media. The spec gives them no unit: each takes the first free address on its
  // controller, those naming a controller first, then the rest on the built-in AHCI.
  const std::vector<std::string> media_ids = mediaIds(vs);
  for (const auto& [id, path] : cfg.media_files) {
    if (std::find(media_ids.begin(), media_ids.end(), id) == media_ids.end()) {
      return invalid("QemuRunConfig.media_files names '" + id + "', which is not one of the " +
                     "VM's media (cdrom<n>/floppy<n> in spec order)");
    }
    VANDRA_TRY(requirePath(path, ("media_files[" + id + "]").c_str()));
  }
  std::vector<std::string> media_bus(vs.media.size());  // device options placing each drive
  std::vector<bool> media_scsi(vs.media.size(), false);
  bool need_fdc = false;
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < vs.media.size(); ++i) {
      const auto& m = vs.media[i];
      if ((pass == 0) == m.controller.empty()) {
        continue;
      }
      const bool floppy = m.kind == ovf::MediaKind::Floppy;
      const std::string who =
          std::string(floppy ? "floppy drive" : "CD-ROM") + " '" + media_ids[i] + "'";
      const std::string what =
          std::string(floppy ? "Floppy drive" : "CD-ROM") + " '" + media_ids[i] + "'";
      ControllerKind kind = floppy ? ControllerKind::Floppy : ControllerKind::Ide;
      if (!m.controller.empty()) {
        auto k = controller_kind.find(m.controller);
        if (k == controller_kind.end()) {
          return invalid(what + " names unknown controller '" + m.controller + "'");
        }
        kind = k->second;
      }
      const std::string on =
          std::string(ovf::toString(kind)) + " controller '" + m.controller + "'";
      if (floppy && kind != ControllerKind::Floppy) {
        return invalid(what + " is on " + on + "; floppy drives need a floppy controller");
      }
      // Candidate addresses in order: (key for `taken`, device bus options).
      std::vector<std::pair<std::string, std::string>> slots;
      std::string where;  // for "no free unit"
      switch (kind) {
        case ControllerKind::Ide: {
          int first = 0;
          int last = 5;
          where = "the q35 AHCI ports ide.0-ide.5";
          if (!m.controller.empty()) {
            first = ide_ports.at(m.controller) * 2;
            last = std::min(first + 1, 5);
            if (first > 5) {
              return invalid(what + " is on " + on + ", which does not fit the q35 AHCI ports");
            }
            where = on + " (two units, q35 AHCI ports ide." + std::to_string(first) + "-ide." +
                    std::to_string(last) + ")";
          }
          for (int p = first; p <= last; ++p) {
            slots.emplace_back("ide." + std::to_string(p), "bus=ide." + std::to_string(p));
          }
          break;
        }
        case ControllerKind::Sata:
          where = on + " (six ports)";
          for (int p = 0; p <= 5; ++p) {
            const std::string bus = m.controller + "." + std::to_string(p);
            slots.emplace_back(bus, "bus=" + bus);
          }
          break;
        case ControllerKind::Scsi:
          media_scsi[i] = true;
          where = on + " (SCSI ids 0-255)";
          for (int u = 0; u <= 255; ++u) {
            slots.emplace_back(
                m.controller + ".0 scsi-id " + std::to_string(u),
                "bus=" + m.controller + ".0,channel=0,scsi-id=" + std::to_string(u) + ",lun=0");
          }
          break;
        case ControllerKind::Floppy:
          if (!floppy) {
            return invalid(what + " is on " + on +
                           "; a floppy controller takes only floppy drives");
          }
          need_fdc = true;
          where = "the floppy controller (two drives)";
          for (int u = 0; u <= 1; ++u) {
            slots.emplace_back("fdc.0 unit " + std::to_string(u),
                               "bus=fdc.0,unit=" + std::to_string(u));
          }
          break;
        case ControllerKind::Nvme:
        case ControllerKind::Virtio:
          return fail(ErrorCode::Unsupported,
                      what + " is on " + on + ": QEMU has no CD-ROM device for that bus");
        case ControllerKind::Usb:
          return fail(ErrorCode::Unsupported,
                      what + " is on " + on + ": USB drives are not supported (use IDE or SATA)");
      }
      auto free_slot = std::find_if(slots.begin(), slots.end(),
                                    [&](const auto& s) { return taken.count(s.first) == 0; });
      if (free_slot == slots.end()) {
        return invalid(what + " finds no free unit on " + where);
      }
      VANDRA_TRY(claim(free_slot->first, who));
      media_bus[i] = free_slot->second;
    }
  }
  if (need_fdc) {
    if (device_ids.count("fdc") != 0) {
      return invalid("Controller id 'fdc' clashes with the floppy controller the builder adds");
    }
    controller_args.insert(controller_args.end(), {"-device", "isa-fdc,id=fdc"});
  }
  std::set<std::string> disk_nodes;
  for (const auto& n : names) {
    disk_nodes.insert({n.file_node, n.format_node});
  }
  std::vector<std::string> media_args;
  for (size_t i = 0; i < vs.media.size(); ++i) {
    const std::string& id = media_ids[i];
    const bool floppy = vs.media[i].kind == ovf::MediaKind::Floppy;
    if (device_ids.count(id) != 0) {
      return invalid("Medium '" + id + "' has the device id of a controller");
    }
    std::string drive;
    if (auto file = cfg.media_files.find(id); file != cfg.media_files.end()) {
      const DiskNames m = mediumNames(id);
      if (disk_nodes.count(m.format_node) != 0 || disk_nodes.count(m.file_node) != 0) {
        return invalid("Medium '" + id + "' needs node names " + m.file_node + " and " +
                       m.format_node + ", which a disk already uses");
      }
      add(argv, "-blockdev",
          dumpJson(json{{"driver", "file"},
                        {"filename", file->second},
                        {"node-name", m.file_node},
                        {"read-only", true}}));
      add(argv, "-blockdev",
          dumpJson(json{{"driver", "raw"},
                        {"file", m.file_node},
                        {"node-name", m.format_node},
                        {"read-only", true}}));
      drive = ",drive=" + m.format_node;
    }
    if (floppy) {
      media_args.insert(media_args.end(),
                        {"-device", "floppy," + media_bus[i] + drive + ",id=" + id});
    } else {
      media_args.insert(
          media_args.end(),
          {"-device", std::string(media_scsi[i] ? "scsi-cd," : "ide-cd,") + media_bus[i] + drive +
                          ",id=" + id + ",bootindex=" + std::to_string(vs.disks.size() + i + 1)});
    }
  }
  argv.insert(argv.end(), controller_args.begin(), controller_args.end());
  argv.insert(argv.end(), disk_args.begin(), disk_args.end());
  argv.insert(argv.end(), media_args.begin(), media_args.end());

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
    } else {
      VANDRA_TRY_ASSIGN(mac, nicMac(vs, i));
    }
    const std::string n = std::to_string(i);
    add(argv, "-netdev", "tap,id=net" + n + ",ifname=" + host.tap + ",script=no,downscript=no");
    add(argv, "-device", model + ",netdev=net" + n + ",mac=" + mac + ",id=" + nicDeviceId(i));
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

}  // namespace vandra::qemu
