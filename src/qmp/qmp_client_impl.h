// QmpClientImpl: the socket side of QmpClient. Owns the unix socket, a reader thread (frames
// and decodes lines, completes waiting commands, queues events) and an event thread (runs
// on_event). Must not interpret command arguments or replies: that is qmp_commands.
//
//   connectQmp ──> Connecting ──greeting──> Greeted ──capabilities ok──> Ready
//                      │                        │                          │
//                      └──── EOF / garbage / oversized / close() ──────────┴──> Broken
//   Broken is final: every execute() returns the error that broke the connection.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "vandra/common/unique_fd.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::qmp {

class QmpClientImpl final : public QmpClient {
 public:
  /// Connects, waits for the greeting and negotiates capabilities (see connectQmp).
  [[nodiscard]] static Result<std::unique_ptr<QmpClientImpl>> connect(
      const std::string& socket_path, QmpClientOptions options);

  /// Takes a connected socket; starts no thread (connect() does). Use connect().
  QmpClientImpl(UniqueFd sock, UniqueFd wake, QmpClientOptions options);
  QmpClientImpl(const QmpClientImpl&) = delete;
  QmpClientImpl& operator=(const QmpClientImpl&) = delete;
  ~QmpClientImpl() override;

  [[nodiscard]] Result<nlohmann::json> execute(const QmpCommand& cmd) override;
  const QmpGreeting& greeting() const override { return greeting_value_; }
  uint64_t droppedEvents() const override { return dropped_.load(); }
  void close() override;
  bool waitDisconnected(std::chrono::milliseconds timeout) override;

 private:
  void readerLoop();
  void eventLoop();
  /// Handles one decoded line. Returns an error that must break the connection.
  [[nodiscard]] Result<void> handleLine(const std::string& line);
  void pushEvent(QmpEvent ev);
  /// Records the first connection-level error and wakes every waiter. Thread: any.
  void breakConnection(Error e);
  [[nodiscard]] Result<void> writeLine(const std::string& line,
                                       std::chrono::steady_clock::time_point deadline);
  [[nodiscard]] Result<nlohmann::json> executeUntil(const QmpCommand& cmd,
                                                    std::chrono::steady_clock::time_point deadline);

  UniqueFd sock_;
  UniqueFd wake_;  // eventfd: written by close() to stop the reader's poll
  QmpClientOptions options_;

  std::mutex mu_;               // guards everything below up to the event queue
  std::condition_variable cv_;  // greeting, replies, broken_
  std::optional<QmpGreeting> greeting_;
  std::optional<Error> broken_;
  std::map<std::string, std::optional<Result<nlohmann::json>>> pending_;  // by id
  uint64_t next_id_ = 1;
  QmpGreeting greeting_value_;  // copy published before connect() returns; then immutable
  bool oob_ = false;            // `oob` negotiated (set before connect() returns)

  std::mutex write_mu_;  // one command line on the wire at a time

  std::mutex ev_mu_;  // guards events_ and ev_stop_
  std::condition_variable ev_cv_;
  std::deque<QmpEvent> events_;
  bool ev_stop_ = false;
  std::atomic<uint64_t> dropped_{0};

  std::once_flag close_once_;
  std::thread reader_;
  std::thread eventer_;
};

}  // namespace vandra::qmp
