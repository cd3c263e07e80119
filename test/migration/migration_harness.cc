// Harness for the real-QEMU migration tests (migration_harness.h).
#include "migration_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "vandra/qemu/cmdline_builder.h"

namespace vandra::migtest {

using namespace std::chrono_literals;

Outcome run(const std::vector<std::string>& argv) {
  Outcome r;
  auto p = Subprocess::start(argv, {.capture_stdout = true, .capture_stderr = true});
  if (!p) {
    r.err = p.error().describe();
    return r;
  }
  if (!p->drainStdout([&](std::string_view c) { r.out.append(c); })) {
    r.err = "cannot read stdout";
  }
  auto st = p->wait();
  r.err += p->stderrText();
  if (st) {
    r.code = st->signal != 0 ? 128 + st->signal : st->code;
  }
  return r;
}

bool onPath(const std::string& prog) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(ss, dir, ':');) {
    if (!dir.empty() && ::access((dir + "/" + prog).c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TempDir::TempDir() {
  std::string tmpl = "/tmp/vmig-XXXXXX";
  if (::mkdtemp(tmpl.data()) != nullptr) {
    path = tmpl;
  }
}

TempDir::~TempDir() {
  if (!path.empty()) {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
}

std::string missingPrerequisites() {
  for (const char* prog : {"qemu-system-x86_64", "qemu-img", "ip"}) {
    if (!onPath(prog)) {
      return std::string(prog) + " is not installed (tools/install-deps.sh)";
    }
  }
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    return "no /dev/net/tun for the guest's tap devices";
  }
  return {};
}

fs::path findGuest(std::string& why) {
  auto complete = [](const fs::path& d) {
    for (const char* f : {"boot.raw", "disk2.raw", "vmspec.json", "bin/vguest-diskpat"}) {
      if (!fs::exists(d / f)) {
        return false;
      }
    }
    return true;
  };
  if (const char* d = std::getenv("VANDRA_GUEST_DIR"); d != nullptr && *d != '\0') {
    if (complete(d)) {
      return d;
    }
    why = std::string("VANDRA_GUEST_DIR=") + d + " is not a complete guest/build.sh output";
    return {};
  }
  // The guest the guest tests build in this build tree, under their lock.
  const fs::path shared = fs::path(VANDRA_BUILD_DIR) / "test/guest";
  {
    UniqueFd lock(::open((shared / "guest-out.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (lock.valid() && ::flock(lock.get(), LOCK_SH) == 0 && complete(shared / "guest-out")) {
      return shared / "guest-out";
    }
  }
  // Build one of our own (needs the vandra CLI of this build tree for the OVA).
  const fs::path own(VANDRA_MIGRATION_WORK_DIR);
  fs::create_directories(own);
  UniqueFd lock(::open((own / "guest-out.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock.valid() || ::flock(lock.get(), LOCK_EX) != 0) {
    why = "cannot lock " + own.string();
    return {};
  }
  if (complete(own / "guest-out")) {
    return own / "guest-out";
  }
  if (!fs::exists(VANDRA_BIN)) {
    why = "no test guest: set VANDRA_GUEST_DIR, or build the vandra CLI (" +
          std::string(VANDRA_BIN) + ") so guest/build.sh can run";
    return {};
  }
  Outcome b =
      run({"bash", std::string(VANDRA_SOURCE_DIR) + "/guest/build.sh", (own / "guest-out").string(),
           "--cache", (own / "guest-cache").string(), "--vandra", VANDRA_BIN});
  if (b.code != 0) {
    why = "guest/build.sh failed: " + b.err;
    return {};
  }
  return own / "guest-out";
}

BridgeNetns::BridgeNetns(std::string name) : name_(std::move(name)) {}

BridgeNetns::~BridgeNetns() {
  if (created_) {
    for (const auto& t : taps_) {
      (void)run({"ip", "-n", name_, "tuntap", "del", "dev", t, "mode", "tap"});
    }
    (void)run({"ip", "netns", "del", name_});
  }
}

std::string BridgeNetns::create(const std::vector<std::string>& taps, bool& cannot) {
  Outcome add = run({"ip", "netns", "add", name_});
  if (add.code != 0) {
    cannot = true;
    return "cannot create a network namespace (needs CAP_SYS_ADMIN): " + add.err;
  }
  created_ = true;
  taps_ = taps;
  std::vector<std::vector<std::string>> cmds{
      {"ip", "-n", name_, "link", "set", "lo", "up"},
      {"ip", "-n", name_, "link", "add", "vmbr0", "type", "bridge"},
      {"ip", "-n", name_, "addr", "add", "10.10.0.1/24", "dev", "vmbr0"},
      {"ip", "-n", name_, "link", "set", "vmbr0", "up"}};
  for (const auto& t : taps) {
    cmds.push_back({"ip", "-n", name_, "tuntap", "add", "dev", t, "mode", "tap"});
    cmds.push_back({"ip", "-n", name_, "link", "set", t, "master", "vmbr0"});
    cmds.push_back({"ip", "-n", name_, "link", "set", t, "up"});
  }
  for (const auto& c : cmds) {
    Outcome r = run(c);
    if (r.code != 0) {
      std::string s;
      for (const auto& a : c) {
        s += a + " ";
      }
      return s + ": " + r.err;
    }
  }
  return {};
}

QemuVm::~QemuVm() {
  kill();
}

void QemuVm::kill() {
  if (qmp_events) {
    qmp_events->close();
  }
  if (qmp) {
    qmp->close();
  }
  if (process) {
    ::kill(process->pid(), SIGKILL);
    (void)process->wait();
    stderr_text = process->stderrText();
    if (!process->stderrText().empty()) {
      std::cout << "[ qemu ] " << label << " stderr:\n" << process->stderrText() << "\n";
    }
    process.reset();
  }
}

bool QemuVm::quit(std::chrono::seconds grace) {
  if (!process) {
    return true;
  }
  bool sent = false;
  if (qmp) {
    auto r = qmp->execute(qmp::makeCommand("quit"));
    sent = r || r.error().code == ErrorCode::QmpDisconnected;
  }
  // Wait for the exit, bounded: a pidfd becomes readable when the process ends.
  bool exited = false;
  if (sent) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, process->pid(), 0)));
    if (pidfd.valid()) {
      pollfd p{pidfd.get(), POLLIN, 0};
      exited = ::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(grace).count())) == 1;
    }
  }
  kill();  // reaps (SIGKILL is harmless for an exited child)
  return exited;
}

std::string QemuVm::status() {
  if (!qmp) {
    return {};
  }
  auto r = qmp->execute(qmp::makeCommand("query-status"));
  if (!r || !r->is_object() || !r->contains("status")) {
    return r ? std::string("?") : "error: " + r.error().describe();
  }
  return (*r)["status"].get<std::string>();
}

std::string startVm(const ovf::VirtualSystemSpec& spec, const VmConfig& c, QemuVm& vm) {
  vm.label = c.label;
  vm.dir = c.dir;
  fs::create_directories(c.dir);
  qemu::QemuRunConfig cfg;
  cfg.accel = "tcg";  // never KVM on this host
  cfg.qmp_socket = (c.dir / "qmp.sock").string();
  cfg.qmp_event_socket = (c.dir / "qmp-ev.sock").string();
  cfg.serial_log = (c.dir / "serial.log").string();
  cfg.pidfile = (c.dir / "qemu.pid").string();
  cfg.disk_overlays = c.disks;
  cfg.nics.push_back({c.tap, c.mac});
  if (c.incoming) {
    cfg.incoming = "defer";
  }
  cfg.start_paused = c.start_paused;
  auto argv = qemu::buildCommandLine(spec, cfg);
  if (!argv) {
    return argv.error().describe();
  }
  std::vector<std::string> cmd{"ip", "netns", "exec", c.netns};
  cmd.insert(cmd.end(), argv->begin(), argv->end());
  vm.serial_log = cfg.serial_log;
  auto p = Subprocess::start(cmd, {.capture_stdout = false, .capture_stderr = true});
  if (!p) {
    return p.error().describe();
  }
  vm.process.emplace(std::move(*p));
  vm.events = std::make_unique<migration::EventWaiter>();
  qmp::QmpClientOptions o;
  o.connect_timeout = 60s;  // TCG start-up on a loaded 2-core machine
  o.enable_oob = true;      // migrate-recover on a post-copy target whose main loop waits
  auto cmdc = qmp::connectQmp(cfg.qmp_socket, o);
  if (!cmdc) {
    ::kill(vm.process->pid(), SIGKILL);
    (void)vm.process->wait();
    std::string err = vm.process->stderrText();
    vm.process.reset();
    return c.label + ": QMP: " + cmdc.error().describe() + "; QEMU stderr: " + err;
  }
  vm.qmp = std::move(*cmdc);
  qmp::QmpClientOptions eo = o;
  eo.on_event = vm.events->sink();
  auto evc = qmp::connectQmp(cfg.qmp_event_socket, eo);
  if (!evc) {
    vm.kill();
    return c.label + ": QMP events: " + evc.error().describe();
  }
  vm.qmp_events = std::move(*evc);
  return {};
}

bool waitGuestReady(const QemuVm& vm, std::chrono::seconds timeout, std::string& serial) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    serial = slurp(vm.serial_log);
    if (serial.find("VANDRA-GUEST-READY") != std::string::npos) {
      return true;
    }
    if (serial.find("VANDRA-GUEST-FAILED") != std::string::npos) {
      return false;
    }
    siginfo_t si{};
    if (!vm.process || (::waitid(P_PID, static_cast<id_t>(vm.process->pid()), &si,
                                 WEXITED | WNOHANG | WNOWAIT) == 0 &&
                        si.si_pid != 0)) {
      return false;
    }
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

std::optional<GuestConn> GuestConn::open(const std::string& netns, std::string& error) {
  int fd = -1;
  int err = 0;
  // A socket belongs to the namespace it was created in, whichever thread uses it later.
  std::thread t([&] {
    UniqueFd ns(::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid() || ::setns(ns.get(), CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    err = errno;
  });
  t.join();
  if (fd < 0) {
    error = std::string("socket in netns: ") + std::strerror(err);
    return std::nullopt;
  }
  GuestConn c;
  c.fd_ = UniqueFd(fd);
  timeval tv{120, 0};  // bounded: a TCG guest under load, during a migration
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(kGuestPort);
  ::inet_pton(AF_INET, kGuestIp, &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    error = std::string("connect to the guest: ") + std::strerror(errno);
    return std::nullopt;
  }
  return c;
}

bool GuestConn::send(std::string_view s) {
  return static_cast<bool>(writeAll(fd_.get(), s.data(), s.size(), "guest"));
}

std::optional<std::string> GuestConn::line() {
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string l = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return l;
    }
    if (!fill()) {
      return std::nullopt;
    }
  }
}

std::vector<std::string> GuestConn::command(const std::string& cmd) {
  std::vector<std::string> lines;
  if (!send(cmd + "\n")) {
    return lines;
  }
  while (auto l = line()) {
    lines.push_back(*l);
    if (l->rfind("OUT ", 0) != 0) {
      break;
    }
  }
  return lines;
}

bool GuestConn::fill() {
  std::array<char, 65536> tmp{};
  auto n = readSome(fd_.get(), tmp.data(), tmp.size(), "guest");
  if (!n || *n == 0) {
    return false;
  }
  buf_.append(tmp.data(), *n);
  return true;
}

DelayProxy::DelayProxy(fs::path listen_path, fs::path target_path,
                       std::chrono::microseconds one_way, Transforms transforms)
    : listen_path_(std::move(listen_path)),
      target_path_(std::move(target_path)),
      delay_(one_way),
      transforms_(std::move(transforms)) {}

namespace {

UniqueFd unixSocket() {
  return UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
}

bool unixAddr(const fs::path& p, sockaddr_un& a) {
  a = {};
  a.sun_family = AF_UNIX;
  const std::string s = p.string();
  if (s.size() >= sizeof a.sun_path) {
    return false;
  }
  std::memcpy(a.sun_path, s.c_str(), s.size() + 1);
  return true;
}

}  // namespace

std::string DelayProxy::start() {
  sockaddr_un a{};
  if (!unixAddr(listen_path_, a)) {
    return "proxy path too long";
  }
  listen_ = unixSocket();
  if (!listen_.valid() || ::bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_.get(), 16) != 0) {
    return std::string("proxy listen: ") + std::strerror(errno);
  }
  wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC));
  if (!wake_.valid()) {
    return "eventfd";
  }
  acceptor_ = std::thread([this] { acceptLoop(); });
  return {};
}

void DelayProxy::stall() {
  std::lock_guard lock(mu_);
  stalled_ = true;
}

DelayProxy::~DelayProxy() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    for (int fd : fds_) {
      ::shutdown(fd, SHUT_RDWR);
    }
  }
  stall_cv_.notify_all();
  if (wake_.valid()) {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }
  if (acceptor_.joinable()) {
    acceptor_.join();
  }
  for (auto& t : threads_) {
    t.join();
  }
  for (int fd : fds_) {
    ::close(fd);
  }
  std::error_code ec;
  fs::remove(listen_path_, ec);
}

void DelayProxy::acceptLoop() {
  for (;;) {
    pollfd p[2] = {{listen_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    if ((p[1].revents & POLLIN) != 0) {
      return;
    }
    const int client = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      continue;
    }
    UniqueFd server = unixSocket();
    sockaddr_un a{};
    unixAddr(target_path_, a);
    if (!server.valid() ||
        ::connect(server.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(client);
      continue;
    }
    const int srv = server.release();
    std::lock_guard lock(mu_);
    if (stop_) {
      ::close(client);
      ::close(srv);
      return;
    }
    fds_.push_back(client);
    fds_.push_back(srv);
    auto make = [](const auto& f) { return f ? f() : nullptr; };
    threads_.emplace_back([this, client, srv, t = make(transforms_.to_target)]() mutable {
      relay(client, srv, std::move(t));
    });
    threads_.emplace_back([this, client, srv, t = make(transforms_.from_target)]() mutable {
      relay(srv, client, std::move(t));
    });
  }
}

// One direction: a reader stamps each chunk with its due time; this thread's writer half
// sends it once due. The delay is the emulated latency, not a synchronisation.
void DelayProxy::relay(int from, int to, std::unique_ptr<tunnel::ByteTransform> transform) {
  struct Chunk {
    Clock::time_point due;
    std::string bytes;  // empty: end of stream
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Chunk> q;
  bool writer_failed = false;
  std::thread writer([&] {
    for (;;) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !q.empty(); });
      const auto due = q.front().due;
      cv.wait_until(lock, due, [] { return false; });
      Chunk c = std::move(q.front());
      q.pop_front();
      lock.unlock();
      if (c.bytes.empty()) {
        ::shutdown(to, SHUT_WR);
        return;
      }
      // send(MSG_NOSIGNAL): a peer that went away must not SIGPIPE the test.
      size_t off = 0;
      while (off < c.bytes.size()) {
        const ssize_t n = ::send(to, c.bytes.data() + off, c.bytes.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
          continue;
        }
        if (n <= 0) {
          std::lock_guard l(mu);
          writer_failed = true;
          return;
        }
        off += static_cast<size_t>(n);
      }
    }
  });
  std::array<char, 262144> buf{};
  for (;;) {
    {
      std::unique_lock stall_lock(mu_);
      stall_cv_.wait(stall_lock, [&] { return !stalled_ || stop_; });
    }
    auto n = readSome(from, buf.data(), buf.size(), "proxy");
    {
      // Stalled while this read waited: what it read, even the end of the stream, goes
      // nowhere until the relay is destroyed (a stalled path does not pass a close on).
      std::unique_lock stall_lock(mu_);
      stall_cv_.wait(stall_lock, [&] { return !stalled_ || stop_; });
    }
    std::string bytes;
    if (n && *n > 0) {
      bytes.assign(buf.data(), *n);
      if (transform) {
        std::string out;
        if (!transform->feed(bytes, out)) {
          n = 0;  // refused: the connection ends, as a forwarder's would
        }
        bytes = std::move(out);
      }
    }
    std::lock_guard lock(mu);
    if (!n || *n == 0 || writer_failed) {
      q.push_back({Clock::now() + delay_, {}});
      cv.notify_all();
      break;
    }
    if (!bytes.empty()) {
      q.push_back({Clock::now() + delay_, std::move(bytes)});
      cv.notify_all();
    }
  }
  writer.join();
}

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) {
    s += l + "\n";
  }
  return s;
}

std::string outLine(const std::vector<std::string>& lines, const std::string& prefix) {
  for (const auto& l : lines) {
    if (l.rfind("OUT " + prefix, 0) == 0) {
      return l.substr(4);
    }
  }
  return {};
}

}  // namespace vandra::migtest
