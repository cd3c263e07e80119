#include "vandra/common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <thread>

#include "vandra/common/unique_fd.h"

extern char** environ;

namespace vandra {
namespace {

// Keep only the tail of stderr: enough for an error message, bounded whatever the child does.
constexpr size_t kStderrKeep = 64 * 1024;

void appendBounded(std::string& s, std::string_view more) {
  s.append(more);
  if (s.size() > kStderrKeep) {
    s.erase(0, s.size() - kStderrKeep);
  }
}

}  // namespace

Result<Subprocess> Subprocess::start(const std::vector<std::string>& argv, Options options) {
  if (argv.empty()) {
    return fail(ErrorCode::InvalidArgument, "Empty command line");
  }
  std::array<int, 2> out{-1, -1};
  std::array<int, 2> err{-1, -1};
  if (options.capture_stdout && pipe2(out.data(), O_CLOEXEC) != 0) {
    return fail(Error::fromErrno("pipe failed"));
  }
  UniqueFd out_r(out[0]);
  UniqueFd out_w(out[1]);
  if (options.capture_stderr && pipe2(err.data(), O_CLOEXEC) != 0) {
    return fail(Error::fromErrno("pipe failed"));
  }
  UniqueFd err_r(err[0]);
  UniqueFd err_w(err[1]);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (out_w.valid()) {
    posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  }
  if (err_w.valid()) {
    posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  }
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));  // NOLINT: posix_spawn's signature
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    Error e(rc == ENOENT ? ErrorCode::NotFound : ErrorCode::Io, "Cannot start '" + argv[0] + "'");
    e.sys_errno = rc;
    return fail(std::move(e));
  }
  Subprocess p;
  p.pid_ = pid;
  p.stdout_fd_ = out_r.release();
  p.stderr_fd_ = err_r.release();
  return p;
}

Subprocess::Subprocess(Subprocess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      stdout_fd_(std::exchange(o.stdout_fd_, -1)),
      stderr_fd_(std::exchange(o.stderr_fd_, -1)),
      stderr_(std::move(o.stderr_)) {}

Subprocess& Subprocess::operator=(Subprocess&& o) noexcept {
  if (this != &o) {
    terminate();
    pid_ = std::exchange(o.pid_, -1);
    stdout_fd_ = std::exchange(o.stdout_fd_, -1);
    stderr_fd_ = std::exchange(o.stderr_fd_, -1);
    stderr_ = std::move(o.stderr_);
  }
  return *this;
}

Subprocess::~Subprocess() {
  terminate();
}

void Subprocess::terminate() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    // Give it up to ~2 s to end, then SIGKILL; always reap.
    for (int i = 0; i < 200; ++i) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }
  if (stdout_fd_ >= 0) {
    ::close(stdout_fd_);
    stdout_fd_ = -1;
  }
  if (stderr_fd_ >= 0) {
    ::close(stderr_fd_);
    stderr_fd_ = -1;
  }
}

Result<void> Subprocess::drainStdout(const std::function<void(std::string_view)>& on_chunk) {
  if (stdout_fd_ < 0) {
    return fail(ErrorCode::InvalidArgument, "stdout was not captured");
  }
  std::array<char, 16384> buf{};
  while (stdout_fd_ >= 0 || stderr_fd_ >= 0) {
    std::array<pollfd, 2> fds{pollfd{stdout_fd_, POLLIN, 0}, pollfd{stderr_fd_, POLLIN, 0}};
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Error::fromErrno("poll failed"));
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) {
        continue;
      }
      const ssize_t n = ::read(fds[i].fd, buf.data(), buf.size());
      if (n <= 0) {
        if (n < 0 && errno == EINTR) {
          continue;
        }
        ::close(fds[i].fd);
        (i == 0 ? stdout_fd_ : stderr_fd_) = -1;
        if (i == 0) {
          return {};
        }
        continue;
      }
      const std::string_view chunk(buf.data(), static_cast<size_t>(n));
      if (i == 0) {
        on_chunk(chunk);
      } else {
        appendBounded(stderr_, chunk);
      }
    }
  }
  return {};
}

Result<ExitStatus> Subprocess::wait() {
  if (stdout_fd_ >= 0) {
    VANDRA_TRY(drainStdout([](std::string_view) {}));
  }
  if (stderr_fd_ >= 0) {
    std::array<char, 16384> buf{};
    for (;;) {
      const ssize_t n = ::read(stderr_fd_, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        break;
      }
      appendBounded(stderr_, std::string_view(buf.data(), static_cast<size_t>(n)));
    }
    ::close(stderr_fd_);
    stderr_fd_ = -1;
  }
  if (pid_ <= 0) {
    return fail(ErrorCode::InvalidArgument, "Process already waited for");
  }
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0) {
    if (errno != EINTR) {
      return fail(Error::fromErrno("waitpid failed"));
    }
  }
  pid_ = -1;
  ExitStatus s;
  if (WIFEXITED(st)) {
    s.code = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    s.signal = WTERMSIG(st);
  }
  return s;
}

Result<std::string> runCapture(const std::vector<std::string>& argv) {
  VANDRA_TRY_ASSIGN(auto p,
                    Subprocess::start(argv, {.capture_stdout = true, .capture_stderr = true}));
  std::string out;
  VANDRA_TRY(p.drainStdout([&](std::string_view c) {
    if (out.size() < (64U << 20)) {
      out.append(c);
    }
  }));
  VANDRA_TRY_ASSIGN(auto st, p.wait());
  if (!st.ok()) {
    std::string err = p.stderrText();
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) {
      err.pop_back();
    }
    return fail(ErrorCode::Subprocess,
                "'" + argv[0] + "' failed (exit " + std::to_string(st.code) +
                    (st.signal ? ", signal " + std::to_string(st.signal) : "") + ")" +
                    (err.empty() ? "" : ": " + err));
  }
  return out;
}

}  // namespace vandra
