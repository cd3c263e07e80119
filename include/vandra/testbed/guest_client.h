// A client of the test guest's service (guest/programs/vguest-seqd.c, port 7000) from inside
// a testbed namespace: what the demo, the integration tests and the migration benchmarks use
// to show that a VM answers, and (next) to hold a TCP session through a migration.
//
//   client netns                      guest
//   connect ----------------------->  vguest-seqd (one process per connection)
//   "PING t\n"  -------------------->
//               <--------------------  "PONG t MONO_NS\n"
//   "ECHO\n"    --------------------> "OK ECHO\n", then every byte back
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"

namespace vandra::testbed {

class GuestConnection {
 public:
  /// Connects from network namespace @p netns ("" = ours) to @p ip:@p port, retrying while the
  /// guest is not up yet (refused, unreachable, no answer) until @p deadline.
  /// Errors: Timeout (with the last reason), NotFound (namespace), InvalidArgument (ip).
  [[nodiscard]] static Result<GuestConnection> connect(
      const std::string& netns, const std::string& ip, uint16_t port,
      std::chrono::steady_clock::time_point deadline);

  /// Sends "PING token" and waits (up to @p timeout) for "PONG token ..."; returns the round
  /// trip. Errors: Timeout, Io, InvalidArgument (unexpected answer).
  [[nodiscard]] Result<std::chrono::microseconds> ping(const std::string& token,
                                                       std::chrono::milliseconds timeout);

  /// Switches the connection to echo mode and checks that @p bytes pseudo-random bytes come
  /// back unchanged and in order. Afterwards the connection only echoes.
  [[nodiscard]] Result<void> echo(size_t bytes, std::chrono::milliseconds timeout);

  /// Sends one command line and returns the first reply line (without "\n").
  [[nodiscard]] Result<std::string> command(const std::string& line,
                                            std::chrono::milliseconds timeout);

  /// "EXEC vguest-X ARGS": the program's output lines ("OUT ..." stripped to their text) and
  /// its exit code. Errors: Timeout, Io, InvalidArgument (ERR from the guest).
  struct ExecResult {
    std::vector<std::string> out;
    int exit_code = -1;
  };
  [[nodiscard]] Result<ExecResult> exec(const std::string& program_and_args,
                                        std::chrono::milliseconds timeout);

  int fd() const { return fd_.get(); }

 private:
  explicit GuestConnection(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<std::string> readLine(std::chrono::steady_clock::time_point deadline);
  Result<void> readExact(char* out, size_t n, std::chrono::steady_clock::time_point deadline);

  UniqueFd fd_;
  std::string pending_;  // bytes read past the last line
};

/// A client's TCP session held to the guest through whatever happens to it (a live
/// migration): the guest's PROBE service echoes each 8-byte probe (a counter) with its clock,
/// one probe every interval. It measures the longest time without an answer and checks that
/// every byte sent comes back once and in order (a lost, repeated or reordered byte breaks the
/// counter sequence).
///
///   client (thread)  -- 8 bytes: counter n, big-endian, every interval -->  guest vguest-seqd
///   PROBE
///                    <-- 16 bytes: the same 8 bytes + guest CLOCK_MONOTONIC ns --
class SessionProbe {
 public:
  struct Report {
    uint64_t probes_sent = 0;
    uint64_t answers = 0;     // in order and intact
    double max_gap_ms = 0;    // longest time between two answers (or start and the first)
    double max_gap_at_s = 0;  // when that gap ended, seconds after start
    uint64_t bytes_lost = 0;  // sent but never answered (at stop), or broken
    std::string error;        // the session broke: what happened ("" = intact)
  };
  /// Connects (retrying until @p deadline, as GuestConnection::connect), switches the
  /// connection to PROBE and starts probing every @p interval on its own thread.
  [[nodiscard]] static Result<std::unique_ptr<SessionProbe>> start(
      const std::string& netns, const std::string& ip, uint16_t port,
      std::chrono::milliseconds interval, std::chrono::steady_clock::time_point deadline);
  ~SessionProbe();
  SessionProbe(const SessionProbe&) = delete;
  SessionProbe& operator=(const SessionProbe&) = delete;
  /// The figures so far.
  Report snapshot() const;
  /// Stops probing and waits up to @p drain for the answers still on their way; the final
  /// report (bytes still unanswered then count as lost).
  Report stop(std::chrono::milliseconds drain = std::chrono::seconds(10));

  SessionProbe(GuestConnection conn, std::chrono::milliseconds interval);

 private:
  void run();

  GuestConnection conn_;
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point drain_until_{};
  mutable std::mutex mu_;
  Report report_;
  bool stopping_ = false;
  bool done_ = false;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace vandra::testbed
