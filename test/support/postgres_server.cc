#include "test/support/postgres_server.h"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "vandra/common/subprocess.h"

namespace vandra::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The newest /usr/lib/postgresql/<major>/bin holding initdb and postgres ("" if none).
std::string findBinDir() {
  std::error_code ec;
  int best = -1;
  std::string found;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string major = e.path().filename().string();
    const int n = std::atoi(major.c_str());
    const fs::path bin = e.path() / "bin";
    if (n > best && fs::exists(bin / "initdb") && fs::exists(bin / "postgres")) {
      best = n;
      found = bin.string();
    }
  }
  return found;
}

std::string percentEncode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string tail(const std::string& path, size_t max = 2000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string s = ss.str();
  return s.size() > max ? s.substr(s.size() - max) : s;
}

bool exited(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == pid;
}

// Children of @p parent (the postmaster's backends), from /proc.
std::vector<pid_t> childrenOf(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])) == 0) {
      continue;
    }
    std::ifstream in(e.path() / "stat");
    std::string line;
    std::getline(in, line);
    // "pid (comm) state ppid ...": comm may hold spaces, so parse after the last ')'.
    const size_t close = line.rfind(')');
    if (close == std::string::npos) {
      continue;
    }
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) {
      out.push_back(static_cast<pid_t>(std::atoi(name.c_str())));
    }
  }
  return out;
}

}  // namespace

std::string PostgresServer::unavailable() {
  if (findBinDir().empty()) {
    return "PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin; Debian package "
           "postgresql)";
  }
  if (::geteuid() == 0 && ::getpwnam("postgres") == nullptr) {
    return "running as root and no 'postgres' user to run the server as";
  }
  return {};
}

Result<std::unique_ptr<PostgresServer>> PostgresServer::start() {
  if (auto why = unavailable(); !why.empty()) {
    return fail(ErrorCode::NotFound, why);
  }
  std::unique_ptr<PostgresServer> s(new PostgresServer());
  s->bin_ = findBinDir();
  std::string templ = (fs::temp_directory_path() / "vandra-pg-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) {
    return fail(Error::fromErrno("Cannot create a folder for PostgreSQL under " + templ));
  }
  s->dir_ = templ;
  s->data_ = s->dir_ + "/data";
  std::vector<std::string> as_user;
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    s->switch_user_ = true;
    s->run_uid_ = pw->pw_uid;
    s->run_gid_ = pw->pw_gid;
    if (::chown(s->dir_.c_str(), s->run_uid_, s->run_gid_) != 0) {
      return fail(Error::fromErrno("Cannot give " + s->dir_ + " to the postgres user"));
    }
    as_user = {"runuser", "-u", "postgres", "--"};
  }
  std::vector<std::string> initdb = as_user;
  for (const std::string& a : {s->bin_ + "/initdb", std::string("-D"), s->data_, std::string("-U"),
                               std::string("postgres"), std::string("-A"), std::string("trust"),
                               std::string("-E"), std::string("UTF8"), std::string("--locale=C"),
                               std::string("--no-sync"), std::string("--no-instructions")}) {
    initdb.push_back(a);
  }
  VANDRA_TRY(runCapture(initdb));
  VANDRA_TRY(s->spawn());
  VANDRA_TRY(s->waitReady());
  return s;
}

PostgresServer::~PostgresServer() {
  (void)stop();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string PostgresServer::url(const std::string& dbname, const std::string& password) const {
  return "postgresql://postgres" + (password.empty() ? "" : ":" + password) + "@/" +
         (dbname.empty() ? "postgres" : dbname) + "?host=" + percentEncode(dir_);
}

Result<void> PostgresServer::spawn() {
  const std::string log = dir_ + "/postgres.log";
  // Everything the child needs is built before fork (only async-signal-safe calls after).
  // fsync off for speed; synchronous_commit stays on, so a commit survives crash() (a killed
  // process, not a lost page cache).
  std::vector<std::string> args = {bin_ + "/postgres",
                                   "-D",
                                   data_,
                                   "-k",
                                   dir_,
                                   "-c",
                                   "listen_addresses=",
                                   "-c",
                                   "fsync=off",
                                   "-c",
                                   "full_page_writes=off",
                                   "-c",
                                   "max_connections=100",
                                   "-c",
                                   "shared_buffers=16MB"};
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    return fail(Error::fromErrno("Cannot fork for postgres"));
  }
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || null < 0 || ::dup2(null, 0) < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) {
      ::_exit(126);
    }
    if (switch_user_ &&
        (::setgroups(0, nullptr) != 0 || ::setgid(run_gid_) != 0 || ::setuid(run_uid_) != 0)) {
      ::_exit(126);
    }
    // If the test dies, the server goes too (SIGQUIT: immediate shutdown). Set after setuid,
    // which clears it.
    ::prctl(PR_SET_PDEATHSIG, SIGQUIT);
    if (::getppid() != parent) {
      ::_exit(126);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  return {};
}

Result<void> PostgresServer::waitReady() {
  const std::string conninfo = url();
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    if (PQping(conninfo.c_str()) == PQPING_OK) {
      return {};
    }
    if (exited(pid_)) {
      pid_ = -1;
      return fail(ErrorCode::Subprocess,
                  "postgres exited before it was ready: " + tail(dir_ + "/postgres.log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling interval
  }
  return fail(ErrorCode::Timeout,
              "postgres was not ready within 30 s: " + tail(dir_ + "/postgres.log"));
}

Result<void> PostgresServer::crash() {
  if (pid_ < 0) {
    return fail(ErrorCode::Internal, "crash(): the server is not running");
  }
  // Freeze the postmaster so it forks no new backend while its children are killed.
  ::kill(pid_, SIGSTOP);
  const std::vector<pid_t> children = childrenOf(pid_);
  for (const pid_t c : children) {
    ::kill(c, SIGKILL);
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  // The backends, now orphans, must be gone (or zombies) before a restart may reuse the data.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  for (const pid_t c : children) {
    while (Clock::now() < deadline) {
      std::ifstream in("/proc/" + std::to_string(c) + "/stat");
      std::string line;
      if (!std::getline(in, line) || line.find(") Z") != std::string::npos) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return {};
}

Result<void> PostgresServer::restart() {
  if (pid_ >= 0) {
    return fail(ErrorCode::Internal, "restart(): the server is still running");
  }
  VANDRA_TRY(spawn());
  return waitReady();
}

Result<void> PostgresServer::stop() {
  if (pid_ < 0) {
    return {};
  }
  ::kill(pid_, SIGINT);  // fast shutdown: ends sessions, checkpoints
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    if (exited(pid_)) {
      pid_ = -1;
      return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return fail(ErrorCode::Timeout, "postgres did not stop within 30 s; killed");
}

}  // namespace vandra::testing
