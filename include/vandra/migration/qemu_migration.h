// The migration engine's QEMU side: the QMP choreography of one live migration with local
// disks from a source QEMU to a destination QEMU (QEMU 7.2), for both ends. It does not move
// bytes and starts no process: the caller hands it connected QmpClients and socket paths
// (an NBD unix socket and a migration unix socket that, in production, the encrypted site
// tunnel forwards; in tests they connect the two QEMUs directly). docs/migration/qemu-engine.md
// has the sequence diagram and the QEMU 7.2 limits behind every choice.
//
// Order the orchestrator follows (S = source QMP, T = target QMP, E = their event waiters).
// The target QEMU runs the same VmSpec's command line with incoming="defer" AND
// start_paused (-S): it must stay paused after the migration until finishTarget() has
// removed the NBD exports, or the guest devices cannot take back exclusive write access.
//
//   T: startNbdExports(T, nbd_sock, {"fmt-disk1", "fmt-disk2"})   // writable exports
//   T: startIncoming(T, "unix:" + mig_sock, {})                   // events, return-path
//   S: SourceMigration src;
//   S: startMirrors(S, src, {{"fmt-disk1", nbd_sock, "fmt-disk1"}, ...}, {})
//   S: waitMirrorsReady(S, Es, src, deadline)                     // BLOCK_JOB_READY each
//   S: startRamMigration(S, src, "unix:" + mig_sock, {})          // pre-copy starts
//      ... progress(S) while it runs ...
//   S: switchover(S, Es, src, deadline)   // pre-switchover -> mirrors completed -> continue
//   T: waitIncomingDone(T, Et, deadline)                          // target: completed
//   T: finishTarget(T, {})                // nbd-server-stop, cont, announce-self; at once,
//                                         // on the target site: the guest is paused until here
//   S: the caller quits the source QEMU (status postmigrate)
//
// On any failure before switchover() returned: cancel(S, Es, src, deadline) (the source VM
// keeps running, as before) and abortTarget(T) (then the caller kills the target QEMU and
// deletes its disks).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/migration/disk_convergence.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::migration {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------
// Events

/// A queue of QMP events fed by QmpClientOptions::on_event (usually of the second, event-only
/// monitor) from which the engine takes the events it waits for. Events nobody has taken
/// yet stay queued (bounded: the oldest go first), so an event that arrives before its
/// waiter starts waiting is not lost. Thread-safe: push() from the client's event thread,
/// waitFor() from the caller's.
class EventWaiter {
 public:
  explicit EventWaiter(size_t capacity = 4096);
  EventWaiter(const EventWaiter&) = delete;
  EventWaiter& operator=(const EventWaiter&) = delete;

  /// A callback for QmpClientOptions::on_event that push()es into this waiter, which must
  /// outlive the client.
  std::function<void(const qmp::QmpEvent&)> sink();
  void push(const qmp::QmpEvent& event);

  /// Takes (removes) the oldest queued event named @p name for which @p match is true
  /// (empty: any), waiting for one until @p deadline. Other events stay queued.
  /// Errors: Timeout.
  [[nodiscard]] Result<qmp::QmpEvent> waitFor(
      std::string_view name, const std::function<bool(const qmp::QmpEvent&)>& match,
      Clock::time_point deadline);
  /// Takes the oldest queued event for which @p match is true, whatever its name.
  /// @p interruptible false: an interrupt() does not end this wait (steps that must finish,
  /// such as completing the mirrors of a paused source or the engine's own cancel).
  [[nodiscard]] Result<qmp::QmpEvent> waitForAny(
      const std::function<bool(const qmp::QmpEvent&)>& match, Clock::time_point deadline,
      bool interruptible = true);
  /// Drops every queued event for which @p match is true; returns how many.
  size_t discard(const std::function<bool(const qmp::QmpEvent&)>& match);
  /// A copy of the queued events, oldest first (for diagnostics).
  std::vector<qmp::QmpEvent> queued() const;
  /// Events dropped because the queue was full.
  uint64_t dropped() const;

  /// An operator's cancel: every wait (now and later) ends at once with ErrorCode::Cancelled
  /// and @p reason, so the engine's loops (mirrors, pre-copy) stop between two polls instead
  /// of running to their deadline. clearInterrupt() before the engine's own cancel() waits.
  void interrupt(std::string reason);
  void clearInterrupt();
  /// The reason, while interrupted.
  std::optional<std::string> interrupted() const;

 private:
  std::optional<std::string> interrupt_;
  size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<qmp::QmpEvent> events_;
  uint64_t dropped_ = 0;
};

// ---------------------------------------------------------------------------------------
// Target side (QEMU started with `-incoming defer -S`, the same devices and fresh disks of
// the same virtual size, created by the caller)

/// One writable NBD export of a disk's format node on the destination.
struct NbdExport {
  std::string node;         // block node exported (the builder's "fmt-<disk id>")
  std::string export_name;  // NBD export name (= node)
  std::string export_id;    // block-export id ("vandra-nbd-<node>")
  std::string socket_path;  // the NBD server's unix socket
};

/// `nbd-server-start` on the unix socket @p nbd_socket_path (must not exist yet), then
/// `block-export-add` (type nbd, writable) for each node in @p nodes, export name = node
/// name. On failure what was started is stopped again. Errors: InvalidArgument (no nodes,
/// path over 107 bytes), the QmpClient's errors (QmpError: e.g. unknown node, socket taken).
[[nodiscard]] Result<std::vector<NbdExport>> startNbdExports(qmp::QmpClient& target,
                                                             const std::string& nbd_socket_path,
                                                             const std::vector<std::string>& nodes);

struct IncomingOptions {
  /// Capability `return-path`: the destination opens the return path when the source asks
  /// (RamMigrationOptions::return_path), whatever it is set to here; post-copy needs it.
  bool return_path = true;
  /// Capability `postcopy-ram`: must equal RamMigrationOptions::post_copy (a source that
  /// starts post-copy towards a target without it kills the target's QEMU).
  bool post_copy = false;
};

/// Sets the destination's capabilities (`events` so it emits MIGRATION events; `return-path`
/// when asked, which both ends need) and listens with `migrate-incoming` on @p uri
/// ("unix:/path"; QEMU creates the socket). The target QEMU must be in status `inmigrate`.
/// Errors: IllegalTransition (not inmigrate), InvalidArgument (uri), QmpClient errors.
[[nodiscard]] Result<void> startIncoming(qmp::QmpClient& target, const std::string& uri,
                                         const IncomingOptions& options = {});

/// Waits until the destination's incoming migration is over: MIGRATION status `completed`
/// (success) or `failed`, with a query-migrate poll as a safety net for lost events.
/// Errors: Timeout, Io (the incoming migration failed), QmpClient errors.
[[nodiscard]] Result<void> waitIncomingDone(qmp::QmpClient& target, EventWaiter& events,
                                            Clock::time_point deadline);

/// announce-self parameters (QEMU's own defaults: 50 ms, then +100 ms a round, at most
/// 550 ms, 5 rounds): gratuitous RARPs so switches learn the MAC's new port.
struct AnnounceOptions {
  int initial_ms = 50;
  int max_ms = 550;
  int rounds = 5;
  int step_ms = 100;
};

/// `announce-self`: the first round goes out at once, the others on QEMU's timer.
[[nodiscard]] Result<void> announce(qmp::QmpClient& qemu, const AnnounceOptions& options = {});

struct FinishTargetOptions {
  AnnounceOptions announce;
  /// `cont` when the VM is not running after the migration. Pass the source's
  /// SourceMigration::vm_was_running: a target started with -S is `paused` after the
  /// migration whether the guest ran on the source or not, so only the source can tell.
  bool resume = true;
  /// Return trips (ADR 0027): before `cont`, each disk's arrival image is frozen under a new
  /// overlay that exists already (blockdev-snapshot-sync, mode existing: QEMU opens it without
  /// its backing file and puts it over the node). Local work only, inside the pause.
  struct Freeze {
    std::string disk_id;
    std::string node;          // the disk's format node (the arrival image)
    std::string overlay;       // the overlay file (stageArrival)
    std::string overlay_node;  // the name of the new top node
  };
  std::vector<Freeze> freeze;
};

struct TargetFinish {
  std::string status_before;        // query-status right after the migration ("running", "paused")
  double flush_ms = 0;              // the barrier: every disk flushed here before `cont`
  bool resumed = false;             // this call sent `cont`
  std::vector<std::string> frozen;  // disk ids whose arrival image options.freeze froze
  std::vector<std::string> freeze_errors;  // why the others were not (the guest writes on)
};

/// After waitIncomingDone(): `nbd-server-stop` (removes every export), after a pre-copy `stop`
/// (drains and flushes every disk here: the barrier of ADR 0033), `cont` unless the VM runs
/// already (and options.resume), then `announce-self`. With the target started with -S
/// (as it must be) the guest is paused from the source's stop until this `cont`, so call it
/// as soon as the migration completed, on the target's site. Errors: IllegalTransition (the
/// incoming migration is not completed), QmpClient errors.
[[nodiscard]] Result<TargetFinish> finishTarget(qmp::QmpClient& target,
                                                const FinishTargetOptions& options = {});

/// Best effort on a destination that will not take over: `nbd-server-stop` (the source's NBD
/// clients see the exports go) and `quit` (QEMU closes the disks and exits). Errors of both
/// are collected in the returned Error's secondary list; a monitor that is already gone is
/// not an error. The caller then reaps/kills the process and deletes its disks.
[[nodiscard]] Result<void> abortTarget(qmp::QmpClient& target);

/// The names the engine gives what it adds to QEMU for a disk's format node @p node: the
/// target's NBD export id, the source's NBD client node and its mirror job. Made here only
/// (the agent finds a stray migration's leftovers by them).
std::string nbdExportId(std::string_view node);    // "vandra-export-<node>"
std::string nbdClientNode(std::string_view node);  // "vandra-nbd-<node>"
std::string mirrorJobId(std::string_view node);    // "vandra-mirror-<node>"

// ---------------------------------------------------------------------------------------
// Source side

/// Where one source disk goes: its format node and the destination's export of the disk.
struct DiskMirrorTarget {
  std::string node;         // source block node the guest device uses ("fmt-disk1")
  std::string nbd_socket;   // unix socket reaching the destination's NBD server
  std::string export_name;  // NbdExport::export_name on the destination
  bool top_only = false;    // SyncMode::Top for this disk (whatever MirrorOptions::sync says)
  std::string device_id;    // the guest device's qdev id ("disk-disk1"): where
                            // MirrorOptions::converge throttles the guest's writes; empty: never
};

enum class CopyMode : uint8_t {
  /// Guest writes go to the source disk only; the job copies dirty areas afterwards. Guest
  /// I/O does not wait for the WAN; the backlog is flushed at switchover (inside the
  /// downtime). QEMU's default.
  Background,
  /// Every guest write is copied to the target before it completes (active mirroring): no
  /// backlog at switchover, but each write waits for a round trip over the WAN for the
  /// whole migration. QEMU 7.2 cannot switch a running job between modes (block-job-change
  /// came in 8.2), so the choice is made when the job starts.
  WriteBlocking,
};

enum class SyncMode : uint8_t {
  /// Copy the disk's whole content (every layer of its backing chain); the target image is
  /// a fresh, empty image of the same virtual size.
  Full,
  /// Copy only the top image (the qcow2 overlay); the target image must be an overlay whose
  /// backing file has the same content as the source's backing file (e.g. the base image
  /// shipped to the target site before). Unallocated clusters are not sent: the target
  /// reads them from its own backing file.
  Top,
};

struct MirrorOptions {
  uint64_t bandwidth_bytes_per_s = 0;  // per job; 0 = unlimited
  CopyMode copy_mode = CopyMode::Background;
  SyncMode sync = SyncMode::Full;
  /// Throttles the writes of a guest that keeps a mirror from becoming ready
  /// (disk_convergence.h); needs DiskMirrorTarget::device_id.
  DiskConvergenceOptions converge;
};

/// One mirror job the engine started.
struct MirrorJob {
  std::string disk_node;  // source format node
  std::string job_id;     // "vandra-mirror-<disk node>"
  std::string nbd_node;   // NBD client node on the source ("vandra-nbd-<disk node>")
  std::string export_name;
  bool nbd_node_added = false;  // blockdev-add succeeded (cancel() deletes it)
  bool job_started = false;     // blockdev-mirror succeeded (cancel() cancels it)
  bool ready = false;           // BLOCK_JOB_READY seen
  double connect_ms = 0;        // how long blockdev-add took: QEMU holds its main loop
                                // (the guest's devices) while it negotiates NBD
  std::string device_id;        // the guest device (DiskMirrorTarget::device_id)
  DiskConvergence convergence{DiskConvergenceOptions{.enabled = false}};
  std::vector<ThrottleStep> throttle_steps;  // every change of the device's write throttle
  bool throttled = false;  // a write throttle may be on the device: cancel() lifts it
};

/// One look at the pre-copy while waitPreSwitchover waits (query-migrate, every
/// kPrecopySampleEvery): how the passes converged, for the report.
struct PrecopySample {
  double at_s = 0;               // since `migrate`
  uint64_t passes = 0;           // QEMU's dirty-sync-count
  uint64_t transferred = 0;      // RAM bytes QEMU has written to its socket
  uint64_t remaining = 0;        // dirty RAM left, bytes
  double mbps = 0;               // QEMU's estimate of the link
  double dirty_bytes_per_s = 0;  // QEMU's dirty page rate, in bytes
  int throttle_percent = 0;      // auto-converge
  uint64_t throttle_step = 0;    // its increment then (cpu-throttle-increment)
  uint64_t limit_ms = 0;         // the downtime limit then
};
inline constexpr std::chrono::milliseconds kPrecopySampleEvery{250};
/// QEMU's own auto-converge ramp: 20 % at first, then +10 points every other pass.
inline constexpr uint64_t kQemuThrottleIncrement = 10;
inline constexpr uint64_t kQemuThrottleInitial = 20;
/// A judgement that finds the guest dirtying at least this share of what the pre-copy sends
/// doubles the throttle's step, up to kMaxThrottleIncrement (ADR 0034).
inline constexpr double kSteepenThrottleShare = 0.75;
inline constexpr uint64_t kMaxThrottleIncrement = 40;
inline constexpr size_t kMaxPrecopySamples = 480;  // a longer pre-copy keeps its last ones

/// What the engine has set up on the source so far; switchover() and cancel() read it, the
/// start functions fill it. One per migration.
struct SourceMigration {
  std::vector<MirrorJob> mirrors;
  Clock::time_point mirrors_started_at{};
  bool vm_was_running = false;  // query-status before anything was started
  bool state_known = false;     // vm_was_running is valid
  bool ram_started = false;     // `migrate` accepted
  Clock::time_point ram_started_at{};
  std::optional<Clock::time_point> ram_deadline;  // from RamMigrationOptions::max_total_time
  std::optional<Clock::time_point> paused_at;     // pre-switchover reached (vCPUs stopped)
  /// Capabilities and parameters as they were before startRamMigration changed them
  /// (restored by cancel()).
  nlohmann::json saved_capabilities = nlohmann::json::array();
  nlohmann::json saved_parameters = nlohmann::json::object();
  /// The pre-copy's downtime limit now, and how far waitPreSwitchover may raise it.
  uint64_t downtime_limit_ms = 0;
  uint64_t max_downtime_limit_ms = 0;
  uint64_t limit_raised_at_sync = 0;  // QEMU's dirty-sync-count when it was last raised
  bool auto_converge = false;
  bool post_copy_allowed = false;  // RamMigrationOptions::post_copy
  /// migrate-start-postcopy was sent (and why): from the pause on, only forward.
  bool post_copy = false;
  std::string post_copy_reason;
  std::vector<uint64_t> raised_limits;  // every raise, for the report
  std::vector<PrecopySample> precopy_samples;
  /// auto-converge's step (`cpu-throttle-increment`) now: QEMU's 10 until a judgement
  /// steepens it (PrecopyVerdict::throttle_increment).
  uint64_t throttle_increment = kQemuThrottleIncrement;
};

/// For each disk: `blockdev-add` an NBD client node (driver nbd, server unix socket,
/// export), then `blockdev-mirror` from the disk's node to it (job id "vandra-mirror-<node>",
/// sync full or top, copy-mode, speed). Each node and job is recorded in @p migration as soon
/// as QEMU accepted it, so on failure cancel() removes what this call created (as after any
/// other failure). Errors: InvalidArgument (no disks, a node twice, mirrors already
/// started), QmpClient errors (QmpError: unknown node, NBD connection refused, ...).
/// The block node each guest device reads now (query-block), by qdev id: the format node the
/// VM started with, or the overlay an arrival freeze put over it. Errors: QmpClient errors.
[[nodiscard]] Result<std::map<std::string, std::string>> deviceNodes(qmp::QmpClient& qemu);

[[nodiscard]] Result<void> startMirrors(qmp::QmpClient& source, SourceMigration& migration,
                                        const std::vector<DiskMirrorTarget>& disks,
                                        const MirrorOptions& options = {});

/// Waits for BLOCK_JOB_READY of every mirror (marks them ready), with a query-block-jobs
/// check as a safety net for lost events. Errors: Timeout, Io (a job ended with an error:
/// BLOCK_JOB_ERROR, or BLOCK_JOB_COMPLETED/CANCELLED before it was ready; message names the
/// job and QEMU's error), QmpClient errors.
[[nodiscard]] Result<void> waitMirrorsReady(qmp::QmpClient& source, EventWaiter& events,
                                            SourceMigration& migration, Clock::time_point deadline);

struct RamMigrationOptions {
  uint64_t downtime_limit_ms = 300;  // QEMU's target for the final stop-and-copy
  /// Above downtime_limit_ms: while the RAM has not converged after every
  /// kSyncsPerRaise passes over the dirty pages, waitPreSwitchover doubles the limit, up to
  /// this. 0 (or not above downtime_limit_ms): the limit stays fixed. A short pause first,
  /// a longer one only for a guest that outpaces the link.
  uint64_t max_downtime_limit_ms = 0;
  uint64_t max_bandwidth_bytes_per_s = 0;  // 0 = unlimited (QEMU 7.2's default: 128 MiB/s)
  bool auto_converge = false;              // throttle the vCPUs when RAM does not converge
  /// Above 0: XBZRLE with a cache of this many bytes. A page sent again goes as the delta to
  /// its cached copy (a guest rewriting part of its working set resends little).
  uint64_t xbzrle_cache_bytes = 0;
  /// Total budget from `migrate` to the pre-switchover pause; switchover() times out after
  /// it (the caller then cancels). Zero: only switchover()'s own deadline counts.
  std::chrono::milliseconds max_total_time{0};
  /// Capability `return-path`: the destination reports whether it loaded the device state,
  /// so the source says `completed` only for a migration the target accepted (and fails,
  /// resuming the VM, otherwise), a round trip later. Required by post-copy. Without it
  /// `completed` means everything was sent, and only the target can tell it was loaded.
  bool return_path = true;
  /// Post-copy allowed (the VM's SLA opted in, ovf::Sla::post_copy_allowed): capability
  /// `postcopy-ram` here and at the target (IncomingOptions::post_copy). A pre-copy that
  /// waitPreSwitchover judges never to converge then switches to post-copy instead of
  /// giving up. Never together with multifd (QEMU 7.2's target aborts after such a move).
  bool post_copy = false;
  /// Post-copy's own rate cap (`max-postcopy-bandwidth`; max-bandwidth does not apply to
  /// it). 0: none.
  uint64_t max_postcopy_bandwidth_bytes_per_s = 0;
};

/// Passes over the dirty RAM (QEMU's dirty-sync-count) between two raises of the downtime
/// limit, and before a pre-copy without auto-converge is judged never to converge.
inline constexpr uint64_t kSyncsPerRaise = 4;
/// Passes over the dirty RAM after which a pre-copy without auto-converge, at its largest
/// downtime limit, is given up (a converging pre-copy shrinks geometrically: a few passes).
inline constexpr uint64_t kGiveUpPasses = 16;
/// With post-copy allowed: a judged pre-copy whose dirty RAM needs more than this many times
/// the largest downtime limit to send (at QEMU's measured rate) switches to post-copy at once.
inline constexpr double kHopelessFactor = 4.0;

/// `migrate-set-capabilities` (events, pause-before-switchover, auto-converge, return-path,
/// xbzrle, postcopy-ram), `migrate-set-parameters` (downtime-limit, max-bandwidth,
/// xbzrle-cache-size, max-postcopy-bandwidth), then
/// `migrate` to @p uri
/// ("unix:/path", the destination's migrate-incoming socket). Mirrors may or may not run.
/// Errors: IllegalTransition (a migration is already active on this QEMU), InvalidArgument,
/// QmpClient errors.
[[nodiscard]] Result<void> startRamMigration(qmp::QmpClient& source, SourceMigration& migration,
                                             const std::string& uri,
                                             const RamMigrationOptions& options = {});

struct BlockJobProgress {
  std::string job_id;
  std::string status;  // "running", "ready", ...
  bool ready = false;
  uint64_t offset = 0;  // bytes copied so far (QEMU's estimate)
  uint64_t len = 0;     // bytes to copy in all (grows with guest writes)
  uint64_t speed = 0;
};

/// query-migrate + query-block-jobs. Absent members are 0.
struct MigrationProgress {
  std::string status;            // "none", "setup", "active", "pre-switchover",
                                 // "device", "completed", "failed", "cancelled", ...
  uint64_t ram_transferred = 0;  // bytes
  uint64_t ram_remaining = 0;
  uint64_t ram_total = 0;
  uint64_t ram_duplicate = 0;  // zero pages (sent as flags, not data)
  uint64_t ram_normal_bytes = 0;
  uint64_t dirty_sync_count = 0;  // pre-copy iterations
  double dirty_pages_rate = 0;    // pages/s
  double mbps = 0;
  uint64_t expected_downtime_ms = 0;
  uint64_t setup_time_ms = 0;
  uint64_t total_time_ms = 0;           // since `migrate`; final once completed
  std::optional<uint64_t> downtime_ms;  // set once completed
  int cpu_throttle_percentage = 0;      // auto-converge
  std::string error_desc;               // when failed
  std::vector<BlockJobProgress> jobs;   // every block job of this QEMU
};

[[nodiscard]] Result<MigrationProgress> progress(qmp::QmpClient& source);

/// Waits for MIGRATION status `pre-switchover`: the remaining RAM fits the downtime limit,
/// QEMU has stopped the vCPUs and drained the disks and now waits for migrate-continue
/// (until SourceMigration::ram_deadline or @p deadline, whichever is first). Records
/// paused_at. The guest is down from here: follow with switchover() (or cancel()) at once.
/// Meanwhile it raises the downtime limit (RamMigrationOptions::max_downtime_limit_ms), and
/// without auto-converge it gives up early, with Unsupported, when the guest dirties its RAM
/// faster than QEMU measures the link to carry it: that pre-copy would never converge. With
/// post-copy allowed it sends `migrate-start-postcopy` instead (SourceMigration::post_copy):
/// QEMU then pauses the same way (pause-before-switchover) and switchover() goes on.
/// Optional: switchover() waits itself when the caller did not. Errors: Timeout (RAM did
/// not converge in time), Unsupported (see above), Io (the migration failed, was cancelled,
/// or completed without the pause), IllegalTransition (no RAM migration started), QmpClient
/// errors.
[[nodiscard]] Result<void> waitPreSwitchover(qmp::QmpClient& source, EventWaiter& events,
                                             SourceMigration& migration,
                                             Clock::time_point deadline);

/// What waitPreSwitchover does after a pass of the pre-copy that did not converge.
struct PrecopyVerdict {
  bool judged = false;                 // kSyncsPerRaise passes since the last judgement
  std::optional<uint64_t> raise_to;    // set the downtime limit to this
  std::optional<std::string> give_up;  // why the pre-copy can never converge
  /// Instead of give_up when post-copy is allowed: send migrate-start-postcopy (and why).
  std::optional<std::string> start_post_copy;
  /// With auto-converge: set `cpu-throttle-increment` (and `cpu-throttle-initial`, if lower)
  /// to this: the guest dirties nearly as fast as the pre-copy sends.
  std::optional<uint64_t> throttle_increment;
};
/// Every kSyncsPerRaise passes over the dirty RAM: double the downtime limit while it is
/// below its maximum; at the maximum and without auto-converge, give up when QEMU measures
/// the guest dirtying at least as fast as the link carries, or after kGiveUpPasses passes;
/// with post-copy allowed, switch to it instead (once), and at once (before raising the limit,
/// with or without auto-converge) when the dirty RAM needs more than kHopelessFactor times
/// the largest limit. With auto-converge, at each judgement: double the throttle's step when
/// QEMU's dirty rate is at least kSteepenThrottleShare of the rate the pre-copy sent at over
/// its last two seconds of samples (SourceMigration::precopy_samples). Pure; unit-tested.
PrecopyVerdict judgePrecopy(const SourceMigration& migration, const MigrationProgress& progress);

struct SwitchoverResult {
  uint64_t downtime_ms = 0;    // QEMU's report: vCPUs stopped on the source until the end
  uint64_t total_time_ms = 0;  // QEMU's: `migrate` to completed
  uint64_t setup_time_ms = 0;
  uint64_t ram_transferred = 0;         // bytes of RAM stream
  uint64_t disk_transferred = 0;        // mirror bytes (sum of job offsets at completion)
  double mirror_complete_ms = 0;        // of the downtime: completing the mirrors at pre-switchover
  double paused_ms = 0;                 // measured here: pre-switchover seen -> completed seen
  double continue_to_completed_ms = 0;  // of paused_ms: migrate-continue -> completed seen
  uint64_t ram_at_pause = 0;            // QEMU's RAM bytes written to its socket at the pause
  uint64_t ram_remaining_at_pause = 0;  // QEMU's count of dirty RAM left then
  double mbps_at_pause = 0;             // QEMU's estimate of the link, from which it chose to pause
  uint64_t downtime_limit_ms = 0;       // QEMU's downtime limit when it paused (after any raise)
  std::vector<std::string> warnings;    // non-fatal: e.g. an NBD node that would not go
  /// The switch went to post-copy: the target runs the guest, the source still sends the
  /// pages it has not received (waitPostcopyEnd); downtime_ms, total_time_ms and
  /// ram_transferred are QEMU's figures at the switch, paused_ms ends at postcopy-active.
  bool post_copy = false;
  std::string post_copy_reason;        // why the pre-copy could not finish by itself
  std::vector<PrecopySample> precopy;  // SourceMigration::precopy_samples
};

/// waitPreSwitchover() unless the caller did (QEMU has stopped the vCPUs and drained the
/// disks; until SourceMigration::ram_deadline or @p deadline, whichever is first), completes
/// every mirror with `block-job-cancel` (a ready mirror then finishes its last copy and
/// emits BLOCK_JOB_COMPLETED: the target holds the disks as of the stop; `job-complete`
/// would instead switch the source's guest device over to the NBD node), then
/// `migrate-continue` and waits for `completed` (by @p deadline, but at least 60 s after the
/// pause), and removes the NBD client nodes. On failure after the pause the VM stays stopped
/// until cancel(). @p before_continue, when set, runs once the mirrors were told to complete
/// and before `migrate-continue` (the point after which the target holds the whole VM): the
/// caller persists its switchover phase there, while the mirrors' last round trip is under
/// way, instead of in series with it; an error from it fails the switchover before
/// `migrate-continue`.
/// After a switch to post-copy (SourceMigration::post_copy) it returns at `postcopy-active`,
/// with the target running the guest as soon as it has sent `cont`.
/// Errors: Timeout (no pre-switchover in time: RAM did not converge), IllegalTransition (a
/// mirror is not ready), Io (a mirror or the migration failed, or it was cancelled),
/// QmpClient errors.
[[nodiscard]] Result<SwitchoverResult> switchover(
    qmp::QmpClient& source, EventWaiter& events, SourceMigration& migration,
    Clock::time_point deadline, const std::function<Result<void>()>& before_continue = {});

// ---------------------------------------------------------------------------------------
// Post-copy (qemu_migration_postcopy.cc draws the states). Once the source has continued into
// post-copy the guest's memory is split across the two QEMUs: nothing rolls back; a broken
// stream pauses both (postcopy-paused) until recoverIncoming() + resumePostcopy() over a new
// connection. Only SIGKILL ends a paused target.

/// True for postcopy-active, postcopy-paused and postcopy-recover.
bool inPostcopy(std::string_view status);

/// The target's side of the switch: waits until the incoming migration is `completed`
/// (false: pre-copy) or `postcopy-active` (true: the source has continued into post-copy;
/// finishTarget() may run now). Errors: Timeout, Io (failed, cancelled, or paused before the
/// guest was handed over), QmpClient errors.
[[nodiscard]] Result<bool> waitIncomingSwitched(qmp::QmpClient& target, EventWaiter& events,
                                                Clock::time_point deadline);

struct PostcopyEnd {
  bool completed = false;  // every page has arrived; false: postcopy-paused (the stream broke)
  uint64_t ram_transferred = 0;
  uint64_t total_time_ms = 0;  // QEMU's, once completed
  uint64_t downtime_ms = 0;
  std::string error_desc;  // QEMU's word on why it paused, when it gives one
};

/// The source, in post-copy: waits until it is `completed` or `postcopy-paused`.
/// Errors: Timeout, Io (failed or cancelled), QmpClient errors.
[[nodiscard]] Result<PostcopyEnd> waitPostcopyEnd(qmp::QmpClient& source, EventWaiter& events,
                                                  Clock::time_point deadline);

/// The target, in post-copy: waits for its MIGRATION event `completed` (true) or
/// `postcopy-paused` (false), from the event monitor only: the main loop of a paused target
/// may wait for a missing page (a device writing guest memory), and then no in-band command,
/// query-migrate included, is answered. Errors: Timeout, Io (failed: the guest is lost).
[[nodiscard]] Result<bool> waitIncomingPostcopyEnd(EventWaiter& events, Clock::time_point deadline);

/// Either side, in post-copy: `migrate-pause`, out of band (QmpClientOptions::enable_oob).
/// For a stream that stalls without closing, which QEMU does not notice by itself: each end
/// must be paused on its own before it can be recovered, the source first (with the target
/// paused first, the source's pause failed: "Failed to pause source migration").
/// Errors: IllegalTransition (not in post-copy, or QEMU could not pause), QmpClient errors.
[[nodiscard]] Result<void> pausePostcopy(qmp::QmpClient& qemu);

/// The target of a paused post-copy listens again: `migrate-recover` on @p uri
/// ("unix:/path"), out of band (the client needs QmpClientOptions::enable_oob).
/// Errors: IllegalTransition (not postcopy-paused), InvalidArgument, QmpClient errors.
[[nodiscard]] Result<void> recoverIncoming(qmp::QmpClient& target, const std::string& uri);

/// The source of a paused post-copy reconnects to the target's recoverIncoming() socket
/// (`migrate` with resume) and waits until it sends pages again (postcopy-active, or
/// completed). Errors: IllegalTransition (not postcopy-paused), Timeout (still paused at
/// @p deadline: the new connection broke too), Io, InvalidArgument, QmpClient errors.
[[nodiscard]] Result<void> resumePostcopy(qmp::QmpClient& source, EventWaiter& events,
                                          const std::string& uri, Clock::time_point deadline);

/// Undoes whatever the migration set up on the source, in any phase before `completed`:
/// `migrate_cancel` (QEMU resumes a VM it stopped for pre-switchover or completion) and wait
/// for `cancelled`/`failed`, `block-job-cancel force` of each mirror and wait for it to go,
/// `blockdev-del` of the NBD client nodes, migration capabilities and parameters restored,
/// and `cont` when the VM ran before and does not now; then, when the RAM migration had
/// started, `announce-self`: the switchover may have pointed the LAN at the target already
/// (docs/migration/orchestrator.md, "The LAN across the switchover"), and the guest's RARPs
/// point it back. Tries every step even after one failed (failures of later steps are
/// Error::secondary). Errors: IllegalTransition (the
/// migration already completed, or is in post-copy: the target owns the VM, nothing is
/// undone; QEMU 7.2 would accept a `migrate_cancel` in post-copy and lose the guest), Timeout,
/// QmpClient errors.
struct CancelReport {
  std::string migration_status;  // after the cancel: "cancelled", "failed", "none" (never started)
  size_t mirrors_cancelled = 0;  // jobs this call cancelled
  size_t nbd_nodes_deleted = 0;
  size_t throttles_lifted = 0;  // guest devices whose write throttle this call lifted
  bool resumed = false;         // this call sent `cont` (QEMU had not resumed the VM itself)
  bool announced = false;       // this call sent `announce-self`
};

[[nodiscard]] Result<CancelReport> cancel(qmp::QmpClient& source, EventWaiter& events,
                                          SourceMigration& migration, Clock::time_point deadline);

}  // namespace vandra::migration
