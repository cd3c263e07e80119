// What every `vandra` command shares: the one table from error codes to exit codes, one-line
// error reporting, and a progress bar on stderr (only when stderr is a terminal, so scripts
// and --json output stay clean).
#pragma once

#include <chrono>
#include <string>

#include "vandra/agent/agent_client.h"
#include "vandra/common/result.h"

namespace vandra::cli {

/// Exit codes, derived from kindOf() (error.h): 0 ok, 1 failure of the environment (I/O,
/// subprocess, internal, timeout), 2 usage, 3 invalid input or request (package, descriptor,
/// SLA, arguments, already exists, illegal VM transition, too large, no capacity), 4 not
/// found, 5 busy (try again later).
int exitCodeFor(ErrorCode code);

/// Reads a small file (keys, certificates, specs): at most @p limit bytes, else LimitExceeded.
[[nodiscard]] Result<std::string> readSmallFile(const std::string& path, size_t limit = 16U << 20);

/// Prints "vandra: <what>: <error>" on one line to stderr and returns the exit code.
int reportError(const std::string& what, const Error& e);

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  /// Redraws at most 10 times a second, and always on a new stage or at 100 %.
  /// @p detail (optional) follows the percentage on the same line (e.g. bytes and rates).
  void update(const std::string& stage, double fraction, const std::string& detail = {});
  void finish();

 private:
  bool enabled_;
  bool drawn_ = false;
  std::string stage_;
  std::chrono::steady_clock::time_point last_{};
};

/// Upload progress of @p name on stderr: "uploading NAME: 42% (6/14 MiB)", rewritten in place
/// on a terminal, every 25% otherwise.
agent::AgentClient::UploadProgress uploadProgress(const std::string& name);

}  // namespace vandra::cli
