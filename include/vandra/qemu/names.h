// The names vandra gives QEMU objects, made here and nowhere else: the command line builder
// creates the nodes and devices under these names, and the migration engine, the agent and
// the benchmark find them by the same names (a disk id that is not a safe QEMU id gets a
// stand-in, so "fmt-" + the OVF id is not always the node).
//
//   OVF disk "disk1"       -> file node "file-disk1", format node "fmt-disk1", device "disk-disk1",
//                             after an arrival freeze the device's node "top-disk1"
//   OVF disk "Hard disk 1" -> (not a QEMU id) "file-d0", "fmt-d0", "disk-d0" (by position)
//   run directory D        -> D/qmp.sock (commands), D/events.sock (events), D/serial.log
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::qemu {

/// QEMU's names for one disk of a virtual system.
struct DiskNames {
  std::string disk_id;      // the spec's id (DiskSpec::id)
  std::string file_node;    // protocol node on the image file
  std::string format_node;  // qcow2/raw node the guest device reads; mirrors and exports use it
  std::string device_id;    // the guest device's qdev id (block_set_io_throttle's "id")
  /// The overlay node a return trip puts over the arrival image ("top-<id>", ADR 0027); the
  /// device then reads it, so mirrors take the device's node from query-block.
  std::string top_node;
};

/// Whether @p id may be used in a QEMU node name or device id: a letter, then letters, digits,
/// '-', '.', '_'; at most 24 bytes so that prefixes fit QEMU's 31-byte node names.
bool isSafeQemuId(std::string_view id);

/// The names of every disk of @p disks, in order. The OVF id when it is safe, else
/// "d<index>". InvalidArgument when two disks would get the same name.
[[nodiscard]] Result<std::vector<DiskNames>> diskNames(const std::vector<ovf::DiskSpec>& disks);

/// The names of removable medium @p safe_id (a CD-ROM or floppy with an image; the builder
/// has checked that the id is safe): "file-<id>", "fmt-<id>", device "<id>".
DiskNames mediumNames(std::string_view safe_id);

/// The files QEMU opens in a VM's run directory.
struct RunFiles {
  std::string qmp_socket;    // commands
  std::string event_socket;  // events (a second monitor)
  std::string serial_log;
};
RunFiles runFiles(const std::string& run_dir);

}  // namespace vandra::qemu
