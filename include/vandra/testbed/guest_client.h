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
#include <cstdint>
#include <string>

#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"

namespace vandra::testbed {

class GuestConnection {
public:
  /// Connects from network namespace @p netns ("" = ours) to @p ip:@p port, retrying while the
  /// guest is not up yet (refused, unreachable, no answer) until @p deadline.
  /// Errors: Timeout (with the last reason), NotFound (namespace), InvalidArgument (ip).
  [[nodiscard]] static Result<GuestConnection> connect(const std::string& netns, const std::string& ip, uint16_t port,
                                                       std::chrono::steady_clock::time_point deadline);

  /// Sends "PING token" and waits (up to @p timeout) for "PONG token ..."; returns the round
  /// trip. Errors: Timeout, Io, InvalidArgument (unexpected answer).
  [[nodiscard]] Result<std::chrono::microseconds> ping(const std::string& token, std::chrono::milliseconds timeout);

  /// Switches the connection to echo mode and checks that @p bytes pseudo-random bytes come
  /// back unchanged and in order. Afterwards the connection only echoes.
  [[nodiscard]] Result<void> echo(size_t bytes, std::chrono::milliseconds timeout);

  /// Sends one command line and returns the first reply line (without "\n").
  [[nodiscard]] Result<std::string> command(const std::string& line, std::chrono::milliseconds timeout);

  int fd() const { return fd_.get(); }

private:
  explicit GuestConnection(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<std::string> readLine(std::chrono::steady_clock::time_point deadline);
  Result<void> readExact(char* out, size_t n, std::chrono::steady_clock::time_point deadline);

  UniqueFd fd_;
  std::string pending_;  // bytes read past the last line
};

} // namespace vandra::testbed
