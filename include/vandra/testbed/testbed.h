// The one-machine testbed: sites `dc`, `cloud-eu` and `cloud-us` as network namespaces, each
// with a bridge br0, a client namespace on the dc bridge, one user-space WAN emulator
// (vandra-wanem) per pair of sites, one agent per site and a controller over them. Everything `up`
// creates is written to a state file BEFORE it is created, so `down` removes exactly that, also
// after a crash; nothing is ever found by name pattern.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"

namespace vandra::testbed {

/// The end of one emulated link inside a site: a TUN device of that pair's vandra-wanem,
/// moved into the site, with a point-to-point address and a route to the peer's LAN.
struct WanEnd {
  std::string peer;          // the other site's name
  std::string device;        // "wan-eu", "wan-us", "wan-dc": named after the peer
  std::string address;       // local point-to-point address, e.g. 10.255.0.1
  std::string peer_address;  // the peer's address on this link, e.g. 10.255.0.2
};

/// One site as `up` built it. Addresses are fixed per site and pair (see testbed.cc):
///   dc       br0 10.10.0.1/24   wan-eu 10.255.0.1   wan-us 10.255.1.1
///   cloud-eu br0 10.20.0.1/24   wan-dc 10.255.0.2   wan-us 10.255.2.1
///   cloud-us br0 10.30.0.1/24   wan-dc 10.255.1.2   wan-eu 10.255.2.2
///   client eth0 10.10.0.100/24 on the dc bridge, default route via 10.10.0.1
struct SiteInfo {
  std::string name;                        // "dc", "cloud-eu" or "cloud-us"
  std::vector<std::string> jurisdictions;  // e.g. {"EU", "SE"}; the agent is told them all
  std::string netns;                       // e.g. vtb-1a2b3c-dc
  std::string bridge;                      // "br0"
  std::string lan_address;                 // address of br0, with prefix length
  std::string lan;                         // the site LAN, e.g. 10.10.0.0/24
  std::vector<WanEnd> wans;                // one per other site, in site order
  /// The site's agent (vandrad, inside the site namespace, listening on the bridge address)
  /// and the files an operator needs to talk to it. Empty when `up` ran without agents.
  std::string agent_endpoint;  // "10.10.0.1:8443"
  std::string site_dir;        // <state_dir>/sites/<name>: pki/, agent/ (registry, images), logs
  std::string ca_cert;         // the site CA (pki/ca.crt): verifies the agent
  std::string operator_cert;   // client certificate issued by the site CA to the operator
  std::string operator_key;
  pid_t agent_pid = -1;

  /// The end of the link to @p peer; nullptr when there is none.
  const WanEnd* wanTo(const std::string& peer) const;
};

/// One emulated link: a vandra-wanem between sites @p a and @p b (a before b in site order).
struct LinkInfo {
  std::string a;
  std::string b;
  pid_t wanem_pid = -1;
};

struct TestbedInfo {
  std::string id;  // short random id; every name contains it
  std::string profile;
  /// TCP congestion control of every namespace of the testbed (net.ipv4.tcp_congestion_control
  /// there): TestbedOptions::congestion, or the one the namespaces got from the host.
  std::string congestion;
  std::string state_dir;
  std::vector<SiteInfo> sites;  // dc first, then in the order of kSites
  std::vector<LinkInfo> links;  // one per pair of sites
  std::string client_netns;
  std::string client_address;  // 10.10.0.100
  /// The controller (vandra-controller in the root namespace, 127.0.0.1): empty/-1 when `up`
  /// started none. Its CA verifies it; operator and viewer certificates are issued by it.
  std::string controller_endpoint;  // "127.0.0.1:PORT"
  pid_t controller_pid = -1;
  std::string controller_dir;  // <state_dir>/controller: pki/, sites.json, the database, log
  std::string controller_ca;
  std::string operator_cert;  // OU operator: may change things
  std::string operator_key;
  std::string viewer_cert;  // OU viewer: may only read
  std::string viewer_key;
  std::string cli_config;  // <state_dir>/cli.json: controller, ca, cert, key (the operator's)
  /// The web console (TestbedOptions::console_dir): its address ("" = none) and the file with
  /// its two users' names and passwords, {"operator": {"user", "password"}, "viewer": {...}}.
  std::string console_url;
  std::string console_users;

  /// The site named @p name; nullptr when the testbed has none.
  const SiteInfo* site(const std::string& name) const;
  SiteInfo* site(const std::string& name);
};

/// A site the testbed can build: its name, where it says it is and what it costs.
struct SiteSpec {
  const char* name;
  const char* short_name;  // names the devices towards it: wan-<short_name>
  int index;               // 10.<10 * (index + 1)>.0.0/24 is its LAN
  std::vector<std::string> jurisdictions;
  uint64_t vcpus;  // what its agent may hand out
  uint64_t memory_mib;
  double vcpu_hour;  // price in EUR, for the controller's placement
  double memory_gib_hour;
  double rtt_from_office_ms;  // from the controller's location "stockholm-office"
};

/// The sites `up` builds by default, in this order: dc (the home, small), cloud-eu, cloud-us
/// (cheapest).
const std::vector<SiteSpec>& knownSites();

struct TestbedOptions {
  std::string profile = "wan";
  std::string state_dir;
  /// Which of knownSites() to build (dc must be one: the client sits on its bridge); empty:
  /// all of them. Two sites cost one emulator and two agents less than three.
  std::vector<std::string> sites;
  /// vandra-wanem; empty: $VANDRA_WANEM, else next to the running program.
  std::string wanem_path;
  uint64_t seed = 1;
  /// Start one agent per site (vandrad inside the site namespace with its own CA, state and
  /// the site bridge). Off: network only (the emulator's own tests).
  bool agents = false;
  /// vandrad; empty: $VANDRA_AGENT, else next to the running program.
  std::string agent_path;
  /// Extra arguments for every agent (e.g. {"--stop-timeout", "5"}). A --capacity-* given
  /// here replaces the site's own.
  std::vector<std::string> agent_args;
  /// Each agent's cap on what it sends to each other site (vandrad --peer NAME=...,mbps=N);
  /// 0: none.
  double peer_mbps = 0;
  /// TCP congestion control for every namespace of the testbed (sites and client), so that
  /// every TCP connection the testbed carries uses the same ("": what the host gives new
  /// namespaces). Must be in tcp_available_congestion_control (tcp_NAME is loaded with
  /// modprobe when it is not); anything else is refused by name. The host's
  /// tcp_allowed_congestion_control gains it if needed (a namespace's default must be
  /// allowed); the host's own default is left alone.
  std::string congestion;
  /// With agents: also start the controller (vandra-controller) over them.
  bool controller = true;
  /// vandra-controller; empty: $VANDRA_CONTROLLER, else next to the running program.
  std::string controller_path;
  /// More flags for the controller (e.g. --min-stay-s 10 for a demo of wandering).
  std::vector<std::string> controller_args;
  /// The web console's built files (web/dist): the controller serves them and two console
  /// users are made, an operator and a viewer, with random passwords (TestbedInfo).
  std::string console_dir;
};

/// Whether TCP congestion control @p name can be used here (loads module tcp_@p name when
/// it is not yet available). Errors: InvalidArgument naming the algorithms this host has.
[[nodiscard]] Result<void> checkCongestion(const std::string& name);

/// The agent's port inside each site namespace.
inline constexpr int kAgentPort = 8443;
/// The site tunnel's port: each agent listens on 0.0.0.0 there inside its namespace, and peers
/// dial its end of their link (SiteInfo::wans).
inline constexpr int kTunnelPort = 9443;

/// Cuts every emulated link of the testbed (every packet dropped both ways, @p cut) or
/// restores them: an outage for the fault tests. Errors: NotFound (no testbed or emulator).
[[nodiscard]] Result<void> cutWan(const std::string& state_dir, bool cut);
/// The same for the one link between sites @p a and @p b (either order).
[[nodiscard]] Result<void> cutWan(const std::string& state_dir, const std::string& a,
                                  const std::string& b, bool cut);

/// The MAC address bridge port @p dev (a VM's tap) has learned inside namespace @p netns
/// (`bridge fdb`, permanent and multicast entries left out): the guest's MAC as its network
/// sees it. Errors: NotFound (none learned), Subprocess.
[[nodiscard]] Result<std::string> learnedMac(const std::string& netns, const std::string& dev);

/// Builds the testbed. Refuses (AlreadyExists) when state_dir already holds a testbed. On
/// failure everything made so far is removed again. Errors: InvalidArgument, NotFound
/// (profile, vandra-wanem, ip), Subprocess (ip failed), Io, Timeout (emulator not ready).
[[nodiscard]] Result<TestbedInfo> up(const TestbedOptions& options);

struct ResourceState {
  std::string kind;      // "netns", "link", "process", "file"
  std::string name;      // namespace/device name, process role, or path
  bool present = false;  // exists / process alive (pid, start time and command line match)
  std::string detail;    // e.g. "pid 1234"
};

struct TestbedStatus {
  bool present = false;   // a state file exists
  bool complete = false;  // `up` finished
  bool healthy = false;   // complete and every resource present
  std::optional<TestbedInfo> info;
  std::vector<ResourceState> resources;
};

/// What the state file in @p state_dir says and what of it exists. No state file: present
/// false. Errors: Io, InvalidArgument (unreadable state file).
[[nodiscard]] Result<TestbedStatus> status(const std::string& state_dir);

/// Stops the recorded processes by pid (SIGTERM, wait, SIGKILL), then every process still
/// inside a recorded namespace (the VMs' QEMUs, which outlive their agent by design; found by
/// namespace, never by name), deletes the recorded devices and namespaces, files and site
/// folders, then the state file. Idempotent: nothing recorded is
/// success. When something cannot be removed, the state file stays for a retry.
[[nodiscard]] Result<void> down(const std::string& state_dir);

/// Stops the agent of @p site (any of the testbed's): SIGKILL when @p crash (as a crash would),
/// else SIGTERM; then starts it again as recorded and waits until it listens. Its VMs keep
/// running meanwhile (the new agent re-attaches). Returns the new pid. Errors: NotFound (no
/// testbed or no agent there), Subprocess/Timeout (the new agent did not come up).
/// @p extra_args are added to this start only (e.g. `--failpoint NAME`); an option recorded
/// already (e.g. `--tunnel-listen`) is replaced by theirs. A later restart starts the agent
/// as recorded again. An agent that is gone already is simply started.
[[nodiscard]] Result<pid_t> restartAgent(const std::string& state_dir, const std::string& site,
                                         bool crash,
                                         const std::vector<std::string>& extra_args = {});

/// Starts the testbed's controller again as recorded: the same state folder (database), site
/// file and flags; a new port (written to its port file and cli.json). One still running is
/// stopped first (SIGTERM); one a test killed is simply started. Waits until it answers.
/// Returns the testbed as it is now (controller_pid, controller_endpoint). Errors: NotFound
/// (no testbed or no controller recorded), Subprocess/Timeout (it did not come up).
[[nodiscard]] Result<TestbedInfo> restartController(const std::string& state_dir);

/// The state file's path inside @p state_dir.
std::string stateFilePath(const std::string& state_dir);

/// True when @p pid is alive (not a zombie), started at @p start_time (clock ticks since
/// boot, /proc/<pid>/stat field 22) and its command line contains @p cmdline_marker.
bool processMatches(pid_t pid, uint64_t start_time, const std::string& cmdline_marker);

/// A socket created inside network namespace @p netns (/run/netns/<netns>) — the calling
/// thread's namespace is not changed. Errors: NotFound, Io.
[[nodiscard]] Result<UniqueFd> socketInNetns(const std::string& netns, int domain, int type);

}  // namespace vandra::testbed
