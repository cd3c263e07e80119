#include "vandra/controller/progress_hub.h"

namespace vandra::controller {

std::string toSse(const StreamEvent& e) {
  return "id: " + std::to_string(e.seq) + "\nevent: " + e.name + "\ndata: " + e.data + "\n\n";
}

uint64_t ProgressHub::publish(std::string name, std::string data) {
  uint64_t seq = 0;
  {
    std::lock_guard lock(mu_);
    seq = next_seq_++;
    ring_.push_back(StreamEvent{seq, std::move(name), std::move(data)});
    while (ring_.size() > keep_) {
      ring_.pop_front();
    }
  }
  cv_.notify_all();
  return seq;
}

std::vector<StreamEvent> ProgressHub::after(uint64_t seq, std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, wait, [&] { return closed_ || next_seq_ - 1 > seq; });
  std::vector<StreamEvent> out;
  if (closed_) {
    return out;
  }
  for (const auto& e : ring_) {
    if (e.seq > seq) {
      out.push_back(e);
    }
  }
  return out;
}

uint64_t ProgressHub::last() const {
  std::lock_guard lock(mu_);
  return next_seq_ - 1;
}

bool ProgressHub::join() {
  std::lock_guard lock(mu_);
  if (closed_ || watchers_ >= max_watchers_) {
    return false;
  }
  ++watchers_;
  return true;
}

void ProgressHub::leave() {
  {
    std::lock_guard lock(mu_);
    if (watchers_ > 0) {
      --watchers_;
    }
  }
  left_cv_.notify_all();
}

bool ProgressHub::waitWatchers(size_t n, std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  return left_cv_.wait_for(lock, wait, [&] { return watchers_ <= n; });
}

size_t ProgressHub::watchers() const {
  std::lock_guard lock(mu_);
  return watchers_;
}

void ProgressHub::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

bool ProgressHub::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

}  // namespace vandra::controller
