// The test guest (guest/) as the agent will use it: built by guest/build.sh, its OVA
// imported with the vandra CLI, booted under QEMU TCG with a tap NIC inside a network
// namespace this test creates, and driven over TCP through vguest-seqd: echo, the counter
// stream, probes, and the memory and disk pattern checkers, which must report PASS on intact
// data and FAIL at the exact offset of a byte corrupted from inside or outside the guest.
// Set VANDRA_GUEST_DIR to a folder guest/build.sh filled to skip the build.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/common/unique_fd.h"

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

  bool send(std::string_view s) { return static_cast<bool>(writeAll(fd_.get(), s.data(), s.size(), "guest")); }

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

TEST(GuestBuild, TwoBuildsGiveIdenticalBootArtefacts) {
  if (!inPath("apt-get") || !inPath("gcc") || !inPath("cpio")) {
    GTEST_SKIP() << "needs apt-get, gcc and cpio (tools/install-deps.sh)";
  }
  TempDir a, b;
  ASSERT_FALSE(a.path.empty());
  ASSERT_FALSE(b.path.empty());
  fs::path cache = fs::path(VANDRA_GUEST_WORK_DIR) / "guest-cache";
  ASSERT_EQ(buildGuest(a.path, cache), "");
  ASSERT_EQ(buildGuest(b.path, cache), "");
  auto sa = sums(a.path);
  auto sb = sums(b.path);
  for (const char* f : {"vmlinuz", "initrd.img", "disk1.raw", "bin/vguest-seqd",
                        "bin/vguest-mempat", "bin/vguest-diskpat", "bin/vguest-dirtier"}) {
    ASSERT_TRUE(sa.count(f)) << f;
    EXPECT_EQ(sa[f], sb[f]) << f << " differs between two builds";
  }
  std::cout << "[ reproducible ] initrd.img sha256 " << sa["initrd.img"] << "\n";
}

TEST(GuestBoot, ServicesAnswerAndCheckersCatchCorruption) {
  for (const char* prog : {"qemu-system-x86_64", "qemu-img", "ip"}) {
    if (!inPath(prog)) {
      GTEST_SKIP() << prog << " is not installed (tools/install-deps.sh)";
    }
  }
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "no /dev/net/tun for the guest's tap device";
  }

  // The guest: given, or built now into the build tree.
  fs::path guest;
  if (const char* g = std::getenv("VANDRA_GUEST_DIR"); g != nullptr && *g != '\0') {
    guest = g;
  } else {
    guest = fs::path(VANDRA_GUEST_WORK_DIR) / "guest-out";
    ASSERT_EQ(buildGuest(guest, fs::path(VANDRA_GUEST_WORK_DIR) / "guest-cache"), "");
  }
  for (const char* f : {"vmlinuz", "initrd.img", "test-guest.ova", "bin/vguest-diskpat"}) {
    ASSERT_TRUE(fs::exists(guest / f)) << guest / f;
  }

  TempDir tmp;
  ASSERT_FALSE(tmp.path.empty());

  // The path users take: import the OVA, read the VmSpec and SLA it carries.
  Outcome imp = run({VANDRA_BIN, "ovf", "import", (guest / "test-guest.ova").string(),
                     (tmp.path / "import").string()});
  ASSERT_EQ(imp.code, 0) << imp.err;
  auto spec = nlohmann::json::parse(slurp(tmp.path / "import" / "vmspec.json"), nullptr, false);
  ASSERT_FALSE(spec.is_discarded());
  const auto& vs = spec["virtual_systems"][0];
  EXPECT_EQ(vs["vcpus"], 1);
  const int memory_mib = vs["memory_mib"].get<int>();
  EXPECT_GE(memory_mib, 128);
  EXPECT_EQ(vs["sla"]["downtime_budget_ms"], 1000);
  EXPECT_EQ(vs["sla"]["jurisdictions"], nlohmann::json::array({"EU"}));
  EXPECT_EQ(vs["sla"]["mobility"], "automatic");
  ASSERT_EQ(vs["disks"].size(), 1u);
  fs::path qcow = tmp.path / "import" / vs["disks"][0]["file"].get<std::string>();
  fs::path disk = tmp.path / "disk.raw";
  Outcome conv = run({"qemu-img", "convert", "-O", "raw", qcow.string(), disk.string()});
  ASSERT_EQ(conv.code, 0) << conv.err;

  // A network namespace with a tap device: the guest's NIC and the test's only way in.
  const std::string ns = "vandra-gt-" + std::to_string(::getpid());
  Outcome add = run({"ip", "netns", "add", ns});
  if (add.code != 0) {
    GTEST_SKIP() << "cannot create a network namespace (needs CAP_SYS_ADMIN): " << add.err;
  }
  auto netns_guard = defer([&] {
    (void)run({"ip", "-n", ns, "tuntap", "del", "dev", kTap, "mode", "tap"});
    (void)run({"ip", "netns", "del", ns});
  });
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"ip", "-n", ns, "tuntap", "add", "dev", kTap, "mode", "tap"},
        std::vector<std::string>{"ip", "-n", ns, "addr", "add", kHostCidr, "dev", kTap},
        std::vector<std::string>{"ip", "-n", ns, "link", "set", kTap, "up"},
        std::vector<std::string>{"ip", "-n", ns, "link", "set", "lo", "up"}}) {
    Outcome r = run(cmd);
    ASSERT_EQ(r.code, 0) << cmd[3] << ": " << r.err;
  }

  // QEMU, TCG only; `ip netns exec` execs it, so the pid is QEMU's own.
  fs::path log = tmp.path / "serial.log";
  const auto t0 = Clock::now();
  auto qemu = Subprocess::start(
      {"ip", "netns", "exec", ns, "qemu-system-x86_64", "-accel", "tcg", "-m",
       std::to_string(memory_mib), "-smp", "1", "-nographic", "-nodefaults", "-monitor", "none",
       "-serial", "file:" + log.string(), "-no-reboot", "-kernel", (guest / "vmlinuz").string(),
       "-initrd", (guest / "initrd.img").string(), "-append",
       std::string("console=ttyS0 quiet panic=-1 vandra.ip=") + kGuestIp + "/24 vandra.port=" +
           std::to_string(kPort) + " vandra.mempat=16:99",
       "-drive", "file=" + disk.string() + ",if=virtio,format=raw,cache=writeback", "-netdev",
       std::string("tap,id=n0,ifname=") + kTap + ",script=no,downscript=no", "-device",
       "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:0a:0a:0a"},
      {.capture_stdout = false, .capture_stderr = true});
  ASSERT_TRUE(qemu) << qemu.error().describe();

  // Readiness: poll the serial log for the init's verdict, with a deadline.
  std::string serial;
  bool ready = false;
  while (Clock::now() - t0 < kBootDeadline) {
    serial = slurp(log);
    if (serial.find("VANDRA-GUEST-READY") != std::string::npos) {
      ready = true;
      break;
    }
    if (serial.find("VANDRA-GUEST-FAILED") != std::string::npos) {
      break;
    }
    siginfo_t si{};
    if (::waitid(P_PID, static_cast<id_t>(qemu->pid()), &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        si.si_pid != 0) {
      break;  // QEMU ended
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double boot_s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_TRUE(ready) << "guest not ready after " << boot_s << " s; serial log:\n" << serial;
  std::cout << "[ boot ] TCG boot to VANDRA-GUEST-READY: " << boot_s << " s\n";
  RecordProperty("tcg_boot_to_ready_ms", static_cast<int>(boot_s * 1000));

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
  auto w = ctl->command("EXEC vguest-diskpat write /dev/vda 7 0 16");
  ASSERT_EQ(w.back(), "EXIT 0") << joined(w);
  EXPECT_EQ(outLine(w, "WROTE"), "WROTE bytes=16777216 seed=7");
  auto c = ctl->command("EXEC vguest-diskpat check /dev/vda 7 0 16");
  EXPECT_EQ(c.back(), "EXIT 0") << joined(c);
  EXPECT_EQ(outLine(c, "PASS"), "PASS bytes=16777216 seed=7") << joined(c);
  auto wrong = ctl->command("EXEC vguest-diskpat check /dev/vda 8 0 16");
  EXPECT_EQ(wrong.back(), "EXIT 1") << joined(wrong);
  EXPECT_EQ(outLine(wrong, "FAIL").rfind("FAIL offset=0 ", 0), 0u) << joined(wrong);
  Outcome host = run({(guest / "bin/vguest-diskpat").string(), "check", disk.string(), "7", "0", "16"});
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
  auto corrupted = ctl->command("EXEC vguest-diskpat check /dev/vda 7 0 16");
  EXPECT_EQ(corrupted.back(), "EXIT 1") << joined(corrupted);
  EXPECT_EQ(outLine(corrupted, "FAIL").rfind("FAIL offset=" + std::to_string(bad_disk) + " ", 0), 0u)
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
}

}  // namespace
}  // namespace vandra
