// What an agent does for its callers (API, CLI, later the orchestrator), independent of
// transport: import a package as a VM, list, show, delete, report capacity. Every state
// change is written to the registry before its side effect.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "vandra/agent/capacity.h"
#include "vandra/agent/event_log.h"
#include "vandra/agent/image_store.h"
#include "vandra/agent/package_files.h"
#include "vandra/agent/recovery.h"
#include "vandra/agent/vm_monitor.h"
#include "vandra/agent/vm_registry.h"
#include "vandra/migration/qemu_migration.h"

namespace vandra::agent {

/// Where a running VM keeps its sockets and logs: <state_dir>/run/<id>/.
struct VmRunPaths {
  std::string dir;
  std::string qmp_socket;    // commands
  std::string event_socket;  // events (second monitor)
  std::string serial_log;
  std::vector<std::string> taps;  // one per NIC, in spec order (tapName())
  /// Migration target: QEMU must wait for the stream (-incoming defer) and stay paused (-S)
  /// until the agent has removed its NBD exports (docs/migration/qemu-engine.md).
  bool incoming = false;
};

/// A migration target's side (see migration/qemu_migration.h for the QMP behind each step).
struct IncomingRequest {
  std::string id;                // the VM's name (the same at both sites)
  std::string spec_json;         // its VmSpec (one virtual system), as the source has it
  std::string nbd_socket;        // where this agent's QEMU exports the disks (unix socket)
  std::string migration_socket;  // where it listens for the migration stream (unix socket)
  /// Disks to create as overlays on a base image of this site's store (disk id -> the
  /// base's digest, ImageStore::baseDigest); the others start empty.
  std::map<std::string, std::string> base_digests;
  /// The migration's id: the key both sites keep the disks under for a move back (ADR 0027);
  /// "" keeps nothing.
  std::string migration_id;
};

/// Where migrateOut stops to let its caller persist a phase (OutgoingRequest::before_step).
enum class OutgoingStep : uint8_t {
  Ram,         // the mirrors are ready; the RAM pre-copy starts next
  Switchover,  // QEMU paused the source at pre-switchover; the mirrors complete next
};

/// A migration source's side. The sockets are the target's (in production: the local ends
/// of the site tunnel that forward to them).
struct OutgoingRequest {
  std::string id;
  std::string nbd_socket;
  std::string migration_socket;
  migration::MirrorOptions mirror;
  /// Disks whose target image is an overlay on the same base (the target holds the base):
  /// only their overlay is mirrored (SyncMode::Top); the others are copied whole.
  std::set<std::string> overlay_only_disks;
  migration::RamMigrationOptions ram;
  std::chrono::steady_clock::time_point deadline;
  /// Called before Ram (pre-copy starts) and Switchover (QEMU has paused the source at
  /// pre-switchover; the mirrors are completed next): the orchestrator persists its phase
  /// there. An error stops the migration (it is then cancelled like any failure).
  std::function<Result<void>(OutgoingStep step)> before_step;
  /// The operator's cancel, if asked (the reason); read once when the migration registers
  /// (interruptOutgoing() covers the rest).
  std::function<std::optional<std::string>()> cancelled;
  /// Called once, on the VM monitor's thread, when QEMU stops the guest for the switchover
  /// (its STOP event after the pre-copy started, some 100 ms before pre-switchover): the
  /// orchestrator points the LAN at the target there. Keep it short; it delays the events.
  std::function<void()> on_switchover_stop;
};

/// Tap device name of NIC @p index of VM @p vm_id: "vt" + 8 hex digits of SHA-256(vm_id) +
/// the index (at most 15 characters, as Linux requires), the same on every agent.
std::string tapName(const std::string& vm_id, size_t index);

/// Builds the QEMU command line (without -daemonize/-pidfile) for one VM: the agent's wiring
/// point for the pure builder in src/qemu (vandrad passes it in).
using CommandLineFn = std::function<Result<std::vector<std::string>>(
    const ovf::VirtualSystemSpec& vs, const std::vector<VmDisk>& disks, const VmRunPaths& paths)>;

struct AgentConfig {
  std::string state_dir;  // registry.db, images/, run/
  HostCapacity capacity;
  std::string trust_store;     // CA file for package signatures ("" = system default)
  CommandLineFn command_line;  // required for start
  std::chrono::milliseconds stop_timeout{30000};  // ACPI shutdown, then SIGKILL
  /// Site bridge the VMs' taps join ("" = leave taps unattached). QEMU creates each tap when it
  /// starts and it disappears with QEMU, so a VM's network leaves nothing behind.
  std::string bridge;
  /// Folders import requests may name packages in (vandrad --import-dir); the upload folder
  /// <state_dir>/uploads is always one. Anything else is refused (Forbidden).
  std::vector<std::string> import_dirs;
  uint64_t max_upload_bytes = kDefaultMaxUploadBytes;  // one upload (PUT /v1/packages/{name})
  /// How long a VM's disks stay at a site it left, for a move back that sends only what
  /// changed (vandrad --retain-departed-hours; ADR 0027). 0: removed at once, and arriving
  /// disks are not frozen either.
  std::chrono::seconds retain_departed{std::chrono::hours(24)};
  /// CA files whose certificates' package signatures this agent trusts besides trust_store:
  /// vandrad passes its peer sites' CAs (--tunnel-ca), so a peer site's exports verify.
  std::vector<std::string> extra_trust{};
  /// The site's certificate and key (PEM files) that exports are signed with (vandrad:
  /// --tunnel-cert/--tunnel-key); "" = exports are unsigned.
  std::string sign_cert{};
  std::string sign_key{};
  /// How long an export's frozen images, or a seed no VM stands on, stay (ADR 0029).
  std::chrono::seconds keep_exports{std::chrono::hours(24 * 7)};
};

/// An export of a VM as an OVA into the agent's uploads (exportVm; ADR 0029).
struct ExportRequest {
  std::string id;    // the VM
  std::string name;  // the package's upload name ("" = "<vm>-<unix time>.ova")
  bool sign = true;  // signed with the site's certificate, when the agent has one
};

struct ExportResult {
  UploadInfo package;       // in the uploads folder (download, delete like any upload)
  std::string export_id;    // random, 32 hex
  std::string package_key;  // ImageStore::packageKey of the written package
  bool running = false;     // the guest ran on: a crash-consistent copy
  bool signed_package = false;
  double freeze_ms = 0;  // the QMP transaction that put the overlays over the disks
  double write_s = 0;    // converting, digesting, signing and writing the package
};

/// A package imported as base images only, for a later live move (importSeed).
struct SeedResult {
  std::string key;  // the base folder's content key
  bool reused = false;
  int64_t expires_unix = 0;        // 0 = an ordinary package's images: no expiry
  std::vector<std::string> disks;  // image file names
};

struct ImportRequest {
  std::string id;       // new VM name
  std::string package;  // path of an .ova in one of the agent's import folders
  std::string vs;       // virtual system id ("" = the first)
  bool lax = false;
  std::string from;    // API only: create from this VM instead of a package
  std::string upload;  // instead of `package`: the name of an upload (uploads folder)
  /// OVF network -> this site's network: the NICs on a mapped network are recorded on the
  /// site's (the controller maps at import; docs/controller/README.md, "Networks").
  std::map<std::string, std::string> networks;
};

/// Renames the networks of @p spec's NICs (and its NetworkSection) by @p map. Errors:
/// InvalidArgument naming a network no NIC uses, or a bad site network name. Pure.
[[nodiscard]] Result<void> mapNetworks(ovf::VmSpec& spec,
                                       const std::map<std::string, std::string>& map);

/// Concurrency: every method may be called from any thread (the HTTP server has a pool).
/// Reads (list, get, host, console, events) never wait for other requests. Requests that
/// change a VM (start, stop, kill, delete) hold that VM's operation lock; a second one while
/// the first runs gets ErrorCode::Busy after at most kLockPatience (0.5 s) rather than
/// queueing behind a 30 s stop.
/// Imports run one at a time, so two imports cannot both claim the last free capacity.
class AgentService {
 public:
  ~AgentService();
  AgentService(const AgentService&) = delete;
  AgentService& operator=(const AgentService&) = delete;

  [[nodiscard]] static Result<std::unique_ptr<AgentService>> open(const AgentConfig& config);

  /// Verifies and imports, checks capacity, registers the VM (Created) and makes its disks.
  /// The package must be a regular .ova inside an import folder (openImportPackage()).
  /// Errors: InvalidArgument (id), Forbidden (path), NotFound, AlreadyExists,
  /// CapacityExceeded (nothing changed), package errors (ovf codes), Subprocess (qemu-img).
  [[nodiscard]] Result<VmRecord> importVm(const ImportRequest& request);
  /// A new VM (Created) like VM @p from: the same spec (MACs from the package dropped, so the
  /// new VM gets its own stable ones) and fresh overlays on the same base images, nothing
  /// copied. Capacity is checked first. Errors: InvalidArgument, AlreadyExists, NotFound,
  /// CapacityExceeded (nothing changed).
  [[nodiscard]] Result<VmRecord> createVm(const std::string& id, const std::string& from);
  [[nodiscard]] Result<std::vector<VmRecord>> list();

  // ---- uploaded packages (<state_dir>/uploads) ----
  const UploadStore& uploads() const { return uploads_; }
  /// Where import requests may name packages: config.import_dirs and the upload folder.
  std::vector<std::string> importDirs() const;
  /// Verifies a received upload with the checks of an import (digests, descriptor, signature
  /// unless @p lax) and moves it into place. On error nothing is left.
  [[nodiscard]] Result<UploadInfo> commitUpload(UploadWriter& writer, bool lax);
  /// Errors: InvalidArgument, NotFound, Busy (an import reads it now).
  [[nodiscard]] Result<void> deleteUpload(const std::string& name);
  /// Errors: NotFound.
  [[nodiscard]] Result<VmRecord> get(const std::string& id);
  /// Exports VM @p request.id (running or not) as a package in the uploads folder: its disks
  /// are frozen where they stand (running: one QMP transaction of external snapshots, the
  /// guest writes on into new overlays) and the frozen images become base images that a site
  /// importing the package (importSeed) holds too, so a later live move there mirrors only
  /// what the guest wrote since (ADR 0029). Errors: InvalidArgument (name), NotFound, Busy,
  /// IllegalTransition (neither running nor stopped), Unsupported (a medium with an image),
  /// AlreadyExists (an upload of that name), Subprocess, Qmp*, Io.
  [[nodiscard]] Result<ExportResult> exportVm(const ExportRequest& request);
  /// Imports upload @p name as base images only (no VM), verified like any import (signature
  /// against trust_store and extra_trust unless @p lax), kept @p keep once no VM stands on
  /// them. Errors: as importVm's package errors, InvalidArgument, NotFound.
  [[nodiscard]] Result<SeedResult> importSeed(const std::string& name, std::chrono::seconds keep,
                                              bool lax = false);

  /// Removes a VM that is not running (IllegalTransition otherwise) and its disks.
  [[nodiscard]] Result<void> deleteVm(const std::string& id);
  /// {"capacity":..., "reserved":..., "used":..., "free":...}: hostUsage() as JSON.
  [[nodiscard]] Result<nlohmann::json> host();
  [[nodiscard]] Result<HostUsage> hostUsage();

  /// Launches QEMU (state Starting written first), waits until QMP reports the guest
  /// running, then Running. On failure: Failed, no QEMU left. Errors: IllegalTransition,
  /// NotFound, Subprocess, Qmp*, Timeout.
  [[nodiscard]] Result<VmRecord> startVm(const std::string& id);
  /// ACPI power-down, then SIGKILL after config.stop_timeout; Stopped.
  [[nodiscard]] Result<VmRecord> stopVm(const std::string& id);
  /// SIGKILL now; Stopped.
  [[nodiscard]] Result<VmRecord> killVm(const std::string& id);
  /// Last @p max_bytes of the serial console log.
  [[nodiscard]] Result<std::string> console(const std::string& id, size_t max_bytes);
  // ---- live migration, one side each (the orchestrator sequences both) ----

  /// Source: each disk's base image identity (ImageStore::baseDigest), disk id -> digest;
  /// disks with no base in the store are left out. Errors: NotFound, Subprocess.
  [[nodiscard]] Result<std::map<std::string, std::string>> diskBases(const std::string& id);
  /// Target: whether this site's store holds the base image @p digest.
  bool hasBase(const std::string& digest) const { return store_.findBase(digest).has_value(); }
  std::optional<std::string> basePath(const std::string& digest) const {
    return store_.findBase(digest);
  }

  /// Target: checks capacity, registers the VM as Incoming (before anything exists), creates
  /// qcow2 disks of the spec's virtual sizes (empty, or overlays on request.base_digests), starts
  /// QEMU -incoming defer -S on the site bridge, exports the disks over NBD on request.nbd_socket
  /// and listens for the migration on request.migration_socket. On failure nothing is left
  /// (abortIncoming()). Errors: AlreadyExists, CapacityExceeded, InvalidArgument, Subprocess, Qmp*.
  [[nodiscard]] Result<VmRecord> prepareIncoming(const IncomingRequest& request);
  /// Target, once the source's switchover returned: waits for the incoming migration to
  /// complete, removes the exports, resumes the guest (when it ran at the source) and
  /// announces its MAC; Running. Errors: Timeout, Io (the migration failed), Qmp*.
  [[nodiscard]] Result<VmRecord> finishIncoming(const std::string& id, bool resume,
                                                std::chrono::steady_clock::time_point deadline);
  /// Target: kills the incoming QEMU and removes the VM's disks and record (idempotent).
  [[nodiscard]] Result<void> abortIncoming(const std::string& id);
  /// Target, after a restart: whether the QEMU of incoming VM @p id runs its guest already
  /// (this agent sent `cont` and died before the migration's record said so; the VM reads
  /// incoming or running). Errors: NotFound, Qmp*.
  [[nodiscard]] Result<bool> incomingGuestRuns(const std::string& id);
  /// Target, after a restart, for a VM of which incomingGuestRuns(): what finishIncoming
  /// would have finished (exports removed, the MAC announced; no `cont`), and Running.
  /// Errors: IllegalTransition (neither incoming nor running, or the guest does not run), Qmp*.
  [[nodiscard]] Result<VmRecord> adoptIncoming(const std::string& id);
  /// Source: mirrors the disks to the target's exports, pre-copies RAM and switches over,
  /// holding the VM's operation lock throughout (stop/kill/delete meanwhile: Busy). On any
  /// failure the migration is cancelled and the VM runs on here as before; the error says
  /// what failed. Errors: IllegalTransition (not running), Busy, Timeout, Io, Qmp*.
  [[nodiscard]] Result<migration::SwitchoverResult> migrateOut(const OutgoingRequest& request,
                                                               migration::SourceMigration& state);
  /// Source, while migrateOut() runs for VM @p id: QEMU's report (RAM, dirty rate, expected
  /// downtime, block jobs). Errors: NotFound (no migration out of @p id runs), Qmp*.
  [[nodiscard]] Result<migration::MigrationProgress> outgoingProgress(const std::string& id);
  /// Source: makes a running migrateOut() of @p id stop at its next wait; it then cancels as
  /// on any failure (the VM runs on here) and fails with Cancelled. False: none runs.
  bool interruptOutgoing(const std::string& id, const std::string& reason);
  /// Source, after the agent restarted mid-migration: cancels whatever migration and mirror
  /// jobs (by the engine's names) QEMU still runs for VM @p id and resumes the guest.
  [[nodiscard]] Result<migration::CancelReport> cancelStrayMigration(const std::string& id);
  /// Source, when the target could not start the guest after a completed switchover: the
  /// source QEMU (paused in postmigrate) takes the disks back and runs the guest again.
  [[nodiscard]] Result<void> resumeAfterFailedSwitchover(const std::string& id);
  /// Source, after the target runs the guest: ends the source QEMU and removes the VM here;
  /// its disks are kept under migration @p migration_id's key for config.retain_departed
  /// (none when "" or 0), and kept images nothing needs any more are swept.
  [[nodiscard]] Result<void> releaseMigrated(const std::string& id,
                                             const std::string& migration_id = "");

  // ---- post-copy (ADR 0032; postcopy_ops.cc draws the exchange) ----

  /// Source, after migrateOut() returned in post-copy: QEMU's word on it (status
  /// postcopy-active, postcopy-paused, completed; RAM sent). Errors: NotFound, Busy, Qmp*.
  [[nodiscard]] Result<migration::MigrationProgress> postcopyProgress(const std::string& id);
  /// Source: pauses a post-copy whose stream stalled without closing (migrate-pause; the
  /// source first, then the target). A paused one is left as it is. Errors: IllegalTransition
  /// (not in post-copy), Qmp*.
  [[nodiscard]] Result<void> pausePostcopyOut(const std::string& id);
  /// Source: reconnects a paused post-copy to @p migration_socket (the target listens at its
  /// end: recoverPostcopyIn) and waits until pages flow again. Errors: IllegalTransition (not
  /// paused), Timeout, Io, Qmp*.
  [[nodiscard]] Result<void> resumePostcopyOut(const std::string& id,
                                               const std::string& migration_socket,
                                               std::chrono::steady_clock::time_point deadline);
  /// Target: a paused post-copy listens on @p migration_socket again (migrate-recover, out
  /// of band on the event monitor); one still waiting on a stalled stream is paused first.
  /// Errors: IllegalTransition (not running here, completed, or QEMU will not listen),
  /// QmpDisconnected, Timeout, Qmp*.
  [[nodiscard]] Result<void> recoverPostcopyIn(const std::string& id,
                                               const std::string& migration_socket,
                                               std::chrono::steady_clock::time_point deadline);

  /// Applies recoveryFor() to every registered VM (called by open()); returns what was done.
  [[nodiscard]] Result<std::vector<std::pair<std::string, RecoveryAction>>> recover();
  VmRunPaths runPaths(const std::string& id) const;
  /// What happened to the VMs (state changes and QEMU's events); see event_log.h.
  EventLog& events() { return events_; }

 private:
  AgentService(AgentConfig config, VmRegistryPtr registry, ImageStore store, UploadStore uploads)
      : config_(std::move(config)),
        registry_(std::move(registry)),
        store_(std::move(store)),
        uploads_(std::move(uploads)) {}
  Result<Resources> inUse();
  Result<VmRecord> importOpened(const ImportRequest& request, const OpenedPackage& package);
  Result<VmRecord> move(VmRecord r, VmEvent event, const nlohmann::json& why = {});

  std::timed_mutex& opMutex(const std::string& id);
  static constexpr std::chrono::milliseconds kLockPatience{500};
  /// The VM's operation lock, or Busy when another request holds it.
  Result<std::unique_lock<std::timed_mutex>> lockVm(const std::string& id);
  void watch(const VmRecord& r);  // starts (or replaces) the VM's monitor
  void setEventSink(const std::string& id, std::function<void(const qmp::QmpEvent&)> sink);
  Result<VmRecord> launch(VmRecord r, const ovf::VirtualSystemSpec& vs, bool incoming);
  void unwatch(const std::string& id);
  void onQemuExit(const std::string& id, const std::string& reason,
                  const std::atomic<bool>& cancelled);

  AgentConfig config_;
  VmRegistryPtr registry_;
  ImageStore store_;
  UploadStore uploads_;
  EventLog events_;
  std::mutex importing_mu_;
  /// Canonical paths of the packages imports read now (one entry per import).
  std::multiset<std::string> importing_;
  std::mutex import_mu_;
  std::mutex locks_mu_;
  std::map<std::string, std::unique_ptr<std::timed_mutex>> op_locks_;
  struct Outgoing {
    qmp::QmpClient* qmp = nullptr;
    migration::EventWaiter* waiter = nullptr;
  };
  /// Incoming VMs. While the copy comes in, a thread writes the images' data to disk every
  /// second, so that the flush barrier (ADR 0033) and a freeze inside the guest's pause have
  /// little left to write. migration_id: set when the arrival images are staged for a freeze
  /// (ADR 0027).
  struct Arrival {
    std::string migration_id;
    std::jthread syncer;
  };
  std::mutex arrivals_mu_;
  std::map<std::string, std::unique_ptr<Arrival>> arrivals_;
  std::mutex outgoing_mu_;  // guards outgoing_; held while a progress query uses the client
  std::map<std::string, Outgoing> outgoing_;
  std::mutex monitors_mu_;
  std::map<std::string, std::unique_ptr<VmMonitor>> monitors_;
};

/// JSON form of a registry record for the API (spec included, parsed).
nlohmann::json toJson(const VmRecord& record);
nlohmann::json toJson(const Resources& r);

}  // namespace vandra::agent
