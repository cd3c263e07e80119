// The controller's logic, between the HTTP API (http_api.h) and the agents (agent_link.h):
// inventory kept in step with what the agents report, the SLA checked at every migration
// (preflight here, before any agent is asked) and continuously, migrations started and
// followed to their end (also those a previous leader started: they are adopted), and the
// leadership lease that decides which controller may act.
//
//   every refresh interval (background thread, refreshOnce()):
//     lease: acquire/renew ──► leader? epoch to every agent link : standby (reads only)
//     agents: capacity + VMs ──► hosts, VMs (new ones adopted, gone ones "missing")
//     migrations in the store still running ──► followed until the agent says they ended
//     SLA of every VM re-checked against the facts ──► events for new violations
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
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

#include "vandra/agent/package_files.h"
#include "vandra/common/result.h"
#include "vandra/controller/agent_link.h"
#include "vandra/controller/inventory.h"
#include "vandra/controller/metrics.h"
#include "vandra/controller/progress_hub.h"
#include "vandra/controller/store.h"
#include "vandra/placement/mobility.h"
#include "vandra/placement/solver.h"

namespace vandra::controller {

/// One site as the controller starts with it (the site file): its facts and its agents.
struct SiteConfig {
  Site site;
  std::vector<AgentAccess> agents;
};

/// How workloads wander (placement/mobility.h): the loop's limits.
struct MobilityOptions {
  int64_t min_stay_s = 600;         // a VM stays at least this long where it arrived
  uint32_t max_moves_per_link = 2;  // moves at once on one link, those running included
};

struct ServiceOptions {
  std::string controller_id = "controller";  // the lease holder's name (unique per controller)
  int64_t lease_ttl_ms = 10000;              // a standby takes over this long after a death
  int64_t refresh_interval_ms = 2000;
  /// Unix time in ms (tests substitute their own).
  std::function<int64_t()> now_ms;
  MobilityOptions mobility;
  /// Where uploaded packages are kept ("" = uploads refused); one upload's bound; the CA
  /// bundle their signatures are checked against ("" = the system's).
  std::string package_dir;
  uint64_t max_upload_bytes = agent::kDefaultMaxUploadBytes;
  std::string trust_store;
  /// A link measurement older than this is not used: the configured value is (measured_links.h).
  int64_t link_max_age_ms = 15 * 60 * 1000;
  /// How often each running migration's progress is read from its agent and pushed to the
  /// consoles (GET /v1/stream) and kept as a sample (the history charts).
  int64_t progress_interval_ms = 500;
};

/// Who asks: the client certificate's common name and its role.
enum class Role : uint8_t { None, Viewer, Operator, System };
std::string_view toString(Role r);
struct Caller {
  std::string who;
  Role role = Role::None;
};

struct LeaderState {
  bool leader = false;
  int64_t epoch = 0;
  std::string holder;
  std::string controller_id;
};

/// One VM's SLA against where it runs now.
struct SlaVerdict {
  std::string vm;
  std::string site;
  bool ok = true;
  std::vector<std::string> violations;  // the clauses it breaks there
  /// The live moves from there its SLA does not allow over the link alone (its downtime
  /// budget or dirty rate against the link's RTT and throughput, measured or configured),
  /// each naming the site it leads to. Not counted in `ok`: it may run where it is.
  std::vector<std::string> link_violations{};
};

/// Why a VM cannot go somewhere: the code the refusal carries (SlaViolated, CapacityExceeded,
/// InvalidArgument for a network with no mapping) and the clause.
struct Refusal {
  ErrorCode code = ErrorCode::SlaViolated;
  std::string clause;
};

/// A VM that does not run anywhere yet (an import): its size, SLA and the OVF networks its NICs
/// use, with the operator's mapping of those to a site's networks.
struct NewVm {
  std::string name;
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;
  ovf::Sla sla;
  std::vector<std::string> networks;               // the OVF network of each NIC
  std::map<std::string, std::string> network_map;  // OVF network -> site network (explicit)
};

/// Where a new VM goes, and what its networks become there.
struct NewVmPlacement {
  std::string site;
  std::string host;
  double cost_per_hour = 0;
  std::map<std::string, std::string> networks;  // OVF network -> the site's network
};

/// One virtual system of an uploaded package, as the descriptor has it.
struct PackageVm {
  std::string vs;  // its id
  std::string name;
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;
  std::vector<std::string> networks;  // the OVF network of each NIC
  std::optional<ovf::Sla> sla;
};

/// An uploaded package: the file, its signature's verdict and what it would create.
struct PackageInfo {
  agent::UploadInfo upload;
  std::string signature;  // "unsigned", "trusted", ... (ovf::SignatureStatus)
  std::vector<PackageVm> vms;
};

/// An import through the controller: uploaded package @p package becomes VM @p id, at @p site
/// or where placement puts it, each OVF network mapped (network_map, else the same name at
/// the site, else the site's default network).
struct ImportVmRequest {
  std::string id;
  std::string package;
  std::string vs;    // "" = the first virtual system
  std::string site;  // "" = placement decides
  std::map<std::string, std::string> network_map;
  bool start = false;
  bool lax = false;
};

struct ImportedVm {
  Vm vm;
  NewVmPlacement placement;
};

/// What a live move would likely cost: from this VM's (or else this link's) past moves when
/// there are any ("history"), else from its size and the link ("model").
struct MoveEstimate {
  double duration_s = 0;
  double interruption_ms = 0;
  double rtt_ms = 0;
  double mbps = 0;
  std::string basis;  // "history: N moves of VM", "history: N moves over the link", "model"
};

struct MigrateRequest {
  std::string vm;
  std::string to;  // site
  MoveReason reason = MoveReason::Operator;
  std::string why;  // free text (the operator's reason, or the planner's)
};

class ControllerService {
 public:
  /// Puts the configured sites and their hosts in the store (facts already in the store win
  /// over the file's, so an operator's PATCH survives a restart) and makes one link per agent.
  [[nodiscard]] static Result<std::unique_ptr<ControllerService>> create(
      Store& store, const std::vector<SiteConfig>& sites, ServiceOptions options,
      std::map<std::string, std::unique_ptr<AgentLink>> links_by_host = {});
  ~ControllerService();
  ControllerService(const ControllerService&) = delete;
  ControllerService& operator=(const ControllerService&) = delete;

  /// The refresh loop in a background thread; stop() ends it (and releases the lease).
  void start();
  void stop();
  /// Stops like a crash would: threads end, the lease is left to run out (a standby takes over
  /// after its time to live). For fault tests.
  void halt();
  /// One round of the loop (tests call it directly).
  void refreshOnce();

  LeaderState leader() const;
  Metrics& metrics() { return *metrics_; }
  Store& store() { return store_; }

  // Reads (any role).
  [[nodiscard]] Result<placement::Fleet> fleet();
  [[nodiscard]] Result<std::vector<SlaVerdict>> slaStatus();
  /// What the placement engine would do with the inventory as it is.
  [[nodiscard]] Result<placement::Solution> placementNow();
  /// The reasons @p vm cannot go to @p site now (empty: it can): SLA clauses, capacity,
  /// network mapping, mobility (for @p reason other than Operator, only automatic VMs move).
  [[nodiscard]] Result<std::vector<Refusal>> preflight(const std::string& vm,
                                                       const std::string& site, MoveReason reason);

  /// Where @p vm would be placed (at @p site when named): the cheapest site whose hosts have
  /// room and that keeps its SLA, and the site network for each OVF network (the explicit map,
  /// else the same name there, else the site's default network). Errors: SlaViolated,
  /// CapacityExceeded or InvalidArgument (networks) with every site's clause; NotFound (site).
  [[nodiscard]] Result<NewVmPlacement> placeNew(const NewVm& vm, const std::string& site = "");

  // Changes (operator, and the leader only: a standby answers Busy naming the leader).
  [[nodiscard]] Result<Site> patchSite(const std::string& name, const nlohmann::json& patch);
  [[nodiscard]] Result<void> putLink(const Link& link);
  [[nodiscard]] Result<void> putLocation(const Location& location);
  [[nodiscard]] Result<void> putNetworkMapping(const NetworkMapping& mapping);
  /// Preflight, then the source agent is asked; the migration is followed in the background.
  /// Errors: NotFound (VM, site), SlaViolated / CapacityExceeded / InvalidArgument (the
  /// preflight's reasons in the message), Busy (already moving, or not the leader), the agent's.
  [[nodiscard]] Result<Migration> migrate(const MigrateRequest& request, const Caller& caller);
  [[nodiscard]] Result<void> startVm(const std::string& vm);
  [[nodiscard]] Result<void> stopVm(const std::string& vm);
  /// Migration @p id once it has ended, or as it is after @p wait_ms (at most 30 s).
  [[nodiscard]] Result<Migration> waitMigration(int64_t id, uint64_t wait_ms);
  /// The source agent's record of a running migration (phase, progress), as it sent it.
  [[nodiscard]] Result<AgentMigration> liveMigration(const Migration& m);

  // Consoles (service_progress.cc).
  /// The events pushed to consoles: each running migration's progress at least once a
  /// second and its end, and which lists changed.
  ProgressHub& progress() { return hub_; }
  /// The event for migration @p m: the migration with its phase, progress, estimate and,
  /// once ended, report (docs/console/api.md, MigrationProgress).
  nlohmann::json progressEvent(const Migration& m, const AgentMigration* live);
  /// What moving @p vm to @p site would likely cost (nullopt: no link between the two).
  [[nodiscard]] Result<std::optional<MoveEstimate>> estimateMove(const std::string& vm,
                                                                 const std::string& site);
  /// Asks the source agent to cancel running migration @p id (it rolls back; the follower
  /// records the end). Errors: NotFound, IllegalTransition (ended, or past the switchover:
  /// the agent's words), Busy (not the leader).
  [[nodiscard]] Result<Migration> cancelMigration(int64_t id, const Caller& who);
  /// One round of the progress loop (start() runs it every progress_interval_ms; tests call
  /// it directly).
  void progressOnce();

  // Packages and imports (service_import.cc). Uploads are kept by the controller that received
  // them; an import is done by the leader, one at a time.
  /// The upload folder (nullptr: uploads are off, ServiceOptions::package_dir).
  const agent::UploadStore* packages() const { return packages_ ? &*packages_ : nullptr; }
  /// Verifies a received package (digests, descriptor, signature unless @p lax) and keeps it.
  [[nodiscard]] Result<agent::UploadInfo> commitPackage(agent::UploadWriter& writer, bool lax);
  /// Errors: NotFound, InvalidArgument (name), Unsupported (uploads off).
  [[nodiscard]] Result<PackageInfo> package(const std::string& name);
  [[nodiscard]] Result<void> deletePackage(const std::string& name);
  /// The package's VM as a VM to place (its size, SLA and networks).
  [[nodiscard]] Result<NewVm> newVmOf(const std::string& package, const std::string& vs,
                                      const std::string& id);
  /// Places (or checks the named site), hands the package to the chosen host's agent, which
  /// imports it with the networks mapped, records the VM (home: that site) and starts it when
  /// asked. Errors: as placeNew(), AlreadyExists, NotFound (package), Busy (not the leader),
  /// the agent's. On error nothing is left at the agent.
  [[nodiscard]] Result<ImportedVm> importVm(const ImportVmRequest& request, const Caller& who);

  // Workloads that wander (service_mobility.cc).
  /// What the loop would do now, and why (moves, and the VMs held back with the reason).
  [[nodiscard]] Result<placement::MobilityPlan> mobilityPlan();
  /// What draining @p site would move where, and what cannot leave (with the clause).
  [[nodiscard]] Result<placement::MobilityPlan> drainPlan(const std::string& site);
  /// Marks @p site draining: the loop moves every VM that may leave, a bounded number at a
  /// time per link, until none is left. Returns the plan as it stands now.
  [[nodiscard]] Result<placement::MobilityPlan> drain(const std::string& site, const Caller& who);
  /// Paused: the loop moves nothing by itself (drains and operators' moves go on).
  [[nodiscard]] Result<void> setMobilityPaused(bool paused, const Caller& who);
  [[nodiscard]] Result<bool> mobilityPaused();
  /// One round of the mobility loop: SLA repairs, drains, then the plan's moves (leader only).
  void mobilityRound();

 private:
  ControllerService(Store& store, ServiceOptions options);
  void stopThreads(bool release_lease);
  Result<void> requireLeader() const;
  AgentLink* linkFor(const std::string& site, const std::string& host = "");
  void refreshLease();
  void refreshAgents();
  /// The agents' measured links into the inventory (service_links.cc).
  void refreshLinks();
  void followMigrations();
  void follow(int64_t id);
  void finishMigration(Migration m, const AgentMigration& rec);
  /// service_reconcile.cc: records VM @p vm's move from @p from to @p to that an agent's list
  /// shows but no migration of the controller explains (made at the agents, or while no
  /// controller ran), as an ended migration.
  void recordUnfollowedMove(const std::string& vm, const std::string& from, const std::string& to);
  void checkSla();
  /// An agent's StaleEpoch means another controller leads: stop acting.
  void noteAgentError(const Error& e);
  Result<placement::MobilityPolicy> mobilityPolicy();
  /// Starts @p moves, at most the link bound at a time; each audited with its reason.
  void startMoves(const std::vector<placement::PlannedMove>& moves, MoveReason reason);
  int64_t now() const;
  /// service_progress.cc: every progress_interval_ms, each running migration's progress to
  /// the hub (and a sample, as leader), and "changed" when lists changed.
  void progressLoop();

  Store& store_;
  ServiceOptions options_;
  std::unique_ptr<Metrics> metrics_;
  std::map<std::string, std::unique_ptr<AgentLink>> links_;  // by host
  std::optional<agent::UploadStore> packages_;
  std::mutex import_mu_;  // one import at a time: placement sees the previous one's VM
  std::map<std::string, std::vector<std::string>> hosts_of_site_;

  mutable std::mutex mu_;
  LeaderState leader_;
  std::set<int64_t> followed_;                 // migrations with a follower thread
  std::set<std::string> reported_violations_;  // "vm|clause" already in the event log
  std::vector<std::thread> followers_;
  std::condition_variable cv_;
  std::condition_variable ended_cv_;  // a migration ended (waitMigration)
  bool stopping_ = false;
  std::thread loop_;
  ProgressHub hub_;
  std::thread progress_loop_;
  std::mutex progress_mu_;  // one progress round at a time; guards what it compares with
  bool progress_primed_ = false;
  uint64_t seen_generation_ = 0;
  int64_t seen_audit_seq_ = 0;
  int64_t seen_event_seq_ = 0;
  std::mutex estimates_mu_;
  std::map<int64_t, nlohmann::json> estimates_;  // running migrations' estimates, by id
};

}  // namespace vandra::controller
