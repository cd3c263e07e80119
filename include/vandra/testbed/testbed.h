// The one-machine testbed: sites `dc` and `cloud` as network namespaces, each with a bridge
// br0, a client namespace on the dc bridge, and the user-space WAN emulator (vandra-wanem)
// between them. Everything `up` creates is written to a state file BEFORE it is created, so
// `down` removes exactly that, also after a crash; nothing is ever found by name pattern.
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

/// One site as `up` built it. Addresses are fixed per role (see testbed.cc):
///   dc    br0 10.10.0.1/24 (site LAN), wan0 10.255.0.1 peer 10.255.0.2
///   cloud br0 10.20.0.1/24,              wan0 10.255.0.2 peer 10.255.0.1
///   client eth0 10.10.0.100/24 on the dc bridge, default route via 10.10.0.1
struct SiteInfo {
  std::string name;         // "dc" or "cloud"
  std::string netns;        // e.g. vtb-1a2b3c-dc
  std::string bridge;       // "br0"
  std::string lan_address;  // address of br0, with prefix length
  std::string wan_device;   // "wan0": the TUN device of the emulator
  std::string wan_address;  // local point-to-point address
  std::string wan_peer;     // the other site's WAN address
  /// The site's agent (vandrad, inside the site namespace, listening on the bridge address)
  /// and the files an operator needs to talk to it. Empty when `up` ran without agents.
  std::string agent_endpoint;  // "10.10.0.1:8443"
  std::string site_dir;        // <state_dir>/sites/<name>: pki/, agent/ (registry, images), logs
  std::string ca_cert;         // the site CA (pki/ca.crt): verifies the agent
  std::string operator_cert;   // client certificate issued by the site CA to the operator
  std::string operator_key;
  pid_t agent_pid = -1;
};

struct TestbedInfo {
  std::string id;  // short random id; every name contains it
  std::string profile;
  /// TCP congestion control of every namespace of the testbed (net.ipv4.tcp_congestion_control
  /// there): TestbedOptions::congestion, or the one the namespaces got from the host.
  std::string congestion;
  std::string state_dir;
  SiteInfo dc;
  SiteInfo cloud;
  std::string client_netns;
  std::string client_address;  // 10.10.0.100
  pid_t wanem_pid = -1;
};

struct TestbedOptions {
  std::string profile = "wan";
  std::string state_dir;
  /// vandra-wanem; empty: $VANDRA_WANEM, else next to the running program.
  std::string wanem_path;
  uint64_t seed = 1;
  /// Start one agent per site (vandrad inside the site namespace with its own CA, state and
  /// the site bridge). Off: network only (the emulator's own tests).
  bool agents = false;
  /// vandrad; empty: $VANDRA_AGENT, else next to the running program.
  std::string agent_path;
  /// Extra arguments for every agent (e.g. {"--stop-timeout", "5"}).
  std::vector<std::string> agent_args;
  /// Each agent's cap on what it sends to the other site (vandrad --peer NAME=...,mbps=N);
  /// 0: none.
  double peer_mbps = 0;
  /// TCP congestion control for every namespace of the testbed (sites and client), so that
  /// every TCP connection the testbed carries uses the same ("": what the host gives new
  /// namespaces). Must be in tcp_available_congestion_control (tcp_NAME is loaded with
  /// modprobe when it is not); anything else is refused by name. The host's
  /// tcp_allowed_congestion_control gains it if needed (a namespace's default must be
  /// allowed); the host's own default is left alone.
  std::string congestion;
};

/// Whether TCP congestion control @p name can be used here (loads module tcp_@p name when
/// it is not yet available). Errors: InvalidArgument naming the algorithms this host has.
[[nodiscard]] Result<void> checkCongestion(const std::string& name);

/// The agent's port inside each site namespace.
inline constexpr int kAgentPort = 8443;
/// The site tunnel's port on each site's WAN address (agents dial each other there).
inline constexpr int kTunnelPort = 9443;
/// Where both testbed sites say they are (a VM's SLA jurisdictions are checked against it).
inline constexpr const char* kSiteJurisdiction = "EU";

/// Cuts the emulated WAN (every packet dropped both ways, @p cut) or restores it: an outage
/// for the fault tests. Errors: NotFound (no testbed or emulator).
[[nodiscard]] Result<void> cutWan(const std::string& state_dir, bool cut);

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

/// Stops the agent of @p site ("dc" or "cloud"): SIGKILL when @p crash (as a crash would),
/// else SIGTERM; then starts it again as recorded and waits until it listens. Its VMs keep
/// running meanwhile (the new agent re-attaches). Returns the new pid. Errors: NotFound (no
/// testbed or no agent there), Subprocess/Timeout (the new agent did not come up).
/// @p extra_args are added to this start only (e.g. `--failpoint NAME`); a later restart
/// starts the agent as recorded again. An agent that is gone already is simply started.
[[nodiscard]] Result<pid_t> restartAgent(const std::string& state_dir, const std::string& site,
                                         bool crash,
                                         const std::vector<std::string>& extra_args = {});

/// The state file's path inside @p state_dir.
std::string stateFilePath(const std::string& state_dir);

/// True when @p pid is alive (not a zombie), started at @p start_time (clock ticks since
/// boot, /proc/<pid>/stat field 22) and its command line contains @p cmdline_marker.
bool processMatches(pid_t pid, uint64_t start_time, const std::string& cmdline_marker);

/// A socket created inside network namespace @p netns (/run/netns/<netns>) — the calling
/// thread's namespace is not changed. Errors: NotFound, Io.
[[nodiscard]] Result<UniqueFd> socketInNetns(const std::string& netns, int domain, int type);

}  // namespace vandra::testbed
