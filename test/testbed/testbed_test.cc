// Testbed integration: up with a real profile, RTT with ping and one TCP stream's throughput
// through the user-space WAN emulator (printed, asserted against the profile), then down
// with nothing left. Also: down after the emulator is killed, after `up` crashed half-way,
// and never touching what the state file does not record. Live migrations between the
// sites' agents through the site tunnel (dc -> cloud -> dc with a guest workload and a client
// session; cancel mid-mirror). Needs root and network
// namespaces; skipped otherwise. Every namespace and process is removed also on failure.
#include "vandra/testbed/testbed.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "test/support/require.h"
#include "vandra/agent/agent_client.h"
#include "vandra/agent/agent_service.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/agent/recovery.h"
#include "vandra/common/ethernet.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/guest_workload.h"
#include "vandra/testbed/wan_emulator.h"

namespace vandra::testbed {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Why the testbed cannot run here, or empty.
std::string cannotRun() {
  if (::geteuid() != 0) {
    return "needs root (network namespaces)";
  }
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    return "no /dev/net/tun";
  }
  if (!runCapture({"ip", "-V"})) {
    return "no iproute2 (ip)";
  }
  std::string why;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      why = std::string("cannot create a network namespace: ") + std::strerror(errno);
    }
  });
  t.join();
  return why;
}

#define SKIP_UNLESS_TESTBED_CAN_RUN()    \
  do {                                   \
    const std::string why = cannotRun(); \
    if (!why.empty()) {                  \
      VANDRA_SKIP_OR_FAIL(why);          \
    }                                    \
  } while (false)

bool netnsExists(const std::string& name) {
  struct stat st {};
  return ::stat(("/run/netns/" + name).c_str(), &st) == 0;
}

// A temporary state dir whose testbed is brought down (and the dir removed) whatever happens.
class StateDir {
 public:
  StateDir() {
    std::string tmpl = (fs::temp_directory_path() / "vandra-tb-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
    }
  }
  ~StateDir() {
    if (!path_.empty()) {
      if (auto d = down(path_); !d) {
        ADD_FAILURE() << "testbed down failed: " << d.error().describe();
        for (const auto& e : d.error().secondary) {
          ADD_FAILURE() << "  " << e.describe();
        }
      }
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// /proc/<pid>/stat field 22, or 0 when the process is gone (zombies count as gone).
uint64_t processStartTimeForTest(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) {
    return 0;
  }
  const auto close = line.rfind(')');
  std::istringstream f(line.substr(close + 1));
  std::string state;
  f >> state;
  if (state == "Z" || state == "X") {
    return 0;
  }
  std::string skip;
  for (int field = 4; field < 22; ++field) {
    f >> skip;
  }
  uint64_t st = 0;
  f >> st;
  return st;
}

nlohmann::json readState(const std::string& dir) {
  std::ifstream in(stateFilePath(dir));
  return nlohmann::json::parse(in, nullptr, false);
}

// Everything the state file @p recorded lists is gone, and so is the state file.
void expectNothingLeft(const nlohmann::json& recorded, const std::string& dir) {
  ASSERT_TRUE(recorded.is_object());
  int checked = 0;
  for (const auto& r : recorded["resources"]) {
    const std::string kind = r["kind"];
    const std::string name = r["name"];
    if (kind == "netns") {
      EXPECT_FALSE(netnsExists(name)) << name;
    } else if (kind == "link") {
      EXPECT_EQ(::if_nametoindex(name.c_str()), 0U) << name;
    } else if (kind == "process") {
      const pid_t pid = r["pid"];
      EXPECT_FALSE(processMatches(pid, r["start_time"], r["marker"])) << name << " " << pid;
      // Not even a zombie of ours.
      EXPECT_TRUE(::kill(pid, 0) != 0 || !fs::exists("/proc/" + std::to_string(pid))) << pid;
    } else if (kind == "file" || kind == "tree") {
      EXPECT_FALSE(fs::exists(name)) << name;
    }
    ++checked;
  }
  EXPECT_GT(checked, 5);
  EXPECT_FALSE(fs::exists(stateFilePath(dir)));
}

struct PingStats {
  int received = 0;
  double min_ms = 0;
  double avg_ms = 0;
  double max_ms = 0;
};

Result<PingStats> ping(const std::string& netns, const std::string& target, int count) {
  VANDRA_TRY_ASSIGN(auto out, runCapture({"ip", "netns", "exec", netns, "ping", "-n", "-q", "-c",
                                          std::to_string(count), "-i", "0.2", "-W", "2", target}));
  std::smatch m;
  PingStats s;
  if (std::regex_search(out, m, std::regex(R"((\d+) received)"))) {
    s.received = std::stoi(m[1]);
  }
  if (!std::regex_search(out, m, std::regex(R"(= ([\d.]+)/([\d.]+)/([\d.]+)/)"))) {
    return fail(ErrorCode::Internal, "Unexpected ping output: " + out);
  }
  s.min_ms = std::stod(m[1]);
  s.avg_ms = std::stod(m[2]);
  s.max_ms = std::stod(m[3]);
  return s;
}

struct TcpStats {
  uint64_t bytes = 0;
  double seconds = 0;
  double mbit = 0;         // whole transfer, slow start included
  double steady_mbit = 0;  // second half of the transfer
};

double mbitOf(uint64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) * 8 / seconds / 1e6 : 0;
}

// One TCP stream from @p from_ns to @p to_addr:5201 in @p to_ns for @p duration.
Result<TcpStats> tcpStream(const std::string& from_ns, const std::string& to_ns,
                           const std::string& to_addr, std::chrono::seconds duration) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(5201);
  if (::inet_pton(AF_INET, to_addr.c_str(), &addr.sin_addr) != 1) {
    return fail(ErrorCode::InvalidArgument, "bad address " + to_addr);
  }
  auto* sa = reinterpret_cast<sockaddr*>(&addr);  // NOLINT: the sockets API
  VANDRA_TRY_ASSIGN(auto listener, socketInNetns(to_ns, AF_INET, SOCK_STREAM));
  const int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(listener.get(), sa, sizeof(addr)) != 0 || ::listen(listener.get(), 1) != 0) {
    return fail(Error::fromErrno("bind/listen failed"));
  }
  VANDRA_TRY_ASSIGN(auto sender, socketInNetns(from_ns, AF_INET, SOCK_STREAM));
  const timeval tv{5, 0};
  ::setsockopt(sender.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

  // Receiver: counts bytes; marks the time of the first byte, of the half and of the end.
  std::atomic<bool> receiver_failed{false};
  TcpStats stats;
  std::vector<std::pair<Clock::time_point, uint64_t>> samples;
  std::thread receiver([&] {
    pollfd p{listener.get(), POLLIN, 0};
    if (::poll(&p, 1, 10'000) != 1) {
      receiver_failed = true;
      return;
    }
    UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) {
      receiver_failed = true;
      return;
    }
    std::vector<char> buf(1 << 20);
    uint64_t total = 0;
    const auto give_up = Clock::now() + duration + 30s;
    while (Clock::now() < give_up) {
      pollfd q{conn.get(), POLLIN, 0};
      if (::poll(&q, 1, 5'000) != 1) {
        receiver_failed = true;
        return;
      }
      const ssize_t n = ::read(conn.get(), buf.data(), buf.size());
      if (n <= 0) {
        break;
      }
      total += static_cast<uint64_t>(n);
      samples.emplace_back(Clock::now(), total);
    }
  });
  auto join = defer([&] { receiver.join(); });
  if (::connect(sender.get(), sa, sizeof(addr)) != 0) {
    return fail(Error::fromErrno("connect failed"));
  }
  std::vector<char> chunk(256 << 10, 'v');
  const auto end = Clock::now() + duration;
  while (Clock::now() < end) {
    const ssize_t n = ::send(sender.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n < 0) {
      return fail(Error::fromErrno("send failed"));
    }
  }
  ::shutdown(sender.get(), SHUT_WR);
  join.dismiss();
  receiver.join();
  if (receiver_failed || samples.size() < 2) {
    return fail(ErrorCode::Timeout, "receiver saw no complete transfer");
  }
  const auto t_first = samples.front().first;
  const auto t_last = samples.back().first;
  stats.bytes = samples.back().second;
  stats.seconds = std::chrono::duration<double>(t_last - t_first).count();
  stats.mbit = mbitOf(stats.bytes - samples.front().second, stats.seconds);
  const auto t_half = t_first + (t_last - t_first) / 2;
  auto half = std::lower_bound(samples.begin(), samples.end(), t_half,
                               [](const auto& s, Clock::time_point t) { return s.first < t; });
  stats.steady_mbit = mbitOf(stats.bytes - half->second,
                             std::chrono::duration<double>(t_last - half->first).count());
  return stats;
}

TestbedOptions optionsFor(const std::string& profile, const std::string& dir) {
  TestbedOptions o;
  o.profile = profile;
  o.state_dir = dir;
  o.wanem_path = VANDRA_WANEM_PATH;
  return o;
}

// @p min_share: the share of the profile rate one TCP stream must reach through user-space
// forwarding on this machine (see docs/benchmarks.md, "WAN emulator accuracy").
void measureProfile(const std::string& profile_name, double rtt_lo, double rtt_hi,
                    std::chrono::seconds tcp_for, double min_share) {
  SKIP_UNLESS_TESTBED_CAN_RUN();
  StateDir dir;
  ASSERT_FALSE(dir.path().empty());
  auto profile = findProfile(profile_name);
  ASSERT_TRUE(profile);
  auto tb = up(optionsFor(profile_name, dir.path()));
  ASSERT_TRUE(tb) << tb.error().describe();
  auto st = status(dir.path());
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->healthy);
  const auto recorded = readState(dir.path());

  const double rtt_ms = std::chrono::duration<double, std::milli>(profile->link.delay).count() * 2;
  auto p = ping(tb->client_netns, "10.20.0.1", 20);
  ASSERT_TRUE(p) << p.error().describe();
  const double rate_mbit = static_cast<double>(profile->link.rate_bps) / 1e6;
  auto t = tcpStream(tb->client_netns, tb->cloud.netns, "10.20.0.1", tcp_for);
  ASSERT_TRUE(t) << t.error().describe();
  std::printf("[ profile  ] %s: %.0f Mbit/s, RTT %.1f ms\n", profile_name.c_str(), rate_mbit,
              rtt_ms);
  std::printf("[ ping     ] client -> cloud: %d/20 received, rtt min/avg/max %.2f/%.2f/%.2f ms\n",
              p->received, p->min_ms, p->avg_ms, p->max_ms);
  std::printf(
      "[ tcp      ] one stream client -> cloud: %.1f MB in %.2f s = %.1f Mbit/s "
      "(second half %.1f Mbit/s, %.0f %% of the profile)\n",
      static_cast<double>(t->bytes) / 1e6, t->seconds, t->mbit, t->steady_mbit,
      100 * t->steady_mbit / rate_mbit);
  EXPECT_EQ(p->received, 20);
  EXPECT_GE(p->min_ms, rtt_ms * 0.99);  // never faster than the configured delay
  EXPECT_GE(p->avg_ms, rtt_lo);
  EXPECT_LE(p->avg_ms, rtt_hi);
  // The shaper must hold the stream to the rate (1 % for timer rounding)...
  EXPECT_LE(t->steady_mbit, rate_mbit * 1.01);
  // ...and user-space forwarding must carry a useful share of it.
  EXPECT_GE(t->steady_mbit, rate_mbit * min_share);

  ASSERT_TRUE(down(dir.path()));
  expectNothingLeft(recorded, dir.path());
}

// An ASan build of vandra-wanem forwards about half as fast as a Release build (measured:
// 1 Gbit/s wan profile, one stream, 2 shared cores: ~330 vs ~585 Mbit/s).
#ifdef __SANITIZE_ADDRESS__
constexpr double kBuildFactor = 0.5;
#else
constexpr double kBuildFactor = 1.0;
#endif

TEST(Testbed, WanProfileAccuracy) {
  measureProfile("wan", 45, 70, 8s, 0.3 * kBuildFactor);
}

// 250 Mbit/s is within what user-space forwarding carries here: expect most of it.
TEST(Testbed, LdvmProfileAccuracy) {
  measureProfile("ldvm", 145, 170, 10s, 0.5);
}

// For docs/benchmarks.md; run with --gtest_also_run_disabled_tests. lan asks for 10 Gbit/s,
// far beyond one user-space forwarding thread: it reports what the emulator reaches.
TEST(Testbed, DISABLED_MetroProfileAccuracy) {
  measureProfile("metro", 9.5, 20, 8s, 0.3 * kBuildFactor);
}
// Sub-millisecond RTTs are at the mercy of the scheduler on a loaded 2-core machine.
TEST(Testbed, DISABLED_LanProfileAccuracy) {
  measureProfile("lan", 0.2, 20, 8s, 0.03);
}

TEST(Testbed, DownAfterEmulatorIsKilled) {
  SKIP_UNLESS_TESTBED_CAN_RUN();
  StateDir dir;
  TestbedOptions o = optionsFor("lan", dir.path());
  o.agents = true;  // the real site agents, recorded like the emulator
  o.agent_path = VANDRA_AGENT_PATH;
  auto tb = up(o);
  ASSERT_TRUE(tb) << tb.error().describe();
  const auto recorded = readState(dir.path());
  int processes = 0;
  for (const auto& r : recorded["resources"]) {
    if (r["kind"] == "process") {
      ++processes;
      EXPECT_TRUE(processMatches(r["pid"], r["start_time"], r["marker"])) << r.dump();
    }
  }
  EXPECT_EQ(processes, 3);
  EXPECT_GT(tb->dc.agent_pid, 0);
  EXPECT_EQ(tb->cloud.agent_endpoint, "10.20.0.1:8443");
  ASSERT_GT(tb->wanem_pid, 0);
  ASSERT_EQ(::kill(tb->wanem_pid, SIGKILL), 0);
  // Wait (with a deadline) until status sees the emulator gone.
  bool degraded = false;
  for (auto deadline = Clock::now() + 5s; Clock::now() < deadline && !degraded;) {
    auto st = status(dir.path());
    ASSERT_TRUE(st);
    degraded = !st->healthy;
    if (!degraded) {
      std::this_thread::sleep_for(20ms);  // polling a condition, not synchronising
    }
  }
  EXPECT_TRUE(degraded);
  ASSERT_TRUE(down(dir.path()));
  expectNothingLeft(recorded, dir.path());
  EXPECT_TRUE(down(dir.path())) << "down is idempotent";
}

agent::AgentClient clientFor(const SiteInfo& site, const SiteInfo& credentials_of) {
  agent::AgentEndpoint ep{.host = "",
                          .port = 0,
                          .ca = credentials_of.ca_cert,
                          .cert = credentials_of.operator_cert,
                          .key = credentials_of.operator_key,
                          .netns = site.netns};
  EXPECT_TRUE(agent::parseHostPort(site.agent_endpoint, ep));
  return agent::AgentClient(ep);
}

// The issue's integration path on real QEMU (TCG): testbed with one agent per site, the test
// guest's OVA imported at dc through the API, booted from its own disk, its NIC a tap on the
// dc bridge, its service answering a client at dc; events recorded; then `down` with the VM
// still running leaves nothing (QEMU outlives its agent by design; down ends it by namespace).
TEST(Testbed, AgentsRunTheTestGuestAndDownLeavesNothing) {
  SKIP_UNLESS_TESTBED_CAN_RUN();
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  if (guest == nullptr || !fs::exists(fs::path(guest) / "test-guest.ova")) {
    VANDRA_SKIP_OR_FAIL(
        "VANDRA_GUEST_DIR does not name a built test guest (tools/test.sh builds one)");
  }
  StateDir dir;
  TestbedOptions o = optionsFor("lan", dir.path());
  o.agents = true;
  o.agent_path = VANDRA_AGENT_PATH;
  // Room for two test guests at dc (256 MiB each), not three; the guest ignores ACPI, so a
  // stop is forced after 3 s.
  o.agent_args = {"--capacity-memory-mib", "1100", "--reserved-memory-mib", "512",
                  "--stop-timeout",        "3"};
  auto tb = up(o);
  ASSERT_TRUE(tb) << tb.error().describe();
  const auto recorded = readState(dir.path());
  auto dc = clientFor(tb->dc, tb->dc);

  // Each site has its own CA: the cloud operator's certificate is refused at dc.
  auto foreign = clientFor(tb->dc, tb->cloud).get("/v1/host");
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code, ErrorCode::Io);
  ASSERT_TRUE(dc.get("/v1/host"));
  ASSERT_TRUE(clientFor(tb->cloud, tb->cloud).get("/v1/host"));

  const auto t_import = Clock::now();
  const std::string ova = fs::absolute(fs::path(guest) / "test-guest.ova").string();
  auto imported = dc.post("/v1/vms", {{"id", "web1"}, {"package", ova}});
  ASSERT_TRUE(imported) << imported.error().describe();
  EXPECT_EQ((*imported)["state"], "created");
  auto started = dc.post("/v1/vms/web1/start", nlohmann::json::object());
  ASSERT_TRUE(started) << started.error().describe();
  EXPECT_EQ((*started)["state"], "running");
  const pid_t qemu = (*started)["pid"].get<pid_t>();
  const uint64_t qemu_start = processStartTimeForTest(qemu);
  auto links = runCapture({"ip", "-n", tb->dc.netns, "-o", "link", "show", "master", "br0"});
  ASSERT_TRUE(links);
  EXPECT_NE(links->find(agent::tapName("web1", 0)), std::string::npos) << *links;
  // The API names that tap (the CLI's demo and bench find the VM on the LAN through it).
  ASSERT_TRUE((*started)["taps"].is_array()) << started->dump(2);
  ASSERT_EQ((*started)["taps"].size(), 1U) << started->dump(2);
  EXPECT_EQ((*started)["taps"][0], agent::tapName("web1", 0));

  auto conn = GuestConnection::connect(tb->client_netns, "10.10.0.10", 7000, Clock::now() + 300s);
  ASSERT_TRUE(conn) << conn.error().describe();
  auto rtt = conn->ping("t1", 30s);
  ASSERT_TRUE(rtt) << rtt.error().describe();
  std::printf("[ measured ] import -> service answering: %.1f s\n",
              std::chrono::duration<double>(Clock::now() - t_import).count());
  auto echo = GuestConnection::connect(tb->client_netns, "10.10.0.10", 7000, Clock::now() + 30s);
  ASSERT_TRUE(echo);
  EXPECT_TRUE(echo->echo(64 * 1024, 30s));

  {  // The workload the migration tests verify turns one lost write into a failed check that
     // names the page and the block (write 300 of 256 pages: page 43, one generation behind;
     // write 10 of the 256 blocks from 56 MiB: block 14336 + 9).
    WorkloadOptions lossy;
    lossy.dirty_wss_mib = 1;
    lossy.dirty_rate_mbps = 4;
    lossy.disk_len_mib = 1;
    lossy.lose_page_write = 300;
    lossy.lose_block_write = 10;
    auto w = GuestWorkload::start(*conn, lossy);
    ASSERT_TRUE(w) << w.error().describe();
    auto r = w->verify(*conn);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_FALSE(r->pass());
    EXPECT_EQ(r->memory.line.rfind("FAIL page=43 want_gen=2 got_gen=1 ", 0), 0U) << r->describe();
    EXPECT_EQ(r->disk.line.rfind("FAIL block=14345 want_gen=1 got_gen=0 ", 0), 0U) << r->describe();
    auto stopped = w->stop(*conn);
    EXPECT_TRUE(stopped) << stopped.error().describe();
  }

  auto events = dc.get("/v1/vms/web1/events?since=0");
  ASSERT_TRUE(events) << events.error().describe();
  std::vector<std::string> states;
  for (const auto& e : (*events)["events"]) {
    if (e["kind"] == "state") {
      states.push_back(e["name"]);
    }
  }
  EXPECT_EQ(states, (std::vector<std::string>{"created", "starting", "running"}));
  auto bad = dc.get("/v1/vms/web1/events?since=abc");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::InvalidArgument);

  // Capacity: a second VM like web1 fits, a third does not, and changes nothing.
  ASSERT_TRUE(dc.post("/v1/vms", {{"id", "web2"}, {"from", "web1"}}));
  auto third = dc.post("/v1/vms", {{"id", "web3"}, {"from", "web1"}});
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, ErrorCode::CapacityExceeded) << third.error().describe();
  EXPECT_EQ(dc.get("/v1/vms/web3").error().code, ErrorCode::NotFound);
  ASSERT_TRUE(dc.del("/v1/vms/web2"));

  // The dc agent crashes and comes back while the VM runs: QEMU untouched, re-attached, and
  // the client's open session still answers.
  auto session = GuestConnection::connect(tb->client_netns, "10.10.0.10", 7000, Clock::now() + 30s);
  ASSERT_TRUE(session);
  ASSERT_TRUE(session->ping("before", 30s));
  auto restarted = restartAgent(dir.path(), "dc", /*crash=*/true);
  ASSERT_TRUE(restarted) << restarted.error().describe();
  EXPECT_NE(*restarted, tb->dc.agent_pid);
  auto after = dc.get("/v1/vms/web1");
  ASSERT_TRUE(after) << after.error().describe();
  EXPECT_EQ((*after)["state"], "running");
  EXPECT_EQ((*after)["pid"].get<pid_t>(), qemu);
  EXPECT_EQ(processStartTimeForTest(qemu), qemu_start);
  EXPECT_TRUE(session->ping("after", 30s));

  // Stop (forced: no ACPI in the guest) and start again: the service comes back.
  auto stopped = dc.post("/v1/vms/web1/stop", nlohmann::json::object());
  ASSERT_TRUE(stopped) << stopped.error().describe();
  EXPECT_EQ((*stopped)["state"], "stopped");
  EXPECT_EQ(processStartTimeForTest(qemu), 0U);
  auto again = dc.post("/v1/vms/web1/start", nlohmann::json::object());
  ASSERT_TRUE(again) << again.error().describe();
  const pid_t qemu2 = (*again)["pid"].get<pid_t>();
  const uint64_t qemu2_start = processStartTimeForTest(qemu2);
  auto back = GuestConnection::connect(tb->client_netns, "10.10.0.10", 7000, Clock::now() + 300s);
  ASSERT_TRUE(back) << back.error().describe();
  EXPECT_TRUE(back->ping("again", 30s));

  // Down with the VM running: the agents stop, QEMU is ended, nothing stays.
  const auto recorded_now = readState(dir.path());  // with the restarted agent's pid
  ASSERT_TRUE(down(dir.path()));
  expectNothingLeft(recorded, dir.path());
  expectNothingLeft(recorded_now, dir.path());
  EXPECT_NE(processStartTimeForTest(qemu2), qemu2_start)
      << "QEMU " << qemu2 << " survived testbed down";
}

// ---- live migration between the testbed's sites (real agents, QEMU, tunnel, WAN) ----------

// Starts migrating @p vm from @p from to site @p to and follows it until it ends (long polls,
// no sleeps). Returns the final record.
nlohmann::json migrateAndWait(agent::AgentClient& from, const std::string& vm,
                              const std::string& to,
                              nlohmann::json extra = nlohmann::json::object()) {
  extra["to"] = to;
  auto begun = from.post("/v1/vms/" + vm + "/migrate", extra);
  if (!begun) {
    ADD_FAILURE() << "migrate: " << begun.error().describe();
    return {};
  }
  const std::string id = (*begun)["id"];
  const auto deadline = Clock::now() + 600s;
  while (Clock::now() < deadline) {
    auto m = from.get("/v1/migrations/" + id + "?wait_ms=5000");
    if (!m) {
      ADD_FAILURE() << "GET migration: " << m.error().describe();
      return {};
    }
    if ((*m)["ended"].get<bool>()) {
      return *m;
    }
  }
  ADD_FAILURE() << "migration " << id << " did not end";
  return {};
}

// QEMU processes inside a site's namespace (the agent runs there too).
size_t qemuProcessesIn(const std::string& netns) {
  auto pids = runCapture({"ip", "netns", "pids", netns});
  size_t n = 0;
  std::istringstream in(pids ? *pids : std::string());
  std::string pid;
  while (in >> pid) {
    std::ifstream cmd("/proc/" + pid + "/cmdline");
    std::string argv0;
    std::getline(cmd, argv0, '\0');
    n += argv0.find("qemu-system") != std::string::npos ? 1U : 0U;
  }
  return n;
}

// Entries left in a site agent's per-migration run folder (sockets of past migrations).
size_t migrationRunLeftovers(const SiteInfo& site) {
  std::error_code ec;
  const fs::path dir = fs::path(site.site_dir) / "agent" / "run" / "m";
  size_t n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++n;
  }
  return n;
}

bool exitedZero(const std::string& exec_out) {
  return exec_out.size() >= 7 && exec_out.compare(exec_out.size() - 7, 7, " exit 0") == 0;
}

std::string execOut(GuestConnection& c, const std::string& cmd) {
  auto r = c.exec(cmd, 120s);
  if (!r) {
    return "error: " + r.error().describe();
  }
  return (r->out.empty() ? std::string("(no output)") : r->out.back()) + " exit " +
         std::to_string(r->exit_code);
}

// A testbed with both agents and the test guest running at dc, a client connection to its
// service open: what every migration test starts from.
class TestbedMigration : public ::testing::Test {
 protected:
  // Skips (GTEST_SKIP in the caller's frame: check IsSkipped()) without root, namespaces or
  // a built guest.
  void bringUp(const std::string& profile, const std::string& ova_override = "") {
    if (const std::string why = cannotRun(); !why.empty()) {
      VANDRA_SKIP_OR_FAIL(why);
    }
    const char* guest = std::getenv("VANDRA_GUEST_DIR");
    if (guest == nullptr || !fs::exists(fs::path(guest) / "test-guest.ova")) {
      VANDRA_SKIP_OR_FAIL(
          "VANDRA_GUEST_DIR does not name a built test guest (tools/test.sh builds one)");
    }
    TestbedOptions o = optionsFor(profile, dir_.path());
    o.agents = true;
    o.peer_mbps = peer_mbps_;
    o.agent_path = VANDRA_AGENT_PATH;
    o.agent_args = {"--stop-timeout", "3"};
    auto tb = up(o);
    ASSERT_TRUE(tb) << tb.error().describe();
    tb_ = *tb;
    dc_.emplace(clientFor(tb_.dc, tb_.dc));
    cloud_.emplace(clientFor(tb_.cloud, tb_.cloud));
    const std::string ova = ova_override.empty()
                                ? fs::absolute(fs::path(guest) / "test-guest.ova").string()
                                : ova_override;
    auto imported = dc_->post("/v1/vms", {{"id", "web1"}, {"package", ova}});
    ASSERT_TRUE(imported) << imported.error().describe();
    auto started = dc_->post("/v1/vms/web1/start", nlohmann::json::object());
    ASSERT_TRUE(started) << started.error().describe();
    qemu_ = (*started)["pid"].get<pid_t>();
    auto conn = GuestConnection::connect(tb_.client_netns, "10.10.0.10", 7000, Clock::now() + 300s);
    ASSERT_TRUE(conn) << conn.error().describe();
    conn_.emplace(std::move(*conn));
    ASSERT_TRUE(conn_->ping("boot", 30s));
  }
  // Starts a migration to cloud capped at @p mbps (so the mirrors take long) and waits until
  // it is in @p phase. Returns its id.
  std::string beginCapped(double mbps, const std::string& phase,
                          nlohmann::json extra = nlohmann::json::object()) {
    extra["to"] = "cloud";
    extra["bandwidth_mbps"] = mbps;
    auto begun = dc_->post("/v1/vms/web1/migrate", extra);
    if (!begun) {
      ADD_FAILURE() << begun.error().describe();
      return "";
    }
    const std::string id = (*begun)["id"];
    std::string now;
    for (int i = 0; i < 400 && now != phase; ++i) {
      auto m = dc_->get("/v1/migrations/" + id +
                        "?wait_ms=300");  // waits for the end, which does not come
      if (!m || (*m)["ended"].get<bool>()) {
        ADD_FAILURE() << "migration ended before " << phase << ": "
                      << (m ? m->dump(2) : m.error().describe());
        return id;
      }
      now = (*m)["phase"];
    }
    EXPECT_EQ(now, phase);
    return id;
  }
  // Follows migration @p id at dc to its end.
  nlohmann::json endOf(const std::string& id, agent::AgentClient& at) {
    for (int i = 0; i < 200; ++i) {
      auto m = at.get("/v1/migrations/" + id + "?wait_ms=5000");
      if (!m) {
        ADD_FAILURE() << m.error().describe();
        return {};
      }
      if ((*m)["ended"].get<bool>()) {
        return *m;
      }
    }
    ADD_FAILURE() << "migration " << id << " did not end";
    return {};
  }
  // Waits (the agent's event long poll, no sleeps) until cloud has no VM web1.
  void expectCloudEmpty() {
    uint64_t since = 0;
    for (int i = 0; i < 40; ++i) {
      auto vm = cloud_->get("/v1/vms/web1");
      if (!vm && vm.error().code == ErrorCode::NotFound) {
        break;
      }
      auto ev = cloud_->get("/v1/vms/web1/events?wait_ms=5000&since=" + std::to_string(since));
      if (ev && !(*ev)["events"].empty()) {
        since = (*ev)["events"].back()["seq"].get<uint64_t>();
      }
    }
    EXPECT_EQ(cloud_->get("/v1/vms/web1").error().code, ErrorCode::NotFound);
    EXPECT_EQ(qemuProcessesIn(tb_.cloud.netns), 0U);
    EXPECT_EQ(migrationRunLeftovers(tb_.cloud), 0U);
  }
  // Brings the testbed up and starts a migration that stays in the RAM pre-copy: a memory
  // pattern, a guest dirtying 64 MiB at 40 MB/s, a link capped at 80 Mbit/s (10 MB/s), no
  // auto-converge. Returns its id (call IsSkipped()/HasFatalFailure() after).
  std::string intoRamPrecopy() {
    bringUp("lan");
    if (IsSkipped() || HasFatalFailure()) {
      return "";
    }
    EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
    WorkloadOptions wo;
    wo.dirty_wss_mib = 64;
    wo.dirty_rate_mbps = 40;
    startWorkload(wo);
    return beginCapped(80, "precopy_ram", {{"auto_converge", false}});
  }
  // The stamped dirtier and disk writer (testbed::GuestWorkload; the disk writer on the
  // last 8 MiB of the data disk, away from the tests' diskpat regions at 0..32 MiB).
  void startWorkload(const WorkloadOptions& o = {}) {
    auto w = GuestWorkload::start(*conn_, o);
    ASSERT_TRUE(w) << w.error().describe();
    workload_ = std::move(*w);
  }
  // Every page and block the workload wrote, wherever the guest ran, is there.
  void expectWorkloadIntact() {
    ASSERT_TRUE(workload_) << "no workload started";
    auto r = workload_->verify(*conn_);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_TRUE(r->pass()) << r->describe();
    std::cout << "workload: " << r->describe() << "\n";
  }
  void expectMemoryIntact() {
    auto mem = conn_->exec("vguest-mempat check", 120s);
    ASSERT_TRUE(mem) << mem.error().describe();
    EXPECT_EQ(mem->out.empty() ? "" : mem->out.back(), "PASS bytes=33554432 seed=9");
    if (workload_) {
      expectWorkloadIntact();
    }
  }
  // The VM runs on at dc, on the same QEMU, answers, and its disk pattern is intact.
  void expectRunningAtDc(const std::string& disk_check) {
    auto vm = dc_->get("/v1/vms/web1");
    ASSERT_TRUE(vm) << vm.error().describe();
    EXPECT_EQ((*vm)["state"], "running");
    EXPECT_EQ((*vm)["pid"].get<pid_t>(), qemu_);
    // dc's bridge sends the guest's frames to its own tap again (a switchover that began
    // had pointed them at the link; the resumed guest's RARPs point them back).
    auto mac = learnedMac(tb_.dc.netns, agent::tapName("web1", 0));
    EXPECT_TRUE(mac) << mac.error().describe();
    ASSERT_TRUE(conn_->ping("after", 60s));
    if (!disk_check.empty()) {
      EXPECT_EQ(execOut(*conn_, "vguest-diskpat check /dev/vdb " + disk_check).rfind("PASS", 0),
                0U);
    }
    EXPECT_EQ(migrationRunLeftovers(tb_.dc), 0U);
  }

  // On a failure, what it takes to tell a guest that stopped from a network that lost it: the
  // VM at each site, its console's end, the bridges' forwarding entries and the client's
  // neighbour table. (The testbed itself is taken down by dir_.)
  void TearDown() override {
    if (!HasFailure() || !dc_) {
      return;
    }
    std::cout << "---- state at failure ----\n";
    for (auto* site : {&*dc_, &*cloud_}) {
      auto vm = site->get("/v1/vms/web1", 10s);
      std::cout << site->endpoint().netns << " vm: " << (vm ? vm->dump() : vm.error().describe())
                << "\n";
      if (vm) {
        auto console = site->getText("/v1/vms/web1/console", 10s);
        const std::string text = console ? *console : console.error().describe();
        // From the kernel's first complaint when there is one (the oops says what broke).
        size_t from = text.size() > 3000 ? text.size() - 3000 : 0;
        for (const char* mark :
             {"cut here", "BUG", "general protection", "Oops", "WARNING:", "Kernel panic"}) {
          from = std::min(from, text.find(mark) == std::string::npos
                                    ? from
                                    : text.rfind('\n', text.find(mark)));
        }
        from = from == std::string::npos ? 0 : from;
        std::cout << "console:\n" << text.substr(from, 12000) << "\n";
      }
    }
    for (const auto* site : {&tb_.dc, &tb_.cloud}) {
      std::ifstream in(site->site_dir + "/agent.log", std::ios::binary);
      const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::cout << site->netns << " agent.log (end):\n"
                << log.substr(log.size() > 4000 ? log.size() - 4000 : 0) << "\n";
    }
    for (const auto& [label, argv] : std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"dc fdb",
              {"ip", "netns", "exec", tb_.dc.netns, "bridge", "fdb", "show", "br", "br0",
               "dynamic"}},
             {"cloud fdb",
              {"ip", "netns", "exec", tb_.cloud.netns, "bridge", "fdb", "show", "br", "br0",
               "dynamic"}},
             {"dc links", {"ip", "-n", tb_.dc.netns, "-s", "-o", "link", "show", "master", "br0"}},
             {"client neigh", {"ip", "-n", tb_.client_netns, "neigh"}}}) {
      auto out = runCapture(argv);
      std::cout << label << ":\n" << (out ? *out : out.error().describe()) << "\n";
    }
  }

  // Restarts @p site's agent armed with @p failpoint, starts web1's migration to cloud and
  // waits for the agent to die there; then starts it again (unless !restart). The id.
  std::string killedAt(const std::string& site, const std::string& failpoint, bool restart = true);
  // A migration of web1 (MAC @p mac) from the site in @p from_ns to the one in @p to_ns,
  // with a client probing it: the source's bridge sends web1's frames into the link (its LAN
  // tap, "vw..."), the target's to web1's tap, and the target delivered held frames.
  void expectLanSteered(const nlohmann::json& source_record, const nlohmann::json& target_record,
                        const std::string& from_ns, const std::string& to_ns,
                        const std::string& mac) {
    const auto& steer = source_record["report"]["lan_steer"];
    ASSERT_TRUE(steer.is_object()) << source_record["report"].dump(2);
    EXPECT_FALSE(steer.contains("error")) << steer.dump();
    EXPECT_EQ(steer.value("to", "").rfind("vw", 0), 0U) << steer.dump();
    EXPECT_EQ(bridgePortOf(from_ns, "br0", mac).value_or("none"), steer.value("to", ""));
    EXPECT_EQ(bridgePortOf(to_ns, "br0", mac).value_or("none"), agent::tapName("web1", 0));
    const auto& report = target_record["report"];
    ASSERT_TRUE(report.contains("lan_hold") && report.contains("lan_deliver")) << report.dump(2);
    EXPECT_FALSE(report["lan_hold"].contains("error")) << report.dump(2);
    EXPECT_FALSE(report["lan_deliver"].contains("error")) << report.dump(2);
    // The client sends every 10 ms; the guest was paused for far longer.
    EXPECT_GE(report["lan_deliver"].value("frames_delivered", uint64_t{0}), 1U) << report.dump(2);
  }
  // Migration @p id ended done at both sites: the VM runs at cloud, answers through the
  // stretched LAN with its memory intact, and nothing of it is left at dc (never two copies).
  void expectFinishedAtCloud(const std::string& id) {
    const auto end = endOf(id, *dc_);
    EXPECT_EQ(end.value("phase", ""), "done") << end.dump(2);
    auto theirs = cloud_->get("/v1/migrations/" + id);
    ASSERT_TRUE(theirs) << theirs.error().describe();
    EXPECT_EQ((*theirs)["phase"], "done");
    auto there = cloud_->get("/v1/vms/web1");
    ASSERT_TRUE(there) << there.error().describe();
    EXPECT_EQ((*there)["state"], "running");
    EXPECT_EQ(dc_->get("/v1/vms/web1").error().code, ErrorCode::NotFound);
    EXPECT_EQ(qemuProcessesIn(tb_.dc.netns), 0U);
    auto pong = conn_->ping("cloud", 60s);
    ASSERT_TRUE(pong) << pong.error().describe() << "\n" << end.dump(2);
    expectMemoryIntact();
    EXPECT_EQ(migrationRunLeftovers(tb_.dc), 0U);
  }

  double peer_mbps_ = 0;  // the site pair's cap (set before bringUp)
  StateDir dir_;
  TestbedInfo tb_;
  std::optional<agent::AgentClient> dc_;
  std::optional<agent::AgentClient> cloud_;
  std::optional<GuestConnection> conn_;
  std::optional<GuestWorkload> workload_;
  pid_t qemu_ = -1;
};

// The issue's end-to-end story: a guest with a disk and a dirtying workload migrates
// dc -> cloud -> dc over the emulated WAN through the site tunnel while a client at dc holds
// a TCP session; afterwards the memory and disk patterns pass, the session lost nothing, the
// guest kept its IP and MAC, and neither site keeps anything of the migrations.
TEST_F(TestbedMigration, DcToCloudToDcKeepsGuestSessionAndData) {
  bringUp("wan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  auto& dc = *dc_;
  auto& cloud = *cloud_;
  auto& conn = conn_;
  const std::string tap = agent::tapName("web1", 0);
  auto mac = learnedMac(tb_.dc.netns, tap);
  ASSERT_TRUE(mac) << mac.error().describe();
  EXPECT_PRED1(exitedZero, execOut(*conn, "vguest-mempat start 32 7"));
  EXPECT_PRED1(exitedZero, execOut(*conn, "vguest-diskpat write /dev/vdb 5 0 16"));
  WorkloadOptions wo;  // dirtier 16 MiB at 10 MB/s, disk writer 56..64 MiB: both ways
  wo.dirty_wss_mib = 16;
  wo.dirty_rate_mbps = 10;
  ASSERT_NO_FATAL_FAILURE(startWorkload(wo));
  auto probe = SessionProbe::start(tb_.client_netns, "10.10.0.10", 7000, 10ms, Clock::now() + 30s);
  ASSERT_TRUE(probe) << probe.error().describe();

  // dc -> cloud.
  const auto out = migrateAndWait(dc, "web1", "cloud");
  ASSERT_EQ(out.value("phase", ""), "done") << out.dump(2);
  EXPECT_GT(out["report"].value("downtime_ms", 0), 0);
  EXPECT_GT(out["report"].value("wan_bytes", uint64_t{0}),
            out["report"].value("ram_bytes", uint64_t{0}));
  auto there = cloud.get("/v1/vms/web1");
  ASSERT_TRUE(there) << there.error().describe();
  EXPECT_EQ((*there)["state"], "running");
  EXPECT_EQ(dc.get("/v1/vms/web1").error().code, ErrorCode::NotFound);
  EXPECT_EQ(learnedMac(tb_.cloud.netns, tap).value_or("none"), *mac);
  auto theirs = cloud.get("/v1/migrations?vm=web1");
  ASSERT_TRUE(theirs);
  ASSERT_EQ((*theirs)["migrations"].size(), 1U);
  EXPECT_EQ((*theirs)["migrations"][0]["role"], "target");
  EXPECT_EQ((*theirs)["migrations"][0]["phase"], "done");
  // The LAN across the switchover: at the guest's stop dc pointed its bridge at the link,
  // cloud held what the client sent meanwhile and gave it to the guest when it started.
  expectLanSteered(out, (*theirs)["migrations"][0], tb_.dc.netns, tb_.cloud.netns, *mac);
  // The guest at cloud, reached from dc through the stretched LAN: new data for the way back.
  // (A guest that does not answer here is not sent back: its console at cloud tells why.)
  ASSERT_PRED1(exitedZero, execOut(*conn, "vguest-diskpat write /dev/vdb 6 16 8"));

  // cloud -> dc, over the tunnel dc dialled; its mirrors in write-blocking mode.
  const auto back = migrateAndWait(cloud, "web1", "dc", {{"copy_mode", "write-blocking"}});
  ASSERT_EQ(back.value("phase", ""), "done") << back.dump(2);
  EXPECT_EQ(out["report"].value("mirror_copy_mode", ""), "background");
  EXPECT_EQ(back["report"].value("mirror_copy_mode", ""), "write-blocking");
  auto home = dc.get("/v1/vms/web1");
  ASSERT_TRUE(home) << home.error().describe();
  EXPECT_EQ((*home)["state"], "running");
  EXPECT_EQ(cloud.get("/v1/vms/web1").error().code, ErrorCode::NotFound);
  EXPECT_EQ(learnedMac(tb_.dc.netns, tap).value_or("none"), *mac);
  auto ours = dc.get("/v1/migrations?vm=web1");
  ASSERT_TRUE(ours);
  const auto incoming = std::find_if((*ours)["migrations"].begin(), (*ours)["migrations"].end(),
                                     [](const nlohmann::json& m) { return m["role"] == "target"; });
  ASSERT_NE(incoming, (*ours)["migrations"].end()) << ours->dump(2);
  expectLanSteered(back, *incoming, tb_.cloud.netns, tb_.dc.netns, *mac);

  const auto session = (*probe)->stop();
  EXPECT_EQ(session.error, "");
  EXPECT_EQ(session.bytes_lost, 0U);
  EXPECT_EQ(session.answers, session.probes_sent);
  EXPECT_GT(session.probes_sent, 100U);
  std::cout << "session: " << session.probes_sent << " probes, longest gap " << session.max_gap_ms
            << " ms; downtime " << out["report"].value("downtime_ms", 0) << " + "
            << back["report"].value("downtime_ms", 0) << " ms; LAN silence "
            << out["report"]["lan_silence_ms"] << " + " << back["report"]["lan_silence_ms"]
            << " ms\n";
  // Each source agent measured the guest's silence on its own LAN around the pause. At dc
  // that is what the client saw: never longer than the client's longest gap.
  for (const auto* m : {&out, &back}) {
    const auto& r = (*m)["report"];
    ASSERT_TRUE(r.contains("lan_silence_ms") && r["lan_silence_ms"].is_number()) << r.dump(2);
    EXPECT_GT(r["lan_silence_ms"].get<double>(), 0.0);
    EXPECT_GT(r.value("lan_frames", uint64_t{0}), 0U);
    // The SLA's downtime budget (the test guest's OVF says 1000 ms) is judged on every
    // migration against that silence, and on this wan link it is met.
    EXPECT_EQ(r.value("downtime_budget_ms", uint64_t{0}), 1000U) << r.dump(2);
    EXPECT_EQ(r.value("interruption_by", ""), "lan_silence") << r.dump(2);
    EXPECT_DOUBLE_EQ(r["interruption_ms"].get<double>(), r["lan_silence_ms"].get<double>());
    ASSERT_TRUE(r["sla_met"].is_boolean()) << r.dump(2);
    EXPECT_TRUE(r["sla_met"].get<bool>()) << r.dump(2);
    // The downtime plan: the link's round trip measured, QEMU's limit within its bounds.
    EXPECT_GE(r["downtime_plan"].value("rtt_ms", 0.0), 40.0) << r.dump(2);  // wan: 50 ms
    EXPECT_LE(r.value("downtime_limit_ms", uint64_t{0}),
              r["downtime_plan"].value("max_limit_ms", uint64_t{0}));
    EXPECT_GE(r.value("downtime_limit_ms", uint64_t{0}),
              r["downtime_plan"].value("initial_limit_ms", uint64_t{1}));
  }
  EXPECT_EQ(out["report"].value("lan_silence_site", ""), "dc");
  EXPECT_LE(out["report"]["lan_silence_ms"].get<double>(), session.max_gap_ms + 50.0);
  auto mem = conn->exec("vguest-mempat check", 120s);
  ASSERT_TRUE(mem) << mem.error().describe();
  EXPECT_EQ(mem->exit_code, 0);
  EXPECT_EQ(mem->out.empty() ? "" : mem->out.back(), "PASS bytes=33554432 seed=7");
  for (const char* region : {"5 0 16", "6 16 8"}) {
    const std::string check =
        execOut(*conn, std::string("vguest-diskpat check /dev/vdb ") + region);
    EXPECT_EQ(check.rfind("PASS", 0), 0U) << region << ": " << check;
  }
  // A wrong seed fails: the checks can fail.
  const std::string wrong = execOut(*conn, "vguest-diskpat check /dev/vdb 99 0 16");
  EXPECT_EQ(wrong.rfind("FAIL", 0), 0U) << wrong;
  // Every page dirtied and every block written through both migrations (pre-copy, mirror,
  // the pauses, and at cloud in between) is at dc.
  expectWorkloadIntact();
  // Nothing of either migration is left: no QEMU at cloud, no sockets, no exports.
  EXPECT_EQ(qemuProcessesIn(tb_.cloud.netns), 0U);
  EXPECT_EQ(qemuProcessesIn(tb_.dc.netns), 1U);
  EXPECT_EQ(migrationRunLeftovers(tb_.dc), 0U);
  EXPECT_EQ(migrationRunLeftovers(tb_.cloud), 0U);
}

// A site that imported the same package holds the VM's base images: only the VM's overlays
// cross the WAN, both ways, and the guest's disk reads the same afterwards.
TEST_F(TestbedMigration, ASiteWithTheBaseImagesIsSentOnlyTheOverlays) {
  bringUp("wan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  const std::string ova =
      fs::absolute(fs::path(std::getenv("VANDRA_GUEST_DIR")) / "test-guest.ova").string();
  auto other = cloud_->post("/v1/vms", {{"id", "other"}, {"package", ova}});
  ASSERT_TRUE(other) << other.error().describe();
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 8"));
  const auto there = migrateAndWait(*dc_, "web1", "cloud");
  ASSERT_EQ(there.value("phase", ""), "done") << there.dump(2);
  const auto& r = there["report"];
  EXPECT_EQ(r["overlay_only_disks"], nlohmann::json::array({"disk1", "disk2"})) << r.dump(2);
  // The 8 MiB written since the import (and NBD's framing), not the 96 MiB of disks.
  EXPECT_GT(r.value("wan_bytes_nbd", uint64_t{0}), 8ULL << 20);
  EXPECT_LT(r.value("wan_bytes_nbd", uint64_t{0}), 12ULL << 20) << r.dump(2);
  // At cloud the disk is an overlay on cloud's own copy of the base.
  const std::string disk = tb_.cloud.site_dir + "/agent/images/vms/web1/disk2.qcow2";
  auto info = runCapture({"qemu-img", "info", "--output=json", "-U", disk});
  ASSERT_TRUE(info) << info.error().describe();
  const auto j = nlohmann::json::parse(*info, nullptr, false);
  ASSERT_TRUE(j.is_object()) << *info;
  EXPECT_EQ(j.value("backing-filename", "").rfind(tb_.cloud.site_dir + "/agent/images/base/", 0),
            0U)
      << *info;
  const std::string check = execOut(*conn_, "vguest-diskpat check /dev/vdb 5 0 8");
  EXPECT_EQ(check.rfind("PASS", 0), 0U) << check;
  // New data at cloud, and home again: dc still holds the base.
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 6 8 4"));
  const auto back = migrateAndWait(*cloud_, "web1", "dc");
  ASSERT_EQ(back.value("phase", ""), "done") << back.dump(2);
  EXPECT_EQ(back["report"]["overlay_only_disks"], nlohmann::json::array({"disk1", "disk2"}));
  EXPECT_LT(back["report"].value("wan_bytes_nbd", uint64_t{0}), 16ULL << 20)
      << back["report"].dump(2);
  for (const char* region : {"5 0 8", "6 8 4"}) {
    const std::string c = execOut(*conn_, std::string("vguest-diskpat check /dev/vdb ") + region);
    EXPECT_EQ(c.rfind("PASS", 0), 0U) << region << ": " << c;
  }
  // The other VM at cloud still has its base: nothing was taken from under it.
  auto still = cloud_->get("/v1/vms/other");
  ASSERT_TRUE(still) << still.error().describe();
}

// The operator's cap for the site pair (vandrad --peer cloud=...,mbps=N at dc, dc=... at
// cloud) holds on both ends of the link, whichever dialled, and bounds a migration's rate.
TEST_F(TestbedMigration, TheSitePairCapBoundsTheMigrationBothWays) {
  peer_mbps_ = 40;
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 16"));
  // The link can be brought up ahead of the first migration; it carries the pair's cap.
  auto linked = dc_->post("/v1/peers/cloud/connect", nlohmann::json::object());
  ASSERT_TRUE(linked) << linked.error().describe();
  EXPECT_TRUE(linked->value("alive", false)) << linked->dump();
  EXPECT_NEAR(linked->value("bandwidth_mbps", 0.0), 40.0, 0.01) << linked->dump();
  EXPECT_TRUE(linked->contains("lan")) << linked->dump();
  const auto there = migrateAndWait(*dc_, "web1", "cloud");
  ASSERT_EQ(there.value("phase", ""), "done") << there.dump(2);
  for (auto* site : {&*dc_, &*cloud_}) {  // dc dialled, cloud accepted
    auto peers = site->get("/v1/peers");
    ASSERT_TRUE(peers) << peers.error().describe();
    ASSERT_FALSE((*peers)["peers"].empty()) << peers->dump();
    EXPECT_NEAR((*peers)["peers"][0].value("bandwidth_mbps", 0.0), 40.0, 0.01) << peers->dump();
  }
  const auto back = migrateAndWait(*cloud_, "web1", "dc");  // sent by the accepting side
  ASSERT_EQ(back.value("phase", ""), "done") << back.dump(2);
  for (const auto* m : {&there, &back}) {
    const auto& r = (*m)["report"];
    const double secs = r.value("total_s", 0.0);
    const double mbits = static_cast<double>(r.value("wan_bytes", uint64_t{0})) * 8 / 1e6;
    ASSERT_GT(secs, 0.0) << r.dump(2);
    // A token bucket allows one burst (1/50 s of the rate) beyond it: 5 % covers that.
    EXPECT_LE(mbits / secs, 40.0 * 1.05) << mbits << " Mbit in " << secs << " s";
    EXPECT_GT(mbits, 16 * 8.0) << r.dump(2);  // the disk data went through the cap
  }
  const std::string check = execOut(*conn_, "vguest-diskpat check /dev/vdb 5 0 16");
  EXPECT_EQ(check.rfind("PASS", 0), 0U) << check;
}

// The VM's SLA caps its migrations (MaxMigrationMbps 40): an operator asking for more gets the
// SLA's cap, one asking for less gets theirs; the report says which applied, and the bytes
// over the WAN stay under it. (Uncapped, the lan profile carries ten times as much.)
TEST_F(TestbedMigration, TheSlasBandwidthCapIsACeilingForTheOperatorsCap) {
  StateDir work;
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  const std::string ova = work.path() + "/capped.ova";
  if (guest != nullptr && fs::exists(fs::path(guest) / "test-guest.ova")) {
    fs::copy_file(fs::path(guest) / "test-guest.ova", ova);
    ASSERT_TRUE(runCapture({VANDRA_CLI_PATH, "ovf", "sla", "set", ova, "max-migration-mbps=40"}));
  }
  bringUp("lan", ova);
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 16"));
  const auto there = migrateAndWait(*dc_, "web1", "cloud", {{"bandwidth_mbps", 1000}});
  ASSERT_EQ(there.value("phase", ""), "done") << there.dump(2);
  const auto back = migrateAndWait(*cloud_, "web1", "dc", {{"bandwidth_mbps", 30}});
  ASSERT_EQ(back.value("phase", ""), "done") << back.dump(2);
  for (const auto& [m, cap, by] :
       {std::tuple{&there, 40.0, "sla"}, std::tuple{&back, 30.0, "operator"}}) {
    const auto& r = (*m)["report"];
    EXPECT_NEAR(r.value("bandwidth_cap_mbps", 0.0), cap, 0.01) << r.dump(2);
    EXPECT_EQ(r.value("bandwidth_cap_by", ""), by);
    const double secs = r.value("total_s", 0.0);
    const double mbits = static_cast<double>(r.value("wan_bytes", uint64_t{0})) * 8 / 1e6;
    ASSERT_GT(secs, 0.0) << r.dump(2);
    // QEMU's own limiters (the mirror's speed, max-bandwidth) plus the last pages at the
    // switchover, which are sent uncapped: 10 % over the cap at most.
    EXPECT_LE(mbits / secs, cap * 1.10) << mbits << " Mbit in " << secs << " s";
    EXPECT_GT(mbits, 16 * 8.0) << r.dump(2);
    std::cout << "cap " << cap << " Mbit/s (" << by << "): " << mbits << " Mbit in " << secs
              << " s = " << mbits / secs << " Mbit/s\n";
  }
  const std::string check = execOut(*conn_, "vguest-diskpat check /dev/vdb 5 0 16");
  EXPECT_EQ(check.rfind("PASS", 0), 0U) << check;
}

// Cancel mid-mirror (the migration capped so the disks take minutes): the VM runs on at dc,
// on the same QEMU, its data intact; the target keeps nothing. A second migration of the
// same VM while one runs is refused (busy); afterwards the VM migrates normally.
TEST_F(TestbedMigration, CancelMidMirrorRollsBackAndLeavesNothingAtTarget) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 32"));
  const std::string id = beginCapped(4, "mirror_disks");
  auto second = dc_->post("/v1/vms/web1/migrate", {{"to", "cloud"}});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::Busy);
  auto c = dc_->post("/v1/migrations/" + id + "/cancel", nlohmann::json::object());
  ASSERT_TRUE(c) << c.error().describe();
  const auto end = endOf(id, *dc_);
  ASSERT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  EXPECT_NE(end.value("error", "").find("ancel"), std::string::npos) << end.dump(2);
  expectRunningAtDc("5 0 32");
  // A cancelled migration cannot be cancelled again.
  auto again = dc_->post("/v1/migrations/" + id + "/cancel", nlohmann::json::object());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::IllegalTransition);
  expectCloudEmpty();
  auto theirs = cloud_->get("/v1/migrations/" + id);
  ASSERT_TRUE(theirs) << theirs.error().describe();
  EXPECT_EQ((*theirs)["phase"], "rolled_back");
  // cloud held frames for web1 from prepare on, and let go of them on the rollback.
  const auto& dropped = (*theirs)["report"]["lan_drop"];
  EXPECT_FALSE(dropped.contains("error")) << theirs->dump(2);
  EXPECT_EQ(dropped.value("macs", nlohmann::json::array()).size(), 1U) << theirs->dump(2);
  const auto out = migrateAndWait(*dc_, "web1", "cloud");
  EXPECT_EQ(out.value("phase", ""), "done") << out.dump(2);
}

// Cancel during the RAM pre-copy (a guest dirtying faster than the capped link, no
// auto-converge: it would never converge): the source resumes, its memory intact.
TEST_F(TestbedMigration, CancelDuringRamPrecopyKeepsTheGuestsMemory) {
  const std::string id = intoRamPrecopy();
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  auto c = dc_->post("/v1/migrations/" + id + "/cancel", nlohmann::json::object());
  ASSERT_TRUE(c) << c.error().describe();
  const auto end = endOf(id, *dc_);
  ASSERT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  expectRunningAtDc("");
  expectMemoryIntact();
  expectCloudEmpty();
}

// Cancelled at once, while still in preflight or preparing the target: nothing of it stays.
TEST_F(TestbedMigration, CancelBeforeTheMirrorsChangesNothing) {
  bringUp("wan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  auto begun = dc_->post("/v1/vms/web1/migrate", {{"to", "cloud"}});
  ASSERT_TRUE(begun) << begun.error().describe();
  const std::string id = (*begun)["id"];
  auto c = dc_->post("/v1/migrations/" + id + "/cancel", nlohmann::json::object());
  ASSERT_TRUE(c) << c.error().describe();
  const auto end = endOf(id, *dc_);
  ASSERT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  EXPECT_NE(end.value("error", "").find("Cancelled"), std::string::npos) << end.dump(2);
  // It never got to the mirrors: the timeline holds only preflight and prepare_target.
  for (const auto& t : end["timeline"]) {
    const std::string phase = t.value("phase", "");
    EXPECT_TRUE(phase == "preflight" || phase == "prepare_target" || phase == "rolling_back" ||
                phase == "rolled_back")
        << end.dump(2);
  }
  expectRunningAtDc("");
  expectCloudEmpty();
}

// The source's agent crashes during the RAM pre-copy and comes back: QEMU's migration
// failed with its socket, the recovery resumes nothing that runs and rolls back; the memory
// is intact and cloud cleans itself up.
TEST_F(TestbedMigration, SourceAgentRestartedDuringRamRollsBack) {
  const std::string id = intoRamPrecopy();
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  auto restarted = restartAgent(tb_.state_dir, "dc", /*crash=*/true);
  ASSERT_TRUE(restarted) << restarted.error().describe();
  auto rec = dc_->get("/v1/migrations/" + id);  // recovery ran before the API answers
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ((*rec)["phase"], "rolled_back") << rec->dump(2);
  expectRunningAtDc("");
  expectMemoryIntact();
  expectCloudEmpty();
}

// ---- an agent that dies inside the switchover (a failpoint: a window of a few hundred ms) ----

// Starts @p site's agent again with failpoint @p name armed, begins a migration of web1 to
// cloud, waits until that agent has killed itself at the failpoint (its log says so), and
// starts it again as recorded. Returns the migration's id ("" after a failure).
std::string TestbedMigration::killedAt(const std::string& site, const std::string& name,
                                       bool restart) {
  auto armed = restartAgent(tb_.state_dir, site, /*crash=*/true, {"--failpoint", name});
  if (!armed) {
    ADD_FAILURE() << armed.error().describe();
    return "";
  }
  const agent::QemuPid dying{*armed, agent::processStartTime(*armed)};
  auto begun = dc_->post("/v1/vms/web1/migrate", {{"to", "cloud"}});
  if (!begun) {
    ADD_FAILURE() << begun.error().describe();
    return "";
  }
  const std::string id = (*begun)["id"];
  if (auto gone = agent::waitForExit(dying, 300s); !gone) {
    ADD_FAILURE() << "the " << site << " agent did not reach failpoint " << name << ": "
                  << gone.error().describe();
    return id;
  }
  const SiteInfo& s = site == "dc" ? tb_.dc : tb_.cloud;
  std::ifstream in(s.site_dir + "/agent.log", std::ios::binary);
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("failpoint " + name + " reached"), std::string::npos)
      << "the agent died of something else";
  if (!restart) {
    return id;
  }
  auto again = restartAgent(tb_.state_dir, site, /*crash=*/false);
  if (!again) {
    ADD_FAILURE() << again.error().describe();
  }
  return id;
}

// The source's agent dies while the guest is paused for its switchover (before QEMU's
// migration completes). The restarted agent asks cloud, which cleaned up when the tunnel
// died and never started the guest: the source resumes it, memory and disk intact.
TEST_F(TestbedMigration, SourceAgentKilledWhileTheGuestIsPausedForTheSwitchoverRollsBack) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
  ASSERT_NO_FATAL_FAILURE(startWorkload());
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 16"));
  const std::string id = killedAt("dc", "source-paused");
  ASSERT_FALSE(HasFatalFailure());
  const auto end = endOf(id, *dc_);
  EXPECT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  EXPECT_NE(end.value("error", "").find("never started the guest"), std::string::npos)
      << end.dump(2);
  expectRunningAtDc("5 0 16");
  expectMemoryIntact();
  expectCloudEmpty();
}

// The source's agent dies after QEMU's migration completed, before it told cloud to start the
// guest: cloud holds the whole state but never ran it. The restarted agent hears so and lets
// its own QEMU continue (its disks were never switched away).
TEST_F(TestbedMigration, SourceAgentKilledAfterQemuCompletedRollsBack) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
  ASSERT_NO_FATAL_FAILURE(startWorkload());
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 16"));
  const std::string id = killedAt("dc", "source-completed");
  ASSERT_FALSE(HasFatalFailure());
  const auto end = endOf(id, *dc_);
  EXPECT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  expectRunningAtDc("5 0 16");
  expectMemoryIntact();
  expectCloudEmpty();
}

// The source's agent dies just after cloud answered `started`, before writing it down. The
// restarted agent asks cloud, hears the guest runs there, stops its own copy and confirms:
// done at both sites, the VM at cloud with its memory, reached through the stretched LAN.
TEST_F(TestbedMigration, SourceAgentKilledAfterTheTargetStartedTheGuestFinishesTheMigration) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
  ASSERT_NO_FATAL_FAILURE(startWorkload());
  const std::string id = killedAt("dc", "source-target-started");
  ASSERT_FALSE(HasFatalFailure());
  expectFinishedAtCloud(id);
}

// The target's agent dies after writing switchover, before starting the guest. The source
// hears nothing back: it keeps the guest paused (it cannot know the guest does not run at
// cloud) and asks until cloud, restarted, has cleaned up and says it never started it.
TEST_F(TestbedMigration, TargetAgentKilledBeforeStartingTheGuestRollsBackOnItsWord) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
  ASSERT_NO_FATAL_FAILURE(startWorkload());
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 16"));
  const std::string id = killedAt("cloud", "target-before-start");
  ASSERT_FALSE(HasFatalFailure());
  const auto end = endOf(id, *dc_);
  EXPECT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  ASSERT_TRUE(end["report"].contains("settle")) << end.dump(2);
  EXPECT_EQ(end["report"]["settle"].back().value("peer", ""), "not_started") << end.dump(2);
  auto theirs = cloud_->get("/v1/migrations/" + id);
  ASSERT_TRUE(theirs) << theirs.error().describe();
  EXPECT_EQ((*theirs)["phase"], "rolled_back");
  expectRunningAtDc("5 0 16");
  expectMemoryIntact();
  expectCloudEmpty();
}

// The source's agent dies after cloud started the guest and stays down: cloud waits for its
// confirm (here 3 s, --confirm-timeout-s), then closes the migration itself, the guest
// running on. When dc comes back it asks, hears `done`, and releases its paused copy.
TEST_F(TestbedMigration, ASourceThatNeverConfirmsLeavesTheTargetToCloseTheMigration) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  auto cloud_agent =
      restartAgent(tb_.state_dir, "cloud", /*crash=*/false, {"--confirm-timeout-s", "3"});
  ASSERT_TRUE(cloud_agent) << cloud_agent.error().describe();
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
  const std::string id = killedAt("dc", "source-target-started", /*restart=*/false);
  ASSERT_FALSE(HasFatalFailure());
  // cloud's own record: confirm until the timeout, then done (polled through its event log).
  nlohmann::json theirs;
  uint64_t since = 0;
  for (int i = 0; i < 30; ++i) {
    auto m = cloud_->get("/v1/migrations/" + id);
    ASSERT_TRUE(m) << m.error().describe();
    theirs = *m;
    if (theirs["phase"] == "done") {
      break;
    }
    auto ev = cloud_->get("/v1/vms/web1/events?wait_ms=2000&since=" + std::to_string(since));
    if (ev && !(*ev)["events"].empty()) {
      since = (*ev)["events"].back()["seq"].get<uint64_t>();
    }
  }
  ASSERT_EQ(theirs["phase"], "done") << theirs.dump(2);
  EXPECT_NE(theirs.value("error", "").find("did not confirm within 3 s"), std::string::npos)
      << theirs.dump(2);
  EXPECT_EQ(theirs["report"].value("closed_unconfirmed", false), true);
  // The guest runs at cloud meanwhile (dc's clients reach it again once dc's agent, which
  // carries the stretched LAN, is back).
  auto there = cloud_->get("/v1/vms/web1");
  ASSERT_TRUE(there) << there.error().describe();
  EXPECT_EQ((*there)["state"], "running");
  auto again = restartAgent(tb_.state_dir, "dc", /*crash=*/false);
  ASSERT_TRUE(again) << again.error().describe();
  expectFinishedAtCloud(id);
}

// The target's agent dies just after it started the guest, before writing confirm: the guest
// has run at cloud, so the source's paused copy is stale. The restarted cloud agent finds its
// QEMU running the guest and adopts it (confirm); the source, which kept its copy paused and
// asked, hears so and releases it: done at both sites, the VM at cloud with its memory.
TEST_F(TestbedMigration, TargetAgentKilledAfterStartingTheGuestAdoptsItAndFinishes) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
  const std::string id = killedAt("cloud", "target-started");
  ASSERT_FALSE(HasFatalFailure());
  expectFinishedAtCloud(id);
  auto events = cloud_->get("/v1/vms/web1/events?since=0");
  ASSERT_TRUE(events) << events.error().describe();
  EXPECT_NE(events->dump().find("adopted after a restart"), std::string::npos) << events->dump(2);
}

// The target's agent dies on receiving `confirm`, before writing done: the guest runs on at
// cloud (QEMU survives its agent), the source's confirm finds no one. The restarted cloud
// agent keeps the guest (confirm, QEMU alive), and the source's confirm, sent again on a new
// tunnel, finishes the migration at both sites.
TEST_F(TestbedMigration, TargetAgentKilledBeforeConfirmingKeepsTheGuestAndFinishes) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
  const std::string id = killedAt("cloud", "target-before-confirmed");
  ASSERT_FALSE(HasFatalFailure());
  expectFinishedAtCloud(id);
}

// Without auto-converge a guest that dirties its RAM faster than the link carries it is
// given up once the downtime limit is at its maximum (when QEMU's rates say so, or after
// kGiveUpPasses passes), with the rates in the error, instead of running into the time cap.
TEST_F(TestbedMigration, RamThatCannotConvergeIsGivenUpWithTheRates) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-mempat start 32 9"));
  auto spawned = conn_->command("SPAWN vguest-dirtier 64 40", 30s);
  ASSERT_TRUE(spawned && spawned->rfind("PID ", 0) == 0);
  // A fixed limit (the operator's): judged after the first passes, no raises first.
  const std::string id =
      beginCapped(80, "precopy_ram",
                  {{"auto_converge", false}, {"downtime_limit_ms", 300}, {"max_total_s", 600}});
  const auto end = endOf(id, *dc_);
  ASSERT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  const std::string why = end.value("error", "");
  EXPECT_NE(why.find("does not converge"), std::string::npos) << why;
  EXPECT_NE(why.find("auto-converge is off"), std::string::npos) << why;
  EXPECT_NE(why.find(" MB/s"), std::string::npos) << why;
  expectRunningAtDc("");
  expectMemoryIntact();
  expectCloudEmpty();
}

// A downtime budget the link cannot meet (the switchover alone costs more) is refused at
// preflight, with the numbers; nothing changes at either site.
TEST_F(TestbedMigration, ADowntimeBudgetTheLinkCannotMeetIsRefused) {
  StateDir work;
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  const std::string ova = work.path() + "/tight.ova";
  if (guest != nullptr && fs::exists(fs::path(guest) / "test-guest.ova")) {
    fs::copy_file(fs::path(guest) / "test-guest.ova", ova);
    ASSERT_TRUE(runCapture({VANDRA_CLI_PATH, "ovf", "sla", "set", ova, "downtime-budget-ms=100"}));
  }
  bringUp("wan", ova);
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  const auto end = migrateAndWait(*dc_, "web1", "cloud");
  EXPECT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  const std::string why = end.value("error", "");
  EXPECT_NE(why.find("downtime budget of 100 ms cannot be met"), std::string::npos) << end.dump(2);
  EXPECT_NE(why.find("ms measured"), std::string::npos) << why;
  EXPECT_GE(end["report"]["downtime_plan"].value("rtt_ms", 0.0), 40.0) << end.dump(2);
  expectRunningAtDc("");
  expectCloudEmpty();
}

// The target's QEMU dies during the RAM pre-copy: the source resumes, its memory intact.
TEST_F(TestbedMigration, TargetQemuKilledDuringRamRollsBack) {
  const std::string id = intoRamPrecopy();
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  auto incoming = cloud_->get("/v1/vms/web1");
  ASSERT_TRUE(incoming) << incoming.error().describe();
  ASSERT_EQ(::kill((*incoming)["pid"].get<pid_t>(), SIGKILL), 0);  // the pid the agent reported
  const auto end = endOf(id, *dc_);
  ASSERT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  expectRunningAtDc("");
  expectMemoryIntact();
  expectCloudEmpty();
}

// The WAN goes down during the RAM pre-copy: the source rolls back and resumes.
TEST_F(TestbedMigration, WanCutDuringRamRollsBack) {
  const std::string id = intoRamPrecopy();
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  ASSERT_TRUE(cutWan(tb_.state_dir, true));
  const auto end = endOf(id, *dc_);
  EXPECT_TRUE(end.value("phase", "") == "rolled_back" || end.value("phase", "") == "failed")
      << end.dump(2);
  ASSERT_TRUE(cutWan(tb_.state_dir, false));
  expectRunningAtDc("");
  expectMemoryIntact();
  expectCloudEmpty();
}

// The target's disk fills up mid-mirror (its VM folder on a 24 MiB tmpfs this test mounts in
// the cloud agent's mount namespace: `ip netns exec` gave it its own): the mirror fails, the
// source rolls back, the target removes what it wrote.
TEST_F(TestbedMigration, TargetDiskFullRollsBack) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  const std::string vms = tb_.cloud.site_dir + "/agent/images/vms";
  fs::create_directories(vms);
  const std::string agent = std::to_string(tb_.cloud.agent_pid);
  ASSERT_TRUE(runCapture({"nsenter", "-t", agent, "-m", "--", "mount", "-t", "tmpfs", "-o",
                          "size=24m", "vandra-test-full", vms}));
  auto unmount = defer([&] {
    (void)runCapture({"nsenter", "-t", agent, "-m", "--", "umount", vms});
  });
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 48"));
  const auto end = migrateAndWait(*dc_, "web1", "cloud");
  ASSERT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  expectRunningAtDc("5 0 48");
  expectCloudEmpty();
  auto left = runCapture({"nsenter", "-t", agent, "-m", "--", "ls", "-A", vms});
  ASSERT_TRUE(left);
  EXPECT_EQ(*left, "") << "the target left disk images behind";
}

// The target's QEMU dies mid-mirror: the source rolls back; nothing is left at the target.
TEST_F(TestbedMigration, TargetQemuKilledDuringMirrorRollsBack) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 32"));
  const std::string id = beginCapped(4, "mirror_disks");
  auto incoming = cloud_->get("/v1/vms/web1");
  ASSERT_TRUE(incoming) << incoming.error().describe();
  EXPECT_EQ((*incoming)["state"], "incoming");
  const pid_t target_qemu = (*incoming)["pid"].get<pid_t>();
  ASSERT_GT(target_qemu, 0);
  ASSERT_EQ(::kill(target_qemu, SIGKILL), 0);  // the pid the agent reported: ours to end
  const auto end = endOf(id, *dc_);
  ASSERT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  expectRunningAtDc("5 0 32");
  expectCloudEmpty();
}

// The WAN goes down mid-mirror: the tunnel's keepalive finds it, the source rolls back (the
// target cannot be told; it cleans up by itself when its end of the tunnel dies).
TEST_F(TestbedMigration, WanCutMidMirrorRollsBackAndTargetCleansItself) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 32"));
  const std::string id = beginCapped(4, "mirror_disks");
  ASSERT_TRUE(cutWan(tb_.state_dir, true));
  const auto end = endOf(id, *dc_);
  // Rolled back at the source; "failed" would mean it could not confirm the target's clean-up.
  EXPECT_TRUE(end.value("phase", "") == "rolled_back" || end.value("phase", "") == "failed")
      << end.dump(2);
  EXPECT_FALSE(end.value("error", "").empty());
  ASSERT_TRUE(cutWan(tb_.state_dir, false));
  expectRunningAtDc("5 0 32");
  expectCloudEmpty();
  // With the WAN back, the VM migrates.
  const auto out = migrateAndWait(*dc_, "web1", "cloud");
  EXPECT_EQ(out.value("phase", ""), "done") << out.dump(2);
}

// The source agent crashes mid-mirror and comes back: its recovery cancels what the source
// QEMU still ran and resumes it; the target cleaned up when the tunnel died.
TEST_F(TestbedMigration, SourceAgentRestartedMidMirrorRollsBack) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 32"));
  const std::string id = beginCapped(4, "mirror_disks");
  auto restarted = restartAgent(tb_.state_dir, "dc", /*crash=*/true);
  ASSERT_TRUE(restarted) << restarted.error().describe();
  auto rec = dc_->get("/v1/migrations/" + id);  // recovery ran before the API answers
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ((*rec)["phase"], "rolled_back") << rec->dump(2);
  expectRunningAtDc("5 0 32");
  auto jobs = dc_->get("/v1/vms/web1/events?since=0&max=1000");
  ASSERT_TRUE(jobs);
  bool recovered = false;
  for (const auto& e : (*jobs)["events"]) {
    recovered = recovered || e.value("name", "") == "migration-recovered";
  }
  EXPECT_TRUE(recovered) << jobs->dump(2);
  expectCloudEmpty();
}

// The target agent crashes mid-mirror and comes back: it cleans its incoming VM up; the
// source rolls back and tells it again over a new tunnel.
TEST_F(TestbedMigration, TargetAgentRestartedMidMirrorRollsBack) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  EXPECT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 32"));
  const std::string id = beginCapped(4, "mirror_disks");
  auto restarted = restartAgent(tb_.state_dir, "cloud", /*crash=*/true);
  ASSERT_TRUE(restarted) << restarted.error().describe();
  const auto end = endOf(id, *dc_);
  EXPECT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  expectRunningAtDc("5 0 32");
  expectCloudEmpty();
  auto theirs = cloud_->get("/v1/migrations/" + id);
  ASSERT_TRUE(theirs) << theirs.error().describe();
  EXPECT_EQ((*theirs)["phase"], "rolled_back");
}

// The target site's certificate is revoked (its CA's CRL, written by `vandra pki revoke`) and
// dc checks peers against that CRL: the migration is refused in the handshake, before any
// byte of VM state; nothing happens at either site.
TEST_F(TestbedMigration, RevokedPeerIsRefusedBeforeAnyVmState) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  const std::string cloud_pki = tb_.cloud.site_dir + "/pki";
  auto revoked = runCapture(
      {VANDRA_CLI_PATH, "pki", "revoke", "--dir", cloud_pki, "--cert", cloud_pki + "/site.crt"});
  ASSERT_TRUE(revoked) << revoked.error().describe();
  auto restarted =
      restartAgent(tb_.state_dir, "dc", /*crash=*/false, {"--tunnel-crl", cloud_pki + "/ca.crl"});
  ASSERT_TRUE(restarted) << restarted.error().describe();
  const auto end = migrateAndWait(*dc_, "web1", "cloud");
  EXPECT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  EXPECT_NE(end.value("error", "").find("revoked"), std::string::npos) << end.dump(2);
  expectRunningAtDc("");
  auto theirs = cloud_->get("/v1/migrations");
  ASSERT_TRUE(theirs);
  EXPECT_TRUE((*theirs)["migrations"].empty()) << theirs->dump(2);
  expectCloudEmpty();
}

// A target site whose certificate the source no longer trusts is refused in the handshake,
// before any byte of VM state: nothing happens at either site.
TEST_F(TestbedMigration, UntrustedPeerIsRefusedBeforeAnyVmState) {
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  // dc stops trusting cloud's CA (it trusts only its own now).
  fs::copy_file(tb_.dc.site_dir + "/pki/ca.crt", tb_.dc.site_dir + "/pki/peers.pem",
                fs::copy_options::overwrite_existing);
  const auto end = migrateAndWait(*dc_, "web1", "cloud");
  EXPECT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  EXPECT_NE(end.value("error", "").find("ertificate"), std::string::npos) << end.dump(2);
  expectRunningAtDc("");
  auto theirs = cloud_->get("/v1/migrations");
  ASSERT_TRUE(theirs);
  EXPECT_TRUE((*theirs)["migrations"].empty()) << theirs->dump(2);
  expectCloudEmpty();
}

// A VM whose SLA allows only CH may not go to cloud (EU): refused at preflight, nothing
// changes at either site.
TEST_F(TestbedMigration, MigrationTheSlaForbidsIsRefusedAndChangesNothing) {
  StateDir work;
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  const std::string ova = work.path() + "/ch-only.ova";
  if (guest != nullptr && fs::exists(fs::path(guest) / "test-guest.ova")) {
    fs::copy_file(fs::path(guest) / "test-guest.ova", ova);
    ASSERT_TRUE(runCapture({VANDRA_CLI_PATH, "ovf", "sla", "set", ova, "jurisdictions=CH"}));
  }
  bringUp("lan", ova);
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  const auto end = migrateAndWait(*dc_, "web1", "cloud");
  EXPECT_EQ(end.value("phase", ""), "rolled_back") << end.dump(2);
  EXPECT_NE(end.value("error", "").find("[\"CH\"]"), std::string::npos) << end.dump(2);
  expectRunningAtDc("");
  expectCloudEmpty();
}

TEST(Testbed, DownRemovesOnlyWhatIsRecorded) {
  SKIP_UNLESS_TESTBED_CAN_RUN();
  StateDir dir;
  // A half-finished `up` as a crash leaves it: one recorded namespace that exists, one
  // recorded but never created, a recorded process that no longer exists; plus a namespace
  // of the same shape that is NOT recorded and must survive.
  const std::string made = "vtb-t" + std::to_string(::getpid() % 100000) + "-dc";
  const std::string foreign = "vtb-t" + std::to_string(::getpid() % 100000) + "-x";
  auto cleanup = defer([&] {
    for (const auto& n : {made, foreign}) {
      if (netnsExists(n)) {
        (void)runCapture({"ip", "netns", "del", n});
      }
    }
  });
  ASSERT_TRUE(runCapture({"ip", "netns", "add", made}));
  ASSERT_TRUE(runCapture({"ip", "netns", "add", foreign}));
  nlohmann::json state = {{"version", 1},
                          {"id", "t"},
                          {"profile", "wan"},
                          {"complete", false},
                          {"resources",
                           {{{"kind", "netns"}, {"name", made}},
                            {{"kind", "netns"}, {"name", made + "2"}},
                            {{"kind", "process"},
                             {"name", "wanem"},
                             {"pid", 999999},
                             {"start_time", 1},
                             {"marker", "--tag vtb-t"}}}}};
  std::ofstream(stateFilePath(dir.path())) << state.dump();
  auto st = status(dir.path());
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->present);
  EXPECT_FALSE(st->complete);
  EXPECT_FALSE(st->healthy);
  ASSERT_TRUE(down(dir.path()));
  EXPECT_FALSE(netnsExists(made));
  EXPECT_TRUE(netnsExists(foreign));
  EXPECT_FALSE(fs::exists(stateFilePath(dir.path())));
}

TEST(Testbed, SecondUpInSameStateDirIsRefused) {
  SKIP_UNLESS_TESTBED_CAN_RUN();
  StateDir dir;
  auto first = up(optionsFor("lan", dir.path()));
  ASSERT_TRUE(first) << first.error().describe();
  auto second = up(optionsFor("lan", dir.path()));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::AlreadyExists);
  auto st = status(dir.path());
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->healthy) << "the refused up must not disturb the first";
  const auto recorded = readState(dir.path());
  ASSERT_TRUE(down(dir.path()));
  expectNothingLeft(recorded, dir.path());
}

std::set<std::string> testbedNamespaces() {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("vtb-", 0) == 0) {
      out.insert(n);
    }
  }
  return out;
}

TEST(Testbed, FailedUpLeavesNothing) {
  SKIP_UNLESS_TESTBED_CAN_RUN();
  StateDir dir;
  const auto before = testbedNamespaces();
  TestbedOptions o = optionsFor("wan", dir.path());
  o.wanem_path = "/bin/false";  // starts, ends before it is ready
  auto tb = up(o);
  ASSERT_FALSE(tb);
  EXPECT_EQ(tb.error().code, ErrorCode::Subprocess) << tb.error().describe();
  EXPECT_FALSE(fs::exists(stateFilePath(dir.path())));
  EXPECT_TRUE(fs::is_empty(dir.path()));
  for (const auto& n : testbedNamespaces()) {
    EXPECT_TRUE(before.count(n) == 1) << "left behind: " << n;
  }
}

TEST(Testbed, NoStateIsNothingToDo) {
  StateDir dir;
  auto st = status(dir.path());
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->present);
  EXPECT_TRUE(down(dir.path()));
}

}  // namespace
}  // namespace vandra::testbed
