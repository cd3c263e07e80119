// Testbed integration: up with a real profile, RTT with ping and one TCP stream's throughput
// through the user-space WAN emulator (printed, asserted against the profile), then down
// with nothing left. Also: down after the emulator is killed, after `up` crashed half-way,
// and never touching what the state file does not record; the agents run the test guest.
// The live migrations are in testbed_migration_test.cc and testbed_fault_test.cc. Needs root
// and network namespaces; skipped otherwise (a failure in CI). Every namespace and process is
// removed also on failure.
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
#include "testbed_support.h"
#include "vandra/agent/agent_client.h"
#include "vandra/agent/agent_service.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/agent/recovery.h"
#include "vandra/common/ethernet.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/testbed/arrival_rate.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/guest_workload.h"
#include "vandra/testbed/wan_emulator.h"

namespace vandra::testbed {
namespace {

using namespace support;  // NOLINT: the helpers every testbed test uses
namespace fs = std::filesystem;
using namespace std::chrono_literals;

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
  stats.steady_mbit = steadyBytesPerSecond(samples) * 8 / 1e6;
  return stats;
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
  auto t = tcpStream(tb->client_netns, tb->site("cloud-eu")->netns, "10.20.0.1", tcp_for);
  ASSERT_TRUE(t) << t.error().describe();
  std::printf("[ profile  ] %s: %.0f Mbit/s, RTT %.1f ms\n", profile_name.c_str(), rate_mbit,
              rtt_ms);
  std::printf(
      "[ ping     ] client -> cloud-eu: %d/20 received, rtt min/avg/max %.2f/%.2f/%.2f ms\n",
      p->received, p->min_ms, p->avg_ms, p->max_ms);
  std::printf(
      "[ tcp      ] one stream client -> cloud-eu: %.1f MB in %.2f s = %.1f Mbit/s "
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
  EXPECT_GT(tb->site("dc")->agent_pid, 0);
  EXPECT_EQ(tb->site("cloud-eu")->agent_endpoint, "10.20.0.1:8443");
  ASSERT_EQ(tb->links.size(), 1U);
  ASSERT_GT(tb->links[0].wanem_pid, 0);
  ASSERT_EQ(::kill(tb->links[0].wanem_pid, SIGKILL), 0);
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
  auto dc = clientFor(*tb->site("dc"), *tb->site("dc"));

  // Each site has its own CA: the cloud-eu operator's certificate is refused at dc.
  auto foreign = clientFor(*tb->site("dc"), *tb->site("cloud-eu")).get("/v1/host");
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code, ErrorCode::Io);
  ASSERT_TRUE(dc.get("/v1/host"));
  ASSERT_TRUE(clientFor(*tb->site("cloud-eu"), *tb->site("cloud-eu")).get("/v1/host"));

  const auto t_import = Clock::now();
  const std::string ova = fs::absolute(fs::path(guest) / "test-guest.ova").string();
  auto imported = importUploaded(dc, "web1", ova);
  ASSERT_TRUE(imported) << imported.error().describe();
  EXPECT_EQ((*imported)["state"], "created");
  auto started = dc.post("/v1/vms/web1/start", nlohmann::json::object());
  ASSERT_TRUE(started) << started.error().describe();
  EXPECT_EQ((*started)["state"], "running");
  const pid_t qemu = (*started)["pid"].get<pid_t>();
  const uint64_t qemu_start = processStartTimeForTest(qemu);
  auto links =
      runCapture({"ip", "-n", tb->site("dc")->netns, "-o", "link", "show", "master", "br0"});
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
  EXPECT_NE(*restarted, tb->site("dc")->agent_pid);
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
