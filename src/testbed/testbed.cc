// Testbed up/down/status with `ip` (iproute2) through Subprocess. The state file is the only
// memory: each resource is appended to it (and the file replaced atomically) before the
// resource is created, so `down` after a crash of `up`, of the emulator or of the machine's
// caller removes exactly what was made. Processes are identified by pid + start time +
// command line, never by name.
//
//   client netns            dc netns                       cloud netns
//   eth0 10.10.0.100 --veth-- client0 ]
//                           br0 10.10.0.1/24                br0 10.20.0.1/24
//                           wan0 10.255.0.1 ==(vandra-wanem, root netns)== wan0 10.255.0.2
//                           route 10.20.0.0/24 dev wan0     route 10.10.0.0/24 dev wan0
#include "vandra/testbed/testbed.h"

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "testbed_internal.h"
#include "vandra/common/netns.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/pki/pki.h"
#include "vandra/testbed/wan_emulator.h"

extern char** environ;

namespace vandra::testbed {

using namespace internal;

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kStateFile = "testbed.json";
constexpr auto kAgentReadyTimeout = 60s;  // an ASan agent opening its registry on a loaded machine

// ---- names and commands ---------------------------------------------------------------

TestbedInfo makeInfo(const std::string& id, const std::string& profile, const std::string& dir) {
  TestbedInfo t;
  t.id = id;
  t.profile = profile;
  t.state_dir = dir;
  const std::string prefix = "vtb-" + id + "-";
  auto makeSite = [&](const char* name, const char* lan, const char* wan, const char* peer) {
    SiteInfo s;
    s.name = name;
    s.netns = prefix + name;
    s.bridge = "br0";
    s.lan_address = lan;
    s.wan_device = "wan0";
    s.wan_address = wan;
    s.wan_peer = peer;
    return s;
  };
  t.dc = makeSite("dc", "10.10.0.1/24", "10.255.0.1", "10.255.0.2");
  t.cloud = makeSite("cloud", "10.20.0.1/24", "10.255.0.2", "10.255.0.1");
  t.client_netns = prefix + "client";
  t.client_address = "10.10.0.100";
  for (SiteInfo* site : {&t.dc, &t.cloud}) {
    site->site_dir = (fs::path(dir) / "sites" / site->name).string();
    site->ca_cert = site->site_dir + "/pki/ca.crt";
    site->operator_cert = site->site_dir + "/pki/operator.crt";
    site->operator_key = site->site_dir + "/pki/operator.key";
  }
  return t;
}

std::string hostOf(const std::string& cidr) {
  return cidr.substr(0, cidr.find('/'));
}

// Root-namespace names of the emulator's TUN devices before they move (IFNAMSIZ: 15).
std::string tunName(const std::string& id, char side) {
  return "vtb" + id + side;
}

Result<void> ipArgv(const std::vector<std::string>& argv) {
  VANDRA_TRY(runCapture(argv));
  return {};
}

Result<void> ip(std::initializer_list<std::string> args) {
  std::vector<std::string> argv{"ip"};
  for (const auto& a : args) {
    argv.push_back(a);
  }
  return ipArgv(argv);
}

Result<void> ipIn(const std::string& netns, std::initializer_list<std::string> args) {
  std::vector<std::string> argv{"ip", "-n", netns};
  for (const auto& a : args) {
    argv.push_back(a);
  }
  return ipArgv(argv);
}

bool netnsExists(const std::string& name) {
  struct stat st {};
  return ::stat(("/run/netns/" + name).c_str(), &st) == 0;
}

bool rootLinkExists(const std::string& name) {
  return ::if_nametoindex(name.c_str()) != 0;
}

std::string randomId() {
  std::random_device rd;
  std::ostringstream o;
  o << std::hex;
  for (int i = 0; i < 6; ++i) {
    o << (rd() & 0xFU);
  }
  return o.str();
}

// A companion program: the given path, else $ENV_VAR, else next to the running program
// (installed side by side) or in its build-tree folder (build/apps/<name>/<name>).
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

Result<std::string> findWanem(const std::string& given) {
  return findProgram(given, "VANDRA_WANEM", "vandra-wanem");
}

// ---- up ---------------------------------------------------------------------------------

class Builder {
 public:
  Builder(std::string dir, State& s) : dir_(std::move(dir)), s_(s) {}

  /// Records @p r in the state file; call before creating it.
  Result<Resource*> record(Resource r) {
    s_.resources.push_back(std::move(r));
    VANDRA_TRY(saveState(dir_, s_));
    return &s_.resources.back();
  }
  Result<void> save() { return saveState(dir_, s_); }

 private:
  std::string dir_;
  State& s_;
};

Result<void> makeNamespace(Builder& b, const std::string& name) {
  VANDRA_TRY(b.record({"netns", name, -1, 0, "", {}}));
  VANDRA_TRY(ip({"netns", "add", name}));
  VANDRA_TRY(ipIn(name, {"link", "set", "lo", "up"}));
  // Forwarding for the sites; large TCP buffers for a long fat network; no IPv6 chatter
  // (router solicitations, DAD) on the emulated WAN.
  VANDRA_TRY(
      runCapture({"ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                  "net.ipv4.tcp_rmem=4096 131072 33554432", "net.ipv4.tcp_wmem=4096 65536 33554432",
                  "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}));
  return {};
}

Result<void> makeBridge(const SiteInfo& site) {
  VANDRA_TRY(ipIn(site.netns, {"link", "add", site.bridge, "type", "bridge"}));
  VANDRA_TRY(ipIn(site.netns, {"addr", "add", site.lan_address, "dev", site.bridge}));
  VANDRA_TRY(ipIn(site.netns, {"link", "set", site.bridge, "up"}));
  return {};
}

// Moves the emulator's TUN into the site, names it wan0, addresses it and routes the other
// site's LAN through it.
Result<void> attachWan(const SiteInfo& site, const std::string& tun, const std::string& peer_lan) {
  VANDRA_TRY(ip({"link", "set", "dev", tun, "netns", site.netns}));
  VANDRA_TRY(ipIn(site.netns, {"link", "set", "dev", tun, "name", site.wan_device}));
  VANDRA_TRY(ipIn(site.netns, {"addr", "add", site.wan_address + "/32", "peer",
                               site.wan_peer + "/32", "dev", site.wan_device}));
  VANDRA_TRY(ipIn(site.netns, {"link", "set", "dev", site.wan_device, "txqueuelen", "1000", "up"}));
  VANDRA_TRY(ipIn(site.netns, {"route", "add", peer_lan, "dev", site.wan_device}));
  return {};
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

// Waits until the agent @p pid has written @p port_file (it listens), or reports its end.
Result<void> waitAgentReady(pid_t pid, const std::string& port_file, const std::string& log,
                            const std::string& site) {
  std::error_code ec;
  const auto deadline = Clock::now() + kAgentReadyTimeout;
  while (!fs::exists(port_file, ec)) {
    const auto ps = readProcStat(pid);
    if (!ps || ps->state == 'Z') {
      reapIfChild(pid);
      std::string tail = readSmall(log, 1U << 20).value_or(std::string());
      tail = tail.size() > 400 ? tail.substr(tail.size() - 400) : tail;
      return fail(ErrorCode::Subprocess,
                  "The " + site + " agent ended before it was ready: " + tail);
    }
    if (Clock::now() > deadline) {
      return fail(ErrorCode::Timeout, "The " + site + " agent did not listen within " +
                                          std::to_string(kAgentReadyTimeout.count()) +
                                          " s (log: " + log + ")");
    }
    std::this_thread::sleep_for(50ms);  // vandrad has no ready pipe; its port file is the signal
  }
  return {};
}

// One site's PKI: a site CA (its own: the sites' CAs do not trust each other for the agent
// API) with a certificate for the agent (named by its addresses), one for the operator, and
// the site certificate the site tunnel presents (SAN DNS = the site's name).
Result<void> makeSitePki(Builder& b, const std::string& id, SiteInfo& site) {
  VANDRA_TRY(b.record({"tree", site.site_dir, -1, 0, "", {}}));
  std::error_code ec;
  fs::create_directories(site.site_dir + "/agent", ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot create " + site.site_dir + ": " + ec.message());
  }
  const std::string pki_dir = site.site_dir + "/pki";
  VANDRA_TRY(pki::initCa({pki_dir, "vandra testbed " + id + " site " + site.name + " CA", 30}));
  VANDRA_TRY(pki::issue({.ca_dir = pki_dir,
                         .name = "agent",
                         .role = pki::Role::Both,
                         .dns_names = {"agent." + site.name},
                         .ip_addresses = {hostOf(site.lan_address), site.wan_address},
                         .days = 30,
                         .not_before_offset_s = -300,
                         .group = ""}));
  VANDRA_TRY(pki::issue({.ca_dir = pki_dir,
                         .name = "operator",
                         .role = pki::Role::Client,
                         .dns_names = {},
                         .ip_addresses = {},
                         .days = 30,
                         .not_before_offset_s = -300,
                         .group = ""}));
  VANDRA_TRY(pki::issue({.ca_dir = pki_dir,
                         .name = "site",
                         .role = pki::Role::Both,
                         .dns_names = {site.name},
                         .ip_addresses = {},
                         .days = 30,
                         .not_before_offset_s = -300,
                         .group = ""}));
  return {};
}

// Site @p site trusts @p peer's CA for the site tunnel (pki/peers.pem).
Result<void> trustPeer(const SiteInfo& site, const SiteInfo& peer) {
  std::error_code ec;
  fs::copy_file(peer.site_dir + "/pki/ca.crt", site.site_dir + "/pki/peers.pem",
                fs::copy_options::overwrite_existing, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot write " + site.site_dir + "/pki/peers.pem: " + ec.message());
  }
  return {};
}

std::string testbedAccel() {
  const char* a = std::getenv("VANDRA_TESTBED_ACCEL");
  return a != nullptr && (std::string(a) == "kvm" || std::string(a) == "auto") ? a : "tcg";
}

// The site's agent: a state folder, and vandrad inside the site namespace on the bridge
// address, with the site tunnel on its WAN address and the other site as its peer. Ready
// when it has written its port file; a crash before that is reported with the end of its log.
Result<void> startAgent(Builder& b, const std::string& vandrad,
                        const std::vector<std::string>& extra, double peer_mbps, SiteInfo& site,
                        const SiteInfo& peer) {
  const std::string pki_dir = site.site_dir + "/pki";
  const std::string port_file = site.site_dir + "/agent.port";
  const std::string state = site.site_dir + "/agent";
  std::vector<std::string> argv = {
      "ip", "netns", "exec", site.netns, vandrad, "--state-dir", state, "--listen",
      hostOf(site.lan_address), "--port", std::to_string(kAgentPort), "--port-file", port_file,
      "--tls-ca", pki_dir + "/ca.crt", "--tls-cert", pki_dir + "/agent.crt", "--tls-key",
      pki_dir + "/agent.key", "--bridge", site.bridge, "--site", site.name, "--jurisdiction",
      kSiteJurisdiction, "--tunnel-listen", site.wan_address + ":" + std::to_string(kTunnelPort),
      "--tunnel-cert", pki_dir + "/site.crt", "--tunnel-key", pki_dir + "/site.key", "--tunnel-ca",
      pki_dir + "/peers.pem", "--peer",
      peer.name + "=" + peer.wan_address + ":" + std::to_string(kTunnelPort) +
          (peer_mbps > 0 ? ",mbps=" + std::to_string(peer_mbps) : ""),
      // The stretched site LAN: the test guest's network and the demo's.
      "--network", "vandra-test", "--network", "lan",
      // TCG unless asked: this machine's /dev/kvm starts QEMU but its
      // guests never get past the firmware (docs/testbed.md).
      "--accel", testbedAccel()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const std::string log = site.site_dir + "/agent.log";
  // Marker: the agent's state folder, unique to this testbed and site.
  VANDRA_TRY_ASSIGN(site.agent_pid,
                    startRecorded(b, "agent-" + site.name, argv, "--state-dir " + state, log, -1));
  // `ip netns exec` execs vandrad in place: the pid is the agent's.
  VANDRA_TRY(waitAgentReady(site.agent_pid, port_file, log, site.name));
  site.agent_endpoint = hostOf(site.lan_address) + ":" + std::to_string(kAgentPort);
  return {};
}

std::string formatRate(uint64_t bps) {
  std::ostringstream o;
  o << static_cast<double>(bps) / 1e6;
  return o.str();
}

Result<TestbedInfo> build(const TestbedOptions& o, const Profile& profile, const std::string& wanem,
                          State& state) {
  Builder b(o.state_dir, state);
  TestbedInfo info = makeInfo(state.id, state.profile, o.state_dir);
  VANDRA_TRY(b.save());

  for (const auto& ns : {info.dc.netns, info.cloud.netns, info.client_netns}) {
    VANDRA_TRY(makeNamespace(b, ns));
    // Every connection the testbed carries (agents' tunnel, QEMU's own, the client's) uses
    // the same algorithm: the namespaced default.
    if (!o.congestion.empty()) {
      VANDRA_TRY(runCapture({"ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                             "net.ipv4.tcp_congestion_control=" + o.congestion}));
    }
  }
  VANDRA_TRY_ASSIGN(const std::string cc,
                    runCapture({"ip", "netns", "exec", info.dc.netns, "sysctl", "-n",
                                "net.ipv4.tcp_congestion_control"}));
  state.congestion = cc.substr(0, cc.find_last_not_of(" \n") + 1);
  info.congestion = state.congestion;
  VANDRA_TRY(b.save());
  VANDRA_TRY(makeBridge(info.dc));
  VANDRA_TRY(makeBridge(info.cloud));

  // Client: a veth pair made inside the client namespace, its peer in dc on br0.
  VANDRA_TRY(ipIn(info.client_netns, {"link", "add", "eth0", "type", "veth", "peer", "name",
                                      "client0", "netns", info.dc.netns}));
  VANDRA_TRY(ipIn(info.dc.netns, {"link", "set", "client0", "master", info.dc.bridge, "up"}));
  VANDRA_TRY(ipIn(info.client_netns, {"addr", "add", info.client_address + "/24", "dev", "eth0"}));
  VANDRA_TRY(ipIn(info.client_netns, {"link", "set", "eth0", "up"}));
  VANDRA_TRY(ipIn(info.client_netns, {"route", "add", "default", "via", "10.10.0.1"}));

  // The emulator: TUNs appear in the root namespace (recorded first), then move.
  const std::string tun_a = tunName(state.id, 'a');
  const std::string tun_b = tunName(state.id, 'b');
  VANDRA_TRY(b.record({"link", tun_a, -1, 0, "", {}}));
  VANDRA_TRY(b.record({"link", tun_b, -1, 0, "", {}}));
  std::array<int, 2> pipe_fds{-1, -1};
  if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) {
    return fail(Error::fromErrno("pipe failed"));
  }
  UniqueFd ready_r(pipe_fds[0]);
  UniqueFd ready_w(pipe_fds[1]);
  // Keep the write end away from 0..3 so dup2 onto 3 always clears close-on-exec.
  UniqueFd ready_w_high(::fcntl(ready_w.get(), F_DUPFD_CLOEXEC, 10));
  if (!ready_w_high.valid()) {
    return fail(Error::fromErrno("fcntl failed"));
  }
  ready_w = UniqueFd();
  const LinkParams& l = profile.link;
  const std::string marker = "--tag vtb-" + state.id;
  const std::vector<std::string> argv = {
      wanem,
      "--a",
      tun_a,
      "--b",
      tun_b,
      "--profile",
      profile.name,
      "--rate-mbit",
      formatRate(l.rate_bps),
      "--delay-ms",
      std::to_string(std::chrono::duration<double, std::milli>(l.delay).count()),
      "--loss-pct",
      std::to_string(l.loss * 100.0),
      "--queue-packets",
      std::to_string(l.queue_packets),
      "--queue-bytes",
      std::to_string(l.queue_bytes),
      "--seed",
      std::to_string(o.seed),
      "--ready-fd",
      "3",
      "--tag",
      "vtb-" + state.id};
  const std::string log_path = (fs::path(o.state_dir) / "wanem.log").string();
  VANDRA_TRY_ASSIGN(info.wanem_pid,
                    startRecorded(b, "wanem", argv, marker, log_path, ready_w_high.get()));
  ready_w_high = UniqueFd();
  VANDRA_TRY(waitReady(ready_r.get(), log_path));
  VANDRA_TRY(attachWan(info.dc, tun_a, "10.20.0.0/24"));
  VANDRA_TRY(attachWan(info.cloud, tun_b, "10.10.0.0/24"));

  if (o.agents) {
    VANDRA_TRY_ASSIGN(const std::string vandrad,
                      findProgram(o.agent_path, "VANDRA_AGENT", "vandrad"));
    VANDRA_TRY(makeSitePki(b, state.id, info.dc));
    VANDRA_TRY(makeSitePki(b, state.id, info.cloud));
    VANDRA_TRY(trustPeer(info.dc, info.cloud));
    VANDRA_TRY(trustPeer(info.cloud, info.dc));
    // The agents' tunnel sets its own algorithm on its sockets: it is told the testbed's
    // (unless agent_args choose one).
    std::vector<std::string> agent_args = o.agent_args;
    if (!o.congestion.empty() && std::find(agent_args.begin(), agent_args.end(),
                                           "--tunnel-congestion") == agent_args.end()) {
      agent_args.insert(agent_args.end(), {"--tunnel-congestion", o.congestion});
    }
    VANDRA_TRY(startAgent(b, vandrad, agent_args, o.peer_mbps, info.dc, info.cloud));
    VANDRA_TRY(startAgent(b, vandrad, agent_args, o.peer_mbps, info.cloud, info.dc));
  }
  state.complete = true;
  VANDRA_TRY(b.save());
  return info;
}

}  // namespace

std::string stateFilePath(const std::string& state_dir) {
  return (fs::path(state_dir) / kStateFile).string();
}

bool processMatches(pid_t pid, uint64_t start_time, const std::string& cmdline_marker) {
  if (pid <= 0) {
    return false;
  }
  const auto ps = readProcStat(pid);
  if (!ps || ps->state == 'Z' || ps->state == 'X' || ps->state == 'x') {
    return false;
  }
  if (start_time != 0 && ps->start_time != start_time) {
    return false;  // the pid was reused
  }
  const std::string cmd = cmdlineOf(pid);
  return cmd.find(cmdline_marker) != std::string::npos;
}

Result<UniqueFd> socketInNetns(const std::string& netns, int domain, int type) {
  Result<UniqueFd> out = fail(ErrorCode::Internal, "not run");
  VANDRA_TRY(runInNetns(netns, [&] {
    UniqueFd s(::socket(domain, type | SOCK_CLOEXEC, 0));
    out = s.valid() ? Result<UniqueFd>(std::move(s))
                    : fail(Error::fromErrno("socket in " + netns + " failed"));
  }));
  return out;
}

Result<TestbedInfo> up(const TestbedOptions& o) {
  if (o.state_dir.empty()) {
    return fail(ErrorCode::InvalidArgument, "No state directory given");
  }
  VANDRA_TRY_ASSIGN(const Profile profile, findProfile(o.profile));
  VANDRA_TRY_ASSIGN(const std::string wanem, findWanem(o.wanem_path));
  if (!o.congestion.empty()) {
    VANDRA_TRY(checkCongestion(o.congestion));
  }
  std::error_code ec;
  const bool dir_existed = fs::exists(o.state_dir, ec);
  fs::create_directories(o.state_dir, ec);
  if (ec) {
    Error e(ErrorCode::Io, "Cannot create " + o.state_dir + ": " + ec.message());
    e.sys_errno = ec.value();
    return fail(std::move(e));
  }
  if (fs::exists(stateFilePath(o.state_dir), ec)) {
    return fail(ErrorCode::AlreadyExists,
                "A testbed is already recorded in " + o.state_dir + " (run `testbed down`)");
  }
  State state;
  state.profile = profile.name;
  if (!dir_existed) {
    state.resources.push_back({"dir", o.state_dir, -1, 0, "", {}});  // removed by down when empty
  }
  do {
    state.id = randomId();
  } while (netnsExists("vtb-" + state.id + "-dc") || netnsExists("vtb-" + state.id + "-cloud") ||
           netnsExists("vtb-" + state.id + "-client"));
  auto built = build(o, profile, wanem, state);
  if (!built) {
    Error e = std::move(built).error();
    if (auto undo = down(o.state_dir); !undo) {
      e.secondary.push_back(std::move(undo).error());
    }
    return fail(std::move(e));
  }
  return built;
}

Result<void> checkCongestion(const std::string& name) {
  const std::string list_path = "/proc/sys/net/ipv4/tcp_available_congestion_control";
  auto available = [&] {
    std::ifstream in(list_path);
    std::string line;
    std::getline(in, line);
    return line;
  };
  auto has = [](const std::string& list, const std::string& n) {
    std::istringstream words(list);
    std::string w;
    while (words >> w) {
      if (w == n) {
        return true;
      }
    }
    return false;
  };
  const bool plausible = !name.empty() && name.size() <= 15 &&
                         std::all_of(name.begin(), name.end(), [](unsigned char c) {
                           return std::isalnum(c) != 0 || c == '_';
                         });
  if (plausible && !has(available(), name)) {
    (void)runCapture({"modprobe", "-q", "tcp_" + name});  // bbr, htcp, ... are modules
  }
  if (plausible && has(available(), name)) {
    // A namespace's default may only be an algorithm the host allows (the kernel refuses
    // others with EPERM outside the root namespace). Allowing one only lets unprivileged
    // sockets pick it; the host's own default stays. Added, never removed: another testbed
    // may be using it.
    const std::string allowed_path = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";
    std::string allowed;
    std::getline(std::ifstream(allowed_path) >> std::ws, allowed);
    if (!has(allowed, name)) {
      std::ofstream out(allowed_path);
      out << allowed << " " << name << "\n";
      out.flush();
      if (!out) {
        return fail(ErrorCode::Io,
                    "Cannot allow TCP congestion control '" + name + "' in " + allowed_path);
      }
    }
    return {};
  }
  return fail(ErrorCode::InvalidArgument,
              "TCP congestion control '" + name +
                  "' is not available on this host (it has: " + available() + ")");
}

Result<void> cutWan(const std::string& state_dir, bool cut) {
  VANDRA_TRY_ASSIGN(auto state, loadState(state_dir));
  if (!state) {
    return fail(ErrorCode::NotFound, "No testbed recorded in " + state_dir);
  }
  for (const auto& r : state->resources) {
    if (r.kind == "process" && r.name == "wanem" && presence(r) == Presence::Ours) {
      UniqueFd fd(pidfdOpen(r.pid));
      if (!fd.valid() || presence(r) != Presence::Ours) {
        break;
      }
      if (pidfdSendSignal(fd.get(), cut ? SIGUSR1 : SIGUSR2) != 0) {
        return fail(Error::fromErrno("Cannot signal the WAN emulator"));
      }
      return {};
    }
  }
  return fail(ErrorCode::NotFound, "The testbed in " + state_dir + " has no running WAN emulator");
}

Result<std::string> learnedMac(const std::string& netns, const std::string& dev) {
  VANDRA_TRY_ASSIGN(const std::string fdb,
                    runCapture({"bridge", "-n", netns, "fdb", "show", "dev", dev}));
  std::istringstream in(fdb);
  std::string line;
  while (std::getline(in, line)) {
    const std::string mac = line.substr(0, line.find(' '));
    if (line.find("permanent") == std::string::npos && mac.size() == 17 &&
        mac.rfind("33:33", 0) != 0 && mac.rfind("01:00:5e", 0) != 0) {
      return mac;
    }
  }
  return fail(ErrorCode::NotFound, "The bridge in " + netns + " has learned no MAC on " + dev);
}

Result<pid_t> restartAgent(const std::string& state_dir, const std::string& site, bool crash,
                           const std::vector<std::string>& extra_args) {
  VANDRA_TRY_ASSIGN(auto state, loadState(state_dir));
  if (!state) {
    return fail(ErrorCode::NotFound, "No testbed recorded in " + state_dir);
  }
  Resource* agent = nullptr;
  for (auto& r : state->resources) {
    if (r.kind == "process" && r.name == "agent-" + site) {
      agent = &r;
    }
  }
  if (agent == nullptr || agent->argv.empty()) {
    return fail(ErrorCode::NotFound,
                "The testbed in " + state_dir + " runs no agent at '" + site + "'");
  }
  const TestbedInfo info = makeInfo(state->id, state->profile, state_dir);
  const SiteInfo& s = site == "dc" ? info.dc : info.cloud;
  if (crash && presence(*agent) == Presence::Ours) {
    UniqueFd fd(pidfdOpen(agent->pid));
    if (fd.valid() && presence(*agent) == Presence::Ours) {
      if (pidfdSendSignal(fd.get(), SIGKILL) != 0 && errno != ESRCH) {
        return fail(Error::fromErrno("Cannot kill the " + site + " agent"));
      }
      if (!waitExit(fd.get(), kStopTimeout)) {
        return fail(ErrorCode::Timeout, "The " + site + " agent does not end after SIGKILL");
      }
      reapIfChild(agent->pid);
    }
  }
  VANDRA_TRY(stopProcess(*agent));  // a no-op after the crash above
  const std::string port_file = s.site_dir + "/agent.port";
  ::unlink(port_file.c_str());
  agent->pid = -1;  // recorded as not running before the new one exists
  agent->start_time = 0;
  VANDRA_TRY(saveState(state_dir, *state));
  const std::string log = s.site_dir + "/agent.log";
  std::vector<std::string> argv = agent->argv;
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  VANDRA_TRY_ASSIGN(const pid_t pid, spawnDetached(argv, log, -1));
  agent->pid = pid;
  agent->start_time = startTimeOf(pid);
  VANDRA_TRY(saveState(state_dir, *state));
  VANDRA_TRY(waitAgentReady(pid, port_file, log, site));
  return pid;
}

Result<TestbedStatus> status(const std::string& state_dir) {
  TestbedStatus out;
  VANDRA_TRY_ASSIGN(auto state, loadState(state_dir));
  if (!state) {
    return out;
  }
  out.present = true;
  out.complete = state->complete;
  out.info = makeInfo(state->id, state->profile, state_dir);
  out.info->congestion = state->congestion;
  bool all = true;
  for (const auto& r : state->resources) {
    ResourceState rs;
    rs.kind = r.kind;
    rs.name = r.name;
    if (r.kind == "netns") {
      rs.present = netnsExists(r.name);
    } else if (r.kind == "link") {
      // Root-namespace names exist only until the devices move into the sites.
      rs.present = rootLinkExists(r.name);
      rs.detail = "root namespace; moved into a site once up";
      out.resources.push_back(std::move(rs));
      continue;  // absence is the normal state
    } else if (r.kind == "process") {
      rs.present = processMatches(r.pid, r.start_time, r.marker);
      rs.detail = "pid " + std::to_string(r.pid);
      if (r.name == "wanem") {
        out.info->wanem_pid = r.pid;
      }
      for (SiteInfo* site : {&out.info->dc, &out.info->cloud}) {
        if (r.name == "agent-" + site->name) {
          site->agent_pid = r.pid;
          site->agent_endpoint = hostOf(site->lan_address) + ":" + std::to_string(kAgentPort);
        }
      }
    } else if (r.kind == "dir") {
      continue;
    } else if (r.kind == "tree") {
      std::error_code ec;
      rs.present = fs::is_directory(r.name, ec);
    } else if (r.kind == "file") {
      std::error_code ec;
      rs.present = fs::exists(r.name, ec);
    }
    all = all && rs.present;
    out.resources.push_back(std::move(rs));
  }
  out.healthy = out.complete && all;
  return out;
}

Result<void> down(const std::string& state_dir) {
  VANDRA_TRY_ASSIGN(auto state, loadState(state_dir));
  if (!state) {
    return {};
  }
  std::vector<Error> errors;
  auto note = [&](Result<void> r) {
    if (!r) {
      errors.push_back(std::move(r).error());
    }
  };
  auto& res = state->resources;
  // Processes first (their TUNs vanish with them), then root-namespace devices, then
  // namespaces (which take their bridges, veths and TUNs along), files last.
  for (auto it = res.rbegin(); it != res.rend(); ++it) {
    if (it->kind == "process") {
      note(stopProcess(*it));
    }
  }
  // What is still inside the testbed's namespaces was started there by the testbed's agents
  // (QEMU outlives its agent by design): found by namespace, ended by pid.
  for (auto it = res.rbegin(); it != res.rend(); ++it) {
    if (it->kind == "netns" && netnsExists(it->name)) {
      note(killNamespaceProcesses(it->name));
    }
  }
  for (auto it = res.rbegin(); it != res.rend(); ++it) {
    if (it->kind == "link" && rootLinkExists(it->name)) {
      note(ip({"link", "del", "dev", it->name}));
    }
  }
  for (auto it = res.rbegin(); it != res.rend(); ++it) {
    if (it->kind == "netns" && netnsExists(it->name)) {
      note(ip({"netns", "del", it->name}));
    }
  }
  for (auto it = res.rbegin(); it != res.rend(); ++it) {
    if (it->kind == "file" && ::unlink(it->name.c_str()) != 0 && errno != ENOENT) {
      errors.push_back(Error::fromErrno("Cannot remove " + it->name));
    }
  }
  for (auto it = res.rbegin(); it != res.rend(); ++it) {
    if (it->kind != "tree") {
      continue;
    }
    // Only a folder below the state folder: a state file edited by hand cannot aim this at
    // anything else.
    const fs::path tree = fs::path(it->name).lexically_normal();
    const fs::path base = fs::path(state_dir).lexically_normal();
    const auto rel = tree.lexically_relative(base);
    if (rel.empty() || rel.native().rfind("..", 0) == 0 || rel == ".") {
      errors.push_back(Error(ErrorCode::InvalidArgument,
                             "Refusing to remove " + it->name + ": not inside " + state_dir));
      continue;
    }
    std::error_code ec;
    fs::remove_all(tree, ec);
    if (ec) {
      errors.push_back(Error(ErrorCode::Io, "Cannot remove " + it->name + ": " + ec.message()));
    }
  }
  if (errors.empty()) {
    std::error_code ec;
    fs::remove(fs::path(state_dir) / "sites", ec);  // only when empty
  }
  if (!errors.empty()) {
    Error e(ErrorCode::Io, "Testbed " + state->id + " not fully removed; state kept in " +
                               stateFilePath(state_dir));
    e.secondary = std::move(errors);
    return fail(std::move(e));
  }
  const std::string path = stateFilePath(state_dir);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return fail(Error::fromErrno("Cannot remove " + path));
  }
  ::unlink((path + ".tmp").c_str());
  for (const auto& r : res) {
    if (r.kind == "dir") {
      ::rmdir(r.name.c_str());  // only if empty: never remove what someone else put there
    }
  }
  return {};
}

}  // namespace vandra::testbed
