// EventWaiter: the queue of QMP events the migration engine waits on (qemu_migration.h).
#include <algorithm>

#include "vandra/migration/qemu_migration.h"

namespace vandra::migration {

EventWaiter::EventWaiter(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

std::function<void(const qmp::QmpEvent&)> EventWaiter::sink() {
  return [this](const qmp::QmpEvent& e) { push(e); };
}

void EventWaiter::push(const qmp::QmpEvent& event) {
  {
    std::lock_guard lock(mu_);
    if (events_.size() >= capacity_) {
      events_.pop_front();
      ++dropped_;
    }
    events_.push_back(event);
  }
  cv_.notify_all();
}

Result<qmp::QmpEvent> EventWaiter::waitFor(std::string_view name,
                                           const std::function<bool(const qmp::QmpEvent&)>& match,
                                           Clock::time_point deadline) {
  const std::string wanted(name);
  auto r = waitForAny(
      [&](const qmp::QmpEvent& e) { return e.name == wanted && (!match || match(e)); }, deadline);
  if (!r && r.error().code != ErrorCode::Cancelled) {
    return fail(ErrorCode::Timeout, "No QMP event " + wanted + " in time");
  }
  return r;
}

Result<qmp::QmpEvent> EventWaiter::waitForAny(
    const std::function<bool(const qmp::QmpEvent&)>& match, Clock::time_point deadline,
    bool interruptible) {
  std::unique_lock lock(mu_);
  for (;;) {
    if (interruptible && interrupt_) {
      return fail(ErrorCode::Cancelled, *interrupt_);
    }
    for (auto it = events_.begin(); it != events_.end(); ++it) {
      if (!match || match(*it)) {
        qmp::QmpEvent e = std::move(*it);
        events_.erase(it);
        return e;
      }
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      // One last look: an event may have come with the timeout.
      for (auto it = events_.begin(); it != events_.end(); ++it) {
        if (!match || match(*it)) {
          qmp::QmpEvent e = std::move(*it);
          events_.erase(it);
          return e;
        }
      }
      return fail(ErrorCode::Timeout, "No matching QMP event in time");
    }
  }
}

size_t EventWaiter::discard(const std::function<bool(const qmp::QmpEvent&)>& match) {
  std::lock_guard lock(mu_);
  const size_t before = events_.size();
  std::erase_if(events_, [&](const qmp::QmpEvent& e) { return !match || match(e); });
  return before - events_.size();
}

std::vector<qmp::QmpEvent> EventWaiter::queued() const {
  std::lock_guard lock(mu_);
  return {events_.begin(), events_.end()};
}

void EventWaiter::interrupt(std::string reason) {
  {
    std::lock_guard lock(mu_);
    interrupt_ = std::move(reason);
  }
  cv_.notify_all();
}

void EventWaiter::clearInterrupt() {
  std::lock_guard lock(mu_);
  interrupt_.reset();
}

std::optional<std::string> EventWaiter::interrupted() const {
  std::lock_guard lock(mu_);
  return interrupt_;
}

uint64_t EventWaiter::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

}  // namespace vandra::migration
