#include "vandra/agent/vm_monitor.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace vandra::agent {

std::unique_ptr<VmMonitor> VmMonitor::start(std::string vm, QemuPid pid, std::string event_socket,
                                            EventLog& log, ExitHandler on_exit) {
  std::unique_ptr<VmMonitor> m(new VmMonitor());  // NOLINT: private constructor
  m->vm_ = std::move(vm);
  m->pid_ = pid;
  m->event_socket_ = std::move(event_socket);
  m->log_ = &log;
  m->on_exit_ = std::move(on_exit);
  m->wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  m->thread_ = std::thread([raw = m.get()] { raw->run(); });
  {
    // Bounded by the connect timeout below (5 s); normally a few milliseconds.
    std::unique_lock lock(m->ready_mu_);
    m->ready_cv_.wait_for(lock, std::chrono::seconds(6), [&] { return m->ready_; });
  }
  return m;
}

void VmMonitor::markReady() {
  std::lock_guard lock(ready_mu_);
  ready_ = true;
  ready_cv_.notify_all();
}

VmMonitor::~VmMonitor() {
  cancelled_ = true;
  if (wake_.valid()) {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  if (qmp_) {
    qmp_->close();
  }
}

void VmMonitor::setSink(std::function<void(const qmp::QmpEvent&)> sink) {
  std::lock_guard lock(sink_mu_);
  sink_ = std::move(sink);
}

Result<void> VmMonitor::withClient(const std::function<Result<void>(qmp::QmpClient&)>& fn) {
  if (!qmp_) {  // set before start() returned, never changed until the destructor
    return fail(ErrorCode::QmpDisconnected,
                "The event monitor of VM '" + vm_ + "' is not connected");
  }
  return fn(*qmp_);
}

void VmMonitor::run() {
  qmp::QmpClientOptions opts;
  opts.connect_timeout = std::chrono::seconds(5);
  opts.enable_oob = true;  // withClient(): post-copy's pause and recover
  opts.on_event = [this](const qmp::QmpEvent& e) {
    if (e.name == "SHUTDOWN" && e.data.value("guest", false)) {
      guest_shutdown_ = true;
    }
    const int64_t t = e.seconds < 0 ? 0 : e.seconds * 1000000 + e.microseconds;
    log_->append(vm_, "qmp", e.name, e.data, t);
    std::lock_guard lock(sink_mu_);
    if (sink_) {
      sink_(e);
    }
  };
  auto pidfd = openPidfd(pid_);
  if (!pidfd) {
    markReady();
    if (!cancelled_ && on_exit_) {
      on_exit_(vm_, "qemu-exited", cancelled_);
    }
    return;
  }
  if (auto c = qmp::connectQmp(event_socket_, opts); c) {
    qmp_ = std::move(*c);
  } else if (!cancelled_) {
    log_->append(vm_, "state", "monitor-unavailable", {{"error", c.error().describe()}});
  }
  markReady();
  pollfd fds[2] = {{pidfd->get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
  for (;;) {
    const int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno == EINTR) {
      continue;
    }
    if (cancelled_ || rc < 0 || (fds[1].revents & POLLIN) != 0) {
      return;
    }
    if ((fds[0].revents & (POLLIN | POLLHUP)) != 0) {
      break;
    }
  }
  if (qmp_) {
    // QEMU wrote its last events (SHUTDOWN) before it exited: read to the end of the stream,
    // then close, which delivers what was read.
    (void)qmp_->waitDisconnected(std::chrono::seconds(2));
    qmp_->close();
  }
  if (!cancelled_ && on_exit_) {
    on_exit_(vm_, guest_shutdown_ ? "guest-shutdown" : "qemu-exited", cancelled_);
  }
}

}  // namespace vandra::agent
