#include "vandra/controller/service.h"

#include <algorithm>
#include <chrono>

#include "vandra/controller/inventory_json.h"
#include "vandra/controller/measured_links.h"
#include "vandra/db/database.h"

namespace vandra::controller {
namespace {

constexpr const char* kLeaseName = "controller";
constexpr uint64_t kFollowWaitMs = 2000;  // one long poll per running migration at most this long

int64_t systemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string mib(uint64_t v) {
  return std::to_string(v) + " MiB";
}

}  // namespace

std::string_view toString(Role r) {
  switch (r) {
    case Role::None:
      return "none";
    case Role::Viewer:
      return "viewer";
    case Role::Operator:
      return "operator";
    case Role::System:
      return "system";
  }
  return "none";
}

ControllerService::ControllerService(Store& store, ServiceOptions options)
    : store_(store), options_(std::move(options)), metrics_(std::make_unique<Metrics>()) {
  if (!options_.now_ms) {
    options_.now_ms = systemNowMs;
  }
  leader_.controller_id = options_.controller_id;
}

Result<std::unique_ptr<ControllerService>> ControllerService::create(
    Store& store, const std::vector<SiteConfig>& sites, ServiceOptions options,
    std::map<std::string, std::unique_ptr<AgentLink>> links_by_host) {
  std::unique_ptr<ControllerService> s(new ControllerService(store, std::move(options)));
  if (!s->options_.package_dir.empty()) {
    VANDRA_TRY_ASSIGN(
        auto ps, agent::UploadStore::open(s->options_.package_dir, s->options_.max_upload_bytes));
    s->packages_.emplace(std::move(ps));
  }
  for (const auto& sc : sites) {
    VANDRA_TRY(checkName(sc.site.name, "Site"));
    auto known = store.site(sc.site.name);
    if (!known) {
      if (known.error().code != ErrorCode::NotFound) {
        return fail(known.error());
      }
      VANDRA_TRY(store.putSite(sc.site));  // facts an operator changed since stay theirs
    }
    for (const auto& a : sc.agents) {
      const std::string host = a.host.empty() ? sc.site.name + "-h1" : a.host;
      VANDRA_TRY(checkName(host, "Host"));
      if (s->links_.contains(host)) {
        return fail(ErrorCode::InvalidArgument, "Host '" + host + "' is configured twice");
      }
      auto given = links_by_host.find(host);
      s->links_[host] =
          given != links_by_host.end() ? std::move(given->second) : makeHttpAgentLink(a);
      s->hosts_of_site_[sc.site.name].push_back(host);
      Host h;
      h.name = host;
      h.site = sc.site.name;
      h.endpoint = a.endpoint.host + ":" + std::to_string(a.endpoint.port);
      auto old = store.hosts();
      if (old) {
        for (const auto& o : *old) {
          if (o.name == host) {
            h = o;
            h.site = sc.site.name;
            h.endpoint = a.endpoint.host + ":" + std::to_string(a.endpoint.port);
          }
        }
      }
      VANDRA_TRY(store.putHost(h));
    }
  }
  return s;
}

ControllerService::~ControllerService() {
  stop();
}

int64_t ControllerService::now() const {
  return options_.now_ms();
}

void ControllerService::start() {
  std::lock_guard lock(mu_);
  if (loop_.joinable()) {
    return;
  }
  stopping_ = false;
  progress_loop_ = std::thread([this] { progressLoop(); });
  loop_ = std::thread([this] {
    std::unique_lock lk(mu_);
    while (!stopping_) {
      lk.unlock();
      refreshOnce();
      lk.lock();
      cv_.wait_for(lk, std::chrono::milliseconds(options_.refresh_interval_ms),
                   [this] { return stopping_; });
    }
  });
}

void ControllerService::stop() {
  stopThreads(true);
}

void ControllerService::halt() {
  stopThreads(false);
}

void ControllerService::stopThreads(bool release_lease) {
  std::vector<std::thread> threads;
  std::thread loop;
  std::thread progress_loop;
  bool was_leader = false;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    threads.swap(followers_);
    loop.swap(loop_);
    progress_loop.swap(progress_loop_);
    was_leader = leader_.leader;
  }
  cv_.notify_all();
  hub_.close();  // watchers of the stream end now, not at their next keep-alive
  if (loop.joinable()) {
    loop.join();
  }
  if (progress_loop.joinable()) {
    progress_loop.join();
  }
  for (auto& t : threads) {
    t.join();
  }
  if (was_leader && release_lease) {
    // A clean stop hands over at once instead of after the lease's time to live.
    (void)db::releaseLease(store_.database(), kLeaseName, options_.controller_id);
    std::lock_guard lock(mu_);
    leader_.leader = false;
  }
}

LeaderState ControllerService::leader() const {
  std::lock_guard lock(mu_);
  return leader_;
}

Result<void> ControllerService::requireLeader() const {
  std::lock_guard lock(mu_);
  if (!leader_.leader) {
    return fail(ErrorCode::Busy, "This controller (" + options_.controller_id +
                                     ") is a standby; the leader is '" + leader_.holder +
                                     "' (epoch " + std::to_string(leader_.epoch) + ")");
  }
  return {};
}

AgentLink* ControllerService::linkFor(const std::string& site, const std::string& host) {
  if (!host.empty()) {
    auto it = links_.find(host);
    if (it != links_.end()) {
      return it->second.get();
    }
  }
  auto hs = hosts_of_site_.find(site);
  if (hs == hosts_of_site_.end() || hs->second.empty()) {
    return nullptr;
  }
  return links_[hs->second.front()].get();
}

// ---- the refresh loop ----

void ControllerService::refreshOnce() {
  refreshLease();
  if (!leader().leader) {
    return;  // a standby only reads what the leader writes
  }
  refreshAgents();
  refreshLinks();  // before checkSla: the verdicts use the links as measured now
  followMigrations();
  checkSla();
  mobilityRound();
}

void ControllerService::refreshLease() {
  auto lease = db::acquireOrRenewLease(store_.database(), kLeaseName, options_.controller_id,
                                       options_.lease_ttl_ms);
  std::optional<int64_t> new_epoch;
  {
    std::lock_guard lock(mu_);
    if (!lease) {
      // Cannot reach the database: stop acting as leader before the lease could have expired.
      leader_.leader = false;
      return;
    }
    if (lease->leader && (!leader_.leader || leader_.epoch != lease->epoch)) {
      new_epoch = lease->epoch;
    }
    leader_.leader = lease->leader;
    leader_.epoch = lease->epoch;
    leader_.holder = lease->holder;
  }
  if (new_epoch) {
    for (auto& [host, link] : links_) {
      link->setEpoch(*new_epoch);
      // An agent away now learns the epoch with this leader's first command to it.
      (void)link->announceEpoch();
    }
    (void)store_.appendEvent(
        {0, now(), "leader", options_.controller_id,
         options_.controller_id + " leads with epoch " + std::to_string(*new_epoch)});
  }
}

void ControllerService::refreshAgents() {
  struct Seen {
    std::string site;
    std::string host;
    AgentVm vm;
  };
  std::map<std::string, std::vector<Seen>> seen;
  std::set<std::string> unreachable_sites;
  for (const auto& [site, hosts] : hosts_of_site_) {
    double vcpus = 0, mem = 0, used_vcpus = 0, used_mem = 0;
    for (const auto& host : hosts) {
      AgentLink* link = links_[host].get();
      auto all = store_.hosts();
      Host h;
      if (all) {
        for (const auto& o : *all) {
          if (o.name == host) {
            h = o;
          }
        }
      }
      h.name = host;
      h.site = site;
      auto cap = link->capacity();
      auto vms = cap ? link->vms() : Result<std::vector<AgentVm>>(fail(cap.error()));
      if (cap && vms) {
        h.vcpus = cap->vcpus;
        h.memory_mib = cap->memory_mib;
        h.disk_gib = cap->disk_gib;
        h.used_vcpus = cap->used_vcpus;
        h.used_memory_mib = cap->used_memory_mib;
        h.used_disk_gib = cap->used_disk_gib;
        h.reachable = true;
        h.last_seen_ms = now();
        h.last_error.clear();
        for (auto& v : *vms) {
          seen[v.id].push_back({site, host, std::move(v)});
        }
      } else {
        const Error& e = cap ? vms.error() : cap.error();
        if (h.reachable) {
          (void)store_.appendEvent({0, now(), "host", host, "unreachable: " + e.describe()});
        }
        h.reachable = false;
        h.last_error = e.describe().substr(0, 500);
        unreachable_sites.insert(site);
      }
      vcpus += h.vcpus;
      mem += static_cast<double>(h.memory_mib);
      used_vcpus += h.used_vcpus;
      used_mem += static_cast<double>(h.used_memory_mib);
      (void)store_.putHost(h);
    }
    metrics_->siteCapacity(site, vcpus, mem, used_vcpus, used_mem);
  }

  auto known = store_.vms();
  if (!known) {
    return;
  }
  std::map<std::string, Vm> by_name;
  for (auto& v : *known) {
    by_name[v.name] = std::move(v);
  }
  for (auto& [name, where] : seen) {
    if (!checkName(name, "VM")) {
      continue;
    }
    auto old = by_name.find(name);
    // During a move the VM is listed at both sites: the one that runs it is where it is;
    // when neither runs it, where the controller last knew it.
    const Seen* pick = nullptr;
    for (const auto& s : where) {
      if (vmStateFromString(s.vm.state) == VmState::Running) {
        pick = &s;
      }
    }
    for (const auto& s : where) {
      if (pick == nullptr && old != by_name.end() && s.site == old->second.site) {
        pick = &s;
      }
    }
    if (pick == nullptr) {
      pick = &where.front();
    }
    Vm v = old != by_name.end() ? old->second : Vm{};
    const std::string before = old != by_name.end() ? toJson(v).dump() : "";
    if (old == by_name.end()) {
      v.name = name;
      v.home_site = pick->site;
      v.placed_at_ms = now();
    } else if (v.site != pick->site && !v.site.empty()) {
      v.last_moved_at_ms = now();
      recordUnfollowedMove(name, v.site, pick->site);
    }
    v.site = pick->site;
    v.host = pick->host;
    v.state = vmStateFromString(pick->vm.state);
    v.vcpus = pick->vm.vcpus;
    v.memory_mib = pick->vm.memory_mib;
    v.disk_gib = (pick->vm.disk_bytes + (1ull << 30) - 1) >> 30;
    if (pick->vm.spec && !pick->vm.spec->virtual_systems.empty()) {
      const auto& vs = pick->vm.spec->virtual_systems.front();
      if (vs.sla) {
        v.sla = *vs.sla;
      }
      v.networks.clear();
      for (const auto& nic : vs.nics) {
        if (!nic.network.empty()) {
          v.networks.push_back(nic.network);
        }
      }
    }
    if (toJson(v).dump() != before) {
      (void)store_.putVm(v);
    }
    if (old != by_name.end()) {
      by_name.erase(old);
    }
  }
  // Known VMs no agent lists: missing, unless their site could not be asked.
  for (auto& [name, v] : by_name) {
    if (v.state != VmState::Missing && !v.site.empty() && !unreachable_sites.contains(v.site)) {
      v.state = VmState::Missing;
      (void)store_.putVm(v);
      (void)store_.appendEvent({0, now(), "vm", name, "no agent at " + v.site + " lists it"});
    }
  }
}

// ---- reads ----

Result<std::vector<Refusal>> ControllerService::preflight(const std::string& vm_name,
                                                          const std::string& to,
                                                          MoveReason reason) {
  const auto t0 = std::chrono::steady_clock::now();
  VANDRA_TRY_ASSIGN(auto vm, store_.vm(vm_name));
  VANDRA_TRY_ASSIGN(auto target, store_.site(to));
  std::vector<Refusal> out;
  if (vm.site == to) {
    out.push_back({ErrorCode::InvalidArgument, "it runs at " + to + " already"});
    return out;
  }
  if (vm.state == VmState::Missing) {
    out.push_back({ErrorCode::IllegalTransition, "no agent lists it now"});
  }
  if (vm.sla.mobility == ovf::Mobility::Pinned) {
    out.push_back({ErrorCode::SlaViolated, "mobility pinned: it never moves"});
  } else if (vm.sla.mobility == ovf::Mobility::OnRequest && reason != MoveReason::Operator &&
             reason != MoveReason::Drain) {
    out.push_back({ErrorCode::SlaViolated, "mobility on-request: only an operator moves it"});
  }
  VANDRA_TRY_ASSIGN(auto f, fleet());
  auto site = std::find_if(f.sites.begin(), f.sites.end(),
                           [&](const placement::Site& s) { return s.name == to; });
  auto pvm = std::find_if(f.vms.begin(), f.vms.end(),
                          [&](const placement::Vm& v) { return v.name == vm_name; });
  if (site != f.sites.end() && pvm != f.vms.end()) {
    const std::string clause = placement::slaClause(f, *pvm, *site);
    if (!clause.empty()) {
      out.push_back({ErrorCode::SlaViolated, clause});
    }
  }
  // Capacity: what the target's agents say is free (they enforce it).
  VANDRA_TRY_ASSIGN(auto hosts, store_.hosts());
  std::string best;
  std::string why_not;
  for (const auto& h : hosts) {
    if (h.site != to) {
      continue;
    }
    if (!h.reachable) {
      why_not = h.name + ": agent unreachable (" + h.last_error.substr(0, 120) + ")";
      continue;
    }
    const uint64_t free_mem =
        h.memory_mib > h.used_memory_mib ? h.memory_mib - h.used_memory_mib : 0;
    const uint32_t free_cpu = h.vcpus > h.used_vcpus ? h.vcpus - h.used_vcpus : 0;
    if (free_mem < vm.memory_mib) {
      why_not = h.name + ": memory " + mib(free_mem) + " free, " + std::to_string(vm.memory_mib) +
                " needed";
    } else if (free_cpu < vm.vcpus) {
      why_not = h.name + ": " + std::to_string(free_cpu) + " vCPUs free, " +
                std::to_string(vm.vcpus) + " needed";
    } else {
      best = h.name;
      break;
    }
  }
  if (best.empty()) {
    out.push_back({ErrorCode::CapacityExceeded,
                   why_not.empty() ? "no host with an agent at " + to : why_not});
  }
  // Networks: each NIC's network must have a counterpart at the target.
  VANDRA_TRY_ASSIGN(auto mappings, store_.networkMappings());
  for (const auto& net :
       translateNetworks(vm.networks, vm.site, to, target.networks, mappings).missing) {
    out.push_back({ErrorCode::InvalidArgument,
                   "no network '" + net + "' here (" + to + " has " +
                       (target.networks.empty() ? std::string("none")
                                                : nlohmann::json(target.networks).dump()) +
                       "; map it with PUT /v1/networks/NAME)"});
  }
  metrics_->placementLatency(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return out;
}

// ---- changes ----

Result<Site> ControllerService::patchSite(const std::string& name, const nlohmann::json& patch) {
  VANDRA_TRY(requireLeader());
  VANDRA_TRY_ASSIGN(auto site, store_.site(name));
  VANDRA_TRY(controller::patchSite(site, patch));
  VANDRA_TRY(store_.putSite(site));
  (void)store_.appendEvent({0, now(), "site", name, "facts changed: " + patch.dump()});
  return site;
}

Result<void> ControllerService::putLink(const Link& link) {
  VANDRA_TRY(requireLeader());
  VANDRA_TRY(store_.site(link.a));
  VANDRA_TRY(store_.site(link.b));
  Link l = link;
  if (l.measured_at_ms == 0) {
    l.measured_at_ms = now();
  }
  return store_.putLink(l);
}

Result<void> ControllerService::putLocation(const Location& location) {
  VANDRA_TRY(requireLeader());
  for (const auto& [site, ms] : location.rtt_ms) {
    VANDRA_TRY(store_.site(site));
  }
  return store_.putLocation(location);
}

Result<void> ControllerService::putNetworkMapping(const NetworkMapping& mapping) {
  VANDRA_TRY(requireLeader());
  for (const auto& [site, net] : mapping.members) {
    VANDRA_TRY_ASSIGN(auto s, store_.site(site));
    if (std::find(s.networks.begin(), s.networks.end(), net) == s.networks.end()) {
      return fail(ErrorCode::InvalidArgument, "Site " + site + " has no network '" + net +
                                                  "' (it has " + nlohmann::json(s.networks).dump() +
                                                  ")");
    }
  }
  return store_.putNetworkMapping(mapping);
}

Result<Migration> ControllerService::migrate(const MigrateRequest& request, const Caller& caller) {
  VANDRA_TRY(requireLeader());
  VANDRA_TRY_ASSIGN(auto running, store_.migrations(request.vm, 1, true));
  if (!running.empty()) {
    return fail(ErrorCode::Busy, "VM " + request.vm + " is moving already (migration " +
                                     std::to_string(running.front().id) + " to " +
                                     running.front().to_site + ")");
  }
  VANDRA_TRY_ASSIGN(auto refusals, preflight(request.vm, request.to, request.reason));
  if (!refusals.empty()) {
    std::string msg = "VM " + request.vm + " cannot move to " + request.to + ": ";
    for (size_t i = 0; i < refusals.size(); ++i) {
      msg += (i ? "; " : "") + refusals[i].clause;
    }
    return fail(refusals.front().code, msg);
  }
  VANDRA_TRY_ASSIGN(auto vm, store_.vm(request.vm));
  AgentLink* source = linkFor(vm.site, vm.host);
  if (source == nullptr) {
    return fail(ErrorCode::NotFound, "No agent for site " + vm.site);
  }
  // The NICs' networks by the target's names (as the preflight found them): the target's
  // agent registers the VM on those.
  VANDRA_TRY_ASSIGN(auto target, store_.site(request.to));
  VANDRA_TRY_ASSIGN(auto mappings, store_.networkMappings());
  const auto networks =
      translateNetworks(vm.networks, vm.site, request.to, target.networks, mappings).renames;
  auto agent_id = source->migrate(vm.name, {request.to, networks});
  if (!agent_id) {
    noteAgentError(agent_id.error());
    return fail(agent_id.error());
  }
  Migration m;
  m.vm = vm.name;
  m.from_site = vm.site;
  m.to_site = request.to;
  m.agent_migration_id = *agent_id;
  m.reason = request.reason;
  m.why = request.why;
  m.requested_by = caller.who;
  m.epoch = leader().epoch;
  m.started_at_ms = now();
  m.budget_ms = vm.sla.downtime_budget_ms;
  m.networks = networks;
  VANDRA_TRY_ASSIGN(m.id, store_.addMigration(m));
  vm.state = VmState::Migrating;
  (void)store_.putVm(vm);
  (void)store_.appendEvent({0, now(), "migration", vm.name,
                            "to " + request.to + " (" + std::string(toString(request.reason)) +
                                (request.why.empty() ? "" : ": " + request.why) + ")"});
  followMigrations();
  hub_.publish("migration", progressEvent(m, nullptr).dump());
  return m;
}

Result<void> ControllerService::startVm(const std::string& name) {
  VANDRA_TRY(requireLeader());
  VANDRA_TRY_ASSIGN(auto vm, store_.vm(name));
  AgentLink* link = linkFor(vm.site, vm.host);
  if (link == nullptr) {
    return fail(ErrorCode::NotFound, "No agent for site " + vm.site);
  }
  // The SLA is checked at start too: a VM whose site breaks it does not start there.
  VANDRA_TRY_ASSIGN(auto verdicts, slaStatus());
  for (const auto& v : verdicts) {
    if (v.vm == name && !v.ok) {
      return fail(ErrorCode::SlaViolated,
                  "VM " + name + " may not run at " + v.site + ": " + v.violations.front());
    }
  }
  auto r = link->startVm(name);
  if (!r) {
    noteAgentError(r.error());
  }
  return r;
}

Result<void> ControllerService::stopVm(const std::string& name) {
  VANDRA_TRY(requireLeader());
  VANDRA_TRY_ASSIGN(auto vm, store_.vm(name));
  AgentLink* link = linkFor(vm.site, vm.host);
  if (link == nullptr) {
    return fail(ErrorCode::NotFound, "No agent for site " + vm.site);
  }
  auto r = link->stopVm(name);
  if (!r) {
    noteAgentError(r.error());
  }
  return r;
}

void ControllerService::noteAgentError(const Error& e) {
  if (e.code != ErrorCode::StaleEpoch) {
    return;
  }
  // An agent has seen a newer leader: this controller was deposed without noticing (paused,
  // cut off from the database). It stops acting at once; the next lease round tells it more.
  {
    std::lock_guard lock(mu_);
    leader_.leader = false;
  }
  (void)store_.appendEvent({0, now(), "leader", options_.controller_id,
                            "deposed: an agent refused epoch " + std::to_string(leader_.epoch) +
                                " (" + e.message + ")"});
}

// ---- following migrations ----

void ControllerService::followMigrations() {
  auto running = store_.migrations("", 1000, true);
  if (!running) {
    return;
  }
  std::lock_guard lock(mu_);
  if (stopping_) {
    return;  // stop() joins the followers it knows; none may start after it
  }
  for (const auto& m : *running) {
    if (followed_.insert(m.id).second) {
      followers_.emplace_back([this, id = m.id] { follow(id); });
    }
  }
}

void ControllerService::follow(int64_t id) {
  for (;;) {
    auto m = store_.migration(id);
    if (!m || m->state != MigrationState::Running) {
      break;
    }
    AgentLink* source = linkFor(m->from_site);
    auto rec = source != nullptr ? source->migration(m->agent_migration_id, kFollowWaitMs)
                                 : Result<AgentMigration>(fail(ErrorCode::NotFound, "no agent"));
    if (rec && rec->ended) {
      finishMigration(*m, *rec);
      break;
    }
    std::unique_lock lock(mu_);
    if (stopping_) {
      break;  // a later leader (or this one, restarted) adopts it
    }
    if (!rec) {
      // The agent is away (restarting, unreachable): it owns the migration; ask again later.
      cv_.wait_for(lock, std::chrono::milliseconds(kFollowWaitMs), [this] { return stopping_; });
    }
  }
  std::lock_guard lock(mu_);
  followed_.erase(id);
}

void ControllerService::finishMigration(Migration m, const AgentMigration& rec) {
  m.finished_at_ms = now();
  m.report_json = rec.report_json;
  m.error = rec.error.substr(0, 4000);
  if (rec.phase == MigrationPhase::Done) {
    m.state = MigrationState::Done;
  } else if (rec.phase == MigrationPhase::RolledBack &&
             rec.error.find("ancel") != std::string::npos) {
    m.state = MigrationState::Cancelled;
  } else {
    m.state = MigrationState::Failed;
  }
  m.downtime_ms = rec.interruption_ms;
  if (rec.budget_ms) {
    m.budget_ms = rec.budget_ms;
  }
  if (m.downtime_ms && m.budget_ms) {
    m.within_budget = *m.downtime_ms <= static_cast<double>(*m.budget_ms);
  }
  // The VM first, the migration's end last: whoever sees it ended sees the VM where it is.
  if (auto vm = store_.vm(m.vm); vm) {
    if (m.state == MigrationState::Done) {
      // By the target's names, unless a refresh from the agents has them already.
      if (vm->site == m.from_site) {
        for (auto& net : vm->networks) {
          if (auto it = m.networks.find(net); it != m.networks.end()) {
            net = it->second;
          }
        }
      }
      vm->site = m.to_site;
      vm->host.clear();
      vm->last_moved_at_ms = m.finished_at_ms;
      vm->state = VmState::Running;
    } else if (vm->state == VmState::Migrating) {
      vm->state = VmState::Running;
    }
    (void)store_.putVm(*vm);
  }
  const double* interruption = m.downtime_ms ? &*m.downtime_ms : nullptr;
  metrics_->migrationEnded(std::string(toString(m.state)), std::string(toString(m.reason)),
                           interruption, 0);
  std::string verdict = std::string(toString(m.state));
  if (m.downtime_ms) {
    verdict += ", interruption " + std::to_string(static_cast<int64_t>(*m.downtime_ms)) + " ms";
  }
  if (m.within_budget) {
    verdict += *m.within_budget ? " (within" : " (over";
    verdict += " the budget of " + std::to_string(*m.budget_ms) + " ms)";
  }
  (void)store_.appendEvent({0, now(), m.within_budget == false ? "sla" : "migration", m.vm,
                            m.from_site + " -> " + m.to_site + ": " + verdict});
  (void)store_.updateMigration(m);
  ended_cv_.notify_all();
  hub_.publish("migration", progressEvent(m, &rec).dump());
}

Result<Migration> ControllerService::waitMigration(int64_t id, uint64_t wait_ms) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(std::min<uint64_t>(wait_ms, 30000));
  for (;;) {
    VANDRA_TRY_ASSIGN(auto m, store_.migration(id));
    std::unique_lock lock(mu_);
    if (m.state != MigrationState::Running || std::chrono::steady_clock::now() >= deadline ||
        stopping_) {
      return m;
    }
    // Woken when any migration ends; another controller's end is seen within a second.
    ended_cv_.wait_until(
        lock, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(1)));
  }
}

Result<AgentMigration> ControllerService::liveMigration(const Migration& m) {
  AgentLink* source = linkFor(m.from_site);
  if (source == nullptr) {
    return fail(ErrorCode::NotFound, "No agent for site " + m.from_site);
  }
  return source->migration(m.agent_migration_id, 0);
}

void ControllerService::checkSla() {
  auto verdicts = slaStatus();
  if (!verdicts) {
    return;
  }
  size_t bad = 0;
  std::set<std::string> now_violated;
  for (const auto& v : *verdicts) {
    for (const auto& clause : v.violations) {
      ++bad;
      now_violated.insert(v.vm + "|" + v.site + "|" + clause);
    }
    for (const auto& clause : v.link_violations) {  // an event too, not in the gauge
      now_violated.insert(v.vm + "|" + v.site + "|" + clause);
    }
  }
  metrics_->slaViolations(static_cast<double>(bad));
  std::set<std::string> fresh;
  {
    std::lock_guard lock(mu_);
    for (const auto& k : now_violated) {
      if (!reported_violations_.contains(k)) {
        fresh.insert(k);
      }
    }
    reported_violations_ = now_violated;
  }
  for (const auto& k : fresh) {
    const auto bar = k.find('|');
    (void)store_.appendEvent({0, now(), "sla", k.substr(0, bar), "violated: " + k.substr(bar + 1)});
  }
}

}  // namespace vandra::controller
