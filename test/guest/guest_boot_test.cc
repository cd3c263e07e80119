// The test guest (guest/) as the agent will use it: built by guest/build.sh, its OVA
// imported with the vandra CLI, booted under QEMU TCG with a tap NIC inside a network
// namespace this test creates, and driven over TCP through vguest-seqd.
//   GuestBoot.ServicesAnswerAndCheckersCatchCorruption: direct kernel boot (-kernel/-initrd
//     next to the OVA, so the test can add vandra.mempat); echo, the counter stream, probes,
//     and the memory and disk pattern checkers, which must report PASS on intact data and
//     FAIL at the exact offset of a byte corrupted from inside or outside the guest; the
//     migration workload's dirtier and disk writer PASS, and FAIL naming the page or block
//     when one write is lost on purpose (-L) or a byte of the image is flipped.
//   GuestBoot.OvaBootsFromItsOwnDisk: the user's path, no kernel given: the imported disks as
//     qcow2 overlays, argv from vandra::qemu::buildCommandLine, SeaBIOS -> SYSLINUX on disk1.
// Both attach the disks in the OVA's order: disk1 (boot) is /dev/vda, disk2 (data) /dev/vdb.
// Set VANDRA_GUEST_DIR to a folder guest/build.sh filled to skip the build.
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

bool inPath(const std::string& prog) {
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
std::string buildGuest(const fs::path& out, const fs::path& cache) {
  Outcome r = run({"bash", std::string(VANDRA_SOURCE_DIR) + "/guest/build.sh", out.string(),
                   "--cache", cache.string(), "--vandra", VANDRA_BIN});
  if (r.code != 0) {
    return "guest/build.sh failed (" + std::to_string(r.code) + "): " + r.err;
  }
  return {};
}

// sha256 of each file named in SHA256SUMS of a build.
std::map<std::string, std::string> sums(const fs::path& out) {
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

uint64_t be64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | p[i];
  }
  return v;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) {
    s += l + "\n";
  }
  return s;
}

// The "OUT ..." line of an EXEC reply starting with @p prefix, without "OUT ".
std::string outLine(const std::vector<std::string>& lines, const std::string& prefix) {
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
std::string missingForBoot() {
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
std::string importGuest(const fs::path& tmp, ImportedGuest& g) {
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
Boot waitForReady(const fs::path& log, pid_t qemu, Clock::time_point t0) {
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

// ----------------------------------------------------------------------------------------

TEST(GuestBuild, TwoBuildsGiveIdenticalBootArtefacts) {
  if (!inPath("apt-get") || !inPath("gcc") || !inPath("cpio") || !inPath("mcopy") ||
      !inPath("syslinux")) {
    VANDRA_SKIP_OR_FAIL("needs apt-get, gcc, cpio, mtools and syslinux (tools/install-deps.sh)");
  }
  TempDir a, b;
  ASSERT_FALSE(a.path.empty());
  ASSERT_FALSE(b.path.empty());
  fs::path cache = fs::path(VANDRA_GUEST_WORK_DIR) / "guest-cache";
  ASSERT_EQ(buildGuest(a.path, cache), "");
  ASSERT_EQ(buildGuest(b.path, cache), "");
  auto sa = sums(a.path);
  auto sb = sums(b.path);
  for (const char* f : {"vmlinuz", "initrd.img", "boot.raw", "disk2.raw", "bin/vguest-seqd",
                        "bin/vguest-mempat", "bin/vguest-diskpat", "bin/vguest-dirtier"}) {
    ASSERT_TRUE(sa.count(f)) << f;
    EXPECT_EQ(sa[f], sb[f]) << f << " differs between two builds";
  }
  std::cout << "[ reproducible ] initrd.img sha256 " << sa["initrd.img"] << "\n";
  std::cout << "[ reproducible ] boot.raw sha256 " << sa["boot.raw"] << "\n";

  // The boot disk: BIOS boot signature in sector 0, the very kernel and initrd of the build,
  // and a SYSLINUX configuration booting them with the defaults of build.sh.
  std::string boot = slurp(a.path / "boot.raw");
  ASSERT_EQ(boot.size(), 32u << 20);
  EXPECT_EQ(boot.substr(510, 2), std::string("\x55\xAA", 2));
  EXPECT_EQ(fs::file_size(a.path / "disk2.raw"), 64u << 20);
  for (const char* f : {"vmlinuz", "initrd.img"}) {
    Outcome m = run({"mtype", "-i", (a.path / "boot.raw").string(), std::string("::/") + f});
    ASSERT_EQ(m.code, 0) << m.err;
    EXPECT_TRUE(m.out == slurp(a.path / f)) << f << " on boot.raw differs from the build's";
  }
  Outcome cfg = run({"mtype", "-i", (a.path / "boot.raw").string(), "::/syslinux.cfg"});
  ASSERT_EQ(cfg.code, 0) << cfg.err;
  EXPECT_NE(cfg.out.find("APPEND console=ttyS0 vandra.ip=10.10.0.10/24 vandra.gw=10.10.0.1\n"),
            std::string::npos)
      << cfg.out;
  Outcome dir = run({"mdir", "-a", "-b", "-i", (a.path / "boot.raw").string(), "::/"});
  EXPECT_NE(dir.out.find("::/ldlinux.sys\n"), std::string::npos) << dir.out << dir.err;
}

TEST(GuestBoot, ServicesAnswerAndCheckersCatchCorruption) {
  if (std::string why = missingForBoot(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  TempDir tmp;
  ASSERT_FALSE(tmp.path.empty());
  ImportedGuest g;
  ASSERT_EQ(importGuest(tmp.path, g), "");

  // The VmSpec and SLA the OVA carries: disk1 the boot disk first, disk2 the data disk.
  const auto& vs = g.spec["virtual_systems"][0];
  EXPECT_EQ(vs["vcpus"], 1);
  const int memory_mib = vs["memory_mib"].get<int>();
  EXPECT_GE(memory_mib, 128);
  EXPECT_EQ(vs["firmware"], "bios");
  EXPECT_EQ(vs["sla"]["downtime_budget_ms"], 1000);
  EXPECT_EQ(vs["sla"]["jurisdictions"], nlohmann::json::array({"EU"}));
  EXPECT_EQ(vs["sla"]["mobility"], "automatic");
  ASSERT_EQ(vs["disks"].size(), 2u);
  EXPECT_EQ(vs["disks"][0]["id"], "disk1");
  EXPECT_EQ(vs["disks"][0]["unit"], 0);
  EXPECT_EQ(vs["disks"][1]["id"], "disk2");
  EXPECT_EQ(vs["disks"][1]["unit"], 1);
  fs::path boot_qcow = g.import / vs["disks"][0]["file"].get<std::string>();
  fs::path data_qcow = g.import / vs["disks"][1]["file"].get<std::string>();
  // The data disk as raw, so that the test can corrupt it from the host.
  fs::path disk = tmp.path / "disk2.raw";
  Outcome conv = run({"qemu-img", "convert", "-O", "raw", data_qcow.string(), disk.string()});
  ASSERT_EQ(conv.code, 0) << conv.err;

  TapNetns netns("vandra-gt-" + std::to_string(::getpid()));
  bool cannot = false;
  if (std::string e = netns.create(cannot); !e.empty()) {
    if (cannot) {
      VANDRA_SKIP_OR_FAIL(e);
    }
    FAIL() << e;
  }
  const std::string& ns = netns.name();

  // QEMU, TCG only; `ip netns exec` execs it, so the pid is QEMU's own. The kernel is given
  // (to add vandra.mempat); the disks are attached in the OVA's order, the boot disk
  // read-only, so the data disk is /dev/vdb as when the VM boots from disk1.
  fs::path log = tmp.path / "serial.log";
  const auto t0 = Clock::now();
  auto qemu =
      Subprocess::start({"ip",
                         "netns",
                         "exec",
                         ns,
                         "qemu-system-x86_64",
                         "-accel",
                         "tcg",
                         "-m",
                         std::to_string(memory_mib),
                         "-smp",
                         "1",
                         "-nographic",
                         "-nodefaults",
                         "-monitor",
                         "none",
                         "-serial",
                         "file:" + log.string(),
                         "-no-reboot",
                         "-kernel",
                         g.vmlinuz.string(),
                         "-initrd",
                         g.initrd.string(),
                         "-append",
                         std::string("console=ttyS0 quiet panic=-1 vandra.ip=") + kGuestIp +
                             "/24 vandra.port=" + std::to_string(kPort) + " vandra.mempat=16:99",
                         "-drive",
                         "file=" + boot_qcow.string() + ",if=virtio,format=qcow2,readonly=on",
                         "-drive",
                         "file=" + disk.string() + ",if=virtio,format=raw,cache=writeback",
                         "-netdev",
                         std::string("tap,id=n0,ifname=") + kTap + ",script=no,downscript=no",
                         "-device",
                         "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:0a:0a:0a"},
                        {.capture_stdout = false, .capture_stderr = true});
  ASSERT_TRUE(qemu) << qemu.error().describe();

  // Readiness: poll the serial log for the init's verdict, with a deadline.
  Boot boot = waitForReady(log, qemu->pid(), t0);
  ASSERT_TRUE(boot.ready) << "guest not ready after " << boot.seconds << " s; serial log:\n"
                          << boot.serial;
  std::cout << "[ boot ] TCG direct kernel boot to VANDRA-GUEST-READY: " << boot.seconds << " s\n";
  RecordProperty("tcg_boot_to_ready_ms", static_cast<int>(boot.seconds * 1000));

  std::string err;
  auto ctl = Conn::open(ns, err);
  ASSERT_TRUE(ctl) << err;

  // PING / INFO.
  auto pong = ctl->command("PING 424242");
  ASSERT_EQ(pong.size(), 1u);
  EXPECT_EQ(pong[0].rfind("PONG 424242 ", 0), 0u) << pong[0];
  auto info = ctl->command("INFO");
  ASSERT_EQ(info.size(), 1u);
  EXPECT_NE(info[0].find("mem_total_kib="), std::string::npos) << info[0];

  // Only the guest's own programs may run.
  auto refused = ctl->command("EXEC sh -c reboot");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].rfind("ERR ", 0), 0u) << refused[0];

  {  // ECHO: random bytes come back unchanged.
    auto e = Conn::open(ns, err);
    ASSERT_TRUE(e) << err;
    ASSERT_TRUE(e->send("ECHO\n"));
    EXPECT_EQ(e->line(), "OK ECHO");
    std::mt19937_64 rng(7);
    for (int round = 0; round < 8; ++round) {
      std::string chunk(32768, '\0');
      for (auto& ch : chunk) {
        ch = static_cast<char>(rng() & 0xFF);
      }
      ASSERT_TRUE(e->send(chunk));
      std::string back(chunk.size(), '\0');
      ASSERT_TRUE(e->exact(back.data(), back.size()));
      ASSERT_EQ(back, chunk) << "echo round " << round;
    }
  }

  {  // SEQ: 65536 consecutive records, counters +1 each, guest clock never going back.
    auto s = Conn::open(ns, err);
    ASSERT_TRUE(s) << err;
    ASSERT_TRUE(s->send("SEQ 1000000\n"));
    EXPECT_EQ(s->line(), "OK SEQ");
    std::vector<unsigned char> recs(16 * 65536);
    ASSERT_TRUE(s->exact(recs.data(), recs.size()));
    uint64_t last_ns = 0;
    for (size_t i = 0; i < 65536; ++i) {
      ASSERT_EQ(be64(&recs[16 * i]), 1000000 + i) << "record " << i;
      uint64_t t = be64(&recs[16 * i + 8]);
      ASSERT_GE(t, last_ns) << "record " << i;
      last_ns = t;
    }
  }

  {  // SEQ with pacing: one record per millisecond on the guest's absolute clock.
    auto s = Conn::open(ns, err);
    ASSERT_TRUE(s) << err;
    ASSERT_TRUE(s->send("SEQ 5 1000\n"));
    EXPECT_EQ(s->line(), "OK SEQ");
    std::vector<unsigned char> recs(16 * 100);
    ASSERT_TRUE(s->exact(recs.data(), recs.size()));
    for (size_t i = 0; i < 100; ++i) {
      ASSERT_EQ(be64(&recs[16 * i]), 5 + i) << "record " << i;
    }
    const uint64_t span_ns = be64(&recs[16 * 99 + 8]) - be64(&recs[8]);
    // Record k carries a time in [slot k, slot k + 1 ms] and slots are >= 1 ms apart.
    EXPECT_GE(span_ns, 98'000'000u) << "99 intervals of 1 ms took " << span_ns << " ns";
  }

  {  // PROBE: each 8-byte probe answered at once with itself and the guest clock.
    auto p = Conn::open(ns, err);
    ASSERT_TRUE(p) << err;
    ASSERT_TRUE(p->send("PROBE\n"));
    EXPECT_EQ(p->line(), "OK PROBE");
    uint64_t last_ns = 0;
    for (uint64_t v = 0xA5A5A5A500000000ULL; v < 0xA5A5A5A500000000ULL + 50; ++v) {
      std::array<unsigned char, 8> q{};
      for (int i = 0; i < 8; ++i) {
        q[static_cast<size_t>(i)] = static_cast<unsigned char>(v >> (56 - 8 * i));
      }
      ASSERT_TRUE(p->send(std::string_view(reinterpret_cast<const char*>(q.data()), q.size())));
      std::array<unsigned char, 16> a{};
      ASSERT_TRUE(p->exact(a.data(), a.size()));
      EXPECT_EQ(be64(a.data()), v);
      EXPECT_GE(be64(a.data() + 8), last_ns);
      last_ns = be64(a.data() + 8);
    }
  }

  // Disk: write, check, wrong seed, host-side check of the image, host-side corruption.
  auto w = ctl->command("EXEC vguest-diskpat write /dev/vdb 7 0 16");
  ASSERT_EQ(w.back(), "EXIT 0") << joined(w);
  EXPECT_EQ(outLine(w, "WROTE"), "WROTE bytes=16777216 seed=7");
  auto c = ctl->command("EXEC vguest-diskpat check /dev/vdb 7 0 16");
  EXPECT_EQ(c.back(), "EXIT 0") << joined(c);
  EXPECT_EQ(outLine(c, "PASS"), "PASS bytes=16777216 seed=7") << joined(c);
  auto wrong = ctl->command("EXEC vguest-diskpat check /dev/vdb 8 0 16");
  EXPECT_EQ(wrong.back(), "EXIT 1") << joined(wrong);
  EXPECT_EQ(outLine(wrong, "FAIL").rfind("FAIL offset=0 ", 0), 0u) << joined(wrong);
  Outcome host = run({g.diskpat.string(), "check", disk.string(), "7", "0", "16"});
  EXPECT_EQ(host.code, 0) << host.out << host.err;
  EXPECT_EQ(host.out, "PASS bytes=16777216 seed=7\n") << "guest writes did not reach the image";
  const off_t bad_disk = 5 * 1048576 + 4321;
  {
    UniqueFd img(::open(disk.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(img.valid());
    unsigned char b = 0;
    ASSERT_EQ(::pread(img.get(), &b, 1, bad_disk), 1);
    b = static_cast<unsigned char>(b ^ 0x40);
    ASSERT_EQ(::pwrite(img.get(), &b, 1, bad_disk), 1);
    ASSERT_EQ(::fsync(img.get()), 0);
  }
  auto corrupted = ctl->command("EXEC vguest-diskpat check /dev/vdb 7 0 16");
  EXPECT_EQ(corrupted.back(), "EXIT 1") << joined(corrupted);
  EXPECT_EQ(outLine(corrupted, "FAIL").rfind("FAIL offset=" + std::to_string(bad_disk) + " ", 0),
            0u)
      << joined(corrupted);

  // Memory: the resident pattern init started (vandra.mempat=16:99) is intact.
  auto boot_status = ctl->command("EXEC vguest-mempat status");
  EXPECT_NE(outLine(boot_status, "STATUS").find(" mib=16 seed=99"), std::string::npos)
      << joined(boot_status);
  auto boot_check = ctl->command("EXEC vguest-mempat check");
  EXPECT_EQ(outLine(boot_check, "PASS"), "PASS bytes=16777216 seed=99") << joined(boot_check);

  // A second resident pattern on its own socket: check, wrong seed, a flipped byte found at
  // its offset.
  auto ms = ctl->command("EXEC vguest-mempat start 32 42 -s /run/m2.sock");
  ASSERT_EQ(ms.back(), "EXIT 0") << joined(ms);
  auto mc = ctl->command("EXEC vguest-mempat check -s /run/m2.sock");
  EXPECT_EQ(mc.back(), "EXIT 0") << joined(mc);
  EXPECT_EQ(outLine(mc, "PASS"), "PASS bytes=33554432 seed=42") << joined(mc);
  auto mw = ctl->command("EXEC vguest-mempat check 43 -s /run/m2.sock");
  EXPECT_EQ(mw.back(), "EXIT 1") << joined(mw);
  EXPECT_EQ(outLine(mw, "FAIL").rfind("FAIL offset=0 ", 0), 0u) << joined(mw);
  auto mx = ctl->command("EXEC vguest-mempat corrupt 1000003 -s /run/m2.sock");
  EXPECT_EQ(mx.back(), "EXIT 0") << joined(mx);
  auto mf = ctl->command("EXEC vguest-mempat check -s /run/m2.sock");
  EXPECT_EQ(mf.back(), "EXIT 1") << joined(mf);
  EXPECT_EQ(outLine(mf, "FAIL").rfind("FAIL offset=1000003 ", 0), 0u) << joined(mf);
  auto mstop = ctl->command("EXEC vguest-mempat stop -s /run/m2.sock");
  EXPECT_EQ(mstop.back(), "EXIT 0") << joined(mstop);
  auto boot_again = ctl->command("EXEC vguest-mempat check");
  EXPECT_EQ(outLine(boot_again, "PASS"), "PASS bytes=16777216 seed=99") << joined(boot_again);

  // Dirtier: 2 s at 40 MB/s over 16 MiB; the token bucket never exceeds the target.
  auto d = ctl->command("EXEC vguest-dirtier 16 40 2");
  ASSERT_EQ(d.back(), "EXIT 0") << joined(d);
  std::string done = outLine(d, "DONE");
  auto pos = done.find("rate_mbps=");
  ASSERT_NE(pos, std::string::npos) << joined(d);
  double rate = std::strtod(done.c_str() + pos + 10, nullptr);
  EXPECT_LE(rate, 41.0) << done;
  EXPECT_GE(rate, 20.0) << done;

  // SPAWN / KILL: a background dirtier, stopped by pid.
  auto sp = ctl->command("SPAWN vguest-dirtier 8 10");
  ASSERT_EQ(sp.size(), 1u);
  ASSERT_EQ(sp[0].rfind("PID ", 0), 0u) << sp[0];
  auto k = ctl->command("KILL " + sp[0].substr(4) + " 15");
  EXPECT_EQ(k, std::vector<std::string>{"OK"});

  // The migration workload (vguest_stamp.h): every page the dirtier and every block the
  // disk writer wrote is verified, and one write lost on purpose (-L N) is found by name.
  auto started = [&](const std::string& cmd) {
    auto r = ctl->command("EXEC " + cmd);
    EXPECT_EQ(r.empty() ? "" : r.back(), "EXIT 0") << cmd << "\n" << joined(r);
    return outLine(r, "STARTED ").rfind("STARTED pid=", 0) == 0;
  };
  // Waits (deadline 120 s) until the writer at @p sock made @p n writes.
  auto waitWrites = [&](const std::string& prog, const std::string& sock, uint64_t n) {
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    std::string st;
    while (Clock::now() < deadline) {
      st = outLine(ctl->command("EXEC " + prog + " status -s " + sock), "STATUS");
      auto p = st.find(" writes=");
      if (p != std::string::npos && std::strtoull(st.c_str() + p + 8, nullptr, 10) >= n) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // poll interval
    }
    ADD_FAILURE() << prog << " made fewer than " << n << " writes: " << st;
    return false;
  };
  auto verdict = [&](const std::string& prog, const std::string& sock, const char* code) {
    auto r = ctl->command("EXEC " + prog + " check -s " + sock);
    EXPECT_EQ(r.empty() ? "" : r.back(), std::string("EXIT ") + code) << joined(r);
    return outLine(r, code[0] == '0' ? "PASS" : "FAIL");
  };
  // Memory: 8 MiB = 2048 pages at 20 MB/s; verified after every page was rewritten.
  ASSERT_TRUE(started("vguest-dirtier start -s /run/d1.sock 8 20"));
  ASSERT_TRUE(waitWrites("vguest-dirtier", "/run/d1.sock", 3000));
  const std::string mem_ok = verdict("vguest-dirtier", "/run/d1.sock", "0");
  EXPECT_EQ(mem_ok.rfind("PASS pages=2048 writes=", 0), 0u) << mem_ok;
  EXPECT_EQ(verdict("vguest-dirtier", "/run/d1.sock", "0"), mem_ok) << "verdict changed";
  // Write 3000 lost: page 2999 % 2048 = 951 stays at generation 1 where 2 is due (found by
  // the final check, or by the writer when it comes back to the page: the same words).
  ASSERT_TRUE(started("vguest-dirtier start -L 3000 -s /run/d2.sock 8 20"));
  EXPECT_EQ(verdict("vguest-dirtier", "/run/d2.sock", "1")
                .rfind("FAIL page=951 want_gen=2 got_gen=1 reason=generation ", 0),
            0u);
  // Disk: 4 MiB from 32 MiB (blocks 8192..9215, away from diskpat's 0..16 MiB), 2 MiB/s.
  ASSERT_TRUE(started("vguest-diskwriter start -s /run/w1.sock /dev/vdb 32 4 2048"));
  ASSERT_TRUE(waitWrites("vguest-diskwriter", "/run/w1.sock", 1100));
  const std::string disk_ok = verdict("vguest-diskwriter", "/run/w1.sock", "0");
  EXPECT_EQ(disk_ok.rfind("PASS blocks=1024 writes=", 0), 0u) << disk_ok;
  {  // The check reads the virtual disk (O_DIRECT): a byte flipped in the image is found.
    UniqueFd img(::open(disk.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(img.valid());
    const off_t off = (32 << 20) + 5 * 4096 + 1000;
    unsigned char b = 0;
    ASSERT_EQ(::pread(img.get(), &b, 1, off), 1);
    b = static_cast<unsigned char>(b ^ 0x01);
    ASSERT_EQ(::pwrite(img.get(), &b, 1, off), 1);
    ASSERT_EQ(::fsync(img.get()), 0);
  }
  const std::string disk_bad = verdict("vguest-diskwriter", "/run/w1.sock", "1");
  EXPECT_EQ(disk_bad.rfind("FAIL block=8197 ", 0), 0u) << disk_bad;
  EXPECT_NE(disk_bad.find(" reason=body "), std::string::npos) << disk_bad;
  // Write 700 lost: block 36 MiB / 4 KiB + 699 = 9915 still holds generation 0.
  ASSERT_TRUE(started("vguest-diskwriter start -L 700 -s /run/w2.sock /dev/vdb 36 4 2048"));
  EXPECT_EQ(verdict("vguest-diskwriter", "/run/w2.sock", "1")
                .rfind("FAIL block=9915 want_gen=1 got_gen=0 reason=generation ", 0),
            0u);
  for (const auto& [prog, sock] : {std::pair{"vguest-dirtier", "/run/d1.sock"},
                                   {"vguest-dirtier", "/run/d2.sock"},
                                   {"vguest-diskwriter", "/run/w1.sock"},
                                   {"vguest-diskwriter", "/run/w2.sock"}}) {
    auto r = ctl->command(std::string("EXEC ") + prog + " stop -s " + sock);
    EXPECT_EQ(outLine(r, "DONE").rfind("DONE writes=", 0), 0u) << joined(r);
  }
}

// The user's path end to end: the OVA imported with the CLI, its disks as qcow2 overlays on
// the imported images (as the agent keeps them), the argv the agent's builder makes from the
// imported VmSpec (no -kernel/-initrd: SeaBIOS boots disk1, bootindex 1, whose SYSLINUX loads
// the kernel), and the service answering on the tap; the data disk is /dev/vdb.
TEST(GuestBoot, OvaBootsFromItsOwnDisk) {
  if (std::string why = missingForBoot(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  TempDir tmp;
  ASSERT_FALSE(tmp.path.empty());
  ImportedGuest g;
  ASSERT_EQ(importGuest(tmp.path, g), "");
  auto spec = ovf::vmSpecFromJson(g.spec);
  ASSERT_TRUE(spec) << spec.error().describe();
  ASSERT_EQ(spec->virtual_systems.size(), 1u);
  const ovf::VirtualSystemSpec& vs = spec->virtual_systems[0];
  ASSERT_EQ(vs.disks.size(), 2u);
  EXPECT_EQ(vs.disks[0].id, "disk1");
  EXPECT_EQ(vs.disks[1].id, "disk2");
  EXPECT_EQ(vs.firmware, ovf::Firmware::Bios);
  ASSERT_TRUE(qemu::startupQmpCommands(vs).empty()) << "the test would have to send them and cont";

  qemu::QemuRunConfig cfg;
  cfg.accel = "tcg";
  cfg.qmp_socket = (tmp.path / "qmp.sock").string();
  cfg.qmp_event_socket = (tmp.path / "qmp-ev.sock").string();
  cfg.serial_log = (tmp.path / "serial.log").string();
  cfg.pidfile = (tmp.path / "qemu.pid").string();
  for (const auto& d : vs.disks) {
    ASSERT_TRUE(d.file.has_value()) << d.id;
    const fs::path overlay = tmp.path / (d.id + "-overlay.qcow2");
    Outcome ov = run({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                      (g.import / *d.file).string(), overlay.string()});
    ASSERT_EQ(ov.code, 0) << ov.err;
    cfg.disk_overlays[d.id] = overlay.string();
  }
  cfg.nics.push_back({kTap, std::string("52:54:00:0a:0a:0b")});
  auto argv = qemu::buildCommandLine(vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  for (const char* direct : {"-kernel", "-initrd", "-append"}) {
    ASSERT_EQ(std::find(argv->begin(), argv->end(), direct), argv->end()) << direct;
  }
  // SeaBIOS must try disk1 (the boot disk) first, not the blank disk2.
  const auto boot_dev = std::find_if(argv->begin(), argv->end(), [](const std::string& a) {
    return a.find("drive=fmt-disk1,") != std::string::npos;
  });
  ASSERT_NE(boot_dev, argv->end());
  EXPECT_NE(boot_dev->find(",bootindex=1"), std::string::npos) << *boot_dev;

  TapNetns netns("vandra-gtd-" + std::to_string(::getpid()));
  bool cannot = false;
  if (std::string e = netns.create(cannot); !e.empty()) {
    if (cannot) {
      VANDRA_SKIP_OR_FAIL(e);
    }
    FAIL() << e;
  }
  std::vector<std::string> cmd{"ip", "netns", "exec", netns.name()};
  cmd.insert(cmd.end(), argv->begin(), argv->end());
  const auto t0 = Clock::now();
  auto qemu = Subprocess::start(cmd, {.capture_stdout = false, .capture_stderr = true});
  ASSERT_TRUE(qemu) << qemu.error().describe();

  Boot boot = waitForReady(cfg.serial_log, qemu->pid(), t0);
  ASSERT_TRUE(boot.ready) << "guest not ready after " << boot.seconds << " s; serial log:\n"
                          << boot.serial;
  std::cout << "[ boot ] TCG boot from disk1 (SeaBIOS, SYSLINUX) to VANDRA-GUEST-READY: "
            << boot.seconds << " s\n";
  RecordProperty("tcg_disk_boot_to_ready_ms", static_cast<int>(boot.seconds * 1000));
  // The boot loader ran: its banner reaches ttyS0 through SERIAL in syslinux.cfg. (The
  // kernel line on the disk is not quiet, so kernel messages share the log with init's.)
  EXPECT_NE(boot.serial.find("SYSLINUX"), std::string::npos) << boot.serial;

  std::string err;
  auto ctl = Conn::open(netns.name(), err);
  ASSERT_TRUE(ctl) << err;
  auto pong = ctl->command("PING disk-boot");
  ASSERT_EQ(pong.size(), 1u);
  EXPECT_EQ(pong[0].rfind("PONG disk-boot ", 0), 0u) << pong[0];

  // The data disk is /dev/vdb: a pattern written there is found by the host in disk2's
  // overlay (read while QEMU holds it: -U), from the first byte.
  auto w = ctl->command("EXEC vguest-diskpat write /dev/vdb 11 0 4");
  ASSERT_EQ(w.back(), "EXIT 0") << joined(w);
  auto c = ctl->command("EXEC vguest-diskpat check /dev/vdb 11 0 4");
  EXPECT_EQ(outLine(c, "PASS"), "PASS bytes=4194304 seed=11") << joined(c);
  const fs::path data = tmp.path / "disk2-after.raw";
  Outcome conv =
      run({"qemu-img", "convert", "-U", "-O", "raw", cfg.disk_overlays["disk2"], data.string()});
  ASSERT_EQ(conv.code, 0) << conv.err;
  Outcome host = run({g.diskpat.string(), "check", data.string(), "11", "0", "4"});
  EXPECT_EQ(host.out, "PASS bytes=4194304 seed=11\n")
      << host.err << "the guest's /dev/vdb is not disk2";
}

}  // namespace
}  // namespace vandra
