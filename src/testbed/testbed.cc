// Testbed up/down/status with `ip` (iproute2) through Subprocess. The state file is the only
// memory: each resource is appended to it (and the file replaced atomically) before the
// resource is created, so `down` after a crash of `up`, of the emulator or of the machine's
// caller removes exactly what was made. Processes are identified by pid + start time +
// command line, never by name. Sites and links: links.cc; the controller: controller.cc.
//
//   client netns (10.10.0.100) --veth--> dc br0
//
//        dc netns  br0 10.10.0.1/24, agent :8443, EU SE, small (the home)
//        wan-eu 10.255.0.1                 wan-us 10.255.1.1
//          ||  vandra-wanem dc-cloud-eu      ||  vandra-wanem dc-cloud-us
//        wan-dc 10.255.0.2                 wan-dc 10.255.1.2
//   cloud-eu netns  br0 10.20.0.1/24     cloud-us netns  br0 10.30.0.1/24, US, cheapest
//        EU DE    wan-us 10.255.2.1 ==vandra-wanem cloud-eu-cloud-us== wan-eu 10.255.2.2
//
//   root netns: every vandra-wanem, and vandra-controller on 127.0.0.1 reaching each agent
//   from inside that agent's site namespace. Every site routes each other site's LAN
//   through its end of their link; agents' tunnels listen on 0.0.0.0:9443 in their site.
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

// ---- up ---------------------------------------------------------------------------------

std::string randomId() {
  std::random_device rd;
  std::ostringstream o;
  o << std::hex;
  for (int i = 0; i < 6; ++i) {
    o << (rd() & 0xFU);
  }
  return o.str();
}

bool rootLinkExists(const std::string& name) {
  return ::if_nametoindex(name.c_str()) != 0;
}

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

// Waits until the agent @p pid has written @p port_file (it listens), or reports its end.
Result<void> waitAgentReady(pid_t pid, const std::string& port_file, const std::string& log,
                            const std::string& site) {
  std::error_code ec;
  const auto deadline = Clock::now() + kAgentReadyTimeout;
  while (!fs::exists(port_file, ec)) {
    const auto ps = readProcStat(pid);
    if (!ps || ps->state == 'Z') {
      reapIfChild(pid);
      return fail(ErrorCode::Subprocess,
                  "The " + site + " agent ended before it was ready: " + tailOf(log));
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
// API) with a certificate for the agent (named by its addresses), one for the operator, one
// for the controller (the agent trusts only its site CA), and the site certificate the site
// tunnel presents (SAN DNS = the site's name).
Result<void> makeSitePki(Builder& b, const std::string& id, SiteInfo& site) {
  VANDRA_TRY(b.record({"tree", site.site_dir, -1, 0, "", {}}));
  std::error_code ec;
  fs::create_directories(site.site_dir + "/agent", ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot create " + site.site_dir + ": " + ec.message());
  }
  const std::string pki_dir = site.site_dir + "/pki";
  VANDRA_TRY(pki::initCa({pki_dir, "vandra testbed " + id + " site " + site.name + " CA", 30}));
  std::vector<std::string> addresses = {hostOf(site.lan_address)};
  for (const auto& w : site.wans) {
    addresses.push_back(w.address);
  }
  auto issue = [&](const std::string& name, pki::Role role, std::vector<std::string> dns,
                   std::vector<std::string> ips) {
    return pki::issue({.ca_dir = pki_dir,
                       .name = name,
                       .role = role,
                       .dns_names = std::move(dns),
                       .ip_addresses = std::move(ips),
                       .days = 30,
                       .not_before_offset_s = -300,
                       .group = ""});
  };
  VANDRA_TRY(issue("agent", pki::Role::Both, {"agent." + site.name}, addresses));
  VANDRA_TRY(issue("operator", pki::Role::Client, {}, {}));
  VANDRA_TRY(issue("controller", pki::Role::Client, {}, {}));
  VANDRA_TRY(issue("site", pki::Role::Both, {site.name}, {}));
  return {};
}

// Site @p site trusts every other site's CA for the site tunnel (pki/peers.pem).
Result<void> trustPeers(const SiteInfo& site, const std::vector<SiteInfo>& all) {
  std::string bundle;
  for (const auto& peer : all) {
    if (peer.name != site.name) {
      VANDRA_TRY_ASSIGN(const std::string ca, readSmall(peer.site_dir + "/pki/ca.crt"));
      bundle += ca;
    }
  }
  const std::string path = site.site_dir + "/pki/peers.pem";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bundle;
  out.flush();
  if (!out) {
    return fail(ErrorCode::Io, "Cannot write " + path);
  }
  return {};
}

std::string testbedAccel() {
  const char* a = std::getenv("VANDRA_TESTBED_ACCEL");
  return a != nullptr && (std::string(a) == "kvm" || std::string(a) == "auto") ? a : "tcg";
}

// "EU,SE": vandrad's --jurisdiction takes a comma list.
std::string commaList(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) {
    out += (out.empty() ? "" : ",") + i;
  }
  return out;
}

bool hasArg(const std::vector<std::string>& args, const std::string& name) {
  return std::find(args.begin(), args.end(), name) != args.end();
}

// @p argv with @p extra appended; an option of @p extra that @p argv has already (vandrad
// refuses most options twice) replaces it there, with the values that follow it.
std::vector<std::string> withOverrides(std::vector<std::string> argv,
                                       const std::vector<std::string>& extra) {
  auto isOption = [](const std::string& a) { return a.rfind("--", 0) == 0; };
  for (const auto& e : extra) {
    if (!isOption(e)) {
      continue;
    }
    for (auto it = std::find(argv.begin(), argv.end(), e); it != argv.end();
         it = std::find(argv.begin(), argv.end(), e)) {
      auto end = std::next(it);
      while (end != argv.end() && !isOption(*end)) {
        ++end;
      }
      argv.erase(it, end);
    }
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// The site's agent: a state folder, and vandrad inside the site namespace on the bridge
// address, with the site tunnel on every address of the namespace (one listener; each peer
// dials this site's end of their link) and every other site as a peer. Ready when it has
// written its port file; a crash before that is reported with the end of its log.
Result<void> startAgent(Builder& b, const std::string& vandrad,
                        const std::vector<std::string>& extra, double peer_mbps, SiteInfo& site) {
  const std::string pki_dir = site.site_dir + "/pki";
  const std::string port_file = site.site_dir + "/agent.port";
  const std::string state = site.site_dir + "/agent";
  std::vector<std::string> argv = {
      "ip", "netns", "exec", site.netns, vandrad, "--state-dir", state, "--listen",
      hostOf(site.lan_address), "--port", std::to_string(kAgentPort), "--port-file", port_file,
      "--tls-ca", pki_dir + "/ca.crt", "--tls-cert", pki_dir + "/agent.crt", "--tls-key",
      pki_dir + "/agent.key", "--bridge", site.bridge, "--site", site.name,
      // The agent knows every label of the site (an SLA names where a VM may be).
      "--jurisdiction", commaList(site.jurisdictions), "--tunnel-listen",
      "0.0.0.0:" + std::to_string(kTunnelPort), "--tunnel-cert", pki_dir + "/site.crt",
      "--tunnel-key", pki_dir + "/site.key", "--tunnel-ca", pki_dir + "/peers.pem",
      // TCG unless asked: this machine's /dev/kvm starts QEMU but its
      // guests never get past the firmware (docs/testbed.md).
      "--accel", testbedAccel()};
  // The stretched site LAN's names (siteNetworks).
  for (const auto& n : siteNetworks(site.name)) {
    argv.insert(argv.end(), {"--network", n});
  }
  for (const auto& w : site.wans) {
    argv.insert(argv.end(),
                {"--peer", w.peer + "=" + w.peer_address + ":" + std::to_string(kTunnelPort) +
                               (peer_mbps > 0 ? ",mbps=" + std::to_string(peer_mbps) : "")});
  }
  // The site's size (dc is small: placement has to look elsewhere), unless the caller sizes
  // it.
  for (const auto& spec : knownSites()) {
    if (site.name != spec.name) {
      continue;
    }
    if (!hasArg(extra, "--capacity-vcpus")) {
      argv.insert(argv.end(), {"--capacity-vcpus", std::to_string(spec.vcpus)});
    }
    if (!hasArg(extra, "--capacity-memory-mib")) {
      argv.insert(argv.end(), {"--capacity-memory-mib", std::to_string(spec.memory_mib)});
    }
    if (!hasArg(extra, "--reserved-memory-mib")) {
      argv.insert(argv.end(), {"--reserved-memory-mib", "0"});
    }
  }
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

Result<TestbedInfo> build(const TestbedOptions& o, const Profile& profile, const std::string& wanem,
                          State& state) {
  Builder b(o.state_dir, state);
  TestbedInfo info = makeInfo(state, o.state_dir);
  VANDRA_TRY(b.save());
  SiteInfo& dc = *info.site("dc");

  std::vector<std::string> namespaces;
  for (const auto& s : info.sites) {
    namespaces.push_back(s.netns);
  }
  namespaces.push_back(info.client_netns);
  for (const auto& ns : namespaces) {
    VANDRA_TRY(makeNamespace(b, ns));
    // Every connection the testbed carries (agents' tunnel, QEMU's own, the client's) uses
    // the same algorithm: the namespaced default.
    if (!o.congestion.empty()) {
      VANDRA_TRY(runCapture({"ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                             "net.ipv4.tcp_congestion_control=" + o.congestion}));
    }
  }
  VANDRA_TRY_ASSIGN(const std::string cc, runCapture({"ip", "netns", "exec", dc.netns, "sysctl",
                                                      "-n", "net.ipv4.tcp_congestion_control"}));
  state.congestion = cc.substr(0, cc.find_last_not_of(" \n") + 1);
  info.congestion = state.congestion;
  VANDRA_TRY(b.save());
  for (const auto& s : info.sites) {
    VANDRA_TRY(makeBridge(s));
  }

  // Client: a veth pair made inside the client namespace, its peer in dc on br0.
  VANDRA_TRY(ipIn(info.client_netns, {"link", "add", "eth0", "type", "veth", "peer", "name",
                                      "client0", "netns", dc.netns}));
  VANDRA_TRY(ipIn(dc.netns, {"link", "set", "client0", "master", dc.bridge, "up"}));
  VANDRA_TRY(ipIn(info.client_netns, {"addr", "add", info.client_address + "/24", "dev", "eth0"}));
  VANDRA_TRY(ipIn(info.client_netns, {"link", "set", "eth0", "up"}));
  VANDRA_TRY(ipIn(info.client_netns, {"route", "add", "default", "via", hostOf(dc.lan_address)}));

  VANDRA_TRY(makeLinks(b, o, profile, wanem, state, info));

  if (o.agents) {
    VANDRA_TRY_ASSIGN(const std::string vandrad,
                      findProgram(o.agent_path, "VANDRA_AGENT", "vandrad"));
    std::string controller;
    if (o.controller) {  // found before anything starts: a missing binary fails fast
      VANDRA_TRY_ASSIGN(controller,
                        findProgram(o.controller_path, "VANDRA_CONTROLLER", "vandra-controller"));
    }
    for (auto& s : info.sites) {
      VANDRA_TRY(makeSitePki(b, state.id, s));
    }
    for (const auto& s : info.sites) {
      VANDRA_TRY(trustPeers(s, info.sites));
    }
    // The agents' tunnel sets its own algorithm on its sockets: it is told the testbed's
    // (unless agent_args choose one).
    std::vector<std::string> agent_args = o.agent_args;
    if (!o.congestion.empty() && !hasArg(agent_args, "--tunnel-congestion")) {
      agent_args.insert(agent_args.end(), {"--tunnel-congestion", o.congestion});
    }
    for (auto& s : info.sites) {
      VANDRA_TRY(startAgent(b, vandrad, agent_args, o.peer_mbps, s));
    }
    if (o.controller) {
      VANDRA_TRY(startController(b, o, controller, info));
    }
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
  VANDRA_TRY_ASSIGN(const std::string wanem,
                    findProgram(o.wanem_path, "VANDRA_WANEM", "vandra-wanem"));
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
  VANDRA_TRY_ASSIGN(const auto specs, selectSites(o.sites));
  State state;
  state.profile = profile.name;
  for (const SiteSpec* spec : specs) {
    state.sites.emplace_back(spec->name);
  }
  if (!dir_existed) {
    state.resources.push_back({"dir", o.state_dir, -1, 0, "", {}});  // removed by down when empty
  }
  do {
    state.id = randomId();
  } while (std::any_of(
               knownSites().begin(), knownSites().end(),
               [&](const SiteSpec& k) { return netnsExists("vtb-" + state.id + "-" + k.name); }) ||
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
  const TestbedInfo info = makeInfo(*state, state_dir);
  const SiteInfo* found = info.site(site);
  if (found == nullptr) {
    return fail(ErrorCode::NotFound, "The testbed in " + state_dir + " has no site '" + site + "'");
  }
  const SiteInfo& s = *found;
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
  const std::vector<std::string> argv = withOverrides(agent->argv, extra_args);
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
  out.info = makeInfo(*state, state_dir);
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
      for (auto& link : out.info->links) {
        if (r.name == wanemRole(link.a, link.b)) {
          link.wanem_pid = r.pid;
        }
      }
      for (auto& site : out.info->sites) {
        if (r.name == "agent-" + site.name) {
          site.agent_pid = r.pid;
          site.agent_endpoint = hostOf(site.lan_address) + ":" + std::to_string(kAgentPort);
        }
      }
      if (r.name == "controller") {
        out.info->controller_pid = r.pid;
        out.info->controller_endpoint = controllerEndpoint(*out.info);
        out.info->console_url = consoleUrl(*out.info);
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
    fs::remove(fs::path(state_dir) / "controller", ec);
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
