// Watches one running QEMU for the agent: a QMP client on the VM's event monitor feeds every
// QEMU event into the EventLog, and a thread waits on the process's pidfd. When QEMU exits on
// its own (guest power-off, crash, killed from outside) on_exit runs once on that thread with
// the reason; when the agent itself stops the VM it destroys the monitor first or lets
// on_exit find the VM no longer Running.
//
//   QEMU --events.sock--> QmpClient(on_event) --> EventLog ("qmp")
//   QEMU pidfd ---------> monitor thread --exit--> on_exit(vm, reason)
//   destructor ---------> eventfd wakes the thread; on_exit is not called after it returns
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vandra/agent/event_log.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/common/unique_fd.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::agent {

/// Why QEMU went away: "guest-shutdown" (a SHUTDOWN event from the guest came first) or
/// "qemu-exited" (anything else: crash, SIGKILL from outside).
using ExitHandler = std::function<void(const std::string& vm, const std::string& reason,
                                       const std::atomic<bool>& cancelled)>;

class VmMonitor {
 public:
  /// Starts watching @p pid. A monitor socket that cannot be reached is reported in the log
  /// (kind "state", name "monitor-unavailable") and the process is still watched.
  static std::unique_ptr<VmMonitor> start(std::string vm, QemuPid pid, std::string event_socket,
                                          EventLog& log, ExitHandler on_exit);
  ~VmMonitor();
  /// Also hands every QEMU event to @p sink (e.g. a migration's EventWaiter) until cleared
  /// with an empty function. Thread: any.
  void setSink(std::function<void(const qmp::QmpEvent&)> sink);
  /// Runs @p fn with the event monitor's client, which negotiated out-of-band commands: a
  /// post-copy target whose main loop waits for a page answers no in-band command (nor a new
  /// connection's handshake) but still takes migrate-pause and migrate-recover out of band
  /// here. Errors: QmpDisconnected (no monitor connection), whatever @p fn returns.
  [[nodiscard]] Result<void> withClient(const std::function<Result<void>(qmp::QmpClient&)>& fn);
  VmMonitor(const VmMonitor&) = delete;
  VmMonitor& operator=(const VmMonitor&) = delete;

 private:
  VmMonitor() = default;
  void run();

  std::string vm_;
  QemuPid pid_;
  std::string event_socket_;
  EventLog* log_ = nullptr;
  ExitHandler on_exit_;
  UniqueFd wake_;  // eventfd: the destructor writes it
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> guest_shutdown_{false};
  qmp::QmpClientPtr qmp_;
  std::mutex sink_mu_;
  std::function<void(const qmp::QmpEvent&)> sink_;
  // Set once the event connection is up (or known to be unavailable): start() returns then,
  // so that no event of QEMU's (a STOP right after the start) comes before anyone listens.
  std::mutex ready_mu_;
  std::condition_variable ready_cv_;
  bool ready_ = false;
  void markReady();
  std::thread thread_;
};

}  // namespace vandra::agent
