// What a restarted agent does with each VM in its registry, given what it finds on the host.
// recoveryFor() is a pure table over every persisted state (unit-tested for every pair);
// observeProcess() is the only part that looks at the host (/proc).
#pragma once

#include <cstdint>
#include <string_view>

#include "vandra/agent/vm_registry.h"

namespace vandra::agent {

struct ObservedProcess {
  bool alive = false;  // the recorded pid exists AND is the same process (start time matches)
};

enum class RecoveryAction : uint8_t {
  Nothing = 1,         // VM is down and recorded as down
  Reattach = 2,        // QEMU still runs: reconnect QMP and keep it (VMs survive agent restarts)
  ResumeStop = 3,      // a stop was in progress: reconnect and continue (ACPI, then force)
  MarkFailed = 4,      // recorded as starting/running but QEMU is gone
  MarkStopped = 5,     // a stop was in progress and QEMU is gone: it finished
  KillThenDelete = 6,  // deletion was in progress and QEMU still runs: kill it, then delete
  FinishDelete = 7,    // deletion was in progress: remove what is left
};
std::string_view toString(RecoveryAction a);

RecoveryAction recoveryFor(VmState persisted, const ObservedProcess& observed);

/// Looks at /proc/<pid>: alive only if the process exists and its start time (field 22 of
/// /proc/<pid>/stat) equals @p start_time, so a reused pid is never mistaken for our QEMU.
ObservedProcess observeProcess(int64_t pid, uint64_t start_time);

/// Start time (clock ticks since boot) of @p pid, or 0 if it does not exist.
uint64_t processStartTime(int64_t pid);

}  // namespace vandra::agent
