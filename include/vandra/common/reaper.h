// Reaper: drops shared references on a thread of its own.
//
// An object whose destructor joins threads must not lose its last reference on one of those
// threads: the join would wait for itself (a Tunnel aborts rather than hang). A callback that
// runs on such a thread and holds a reference for a moment (a stream handler that locked a
// weak_ptr) cannot know whether it holds the last one, since another thread may let go at the
// same instant. It hands its reference here instead, and the object, if that was the last
// reference, ends on the reaper's thread.
//
//   handler thread            reaper thread
//   drop(ref) --queue-->      pop, reset: ~T() runs here when it was the last reference
//
// The reaper's own destructor ends everything queued before it returns.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace vandra {

template <class T>
class Reaper {
 public:
  Reaper() : thread_([this] { run(); }) {}
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;
  ~Reaper() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  /// Lets go of @p ref, on the reaper's thread. After the reaper has stopped (its owner is
  /// being destroyed), on a detached thread: never on the caller's.
  void drop(std::shared_ptr<T> ref) {
    if (!ref) {
      return;
    }
    {
      std::lock_guard lock(mu_);
      if (!stopped_) {
        queue_.push_back(std::move(ref));
        cv_.notify_one();
        return;
      }
    }
    std::thread([r = std::move(ref)]() mutable { r.reset(); }).detach();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) {
        stopped_ = true;  // stop_ and nothing left: what comes later goes elsewhere
        return;
      }
      std::vector<std::shared_ptr<T>> batch;
      batch.swap(queue_);
      lock.unlock();
      batch.clear();  // destructors run here, without the lock: they may drop more
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<T>> queue_;
  bool stop_ = false;
  bool stopped_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace vandra
