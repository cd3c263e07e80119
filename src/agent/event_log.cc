#include "vandra/agent/event_log.h"

namespace vandra::agent {

uint64_t EventLog::append(std::string vm, std::string kind, std::string name, nlohmann::json data,
                          int64_t time_us) {
  if (time_us == 0) {
    time_us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  }
  uint64_t seq = 0;
  {
    std::lock_guard lock(mu_);
    seq = next_seq_++;
    ring_.push_back({seq, time_us, std::move(vm), std::move(kind), std::move(name),
                     data.is_object() ? std::move(data) : nlohmann::json::object()});
    while (ring_.size() > capacity_) {
      ring_.pop_front();
    }
  }
  cv_.notify_all();
  return seq;
}

EventPage EventLog::collect(uint64_t since, const std::string& vm, size_t max) const {
  EventPage page;
  page.last_seq = next_seq_ - 1;
  // Something after `since` is gone when the oldest kept event is newer than since + 1.
  page.truncated = !ring_.empty() && ring_.front().seq > since + 1;
  for (const auto& e : ring_) {
    if (page.events.size() >= max) {
      break;
    }
    if (e.seq > since && (vm.empty() || e.vm == vm)) {
      page.events.push_back(e);
    }
  }
  return page;
}

EventPage EventLog::read(uint64_t since, const std::string& vm, size_t max,
                         std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  EventPage page = collect(since, vm, max);
  if (!page.events.empty() || wait.count() <= 0) {
    return page;
  }
  const auto deadline = std::chrono::steady_clock::now() + wait;
  uint64_t seen = next_seq_;
  while (!closing_ && cv_.wait_until(lock, deadline) != std::cv_status::timeout) {
    if (next_seq_ != seen) {  // something new: is it for us?
      seen = next_seq_;
      page = collect(since, vm, max);
      if (!page.events.empty()) {
        return page;
      }
    }
  }
  return collect(since, vm, max);
}

void EventLog::wakeAll() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
}

nlohmann::json toJson(const AgentEvent& e) {
  return {{"seq", e.seq},   {"time_us", e.time_us}, {"vm", e.vm},
          {"kind", e.kind}, {"name", e.name},       {"data", e.data}};
}

}  // namespace vandra::agent
