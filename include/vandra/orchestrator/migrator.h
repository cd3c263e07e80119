// The migration protocol between two agents, on top of what each needs of its agent
// (MigrationHost, migration_host.h: AgentService's "live migration" halves in production) and
// the control messages (tunnel/control.h). The source drives; the target answers. Every phase is
// written to the MigrationStore before its side effect.
//
//   source (runSourceMigration)                        target (TargetSide::handle)
//   store: preflight ------------- preflight -------->  capacity, SLA jurisdiction  (store:
//   preflight)
//                    <------- preflight_result --------
//   store: prepare_target -------- prepare ---------->  prepareIncoming: disks, QEMU -incoming -S,
//                    <----------- prepared -----------  NBD exports, migrate-incoming
//   store: mirror_disks   migrateOut: mirrors (NBD stream), RAM (migration stream)
//   store: precopy_ram / switchover (before_step hooks) ... source paused, mirrors done
//                    ----------- switchover --------->  finishIncoming: exports gone, cont,
//                    <------------ started -----------  announce-self
//   store: confirm   post-copy only: until every page is sent; a broken stream is paused
//                    ------------ recover ----------->  and recovered over a new one
//                    <---------- recovering ----------  (postcopy_src.cc)
//                    releaseMigrated (source QEMU ends, overlays go)
//                    ------------ confirm ----------->  (store: done)
//   store: done      <----------- confirmed ----------
//   any failure before `started`: abort --> target abortIncoming; source cancelled/resumed;
//   store: rolling_back -> rolled_back (the VM runs at the source as before).
//   no answer to `switchover` (or a restart in switchover/confirm): settleSourceMigration
//                    ------------- query ------------>  its record's phase, guest running?
//                    <------------ status ------------
//                    then confirm (it runs the guest), or resume here (it never started it),
//                    or keep the guest paused and ask again (it cannot say yet).
// Each side runs one step object per phase, with run() and rollback(), driven by the
// transition table (migration_phase.h, completionOf): the source's in source_steps.h, the
// target's in target_side.cc; docs/migration/orchestrator.md ("The code") draws both.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vandra/orchestrator/migration_host.h"
#include "vandra/orchestrator/migration_store.h"
#include "vandra/tunnel/control.h"

namespace vandra::orchestrator {

using Clock = std::chrono::steady_clock;

/// One request, one answer, to the peer agent (production: the site tunnel's control stream;
/// tests: a loopback through the codec to a TargetSide).
class PeerChannel {
 public:
  virtual ~PeerChannel() = default;
  [[nodiscard]] virtual Result<tunnel::ControlMessage> exchange(
      const tunnel::ControlMessage& request, Clock::time_point deadline) = 0;
};

/// Local unix sockets that reach the other side's NBD server and migration listener.
struct StreamPaths {
  std::string nbd_socket;
  std::string migration_socket;
};

struct MigrateRequest {
  std::string migration_id;
  std::string vm_id;
  std::string source_site;
  std::string target_site;
  StreamPaths source_paths;  // where the source QEMU connects (the tunnel's listening ends)
  migration::MirrorOptions mirror;
  migration::RamMigrationOptions ram;
  std::chrono::seconds max_total{600};
  /// What this site runs its VMs as (QEMU machine type and CPU model): the target must run
  /// the same, or the guest would see its hardware change under it.
  std::string machine_type = "q35";
  std::string cpu_model = "qemu64";
  /// The operator's cancel, if asked (the reason): checked between the phases, and passed to
  /// migrateOut (interruptOutgoing() stops the waits inside it).
  std::function<std::optional<std::string>()> cancelled;
  /// The SLA's downtime budget, and a downtime limit the operator asked for: planned at
  /// preflight with the link's round trip (downtime_plan.h) into ram.downtime_limit_ms and
  /// ram.max_downtime_limit_ms, which are then ignored as given.
  std::optional<uint64_t> downtime_budget_ms;
  std::optional<uint64_t> downtime_limit_ms;
  /// Optional: the link's round trip without its queues (the tunnel's smallest PING); the
  /// preflight's own round trip is used too, and the smaller wins.
  std::function<std::optional<std::chrono::microseconds>()> link_rtt;
  /// The target's agent hides its NBD exports' FLUSH from this site's mirrors and flushes its
  /// disks itself before it starts the guest (a tunnel-version-6 peer, ADR 0033): two WAN
  /// round trips fewer in the pause, which the downtime plan counts.
  bool target_flushes = false;
  /// Optional: called once the guest has paused for the switchover (before the phase is
  /// written), to add what the caller measures at that instant to the report.
  std::function<void(nlohmann::json& report)> at_pause;
  /// Optional: called once, on the VM monitor's thread, the instant QEMU stops the guest for
  /// the switchover (AgentService's OutgoingRequest::on_switchover_stop): the caller points
  /// this site's LAN at the target there.
  std::function<void()> at_guest_stop;
  /// Optional: called once the target said which base images it holds too, before the disks
  /// mirror, with their digests (those of this VM's disks): the caller indexes them so that
  /// RAM pages that are blocks of them go as references (content_refs.h).
  std::function<void(const std::vector<std::string>& digests)> at_shared_bases;
  /// The NICs' networks renamed for the target (MigrateOptions::networks): sent with the
  /// preflight, the target registers the VM on its own names.
  std::map<std::string, std::string> networks;
  /// Post-copy (ram.post_copy; ADR 0032): a local unix socket that reaches the target's
  /// listener for recovery attempt @p attempt (a new migration stream on whatever link to the
  /// peer is up). Without it a broken post-copy waits until the caller can give one.
  std::function<Result<std::string>(uint32_t attempt)> reopen_migration;
  /// A post-copy whose RAM counter stands still this long while pages are missing has
  /// stalled (QEMU does not notice a stream that stalls without closing): it is paused and
  /// recovered like a broken one.
  std::chrono::milliseconds postcopy_stall{10000};
};

/// Source: runs the whole migration. Returns the final record: phase done, or rolled_back
/// with `error` saying why (the VM then runs here as before). Errors (the migration did not
/// even start, or the store failed): Busy (the VM is already migrating), NotFound, Io.
[[nodiscard]] Result<MigrationRecord> runSourceMigration(MigrationHost& host, MigrationStore& store,
                                                         PeerChannel& peer,
                                                         const MigrateRequest& request);

/// What settleSourceMigration needs to finish a post-copy it finds (ADR 0032): the source QEMU
/// is in post-copy, so it sends the rest (recovering the stream) before it releases anything.
struct PostcopyRecovery {
  /// MigrateRequest::reopen_migration's: a local socket reaching the target for an attempt.
  std::function<Result<std::string>(uint32_t attempt)> reopen_migration;
  /// Why to stop waiting (the agent stops), if so.
  std::function<std::optional<std::string>()> stopping;
};

/// Source: settles a migration left in switchover or confirm (by a restart, or by a lost
/// answer to `switchover`) by asking the target (`query`) and applying recoveryFor():
/// the target runs the guest -> release the source, confirm, done; it never started it ->
/// resume the source, rolled_back; it cannot say (unreachable, mid-step) -> unchanged, with
/// `error` saying what it waits for (call again later); nothing safe to do -> failed.
/// Each try is appended to report.settle (the last 20). Other records are returned as given.
/// A source QEMU found in post-copy is never released before it completed: with @p postcopy's
/// reopen_migration the call sends the rest first (blocking until then, or until
/// postcopy.stopping), without it the record waits.
[[nodiscard]] Result<MigrationRecord> settleSourceMigration(MigrationHost& host,
                                                            MigrationStore& store,
                                                            PeerChannel& peer,
                                                            MigrationRecord record,
                                                            const PostcopyRecovery& postcopy = {});

/// Target: answers the control messages of migrations into this agent.
class TargetSide {
 public:
  struct Config {
    std::string site;  // this site's name
    /// Where this site is (labels such as "EU", "SE"); a VM whose SLA names jurisdictions may
    /// come here when one of them is among these. Empty: the site does not say (refused then).
    std::vector<std::string> jurisdictions;
    /// Where this agent's QEMU serves the migration @p migration_id (its NBD server socket
    /// and migration listener; the tunnel forwards to them).
    std::function<StreamPaths(const std::string& migration_id)> paths;
    /// What this site runs VMs as; a source offering another machine type or CPU model is
    /// refused at preflight.
    std::string machine_type = "q35";
    std::string cpu_model = "qemu64";
    /// Networks this site can attach a VM's NICs to (the stretched site LAN); empty: any.
    std::vector<std::string> networks;
    /// Optional: the stretched LAN across the switchover (MigrationService): Hold once the
    /// target is prepared (frames for the guest that come from the source's site wait here),
    /// Deliver once the guest runs here (the bridge points at its tap and the held frames go
    /// to it), Drop when the migration rolls back. What it returns goes into the record's
    /// report ("lan_hold", "lan_deliver", "lan_drop"); it never fails the migration.
    enum class LanStep { Hold, Deliver, Drop };
    std::function<nlohmann::json(const std::string& vm_id, LanStep step)> lan;
    /// Post-copy: the local unix socket where this agent's QEMU listens for recovery attempt
    /// @p attempt of migration @p migration_id, forwarded from that attempt's migration
    /// stream on the link the `recover` came on. Absent: `recover` is refused.
    std::function<Result<std::string>(const std::string& migration_id, uint32_t attempt)>
        recover_path;
  };
  TargetSide(MigrationHost& host, MigrationStore& store, Config config);
  ~TargetSide();
  TargetSide(const TargetSide&) = delete;
  TargetSide& operator=(const TargetSide&) = delete;

  /// The answer to @p request: preflight_result, prepared, started, confirmed, aborted,
  /// status, recovering; an error for a message out of order or a migration it does not know.
  [[nodiscard]] Result<tunnel::ControlMessage> handle(const tunnel::ControlMessage& request);

  struct Context;  // target_side.cc
  class Step;      // one phase of the target's side (target_side.cc)

 private:
  Result<MigrationRecord> record(const std::string& migration_id);
  Result<tunnel::ControlMessage> runStep(Step& step, const std::string& migration_id);
  tunnel::Aborted rollBack(MigrationRecord r, const std::string& why);
  Result<tunnel::ControlMessage> recover(const tunnel::Recover& request);

  MigrationHost& host_;
  MigrationStore& store_;
  Config config_;
  std::vector<std::unique_ptr<Step>> steps_;  // prepare, switchover, confirm (target_side.cc)
};

}  // namespace vandra::orchestrator
