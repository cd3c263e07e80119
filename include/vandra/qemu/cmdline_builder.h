// QEMU command line builder: VirtualSystemSpec + QemuRunConfig -> argv for
// qemu-system-x86_64. Pure: no files, no sockets, no clocks, no environment; everything that
// depends on the host (accelerator, CPU model, firmware path, taps) is decided by the caller
// and passed in QemuRunConfig, so the same inputs always give the same argv (golden-tested).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::qemu {

/// Under TCG the guest gets this much RAM beyond its spec's (see buildCommandLine): QEMU
/// 7.2's migration otherwise loses guest writes under TCG.
inline constexpr uint64_t kTcgExtraRamKib = 8;

/// One NIC's host side, in the order of VirtualSystemSpec::nics.
struct NicConfig {
  std::string tap;                 // existing tap device (1-15 chars of [A-Za-z0-9_.-])
  std::optional<std::string> mac;  // overrides the spec's MAC; neither: stableMac()
};

/// Everything host-dependent the builder needs. Nothing here is guessed by the builder.
struct QemuRunConfig {
  std::string binary = "qemu-system-x86_64";
  std::string accel = "tcg";  // "kvm" or "tcg" (the caller probes /dev/kvm)
  std::string machine = "q35";
  std::string cpu = "qemu64";    // "host" makes sense only with kvm; the caller decides
  std::string qmp_socket;        // command monitor (unix socket, server side in QEMU)
  std::string qmp_event_socket;  // second monitor, used only for events
  std::string serial_log;        // guest serial console goes to this file
  std::string pidfile;
  std::map<std::string, std::string> disk_overlays;  // DiskSpec::id -> qcow2 overlay path
  std::vector<NicConfig> nics;                       // exactly one per spec NIC
  std::optional<std::string> kernel;                 // direct kernel boot (test guest)
  std::optional<std::string> initrd;
  std::optional<std::string> append;
  std::optional<std::string> incoming;  // e.g. "defer": wait for migrate-incoming
  /// Required when the spec asks for EFI: OVMF code image, e.g.
  /// /usr/share/OVMF/OVMF_CODE.fd (Debian package ovmf), mapped read-only.
  std::optional<std::string> ovmf_code;
  /// The VM's own writable copy of OVMF_VARS.fd (EFI variables); omitted: none mapped.
  std::optional<std::string> ovmf_vars;
  std::optional<std::string> uuid;  // SMBIOS system UUID, 8-4-4-4-12 hex
  /// Images for removable media: mediaIds(vs)[i] ("cdrom0", "floppy0", ...) -> host path of
  /// the image inserted in vs.media[i], opened read-only as raw. A medium with no entry starts
  /// empty, also when the spec names a file (see unbackedMedia()); an entry for a drive whose
  /// spec names no file inserts that image anyway. An id the VM does not have is refused.
  std::map<std::string, std::string> media_files;
  /// Adds -S: QEMU starts with the vCPUs stopped (status "prelaunch") until QMP `cont`. The
  /// agent sets it whenever startupQmpCommands(vs) is non-empty, runs those commands, then
  /// sends `cont`. Not needed with `incoming`, which holds the VM until migration ends anyway.
  bool start_paused = false;
};

/// One QMP command the agent must run after launch and before the guest runs (`cont`, or
/// `migrate-incoming` on a migration destination). Send it as
/// qmp::makeCommand(c.name, c.args).
struct QmpStartupCommand {
  std::string name;
  nlohmann::json args = nlohmann::json::object();
  bool operator==(const QmpStartupCommand&) const = default;
};

/// A locally administered unicast MAC in QEMU's 52:54:00 range, a pure function of
/// (@p vm_id, @p nic_index): the same VM gets the same MACs on every host and after migration.
std::string stableMac(std::string_view vm_id, size_t nic_index);

/// The MAC NIC @p nic_index of @p vs gets when no NicConfig::mac overrides it: the spec's
/// (normalised, lower case) or stableMac(vs.id, nic_index). Errors: InvalidArgument (a
/// malformed MAC in the spec, or no such NIC).
[[nodiscard]] Result<std::string> nicMac(const ovf::VirtualSystemSpec& vs, size_t nic_index);

/// The id of each removable medium, in the order of vs.media: "cdrom<n>" / "floppy<n>", n
/// counting the drives of that kind from 0 in spec order. It is the key in
/// QemuRunConfig::media_files, the QEMU device id (for QMP eject / blockdev-change-medium)
/// and, with an image, the stem of its node names file-<id> and fmt-<id>.
std::vector<std::string> mediaIds(const ovf::VirtualSystemSpec& vs);

/// Ids of the media whose spec names an image (MediaSpec::file) that cfg.media_files does
/// not map: buildCommandLine gives them an empty drive. The agent warns once per id.
std::vector<std::string> unbackedMedia(const ovf::VirtualSystemSpec& vs, const QemuRunConfig& cfg);

/// QMP commands that put the VM in the state its spec describes but no command-line option
/// can: today one {"set_link", {"name": "nic<i>", "up": false}} per NIC with
/// connected == false (nic<i> is the device id buildCommandLine gives vs.nics[i]; the guest
/// sees the cable unplugged, frames are dropped both ways). Empty: nothing to run, no -S
/// needed. Pure, like buildCommandLine.
std::vector<QmpStartupCommand> startupQmpCommands(const ovf::VirtualSystemSpec& vs);

/// Builds argv (argv[0] = cfg.binary). Disks: -blockdev file-<d> -> fmt-<d> (qcow2 overlays
/// from cfg.disk_overlays) and one -device per controller and disk (virtio-blk-pci,
/// virtio-scsi-pci + scsi-hd, ide-hd on the q35 AHCI for IDE, an extra ahci for SATA, nvme +
/// nvme-ns). Removable media (vs.media, device id = mediaIds()[i]): a CD-ROM is ide-cd on
/// the q35 AHCI (IDE controller or none), ide-cd on the SATA controller's ahci, or scsi-cd on
/// virtio-scsi; a floppy is `floppy` on one isa-fdc (id "fdc", two drives). The spec gives
/// media no unit, so each takes the first free one on its controller after the disks (IDE:
/// that controller's two AHCI ports; none: any free AHCI port ide.0-ide.5, after media with
/// a controller). An image from cfg.media_files is a read-only file -> raw node pair; none:
/// an empty drive (no blockdev). CD-ROMs boot after the disks (bootindex = disks + media
/// index + 1); floppies are not in the boot order (QEMU's floppy device has no bootindex).
/// NICs: -netdev tap (id net<i>) + -device of the mapped model (id nic<i>); connected=false
/// is not on the command line: see startupQmpCommands(). cfg.start_paused adds -S.
/// Errors: InvalidArgument (missing/bad overlay, tap, MAC, socket path, media image path,
/// media_files id the VM does not have, vcpus/memory 0, accel not kvm/tcg, bus address out
/// of range or already taken, no free unit for a medium, a floppy on a non-floppy controller
/// or a CD-ROM on a floppy one, duplicate node names or device ids), Unsupported (EFI
/// without cfg.ovmf_code — install the Debian package `ovmf`; NIC model or disk controller
/// QEMU cannot emulate; a CD-ROM on an NVMe, virtio or USB controller).
[[nodiscard]] Result<std::vector<std::string>> buildCommandLine(const ovf::VirtualSystemSpec& vs,
                                                                const QemuRunConfig& cfg);

}  // namespace vandra::qemu
