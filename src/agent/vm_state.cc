#include "vandra/agent/vm_state.h"

#include <string>

namespace vandra::agent {

std::string_view toString(VmState s) {
  switch (s) {
    case VmState::Invalid:
      return "invalid";
    case VmState::Created:
      return "created";
    case VmState::Starting:
      return "starting";
    case VmState::Running:
      return "running";
    case VmState::Stopping:
      return "stopping";
    case VmState::Stopped:
      return "stopped";
    case VmState::Failed:
      return "failed";
    case VmState::Deleting:
      return "deleting";
    case VmState::Incoming:
      return "incoming";
  }
  return "invalid";
}

std::string_view toString(VmEvent e) {
  switch (e) {
    case VmEvent::Start:
      return "start";
    case VmEvent::Stop:
      return "stop";
    case VmEvent::Kill:
      return "kill";
    case VmEvent::Delete:
      return "delete";
    case VmEvent::QemuUp:
      return "qemu-up";
    case VmEvent::QemuExited:
      return "qemu-exited";
    case VmEvent::StartFailed:
      return "start-failed";
  }
  return "invalid";
}

std::optional<VmState> vmStateFromString(std::string_view s) {
  for (const auto st : kAllVmStates) {
    if (toString(st) == s) {
      return st;
    }
  }
  return std::nullopt;
}

Result<VmState> transition(VmState from, VmEvent event) {
  std::optional<VmState> to;
  // One switch per state, no default: a new state or event fails to compile (-Wswitch-enum)
  // until its row is written.
  switch (from) {
    case VmState::Invalid:
      break;
    case VmState::Created:
    case VmState::Stopped:
    case VmState::Failed:
      switch (event) {
        case VmEvent::Start:
          to = VmState::Starting;
          break;
        case VmEvent::Delete:
          to = VmState::Deleting;
          break;
        case VmEvent::QemuExited:
          to = from;
          break;  // already down: idempotent observation
        case VmEvent::Stop:
        case VmEvent::Kill:
        case VmEvent::QemuUp:
        case VmEvent::StartFailed:
          break;
      }
      break;
    case VmState::Starting:
      switch (event) {
        case VmEvent::QemuUp:
          to = VmState::Running;
          break;
        case VmEvent::StartFailed:
        case VmEvent::QemuExited:
          to = VmState::Failed;
          break;
        case VmEvent::Kill:
          to = VmState::Stopped;
          break;
        case VmEvent::Start:
        case VmEvent::Stop:
        case VmEvent::Delete:
          break;
      }
      break;
    case VmState::Running:
      switch (event) {
        case VmEvent::Stop:
          to = VmState::Stopping;
          break;
        case VmEvent::Kill:
          to = VmState::Stopped;
          break;
        case VmEvent::QemuExited:
          to = VmState::Failed;
          break;  // nobody asked it to stop
        case VmEvent::QemuUp:
          to = VmState::Running;
          break;  // re-attach after restart
        case VmEvent::Start:
        case VmEvent::Delete:
        case VmEvent::StartFailed:
          break;
      }
      break;
    case VmState::Stopping:
      switch (event) {
        case VmEvent::QemuExited:
        case VmEvent::Kill:
          to = VmState::Stopped;
          break;
        case VmEvent::QemuUp:
          to = VmState::Stopping;
          break;
        case VmEvent::Start:
        case VmEvent::Stop:
        case VmEvent::Delete:
        case VmEvent::StartFailed:
          break;
      }
      break;
    case VmState::Deleting:
      break;  // terminal: the entry disappears when deletion completes
    case VmState::Incoming:
      switch (event) {
        case VmEvent::QemuUp:
          to = VmState::Running;
          break;  // migration done, guest resumed here
        case VmEvent::Kill:
          to = VmState::Stopped;
          break;  // abort: the source still runs it
        case VmEvent::QemuExited:
        case VmEvent::StartFailed:
          to = VmState::Failed;
          break;
        case VmEvent::Start:
        case VmEvent::Stop:    // nothing runs here yet: an abort is a kill
        case VmEvent::Delete:  // kill first
          break;
      }
      break;
  }
  if (!to) {
    return fail(ErrorCode::IllegalTransition, "Cannot " + std::string(toString(event)) +
                                                  " a VM that is " + std::string(toString(from)));
  }
  return *to;
}

}  // namespace vandra::agent
