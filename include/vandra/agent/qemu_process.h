// QEMU processes owned by the agent but not its children: QEMU is started with -daemonize so
// it keeps running when the agent stops or restarts (a new agent re-attaches through the
// registry). A process is always named by (pid, start time) and signalled through a pidfd,
// so a reused pid is never signalled by mistake.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"

namespace vandra::agent {

struct QemuPid {
  int64_t pid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22
};

/// Runs @p argv (a QEMU command line without -daemonize/-pidfile, stdio unused) daemonized,
/// with its pidfile in @p run_dir unless the command line names one (-pidfile). Returns once QEMU
/// has initialised (or failed: the error carries QEMU's stderr). Errors: Subprocess, Io.
[[nodiscard]] Result<QemuPid> launchDaemonized(std::vector<std::string> argv,
                                               const std::string& run_dir);

/// Waits until the process ends. Errors: Timeout (still running after @p timeout).
[[nodiscard]] Result<void> waitForExit(const QemuPid& p, std::chrono::milliseconds timeout);

/// A pidfd for the process (readable once it has exited), after checking it is still the
/// recorded process. Errors: NotFound (gone or pid reused), Io.
[[nodiscard]] Result<UniqueFd> openPidfd(const QemuPid& p);

/// Sends @p signal to the process if it is still the same process. Ok if it is already gone.
[[nodiscard]] Result<void> signalProcess(const QemuPid& p, int signal);

}  // namespace vandra::agent
