// Private to src/orchestrator: MigrationService::Impl (migration_service.h) and what its
// files share. The service is split by concern: migration_service.cc (helpers, stopping, the
// public face), migration_service_links.cc (site links and the target's control-stream
// servers), migration_service_runs.cc (the source's migrations; show/list/cancel/wait),
// migration_service_settle.cc (settling what needs the peer's word, and recovery),
// migration_service_lan.cc (the stretched LAN).
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "source_steps.h"
#include "vandra/agent/agent_client.h"
#include "vandra/agent/migration_host_adapter.h"
#include "vandra/common/ethernet.h"
#include "vandra/common/reaper.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/orchestrator/lan_silence.h"
#include "vandra/orchestrator/link_meter.h"
#include "vandra/orchestrator/metered_store.h"
#include "vandra/orchestrator/migration_service.h"
#include "vandra/orchestrator/migrator.h"
#include "vandra/orchestrator/resolve.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/qemu/cmdline_builder.h"
#include "vandra/tunnel/control.h"
#include "vandra/tunnel/forward.h"

namespace vandra::orchestrator {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

inline constexpr auto kControlTimeout = std::chrono::seconds(180);  // one answer of the target

/// What one migration's local sockets and tunnel streams are called, made here only:
/// <run_dir>/<id>/ holds nbd.sock (the NBD server's end at the target, the tunnel's listening
/// end at the source), mig.sock (the source QEMU's migration uri) and in.sock (the target
/// QEMU's migrate-incoming); the tunnel carries them as streams "<id>/nbd" and "<id>/mig".
struct MigrationNames {
  std::string dir;
  std::string nbd_socket;
  std::string source_migration_socket;
  std::string target_migration_socket;
  std::string nbd_stream;
  std::string migration_stream;
};
inline MigrationNames migrationNames(const std::string& run_dir, const std::string& id) {
  const std::string dir = run_dir + "/" + id;
  return {dir, dir + "/nbd.sock", dir + "/mig.sock", dir + "/in.sock", id + "/nbd", id + "/mig"};
}

/// Post-copy recovery attempt @p attempt's migration stream, and the socket where the
/// target's QEMU listens for every attempt (QEMU keeps a listener of an attempt whose stream
/// never came, so each attempt reaches the same path).
inline std::string recoveryStreamName(const std::string& id, uint32_t attempt) {
  return id + "/mig-r" + std::to_string(attempt);
}
inline std::string targetRecoverySocket(const MigrationNames& names) {
  return names.dir + "/in-recover.sock";
}
/// The tunnel version from which the peer takes post-copy (tunnel/frame.h).
inline constexpr uint8_t kPostCopyVersion = 5;
/// The tunnel version from which the target's agent hides its NBD exports' FLUSH and flushes
/// its disks itself before it starts the guest (ADR 0033): the source plans two round trips
/// fewer in the pause.
inline constexpr uint8_t kTargetFlushesVersion = 6;

/// Microseconds since the epoch (record timestamps).
int64_t nowUs();
/// "m-" and 12 random hex digits.
std::string newMigrationId();
/// The LAN tap name of a new link to @p peer (migration_service_lan.cc).
std::string lanTapName(const std::string& peer);
/// A record as the API shows it.
json toJson(const MigrationRecord& r);

// A control stream as the source's PeerChannel: one message out, one back. When the stream
// is gone (the tunnel broke, the peer's agent restarted) an abort, a confirm or a query is sent
// again once on a new control stream (@p reopen dials a new tunnel when needed): the peer must hear
// about the end of a migration even when the link that carried it died.
class StreamChannel : public PeerChannel {
 public:
  StreamChannel(tunnel::Stream stream, std::function<Result<tunnel::Stream>()> reopen)
      : stream_(std::move(stream)), reopen_(std::move(reopen)) {}
  Result<tunnel::ControlMessage> exchange(const tunnel::ControlMessage& request,
                                          Clock::time_point deadline) override {
    auto answer = once(request, deadline);
    const bool retry = std::holds_alternative<tunnel::Abort>(request) ||
                       std::holds_alternative<tunnel::Confirm>(request) ||
                       std::holds_alternative<tunnel::Query>(request);
    if (answer || !retry || answer.error().code == ErrorCode::TunnelProtocol || !reopen_) {
      return answer;
    }
    stream_.close(tunnel::WireError::Cancelled);
    auto fresh = reopen_();
    if (!fresh) {
      return fail(Error(
          answer.error().code,
          answer.error().describe() + "; again on a new tunnel: " + fresh.error().describe()));
    }
    stream_ = std::move(*fresh);
    return once(request, deadline);
  }
  void close() { stream_.close(); }

 private:
  Result<tunnel::ControlMessage> once(const tunnel::ControlMessage& request,
                                      Clock::time_point deadline) {
    VANDRA_TRY_ASSIGN(const std::string wire, tunnel::encodeControl(request));
    VANDRA_TRY(stream_.writeMessage(wire, deadline));
    VANDRA_TRY_ASSIGN(auto answer, stream_.readMessage(deadline));
    if (!answer) {
      return fail(ErrorCode::Io, "The target closed the control stream");
    }
    return tunnel::decodeControl(*answer);
  }

  tunnel::Stream stream_;
  std::function<Result<tunnel::Stream>()> reopen_;
};

// ---- a link to one peer site ----------------------------------------------------------------

/// A number no other PeerLink of this process has (the meter tells tunnels apart by it).
uint64_t nextLinkGeneration();

struct PeerLink {
  std::string peer;
  std::unique_ptr<tunnel::Tunnel> tunnel;
  const uint64_t generation = nextLinkGeneration();
  bool dialed = false;  // this site dialed it (else: accepted the peer's)
  const SteadyClock::time_point since = SteadyClock::now();
  std::atomic<bool> probe_serving{false};  // the peer's probe runs (one at a time)
  std::mutex mu;                           // guards the members below
  std::unique_ptr<tunnel::TapBridge> lan;
  std::map<std::string, std::vector<std::unique_ptr<tunnel::UnixForwarder>>>
      forwarders;  // by migration id
  // A thread per stream the peer opened to be served (control, probe); `ended` is set as the
  // thread's last act.
  struct Server {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> ended;
  };
  std::vector<Server> servers;
  std::unique_ptr<TargetSide> target;

  // Runs @p serve on a thread of its own, after joining those that have ended: an ended
  // thread not joined keeps its stack (a soak of 100 moves grew the agents by ~100 KiB a
  // move). The caller holds mu.
  void startServer(std::function<void()> serve) {
    std::erase_if(servers, [](Server& s) {
      if (!s.ended->load()) {
        return false;
      }
      s.thread.join();
      return true;
    });
    auto ended = std::make_shared<std::atomic<bool>>(false);
    servers.push_back({std::thread([serve = std::move(serve), ended] {
                         serve();
                         ended->store(true);
                       }),
                       ended});
  }

  ~PeerLink() {
    if (tunnel) {
      tunnel->close("agent stopping");  // every stream fails: the servers' reads end
    }
    for (auto& s : servers) {
      if (s.thread.joinable()) {
        s.thread.join();
      }
    }
    std::lock_guard lock(mu);
    forwarders.clear();  // before the tunnel
    lan.reset();
  }
  void dropForwarders(const std::string& id) {
    std::vector<std::unique_ptr<tunnel::UnixForwarder>> gone;
    {
      std::lock_guard lock(mu);
      if (auto it = forwarders.find(id); it != forwarders.end()) {
        gone = std::move(it->second);
        forwarders.erase(it);
      }
    }
  }
};

struct ActiveMigration {
  std::string id;
  std::string vm;
  std::string peer;
  uint64_t cap_bytes_per_s = 0;  // this migration's cap (0: none) and who set it
  std::string cap_by;            // "operator" or "sla"
  bool content_refs = true;      // MigrateOptions::content_refs (and the site's setting)
  std::shared_ptr<PeerLink> link;
  tunnel::TunnelStats at_start;
  SteadyClock::time_point started = SteadyClock::now();
  std::mutex mu;
  std::optional<std::string> cancel_reason;
  bool ended = false;     // the runner has returned
  bool settling = false;  // ... leaving the record to the settler (it waits for the peer's word)
  std::thread runner;
};

class MigrationService::Impl {
 public:
  Impl(agent::AgentService& agent, MigrationStore& store, MigrationServiceConfig config)
      : agent_(agent),
        host_(agent),
        metered_(store, config.metrics),
        store_(metered_),
        config_(std::move(config)) {}

  ~Impl();

  Result<void> startListening();

  uint16_t port() const { return listener_ ? listener_->port() : 0; }

  // ---- links ----

  tunnel::TunnelSettings settings() const;

  void wire(const std::shared_ptr<PeerLink>& link, bool accepted);

  void attachLan(PeerLink& l, tunnel::Stream s);

  void serveControl(PeerLink& l, tunnel::Stream s);

  uint64_t capFor(const std::string& peer) const;

  void adopt(std::unique_ptr<tunnel::Tunnel> t);
  /// An accepted tunnel must not replace @p l (see adopt()).
  bool keepsAgainstNewcomer(const std::shared_ptr<PeerLink>& l);
  std::string linkUpAlready(const std::string& peer) const;

  Result<std::shared_ptr<PeerLink>> linkTo(const std::string& peer);

  /// Post-copy recovery streams of one migration (MigrateRequest::reopen_migration): each
  /// forwarder with the link whose tunnel it uses, kept until the migration ends.
  struct ReopenedStreams {
    std::mutex mu;
    std::vector<std::pair<std::shared_ptr<PeerLink>, std::unique_ptr<tunnel::UnixForwarder>>> held;
  };
  /// A reopen_migration for migration @p id to @p peer: attempt n's stream on whatever link is
  /// up then, listening on a socket in the migration's run folder; kept in @p keep.
  std::function<Result<std::string>(uint32_t)> reopener(const std::string& id,
                                                        const std::string& peer,
                                                        ReopenedStreams& keep);

  // ---- source ----

  Result<json> begin(const std::string& vm_id, const MigrateOptions& o);

  void run(ActiveMigration& a, MigrateRequest req);

  std::shared_ptr<ActiveMigration> activeById(const std::string& id) const;

  // ---- settling what needs the peer's word (migrator.h, settleSourceMigration) ----

  void startSettler();

  void settleLater(const std::string& id);

  void closeUnconfirmedLater(const std::string& id);

  void closeUnconfirmed(const std::string& id);

  void settleLoop();

  bool settleOnce(const std::string& id);

  static std::vector<std::string> lanInterfaces(const std::string& vm_id, PeerLink& link);

  Result<std::vector<std::string>> nicMacs(const std::string& vm_id);

  Result<std::string> firstNicMac(const std::string& vm_id);

  // ---- the LAN across the switchover (orchestrator.md, "The LAN across the switchover") ----
  //
  //   source site                                            target site
  //   STOP: bridge -> LAN tap for the VM's MACs  ══ frames ══> LAN tap holds them (since prepare)
  //   (rollback: the guest's RARPs point it back)              started: bridge -> the VM's tap,
  //                                                            held frames delivered (Drop on
  //                                                            rollback)

  // Frames held at the target this long at most; older ones are stale when the guest starts.
  static constexpr auto kLanHoldLifetime = std::chrono::minutes(15);
  static constexpr auto kLanHeldMaxAge = std::chrono::seconds(10);

  json lanAtTarget(PeerLink& l, const std::string& vm_id, TargetSide::Config::LanStep step);

  json lanAtSourceStop(PeerLink& l, const std::vector<std::string>& macs);

  Result<json> show(const std::string& id);

  Result<json> list(const std::string& vm_id);

  Result<json> cancel(const std::string& id);

  Result<json> wait(const std::string& id, SteadyClock::time_point deadline);

  json peers() const;

  Result<json> recover();
  /// The operator's word on a source waiting for its peer (resolve.h).
  Result<json> resolve(const std::string& id, const Resolution& how);
  /// True while the settler holds @p id and no resolve owns it (it waits for the peer).
  bool waitingForPeer(const std::string& id);
  void listenerChanged(const tunnel::ListenerStatus& st);

  // ---- measuring the links (migration_service_measure.cc) ----

  void startMeter();
  void stopMeter();
  void meterLoop();
  void sampleLinks();
  void keepLinksUp();
  std::vector<LinkMeasurement> links();
  Result<LinkMeasurement> probe(const std::string& peer, uint64_t bytes);
  /// True while a migration (either way) uses the link to @p peer.
  bool migratingOver(const std::string& peer);
  void wireProbe(const std::shared_ptr<PeerLink>& link);
  void serveProbe(PeerLink& l, tunnel::Stream s, SteadyClock::time_point opened);
  void linkUp(const std::string& peer, bool dialed);
  std::optional<tunnel::ListenerStatus> listenerStatus() const {
    return listener_ ? std::optional(listener_->status()) : std::nullopt;
  }

  agent::AgentService& agent_;
  agent::AgentMigrationHost host_;  // what the protocol (migrator.h) needs of agent_
  MeteredMigrationStore metered_;   // the caller's store, counting migrations' ends
  MigrationStore& store_;           // every write goes through metered_
  MigrationServiceConfig config_;
  std::unique_ptr<tunnel::TunnelListener> listener_;
  mutable std::mutex mu_;  // links_, active_, stopping_
  std::mutex dial_mu_;
  std::map<std::string, std::shared_ptr<PeerLink>> links_;
  std::map<std::string, std::shared_ptr<ActiveMigration>> active_;
  std::condition_variable_any ended_cv_;
  bool stopping_ = false;
  std::string lan_error_;
  struct Settle {
    SteadyClock::time_point due;
    std::chrono::seconds backoff;
    bool trying = false;     // the settler is asking the peer right now
    bool resolving = false;  // an operator's resolve owns it: the settler leaves it alone
  };
  std::mutex settle_mu_;  // settling_, settle_stop_
  std::condition_variable settle_cv_;
  std::condition_variable settled_cv_;      // an entry left settling_
  std::map<std::string, Settle> settling_;  // by migration id
  // Target records in confirm, by id: when to close them if the source has not confirmed.
  std::map<std::string, SteadyClock::time_point> confirm_due_;
  bool settle_stop_ = false;
  std::thread settler_;
  std::mutex meter_mu_;  // meters_, meter_stop_, links_wanted_until_, dialing_, last_probe_
  std::condition_variable meter_cv_;
  std::map<std::string, LinkMeter> meters_;  // by peer
  bool meter_stop_ = false;
  bool meter_kick_ = false;                       // links() wants a dial now
  SteadyClock::time_point links_wanted_until_{};  // GET /v1/links keeps the links up till then
  struct Dialing {
    SteadyClock::time_point since{};  // wanted and without a link since
    SteadyClock::time_point next{};   // no dial before
    std::chrono::seconds backoff{0};
  };
  std::map<std::string, Dialing> dialing_;
  std::map<std::string, SteadyClock::time_point> last_probe_;
  std::atomic<bool> probing_{false};
  std::thread meter_;
  // Where links' stream handlers and servers let go of the link they locked: never the last
  // reference on one of the link's own threads. Last: it ends before everything a link uses.
  Reaper<PeerLink> link_reaper_;
};

}  // namespace vandra::orchestrator
