// What the controller pushes to consoles (GET /v1/stream, server-sent events): a bounded ring
// of named events, each with a sequence number. One publisher side (the service's progress
// loop and the migration followers), any number of watchers, each reading from its own place.
//
//   progress loop ──publish("migration", json)──► ring [seq 41 42 43 ...] ──► watcher A (after 42)
//   finishMigration ─publish("migration", end)──►      (oldest dropped)   ──► watcher B (after 40)
//
// A watcher that falls further behind than the ring skips to its oldest event: every
// migration event is a whole snapshot, so the next one repairs what was skipped.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace vandra::controller {

struct StreamEvent {
  uint64_t seq = 0;
  std::string name;  // "migration", "changed", "hello"
  std::string data;  // one line of JSON
};

/// The text of @p e on an event stream ("id: ..\nevent: ..\ndata: ..\n\n").
std::string toSse(const StreamEvent& e);

class ProgressHub {
 public:
  explicit ProgressHub(size_t keep = 1024, size_t max_watchers = 256)
      : keep_(keep), max_watchers_(max_watchers) {}

  /// Appends an event and wakes every watcher. Returns its seq. @p data must hold no newline.
  uint64_t publish(std::string name, std::string data);
  /// The events after @p seq, waiting up to @p wait for one; empty on timeout or close().
  std::vector<StreamEvent> after(uint64_t seq, std::chrono::milliseconds wait);
  /// The newest seq (0: none yet).
  uint64_t last() const;

  /// A watcher joins (false: max_watchers are watching already) and leaves.
  bool join();
  void leave();
  size_t watchers() const;
  /// Waits up to @p wait until at most @p n watchers remain; whether they do.
  bool waitWatchers(size_t n, std::chrono::milliseconds wait);

  /// Wakes every watcher for good (the server is stopping): after() returns empty at once.
  void close();
  bool closed() const;

 private:
  const size_t keep_;
  const size_t max_watchers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable left_cv_;
  std::deque<StreamEvent> ring_;
  uint64_t next_seq_ = 1;
  size_t watchers_ = 0;
  bool closed_ = false;
};

}  // namespace vandra::controller
