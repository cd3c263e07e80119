#include "vandra/common/failpoint.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <set>

namespace vandra {
namespace {

std::atomic<bool> any_armed{false};
std::mutex mu;  // guards the two below
std::set<std::string, std::less<>> armed;
std::function<void(std::string_view)> action;

}  // namespace

const std::vector<std::string>& knownFailpoints() {
  // Where each is, in the order a migration reaches them (orchestrator/migrator.cc).
  static const std::vector<std::string> names = {
      "source-paused",          // source: switchover written, guest paused, before migrate-continue
      "source-completed",       // source: QEMU's migration completed, before `switchover` is sent
      "source-target-started",  // source: the target answered `started`, before confirm is written
      "target-before-start",    // target: switchover written, before the guest is started (cont)
      "target-started",  // target: the guest runs (cont, announce), before confirm is written
      "target-before-confirmed",  // target: `confirm` received, before done is written
  };
  return names;
}

void armFailpoint(std::string_view name) {
  std::lock_guard lock(mu);
  armed.emplace(name);
  any_armed.store(true, std::memory_order_relaxed);
}

void failpoint(std::string_view name) {
  if (!any_armed.load(std::memory_order_relaxed)) {
    return;
  }
  std::function<void(std::string_view)> run;
  {
    std::lock_guard lock(mu);
    const auto it = armed.find(name);
    if (it == armed.end()) {
      return;
    }
    armed.erase(it);
    any_armed.store(!armed.empty(), std::memory_order_relaxed);
    run = action;
  }
  if (run) {
    run(name);
    return;
  }
  std::fprintf(stderr, "failpoint %.*s reached: killing this process (SIGKILL)\n",
               static_cast<int>(name.size()), name.data());
  std::fflush(stderr);
  std::raise(SIGKILL);
}

void setFailpointAction(std::function<void(std::string_view)> a) {
  std::lock_guard lock(mu);
  action = std::move(a);
}

void disarmFailpoints() {
  std::lock_guard lock(mu);
  armed.clear();
  any_armed.store(false, std::memory_order_relaxed);
}

}  // namespace vandra
