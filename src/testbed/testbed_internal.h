// Private to src/testbed: the state file and process handling that testbed.cc (up, down,
// status, restartAgent) builds on; implemented in resources.cc.
//
//   up:   record(resource) -> state file (fsync, rename) -> create it -> ... -> complete
//   down: load state file -> undo every resource, last first -> remove the file
//   process resources: found again by pid + start time + a marker in their command line
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/testbed/testbed.h"

namespace vandra::testbed::internal {

inline constexpr std::chrono::seconds kReadyTimeout{15};  // an ASan emulator on a loaded host
inline constexpr std::chrono::seconds kStopTimeout{3};

struct Resource {
  std::string kind;         // netns | link | process | file | dir | tree (a folder removed whole)
  std::string name;         // netns / device name, process role, file path
  pid_t pid = -1;           // process: -1 until started
  uint64_t start_time = 0;  // process: /proc/<pid>/stat field 22
  std::string marker;       // process: text its command line must contain
  std::vector<std::string> argv;  // process: how it was started (restartAgent starts it again)
};

struct State {
  std::string id;
  std::string profile;
  std::string congestion;  // the namespaces' TCP congestion control
  bool complete = false;
  std::vector<Resource> resources;
};

/// Reads a small file whole (state file, /proc entries, a log): at most @p limit bytes.
/// Errors: NotFound, Io.
Result<std::string> readSmall(const std::string& path, size_t limit = 1U << 20);
/// /proc/<pid>/cmdline with its NULs as spaces; "" when the process is gone.
std::string cmdlineOf(pid_t pid);

/// The state file of @p state_dir; nullopt when there is none. InvalidArgument when unusable.
Result<std::optional<State>> loadState(const std::string& state_dir);
/// Written beside and renamed over, with fsync, so a crash leaves the old or the new file.
Result<void> saveState(const std::string& state_dir, const State& s);

struct ProcStat {
  char state = '?';
  uint64_t start_time = 0;
};
std::optional<ProcStat> readProcStat(pid_t pid);
uint64_t startTimeOf(pid_t pid);
/// Starts @p argv in a new session, detached from our terminal and signal mask, stdout and
/// stderr to @p log_path; @p extra_fd (>= 0) is passed on as fd 3.
Result<pid_t> spawnDetached(const std::vector<std::string>& argv, const std::string& log_path,
                            int extra_fd);
int pidfdOpen(pid_t pid);
int pidfdSendSignal(int pidfd, int sig);
void reapIfChild(pid_t pid);
bool waitExit(int pidfd, std::chrono::milliseconds timeout);

enum class Presence { Gone, Ours, NotOurs };
/// Whether the recorded process still exists (and is the one recorded).
Presence presence(const Resource& r);
/// SIGTERM, then SIGKILL after kStopTimeout, through a pidfd; a process not ours is left.
Result<void> stopProcess(const Resource& r);
/// Ends every process inside network namespace @p netns.
Result<void> killNamespaceProcesses(const std::string& netns);
/// Waits for "ready\n" on @p fd. Errors: Timeout, Subprocess (closed without ready).
Result<void> waitReady(int fd, const std::string& log_path);

}  // namespace vandra::testbed::internal
