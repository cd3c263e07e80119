// QEMU command line builder: VirtualSystemSpec + QemuRunConfig -> argv for
// qemu-system-x86_64. Pure: no files, no sockets, no clocks, no environment; everything that
// depends on the host (accelerator, CPU model, firmware path, taps) is decided by the caller
// and passed in QemuRunConfig, so the same inputs always give the same argv (golden-tested).
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::qemu {

/// One NIC's host side, in the order of VirtualSystemSpec::nics.
struct NicConfig {
  std::string tap;                 // existing tap device (1-15 chars of [A-Za-z0-9_.-])
  std::optional<std::string> mac;  // overrides the spec's MAC; neither: stableMac()
};

/// Everything host-dependent the builder needs. Nothing here is guessed by the builder.
struct QemuRunConfig {
  std::string binary = "qemu-system-x86_64";
  std::string accel = "tcg";       // "kvm" or "tcg" (the caller probes /dev/kvm)
  std::string machine = "q35";
  std::string cpu = "qemu64";      // "host" makes sense only with kvm; the caller decides
  std::string qmp_socket;          // command monitor (unix socket, server side in QEMU)
  std::string qmp_event_socket;    // second monitor, used only for events
  std::string serial_log;          // guest serial console goes to this file
  std::string pidfile;
  std::map<std::string, std::string> disk_overlays;  // DiskSpec::id -> qcow2 overlay path
  std::vector<NicConfig> nics;     // exactly one per spec NIC
  std::optional<std::string> kernel;   // direct kernel boot (test guest)
  std::optional<std::string> initrd;
  std::optional<std::string> append;
  std::optional<std::string> incoming;  // e.g. "defer": wait for migrate-incoming
  /// Required when the spec asks for EFI: OVMF code image, e.g.
  /// /usr/share/OVMF/OVMF_CODE.fd (Debian package ovmf), mapped read-only.
  std::optional<std::string> ovmf_code;
  /// The VM's own writable copy of OVMF_VARS.fd (EFI variables); omitted: none mapped.
  std::optional<std::string> ovmf_vars;
  std::optional<std::string> uuid;  // SMBIOS system UUID, 8-4-4-4-12 hex
};

/// A locally administered unicast MAC in QEMU's 52:54:00 range, a pure function of
/// (@p vm_id, @p nic_index): the same VM gets the same MACs on every host and after migration.
std::string stableMac(std::string_view vm_id, size_t nic_index);

/// Builds argv (argv[0] = cfg.binary). Disks: -blockdev file-<d> -> fmt-<d> (qcow2 overlays
/// from cfg.disk_overlays) and one -device per controller and disk (virtio-blk-pci,
/// virtio-scsi-pci + scsi-hd, ide-hd on the q35 AHCI for IDE, an extra ahci for SATA, nvme +
/// nvme-ns). NICs: -netdev tap + -device of the mapped model.
/// Errors: InvalidArgument (missing/bad overlay, tap, MAC, socket path, vcpus/memory 0,
/// accel not kvm/tcg, bus address out of range, duplicate node names), Unsupported (EFI
/// without cfg.ovmf_code — install the Debian package `ovmf`; NIC model or disk controller
/// QEMU cannot emulate).
[[nodiscard]] Result<std::vector<std::string>> buildCommandLine(const ovf::VirtualSystemSpec& vs,
                                                                const QemuRunConfig& cfg);

} // namespace vandra::qemu
