// The agent's event log: what happened to its VMs, in order, for `vandra vm events` and for
// callers that wait for something (the orchestrator, tests). Two sources write to it:
//   kind "state"  every lifecycle transition the agent persists (from, to, event)
//   kind "qmp"    every event QEMU sends on a VM's event monitor (STOP, RESUME, SHUTDOWN,
//                 BLOCK_JOB_*, MIGRATION, ...), with QEMU's own timestamp
// Each event gets a sequence number that only grows. The log keeps the newest `capacity`
// events in memory (it is a view of now, not an audit trail: the registry holds the state);
// a reader that fell behind the oldest kept event is told so (truncated).
//
//   writer(s) --append--> [ ring of the newest N, seq k..k+N-1 ] --read(since, vm, wait)--> readers
//                                     |  condition variable wakes waiting readers
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vandra::agent {

struct AgentEvent {
  uint64_t seq = 0;
  int64_t time_us = 0;  // microseconds since the Unix epoch (QEMU's timestamp for "qmp")
  std::string vm;
  std::string kind;  // "state" or "qmp"
  std::string name;  // new state ("running") or the QMP event name ("STOP")
  nlohmann::json data = nlohmann::json::object();
};

struct EventPage {
  std::vector<AgentEvent> events;
  uint64_t last_seq = 0;   // newest sequence number in the log (0: none yet)
  bool truncated = false;  // events after `since` were already dropped from memory
};

class EventLog {
 public:
  explicit EventLog(size_t capacity = 4096) : capacity_(capacity == 0 ? 1 : capacity) {}

  /// Appends and wakes readers; returns the event's sequence number. @p time_us 0: now.
  uint64_t append(std::string vm, std::string kind, std::string name, nlohmann::json data,
                  int64_t time_us = 0);

  /// Events with seq > @p since (only VM @p vm unless empty), at most @p max. When there are
  /// none, waits up to @p wait for the first one. Thread: any.
  EventPage read(uint64_t since, const std::string& vm, size_t max, std::chrono::milliseconds wait);

  /// Wakes every waiting reader with what it has (used on shutdown).
  void wakeAll();

 private:
  EventPage collect(uint64_t since, const std::string& vm, size_t max) const;  // mu_ held

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<AgentEvent> ring_;
  uint64_t next_seq_ = 1;
  bool closing_ = false;
};

nlohmann::json toJson(const AgentEvent& e);

}  // namespace vandra::agent
