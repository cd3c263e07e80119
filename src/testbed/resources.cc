// What the testbed creates and how it ends it: the state file (every namespace, link,
// process and file recorded before it is made, so `down` and a crashed `up` can undo it) and
// the processes it starts (the WAN emulator, the agents), found again by pid, start time and
// command line, ended through pidfds. Private to src/testbed (testbed_internal.h).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "testbed_internal.h"
#include "vandra/common/netns.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/testbed/wan_emulator.h"

extern char** environ;

namespace vandra::testbed::internal {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// Reads a small file whole (state file, /proc entries, a log): at most @p limit bytes.
// Errors: NotFound, Io.
Result<std::string> readSmall(const std::string& path, size_t limit) {
  VANDRA_TRY_ASSIGN(auto fd, UniqueFd::open(path, O_RDONLY));
  std::string out;
  std::array<char, 4096> buf{};
  while (out.size() < limit) {
    VANDRA_TRY_ASSIGN(const size_t n, readSome(fd.get(), buf.data(), buf.size(), path));
    if (n == 0) {
      break;
    }
    out.append(buf.data(), n);
  }
  return out;
}

std::string cmdlineOf(pid_t pid) {
  auto cmd = readSmall("/proc/" + std::to_string(pid) + "/cmdline", 64U << 10);
  if (!cmd) {
    return {};
  }
  std::replace(cmd->begin(), cmd->end(), '\0', ' ');
  return *cmd;
}

// ---- state file -----------------------------------------------------------------------

namespace {

json toJson(const State& s) {
  json res = json::array();
  for (const auto& r : s.resources) {
    json j = {{"kind", r.kind}, {"name", r.name}};
    if (r.kind == "process") {
      j["pid"] = r.pid;
      j["start_time"] = r.start_time;
      j["marker"] = r.marker;
      if (!r.argv.empty()) {
        j["argv"] = r.argv;
      }
    }
    res.push_back(std::move(j));
  }
  return {{"version", 1},
          {"id", s.id},
          {"profile", s.profile},
          {"sites", s.sites},
          {"congestion", s.congestion},
          {"complete", s.complete},
          {"resources", res}};
}

Result<State> parseState(const std::string& text, const std::string& path) {
  const json j = json::parse(text, nullptr, false);
  auto bad = [&](const std::string& why) {
    return fail(ErrorCode::InvalidArgument, "State file " + path + " is unusable: " + why);
  };
  if (j.is_discarded() || !j.is_object()) {
    return bad("not a JSON object");
  }
  auto str = [](const json& o, const char* k) -> std::optional<std::string> {
    const auto it = o.find(k);
    if (it == o.end() || !it->is_string()) {
      return std::nullopt;
    }
    return it->get<std::string>();
  };
  State s;
  const auto id = str(j, "id");
  const auto profile = str(j, "profile");
  const auto res = j.find("resources");
  if (!id || !profile || res == j.end() || !res->is_array()) {
    return bad("id, profile or resources missing");
  }
  s.id = *id;
  s.profile = *profile;
  s.congestion = str(j, "congestion").value_or("");  // absent in files of older versions
  if (const auto sites = j.find("sites"); sites != j.end() && sites->is_array()) {
    for (const auto& n : *sites) {
      if (!n.is_string()) {
        return bad("sites must be names");
      }
      s.sites.push_back(n.get<std::string>());
    }
  }
  const auto complete = j.find("complete");
  s.complete = complete != j.end() && complete->is_boolean() && complete->get<bool>();
  for (const auto& e : *res) {
    if (!e.is_object()) {
      return bad("resource is not an object");
    }
    Resource r;
    const auto kind = str(e, "kind");
    const auto name = str(e, "name");
    if (!kind || !name) {
      return bad("resource without kind or name");
    }
    r.kind = *kind;
    r.name = *name;
    if (r.kind == "process") {
      const auto pid = e.find("pid");
      const auto st = e.find("start_time");
      const auto marker = str(e, "marker");
      if (pid == e.end() || !pid->is_number_integer() || st == e.end() ||
          !st->is_number_unsigned() || !marker) {
        return bad("process without pid, start_time or marker");
      }
      r.pid = pid->get<pid_t>();
      r.start_time = st->get<uint64_t>();
      r.marker = *marker;
      if (const auto a = e.find("argv"); a != e.end()) {
        if (!a->is_array() || a->size() > 256) {
          return bad("process argv is not a list");
        }
        for (const auto& v : *a) {
          if (!v.is_string()) {
            return bad("process argv holds a non-string");
          }
          r.argv.push_back(v.get<std::string>());
        }
      }
    }
    s.resources.push_back(std::move(r));
  }
  return s;
}

}  // namespace

Result<std::optional<State>> loadState(const std::string& state_dir) {
  const std::string path = stateFilePath(state_dir);
  auto text = readSmall(path);
  if (!text) {
    if (text.error().code == ErrorCode::NotFound) {
      return std::optional<State>();
    }
    return fail(std::move(text).error());
  }
  VANDRA_TRY_ASSIGN(auto s, parseState(*text, path));
  return std::optional<State>(std::move(s));
}

// Written beside and renamed over, with fsync, so a crash leaves the old or the new file.
Result<void> saveState(const std::string& state_dir, const State& s) {
  const std::string path = stateFilePath(state_dir);
  return replaceFile(path, toJson(s).dump(2) + "\n");
}

// ---- processes --------------------------------------------------------------------------

std::optional<ProcStat> readProcStat(pid_t pid) {
  const auto text = readSmall("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (!text) {
    return std::nullopt;
  }
  const std::string& line = *text;
  // "pid (comm) S f4 f5 ...": comm may hold spaces and parentheses; fields follow the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream fields(line.substr(close + 1));
  ProcStat ps;
  fields >> ps.state;
  std::string skip;
  for (int field = 4; field < 22; ++field) {
    fields >> skip;
  }
  fields >> ps.start_time;
  if (!fields) {
    return std::nullopt;
  }
  return ps;
}

uint64_t startTimeOf(pid_t pid) {
  const auto ps = readProcStat(pid);
  return ps ? ps->start_time : 0;
}

// Starts @p argv in a new session, detached from our terminal and signal mask, stdout and
// stderr appended to @p log_path; @p extra_fd (if >= 0) becomes the child's fd 3.
Result<pid_t> spawnDetached(const std::vector<std::string>& argv, const std::string& log_path,
                            int extra_fd) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  auto fa_guard = defer([&] { posix_spawn_file_actions_destroy(&fa); });
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (extra_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, extra_fd, 3);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  auto attr_guard = defer([&] { posix_spawnattr_destroy(&attr); });
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) {
    sigaddset(&defaults, s);
  }
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, static_cast<short>(POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                                     POSIX_SPAWN_SETSIGDEF));
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));  // NOLINT: posix_spawn's signature
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  if (rc != 0) {
    Error e(rc == ENOENT ? ErrorCode::NotFound : ErrorCode::Io, "Cannot start '" + argv[0] + "'");
    e.sys_errno = rc;
    return fail(std::move(e));
  }
  return pid;
}

// glibc 2.36's <sys/pidfd.h> lacks extern "C": call the system calls directly.
int pidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U));
}
int pidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0U));
}

void reapIfChild(pid_t pid) {
  int st = 0;
  ::waitpid(pid, &st, WNOHANG);  // ECHILD when it is not ours: someone else reaps it
}

bool waitExit(int pidfd, std::chrono::milliseconds timeout) {
  pollfd p{pidfd, POLLIN, 0};
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    const int rc = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (rc > 0) {
      return true;
    }
    if (rc == 0 || errno != EINTR) {
      return false;
    }
  }
}

// Whether the recorded process still exists. An exiting process (state D or Z, command line
// already empty) still counts as ours by pid + start time: down must wait for it to end.

Presence presence(const Resource& r) {
  if (r.pid <= 0) {
    return Presence::Gone;
  }
  const auto ps = readProcStat(r.pid);
  if (!ps || ps->state == 'Z' || ps->state == 'X' || ps->state == 'x') {
    return Presence::Gone;
  }
  if (r.start_time != 0 && ps->start_time != r.start_time) {
    return Presence::NotOurs;  // the pid was reused
  }
  const std::string cmd = cmdlineOf(r.pid);
  if (!cmd.empty() && cmd.find(r.marker) == std::string::npos) {
    return Presence::NotOurs;
  }
  return Presence::Ours;
}

Result<void> stopProcess(const Resource& r) {
  if (presence(r) != Presence::Ours) {
    if (r.pid > 0) {
      reapIfChild(r.pid);
    }
    return {};
  }
  UniqueFd pidfd(pidfdOpen(r.pid));
  if (!pidfd.valid()) {
    if (errno == ESRCH) {
      return {};
    }
    return fail(Error::fromErrno("pidfd_open(" + std::to_string(r.pid) + ") failed"));
  }
  // The pidfd pins this exact process: check again that it is still ours.
  if (presence(r) != Presence::Ours) {
    reapIfChild(r.pid);
    return {};
  }
  for (int sig : {SIGTERM, SIGKILL}) {
    if (pidfdSendSignal(pidfd.get(), sig) != 0 && errno != ESRCH) {
      return fail(
          Error::fromErrno("Cannot signal " + r.name + " (pid " + std::to_string(r.pid) + ")"));
    }
    if (waitExit(pidfd.get(), kStopTimeout)) {
      reapIfChild(r.pid);
      return {};
    }
  }
  return fail(ErrorCode::Timeout, r.name + " (pid " + std::to_string(r.pid) + ") does not end");
}

// Ends every process inside network namespace @p netns (SIGKILL through a pidfd, then waits
// for each). `ip netns pids` lists them by namespace identity.
Result<void> killNamespaceProcesses(const std::string& netns) {
  auto listed = runCapture({"ip", "netns", "pids", netns});
  if (!listed) {
    return fail(std::move(listed).error());
  }
  std::istringstream in(*listed);
  pid_t pid = 0;
  std::vector<UniqueFd> ending;
  while (in >> pid) {
    UniqueFd fd(pidfdOpen(pid));
    if (!fd.valid()) {
      continue;  // already gone
    }
    if (pidfdSendSignal(fd.get(), SIGKILL) != 0 && errno != ESRCH) {
      return fail(Error::fromErrno("Cannot end pid " + std::to_string(pid) + " in " + netns));
    }
    ending.push_back(std::move(fd));
  }
  for (const auto& fd : ending) {
    if (!waitExit(fd.get(), kStopTimeout)) {
      return fail(ErrorCode::Timeout, "A process in " + netns + " does not end after SIGKILL");
    }
  }
  return {};
}

// Waits for "ready\n" on @p fd. Errors: Timeout, Subprocess (closed without ready).
Result<void> waitReady(int fd, const std::string& log_path) {
  const auto deadline = Clock::now() + kReadyTimeout;
  std::string got;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return fail(ErrorCode::Timeout,
                  "vandra-wanem not ready within " + std::to_string(kReadyTimeout.count()) + " s");
    }
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno != EINTR) {
      return fail(Error::fromErrno("poll failed"));
    }
    if (rc <= 0) {
      continue;
    }
    std::array<char, 64> buf{};
    VANDRA_TRY_ASSIGN(const size_t n, readSome(fd, buf.data(), buf.size(), "ready pipe"));
    if (n == 0) {
      std::string log = readSmall(log_path, 4096).value_or(std::string());
      while (!log.empty() && log.back() == '\n') {
        log.pop_back();
      }
      return fail(ErrorCode::Subprocess, "vandra-wanem ended before it was ready" +
                                             (log.empty() ? std::string() : ": " + log));
    }
    got.append(buf.data(), n);
    if (got.find("ready\n") != std::string::npos) {
      return {};
    }
  }
}

// ---- building blocks of up ----------------------------------------------------------------

Result<Resource*> Builder::record(Resource r) {
  s_.resources.push_back(std::move(r));
  VANDRA_TRY(saveState(dir_, s_));
  return &s_.resources.back();
}

Result<void> Builder::save() {
  return saveState(dir_, s_);
}

std::string hostOf(const std::string& cidr) {
  return cidr.substr(0, cidr.find('/'));
}

namespace {
Result<void> ipArgv(const std::vector<std::string>& argv) {
  VANDRA_TRY(runCapture(argv));
  return {};
}
}  // namespace

Result<void> ip(std::initializer_list<std::string> args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  return ipArgv(argv);
}

Result<void> ipIn(const std::string& netns, std::initializer_list<std::string> args) {
  std::vector<std::string> argv{"ip", "-n", netns};
  argv.insert(argv.end(), args.begin(), args.end());
  return ipArgv(argv);
}

bool netnsExists(const std::string& name) {
  struct stat st {};
  return ::stat(("/run/netns/" + name).c_str(), &st) == 0;
}

Result<std::string> findProgram(const std::string& given, const char* env_var,
                                const std::string& name) {
  std::vector<std::string> candidates;
  if (!given.empty()) {
    candidates.push_back(given);
  } else if (const char* env = std::getenv(env_var); env != nullptr && *env != '\0') {
    candidates.emplace_back(env);
  } else {
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
      candidates.push_back((self.parent_path() / name).string());
      candidates.push_back((self.parent_path().parent_path() / name / name).string());
    }
  }
  for (const auto& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) {
      return fs::absolute(c).string();
    }
  }
  return fail(ErrorCode::NotFound,
              name + " not found (give its path or set " + env_var + ")" +
                  (candidates.empty() ? std::string() : "; tried " + candidates.front()));
}

Result<pid_t> startRecorded(Builder& b, const std::string& role,
                            const std::vector<std::string>& argv, const std::string& marker,
                            const std::string& log_path, int extra_fd) {
  VANDRA_TRY(b.record({"file", log_path, -1, 0, "", {}}));
  VANDRA_TRY_ASSIGN(Resource * r, b.record({"process", role, -1, 0, marker, argv}));
  VANDRA_TRY_ASSIGN(const pid_t pid, spawnDetached(argv, log_path, extra_fd));
  r->pid = pid;
  r->start_time = startTimeOf(pid);
  VANDRA_TRY(b.save());
  return pid;
}

std::string tailOf(const std::string& path, size_t n) {
  std::string tail = readSmall(path, 1U << 20).value_or(std::string());
  return tail.size() > n ? tail.substr(tail.size() - n) : tail;
}

}  // namespace vandra::testbed::internal
