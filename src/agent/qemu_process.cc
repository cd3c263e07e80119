#include "vandra/agent/qemu_process.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>

#include "vandra/agent/recovery.h"
#include "vandra/common/subprocess.h"
#include "vandra/common/unique_fd.h"

namespace vandra::agent {
namespace {

// pidfds make "is this still the process I mean" race-free for processes that are not our
// children (Linux >= 5.3). Called through syscall(2): glibc 2.36 declares no wrapper for them
// in every configuration.
Result<UniqueFd> pidfdFor(const QemuPid& p) {
  const long fd = ::syscall(SYS_pidfd_open, static_cast<pid_t>(p.pid), 0U);
  if (fd < 0) {
    return fail(Error::fromErrno("pidfd_open(" + std::to_string(p.pid) + ")"));
  }
  UniqueFd out(static_cast<int>(fd));
  // The pid could have been reused between the registry write and now: check the start time
  // after opening the pidfd (the pidfd then pins the process we checked).
  if (processStartTime(p.pid) != p.start_time) {
    return fail(ErrorCode::NotFound,
                "Process " + std::to_string(p.pid) + " is not the recorded QEMU");
  }
  return out;
}

}  // namespace

Result<UniqueFd> openPidfd(const QemuPid& p) {
  return pidfdFor(p);
}

Result<QemuPid> launchDaemonized(std::vector<std::string> argv, const std::string& run_dir) {
  // The command line may name its pidfile already (the builder does); else it goes in run_dir.
  std::string pidfile = run_dir + "/qemu.pid";
  bool has_pidfile = false;
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "-pidfile") {
      pidfile = argv[i + 1];
      has_pidfile = true;
    }
  }
  ::unlink(pidfile.c_str());
  argv.push_back("-daemonize");
  if (!has_pidfile) {
    argv.push_back("-pidfile");
    argv.push_back(pidfile);
  }
  VANDRA_TRY(runCapture(argv));  // QEMU returns after daemonizing, errors on stderr before
  std::ifstream in(pidfile);
  int64_t pid = 0;
  if (!(in >> pid) || pid <= 0) {
    return fail(ErrorCode::Io, "QEMU started but wrote no pid to '" + pidfile + "'");
  }
  QemuPid p{pid, processStartTime(pid)};
  if (p.start_time == 0) {
    return fail(ErrorCode::Subprocess,
                "QEMU (pid " + std::to_string(pid) + ") exited right after starting");
  }
  return p;
}

Result<void> waitForExit(const QemuPid& p, std::chrono::milliseconds timeout) {
  auto fd = pidfdFor(p);
  if (!fd) {
    return fd.error().code == ErrorCode::NotFound || fd.error().sys_errno == ESRCH
               ? Result<void>{}
               : fail(fd.error());
  }
  pollfd pfd{fd->get(), POLLIN, 0};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    const int rc = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (rc > 0) {
      return {};  // readable pidfd: the process has exited
    }
    if (rc == 0) {
      return fail(ErrorCode::Timeout, "QEMU (pid " + std::to_string(p.pid) + ") still runs after " +
                                          std::to_string(timeout.count()) + " ms");
    }
    if (errno != EINTR) {
      return fail(Error::fromErrno("poll on pidfd"));
    }
  }
}

Result<void> signalProcess(const QemuPid& p, int signal) {
  auto fd = pidfdFor(p);
  if (!fd) {
    return fd.error().code == ErrorCode::NotFound || fd.error().sys_errno == ESRCH
               ? Result<void>{}
               : fail(fd.error());
  }
  if (::syscall(SYS_pidfd_send_signal, fd->get(), signal, nullptr, 0U) != 0 && errno != ESRCH) {
    return fail(Error::fromErrno("Cannot signal QEMU (pid " + std::to_string(p.pid) + ")"));
  }
  return {};
}

}  // namespace vandra::agent
