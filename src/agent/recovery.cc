#include "vandra/agent/recovery.h"

#include <fstream>
#include <sstream>
#include <string>

namespace vandra::agent {

std::string_view toString(RecoveryAction a) {
  switch (a) {
    case RecoveryAction::Nothing:
      return "nothing";
    case RecoveryAction::Reattach:
      return "reattach";
    case RecoveryAction::ResumeStop:
      return "resume-stop";
    case RecoveryAction::MarkFailed:
      return "mark-failed";
    case RecoveryAction::MarkStopped:
      return "mark-stopped";
    case RecoveryAction::KillThenDelete:
      return "kill-then-delete";
    case RecoveryAction::FinishDelete:
      return "finish-delete";
  }
  return "nothing";
}

RecoveryAction recoveryFor(VmState persisted, const ObservedProcess& observed) {
  switch (persisted) {
    case VmState::Invalid:
    case VmState::Created:
    case VmState::Stopped:
    case VmState::Failed:
      // Down states carry no pid (Starting is written before launch), so nothing of ours runs.
      return RecoveryAction::Nothing;
    case VmState::Starting:
    case VmState::Running:
    case VmState::Incoming:  // keep it; the migration's own recovery table decides its fate
      return observed.alive ? RecoveryAction::Reattach : RecoveryAction::MarkFailed;
    case VmState::Stopping:
      return observed.alive ? RecoveryAction::ResumeStop : RecoveryAction::MarkStopped;
    case VmState::Deleting:
      return observed.alive ? RecoveryAction::KillThenDelete : RecoveryAction::FinishDelete;
  }
  return RecoveryAction::Nothing;
}

uint64_t processStartTime(int64_t pid) {
  if (pid <= 0) {
    return 0;
  }
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) {
    return 0;
  }
  // The command name (field 2) is in parentheses and may contain spaces: skip past the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) {
    return 0;
  }
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields 3..21 precede starttime (field 22).
  for (int i = 3; i <= 21; ++i) {
    rest >> field;
  }
  uint64_t start = 0;
  rest >> start;
  return start;
}

namespace {

// Field 3 of /proc/<pid>/stat: 'Z' (zombie) and 'X' (dead) are gone for our purposes. A
// daemonized QEMU is re-parented to init or a subreaper, which may reap it late.
bool isZombie(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) {
    return true;
  }
  const auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'Z' ||
         line[close + 2] == 'X';
}

}  // namespace

ObservedProcess observeProcess(int64_t pid, uint64_t start_time) {
  ObservedProcess o;
  o.alive = pid > 0 && start_time != 0 && processStartTime(pid) == start_time && !isZombie(pid);
  return o;
}

}  // namespace vandra::agent
