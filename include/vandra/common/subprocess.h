// Subprocess: a child program (qemu-img, ...) started without a shell. The destructor sends
// SIGTERM, waits briefly, then SIGKILL, and always reaps, so no child outlives its owner.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"

namespace vandra {

struct ExitStatus {
  int code = -1;   // exit code when the child exited normally
  int signal = 0;  // signal that ended it, or 0
  bool ok() const { return signal == 0 && code == 0; }
};

class Subprocess {
 public:
  struct Options {
    bool capture_stdout = false;  // stdout through a pipe, read with readLine()/readAll()
    bool capture_stderr = true;   // stderr kept (bounded) for error messages
  };

  /// Starts argv[0] (looked up in PATH) with argv. Errors: NotFound if the program is absent,
  /// Io on fork/pipe failure.
  [[nodiscard]] static Result<Subprocess> start(const std::vector<std::string>& argv,
                                                Options options);

  Subprocess(Subprocess&&) noexcept;
  Subprocess& operator=(Subprocess&&) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }

  /// Reads stdout until the child closes it, calling @p on_chunk for each chunk
  /// (used for progress parsing). Requires capture_stdout.
  [[nodiscard]] Result<void> drainStdout(const std::function<void(std::string_view)>& on_chunk);

  /// Waits for the child to end; collects stderr (last 64 KiB).
  [[nodiscard]] Result<ExitStatus> wait();

  /// stderr collected by wait().
  const std::string& stderrText() const { return stderr_; }

 private:
  Subprocess() = default;
  void terminate();
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  std::string stderr_;
};

/// Runs a program to completion. Errors: Subprocess (non-zero exit, stderr in the message).
[[nodiscard]] Result<std::string> runCapture(const std::vector<std::string>& argv);

}  // namespace vandra
