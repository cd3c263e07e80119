// Shared by the test guest's tests (guest_build_test.cc, guest_boot_test.cc): running
// programs, building the guest, importing its OVA with the CLI, a namespace with a tap, and a
// connection to the guest's vguest-seqd. Test-only; one copy per test file.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test/support/require.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/common/unique_fd.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/qemu/cmdline_builder.h"

namespace vandra {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kGuestIp = "10.10.0.10";
constexpr const char* kHostCidr = "10.10.0.1/24";
constexpr const char* kTap = "vgtap0";
constexpr int kPort = 7000;
constexpr auto kBootDeadline = std::chrono::seconds(180);

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs a program to its end; code -1 when it could not start.
[[maybe_unused]] Outcome run(const std::vector<std::string>& argv) {
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

[[maybe_unused]] bool inPath(const std::string& prog) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(ss, dir, ':');) {
    if (!dir.empty() && ::access((dir + "/" + prog).c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

[[maybe_unused]] std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A temporary folder removed with everything in it when the object goes.
struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "vandra-guest-test.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path = tmpl;
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (!path.empty()) {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  }
  fs::path path;
};

// guest/build.sh into @p out (downloads cached in @p cache). Empty string on success.
[[maybe_unused]] std::string buildGuest(const fs::path& out, const fs::path& cache) {
  Outcome r = run({"bash", std::string(VANDRA_SOURCE_DIR) + "/guest/build.sh", out.string(),
                   "--cache", cache.string(), "--vandra", VANDRA_BIN});
  if (r.code != 0) {
    return "guest/build.sh failed (" + std::to_string(r.code) + "): " + r.err;
  }
  return {};
}

// sha256 of each file named in SHA256SUMS of a build.
[[maybe_unused]] std::map<std::string, std::string> sums(const fs::path& out) {
  std::map<std::string, std::string> m;
  std::stringstream ss(slurp(out / "SHA256SUMS"));
  std::string digest, name;
  while (ss >> digest >> name) {
    m[name] = digest;
  }
  return m;
}

// ----------------------------------------------------------------------------------------
// A client connection to vguest-seqd made inside the test's network namespace.

class Conn {
 public:
  // The socket is created by a short-lived thread that entered the namespace; a socket
  // belongs to the namespace it was created in, whichever thread uses it later.
  static std::optional<Conn> open(const std::string& netns, std::string& error) {
    int fd = -1;
    int err = 0;
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
    Conn c;
    c.fd_ = UniqueFd(fd);
    timeval tv{60, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(kPort);
    ::inet_pton(AF_INET, kGuestIp, &a.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      error = std::string("connect to the guest: ") + std::strerror(errno);
      return std::nullopt;
    }
    return c;
  }

  bool send(std::string_view s) {
    return static_cast<bool>(writeAll(fd_.get(), s.data(), s.size(), "guest"));
  }

  // One line without its '\n'; nullopt on EOF, error or timeout.
  std::optional<std::string> line() {
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

  bool exact(void* dst, size_t n) {
    while (buf_.size() < n) {
      if (!fill()) {
        return false;
      }
    }
    std::memcpy(dst, buf_.data(), n);
    buf_.erase(0, n);
    return true;
  }

  // A command-mode request: the reply lines up to and including the first that is not an
  // "OUT ..." line of a running program.
  std::vector<std::string> command(const std::string& cmd) {
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

 private:
  bool fill() {
    std::array<char, 65536> tmp{};
    auto n = readSome(fd_.get(), tmp.data(), tmp.size(), "guest");
    if (!n || *n == 0) {
      return false;
    }
    buf_.append(tmp.data(), *n);
    return true;
  }

  UniqueFd fd_;
  std::string buf_;
};

[[maybe_unused]] uint64_t be64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | p[i];
  }
  return v;
}

[[maybe_unused]] std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) {
    s += l + "\n";
  }
  return s;
}

// The "OUT ..." line of an EXEC reply starting with @p prefix, without "OUT ".
[[maybe_unused]] std::string outLine(const std::vector<std::string>& lines,
                                     const std::string& prefix) {
  for (const auto& l : lines) {
    if (l.rfind("OUT " + prefix, 0) == 0) {
      return l.substr(4);
    }
  }
  return {};
}

// ----------------------------------------------------------------------------------------
// Shared by the boot tests: the imported guest, the namespace with the tap, the ready line.

// What a boot test needs to skip for; empty when everything is there.
[[maybe_unused]] std::string missingForBoot() {
  for (const char* prog : {"qemu-system-x86_64", "qemu-img", "ip"}) {
    if (!inPath(prog)) {
      return std::string(prog) + " is not installed (tools/install-deps.sh)";
    }
  }
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    return "no /dev/net/tun for the guest's tap device";
  }
  return {};
}

// The guest as a user gets it, in the test's own folder.
struct ImportedGuest {
  fs::path vmlinuz;  // copies of the boot artefacts next to the OVA (direct kernel boot)
  fs::path initrd;
  fs::path diskpat;     // bin/vguest-diskpat, to check images on the host
  fs::path import;      // `vandra ovf import` of test-guest.ova: vmspec.json + qcow2 disks
  nlohmann::json spec;  // import/vmspec.json
};

// The guest (VANDRA_GUEST_DIR, or built now into the build tree) imported into @p tmp with the
// CLI, and the files the test reads later copied there. All of it under an exclusive lock on
// the build folder, so that tests run in parallel (ctest -j) neither build over each other
// nor read a guest another test is rewriting. Empty string on success.
[[maybe_unused]] std::string importGuest(const fs::path& tmp, ImportedGuest& g) {
  const fs::path work(VANDRA_GUEST_WORK_DIR);
  UniqueFd lock(::open((work / "guest-out.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock.valid() || ::flock(lock.get(), LOCK_EX) != 0) {
    return std::string("cannot lock the guest folder: ") + std::strerror(errno);
  }
  fs::path guest;
  if (const char* d = std::getenv("VANDRA_GUEST_DIR"); d != nullptr && *d != '\0') {
    guest = d;
  } else {
    guest = work / "guest-out";
    if (std::string e = buildGuest(guest, work / "guest-cache"); !e.empty()) {
      return e;
    }
  }
  for (const char* f : {"vmlinuz", "initrd.img", "test-guest.ova", "bin/vguest-diskpat"}) {
    if (!fs::exists(guest / f)) {
      return (guest / f).string() + " is missing";
    }
  }
  std::error_code ec;
  g.vmlinuz = tmp / "vmlinuz";
  g.initrd = tmp / "initrd.img";
  g.diskpat = tmp / "vguest-diskpat";
  for (const auto& [from, to] :
       {std::pair{guest / "vmlinuz", g.vmlinuz}, std::pair{guest / "initrd.img", g.initrd},
        std::pair{guest / "bin/vguest-diskpat", g.diskpat}}) {
    if (!fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec)) {
      return "copy " + from.string() + ": " + ec.message();
    }
  }
  // The path users take: import the OVA (verify, disks to qcow2, VmSpec).
  g.import = tmp / "import";
  Outcome imp =
      run({VANDRA_BIN, "ovf", "import", (guest / "test-guest.ova").string(), g.import.string()});
  if (imp.code != 0) {
    return "vandra ovf import failed (" + std::to_string(imp.code) + "): " + imp.err;
  }
  g.spec = nlohmann::json::parse(slurp(g.import / "vmspec.json"), nullptr, false);
  if (g.spec.is_discarded()) {
    return "import/vmspec.json is not JSON";
  }
  return {};
}

// A network namespace holding the tap device the guest's NIC uses, host side kHostCidr; the
// test's only way in. Removed with the object.
class TapNetns {
 public:
  explicit TapNetns(std::string name) : name_(std::move(name)) {}
  TapNetns(const TapNetns&) = delete;
  TapNetns& operator=(const TapNetns&) = delete;
  ~TapNetns() {
    if (created_) {
      (void)run({"ip", "-n", name_, "tuntap", "del", "dev", kTap, "mode", "tap"});
      (void)run({"ip", "netns", "del", name_});
    }
  }

  // Empty on success; @p cannot is set when namespaces cannot be made here (skip).
  std::string create(bool& cannot) {
    Outcome add = run({"ip", "netns", "add", name_});
    if (add.code != 0) {
      cannot = true;
      return "cannot create a network namespace (needs CAP_SYS_ADMIN): " + add.err;
    }
    created_ = true;
    for (const std::vector<std::string>& cmd :
         {std::vector<std::string>{"ip", "-n", name_, "tuntap", "add", "dev", kTap, "mode", "tap"},
          std::vector<std::string>{"ip", "-n", name_, "addr", "add", kHostCidr, "dev", kTap},
          std::vector<std::string>{"ip", "-n", name_, "link", "set", kTap, "up"},
          std::vector<std::string>{"ip", "-n", name_, "link", "set", "lo", "up"}}) {
      Outcome r = run(cmd);
      if (r.code != 0) {
        return "ip " + cmd[3] + ": " + r.err;
      }
    }
    return {};
  }

  const std::string& name() const { return name_; }

 private:
  std::string name_;
  bool created_ = false;
};

struct Boot {
  bool ready = false;
  double seconds = 0;  // from @p t0 to the verdict (or the give-up)
  std::string serial;  // the serial log at that point
};

// Polls the serial log for init's verdict until kBootDeadline after @p t0, or until QEMU
// (@p qemu) ends.
[[maybe_unused]] Boot waitForReady(const fs::path& log, pid_t qemu, Clock::time_point t0) {
  Boot b;
  while (Clock::now() - t0 < kBootDeadline) {
    b.serial = slurp(log);
    if (b.serial.find("VANDRA-GUEST-READY") != std::string::npos) {
      b.ready = true;
      break;
    }
    if (b.serial.find("VANDRA-GUEST-FAILED") != std::string::npos) {
      break;
    }
    siginfo_t si{};
    if (::waitid(P_PID, static_cast<id_t>(qemu), &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        si.si_pid != 0) {
      break;  // QEMU ended
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  b.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return b;
}

}  // namespace
}  // namespace vandra
