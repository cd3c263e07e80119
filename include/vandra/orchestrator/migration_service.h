// The agent's live-migration service: site tunnels to the peer sites, the migration protocol
// over them (migrator.h) and what an operator asks of it (begin, show, list, cancel).
//
//   vandrad (site dc)                                             vandrad (site cloud)
//   MigrationService                                              MigrationService
//    ├─ PeerLink "cloud" ── Tunnel (N × mutual TLS 1.3) ═════════╦═ PeerLink "dc" (accepted)
//    │   ├─ control stream "<id>"   runSourceMigration <-> TargetSide (one thread per stream)
//    │   ├─ Listen  <run>/<id>/nbd.sock  ══ nbd "<id>/nbd" ══> Connect <run>/<id>/nbd.sock (QEMU
//    NBD server) │   ├─ Listen  <run>/<id>/mig.sock  ══ migration "<id>/mig" ══> Connect
//    <run>/<id>/in.sock (-incoming) │   └─ TapBridge vw…  (on br0)      ══ ethernet "lan" ══>
//    TapBridge vw… (on br0) └─ one thread per outgoing migration; records in the MigrationStore
//    (both roles)
//
// One link per peer site, whoever dialed: a migration to a peer uses the link that exists
// (also the one the peer opened) and dials only when there is none. A newer tunnel from the
// same peer replaces the old one (the peer dials only when it has none, e.g. after a restart).
// The link's Ethernet stream stretches the site LAN: the VM keeps its IP and MAC, and a
// client at the old site reaches it at the new one through the tunnel.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "vandra/agent/agent_service.h"
#include "vandra/agent/metrics.h"
#include "vandra/common/link_measurement.h"
#include "vandra/migration/qemu_migration.h"
#include "vandra/orchestrator/migration_store.h"
#include "vandra/orchestrator/resolve.h"
#include "vandra/tunnel/tunnel.h"

namespace vandra::orchestrator {

/// The most one link probe sends (POST /v1/links/{peer}/probe), and what the far end accepts.
inline constexpr uint64_t kMaxProbeBytes = 4 * 1024 * 1024;
/// The least the API lets an operator ask: several reads at the far end, so it can be timed.
inline constexpr uint64_t kMinProbeBytes = 256 * 1024;

struct PeerSite {
  std::string name;  // site name; its tunnel certificate must carry it (SAN DNS)
  std::string host;  // its agent's tunnel address
  uint16_t port = 0;
  /// This site pair's cap on what we send to it (all migrations and the LAN together);
  /// 0: the agent-wide TunnelSettings::bandwidth_bytes_per_s.
  uint64_t bandwidth_bytes_per_s = 0;
};

/// "NAME=HOST:PORT[,mbps=N]" (vandrad --peer): a peer site, optionally with this site
/// pair's send cap in Mbit/s (0 < N <= 1000000). Errors: InvalidArgument naming the part.
[[nodiscard]] Result<PeerSite> parsePeerSpec(const std::string& spec);

struct MigrationServiceConfig {
  std::string site;                        // this site's name (tunnel.local_site)
  std::vector<std::string> jurisdictions;  // where this site is (checked against a VM's SLA)
  /// Per-migration sockets: <run_dir>/<migration id>/{nbd,mig,in}.sock.
  std::string run_dir;
  /// Site bridge the link's LAN tap joins ("" = no L2 extension), and the network names the
  /// VMs' NICs may use for it (the agent joins every NIC to that bridge); empty: any.
  std::string bridge;
  std::vector<std::string> networks;
  /// Certificate, key and the CA bundle of the peer sites this site trusts; local_site,
  /// on_stream are set by the service.
  tunnel::TunnelSettings tunnel;
  std::string listen_host = "0.0.0.0";
  uint16_t listen_port = 0;  // tunnel listener; 0 = any free port (tunnelPort())
  bool listen = true;
  /// Optional: the tunnel listener is bound (at start, or later when its address was not
  /// there at start: it retries in the background and never holds up the agent).
  std::function<void(uint16_t port)> on_listening;
  std::vector<PeerSite> peers;
  /// TCP connections per tunnel this site dials. 1 by measurement (docs/benchmarks.md, "Live
  /// migration"): on the wan profile more connections only added threads competing with the
  /// guest for this machine's two cores (a single migration stream rides one connection).
  uint16_t connections = 1;
  std::string machine_type = "q35";
  std::string cpu_model = "qemu64";
  /// A target whose guest runs waits this long for the source's confirm, then closes the
  /// migration itself (done, with `error` saying so): the guest runs here either way.
  std::chrono::seconds confirm_timeout{600};
  /// While GET /v1/links is asked (a controller reads it), keep a link up to every peer so it
  /// has an RTT without a migration (docs/agent/api.md, "Links"). Off: links only as before
  /// (for migrations and POST /v1/peers/{site}/connect).
  bool keep_links_measured = true;
  /// RAM pages that are blocks of a base image both sites hold go as references to that
  /// block, not as their bytes (content/ref_codec.h, ADR 0030), to peers whose agents read
  /// them. Off: QEMU's stream passes as it is (this site still reads references sent to it).
  bool content_refs = true;
  /// Where migrations' ends are counted (metered_store.h); none: not counted. Must outlive
  /// the service.
  agent::AgentMetrics* metrics = nullptr;
};

struct MigrateOptions {
  std::string to;                       // peer site
  uint64_t bandwidth_bytes_per_s = 0;   // this migration's cap for RAM and each mirror; 0: none
  std::chrono::seconds max_total{600};  // past this the migration rolls back
  uint64_t downtime_limit_ms = 0;       // 0: the SLA's downtime budget (else 300 ms)
  bool auto_converge = true;            // throttle a guest that dirties faster than the link
  /// Throttle the writes of a guest that keeps a disk mirror from converging
  /// (vandra/migration/disk_convergence.h); off: the migration waits for READY until its end.
  bool disk_converge = true;
  /// How the disk mirrors treat guest writes, for the whole migration (QEMU 7.2 cannot
  /// change it on a running mirror: docs/migration/qemu-engine.md): background (guest
  /// writes wait for nothing; what is dirty at the pause is copied inside it), or
  /// write-blocking (every write waits for the target; nothing is left at the pause).
  migration::CopyMode copy_mode = migration::CopyMode::Background;
  std::string id;  // "" = a new random id
  /// This site's network -> the target's, for NICs whose network the target calls otherwise
  /// (the controller's mapping; docs/agent/api.md): each key a network of the VM's NICs.
  std::map<std::string, std::string> networks;
  /// RAM pages the target holds as disk blocks go as references (ADR 0030), when this site
  /// allows it (MigrationServiceConfig::content_refs); false: QEMU's stream as it is (for
  /// comparisons, `vandra bench migrate --systems vandra-norefs`).
  bool content_refs = true;
};

class MigrationService {
 public:
  /// Starts the tunnel listener (when config.listen; an address it cannot bind yet is
  /// retried in the background, listenerStatus()) and applies recovery to every migration
  /// of the store that had not ended (see recover()). Errors: InvalidArgument (config,
  /// certificates).
  [[nodiscard]] static Result<std::unique_ptr<MigrationService>> start(
      agent::AgentService& agent, MigrationStore& store, MigrationServiceConfig config);
  /// Stops the listener, interrupts the migrations still running (each rolls back) and
  /// closes the tunnels.
  ~MigrationService();
  MigrationService(const MigrationService&) = delete;
  MigrationService& operator=(const MigrationService&) = delete;

  /// Starts migrating VM @p vm_id to @p options.to in the background and returns its id at
  /// once (phase preflight). Errors: NotFound (VM, peer site), IllegalTransition (VM not
  /// running), Busy (the VM is migrating already), InvalidArgument.
  [[nodiscard]] Result<nlohmann::json> begin(const std::string& vm_id,
                                             const MigrateOptions& options);
  /// The record, with a live "progress" object while it runs (phase, bytes over the WAN,
  /// RAM remaining, dirty rate, expected downtime, mirrors). Errors: NotFound.
  [[nodiscard]] Result<nlohmann::json> show(const std::string& id);
  /// Newest first; @p vm_id "" = all.
  [[nodiscard]] Result<nlohmann::json> list(const std::string& vm_id);
  /// Asks a running migration to stop; it rolls back (the VM runs on here). Errors:
  /// NotFound, IllegalTransition (ended already, or switched over: the VM runs at the target).
  [[nodiscard]] Result<nlohmann::json> cancel(const std::string& id);
  /// The operator's word on a source migration that waits for its unreachable target
  /// (resolve.h): resume the paused guest here, or let the source go. Errors: NotFound,
  /// IllegalTransition (not a source waiting for its peer: nothing changed), Timeout (a try
  /// to reach the peer did not end in time), the store's.
  [[nodiscard]] Result<nlohmann::json> resolve(const std::string& id, const Resolution& how);
  /// Waits until migration @p id has ended here (tests and the CLI's --wait).
  [[nodiscard]] Result<nlohmann::json> wait(const std::string& id,
                                            std::chrono::steady_clock::time_point deadline);

  /// Recovery of migrations that had not ended when the agent stopped (recoveryFor()):
  /// source before switchover: cancel what QEMU still runs, resume the VM, ask the target to
  /// abort; source in switchover: the target decides (it runs the guest: finish confirm;
  /// it does not: roll back; unreachable: wait); source in confirm: finish confirm; target
  /// before switchover: clean up. Returns what was done, per migration.
  [[nodiscard]] Result<nlohmann::json> recover();

  /// The bound tunnel port (0 while the listener retries, or without one).
  uint16_t tunnelPort() const;
  /// The tunnel listener's state (nullopt: this site does not listen).
  std::optional<tunnel::ListenerStatus> listenerStatus() const;
  /// Links to peer sites with their tunnel counters (diagnostics, GET /v1/peers).
  nlohmann::json peers() const;
  /// What is measured of the link to each configured peer (link_meter.h). Asking also keeps
  /// the links up for a while (MigrationServiceConfig::keep_links_measured): never waits.
  std::vector<LinkMeasurement> links();
  /// Sends @p bytes (1..kMaxProbeBytes) to @p peer through one tunnel stream, timed at the
  /// far end, and records the rate (method "probe"). Dials the link when there is none.
  /// Errors: Busy (another probe runs, the link was probed less than 5 s ago, or a migration
  /// runs on it), NotFound (no such peer), the dial's, Timeout (30 s), TunnelProtocol (the
  /// peer's answer).
  [[nodiscard]] Result<LinkMeasurement> probe(const std::string& peer, uint64_t bytes);
  /// Brings the link to @p peer up now (tunnel and stretched LAN), as the first migration
  /// would: a site that keeps its link up ahead of migrations. Returns its peers() entry.
  /// Errors: NotFound (no such peer configured), the dial's error (Io, Tls, Timeout).
  [[nodiscard]] Result<nlohmann::json> connect(const std::string& peer);

  class Impl;
  explicit MigrationService(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vandra::orchestrator
