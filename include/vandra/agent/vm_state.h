// VM lifecycle on one agent: an explicit state enum and the one table of legal transitions.
// Every API request and every observation of QEMU goes through transition(); a request that
// is not legal in the current state gets ErrorCode::IllegalTransition and changes nothing.
//
//            start            qemu-up
//   Created -------> Starting -------> Running ----stop----> Stopping
//      ^  |             |  \               |  \                 |
//      |  | delete      |   start-failed   |   kill / exited    | exited / kill
//      |  v             v        \         v                    v
//      | Deleting     Failed <----+     Stopped <---------------+
//      |   |            |  start \         | start
//      |   v            +--------->Starting<+
//      | (gone)
//   Stopped/Failed --delete--> Deleting
//   (migration target) Incoming --qemu-up--> Running; kill --> Stopped; exited/failed --> Failed
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "vandra/common/result.h"

namespace vandra::agent {

/// Persisted in the registry: values are stable, 0 is never valid.
enum class VmState : uint8_t {
  Invalid = 0,
  Created = 1,   // defined (disks imported), never started or cleanly deleted QEMU
  Starting = 2,  // QEMU launched, not yet confirmed running over QMP
  Running = 3,   // QEMU up, guest running
  Stopping = 4,  // ACPI shutdown requested; forced after a timeout
  Stopped = 5,   // QEMU exited after a stop
  Failed = 6,    // QEMU exited unexpectedly or could not start
  Deleting = 7,  // disks and registry entry being removed
  Incoming = 8,  // migration target: QEMU waits for the migration stream (-incoming, paused);
                 // the guest runs on the source until the switchover
};
inline constexpr VmState kAllVmStates[] = {VmState::Created,  VmState::Starting, VmState::Running,
                                           VmState::Stopping, VmState::Stopped,  VmState::Failed,
                                           VmState::Deleting, VmState::Incoming};

enum class VmEvent : uint8_t {
  Start = 1,        // request: launch QEMU
  Stop = 2,         // request: ACPI shutdown, then forced
  Kill = 3,         // request: SIGKILL now
  Delete = 4,       // request: remove the VM and its disks
  QemuUp = 5,       // observation: QMP answered, guest running
  QemuExited = 6,   // observation: the QEMU process is gone
  StartFailed = 7,  // observation: launch or QMP setup failed
};
inline constexpr VmEvent kAllVmEvents[] = {
    VmEvent::Start,  VmEvent::Stop,       VmEvent::Kill,       VmEvent::Delete,
    VmEvent::QemuUp, VmEvent::QemuExited, VmEvent::StartFailed};

std::string_view toString(VmState s);
std::string_view toString(VmEvent e);
std::optional<VmState> vmStateFromString(std::string_view s);

/// The state after @p event in @p from, or IllegalTransition naming both.
[[nodiscard]] Result<VmState> transition(VmState from, VmEvent event);

}  // namespace vandra::agent
