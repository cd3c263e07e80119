// MigrationService: the source's migrations (begin, the runner thread) and what an operator
// asks of them (show, list, cancel, wait). migration_service_impl.h says where the rest is.
#include "content_refs.h"
#include "migration_service_impl.h"
#include "vandra/orchestrator/downtime_verdict.h"
#include "vandra/orchestrator/resolve.h"

namespace vandra::orchestrator {

namespace fs = std::filesystem;

Result<json> MigrationService::Impl::begin(const std::string& vm_id, const MigrateOptions& o) {
  VANDRA_TRY_ASSIGN(const agent::VmRecord vm, agent_.get(vm_id));
  const auto spec = json::parse(vm.spec_json, nullptr, false);
  // A rename is of a network the VM's NICs use: anything else is a caller's mistake.
  for (const auto& [from, to] : o.networks) {
    bool used = false;
    if (spec.is_object() && spec.contains("virtual_systems") &&
        spec["virtual_systems"].is_array()) {
      for (const auto& vs : spec["virtual_systems"]) {
        if (!vs.is_object() || !vs.contains("nics") || !vs["nics"].is_array()) {
          continue;
        }
        for (const auto& nic : vs["nics"]) {
          used = used || (nic.is_object() && nic.contains("network") &&
                          nic["network"].is_string() && nic["network"].get<std::string>() == from);
        }
      }
    }
    if (!used) {
      return fail(ErrorCode::InvalidArgument,
                  "Field 'networks': no NIC of VM '" + vm_id + "' is on network '" + from + "'");
    }
  }
  if (vm.state != agent::VmState::Running) {
    return fail(ErrorCode::IllegalTransition, "VM '" + vm_id + "' is " +
                                                  std::string(agent::toString(vm.state)) +
                                                  ": only a running VM migrates live");
  }
  if (o.to == config_.site) {
    return fail(ErrorCode::InvalidArgument, "VM '" + vm_id + "' is at " + o.to + " already");
  }
  if (std::none_of(config_.peers.begin(), config_.peers.end(),
                   [&](const PeerSite& s) { return s.name == o.to; })) {
    return fail(ErrorCode::NotFound,
                "No peer site '" + o.to + "' is configured at " + config_.site);
  }
  VANDRA_TRY_ASSIGN(const ovf::Sla sla, detail::slaOf(spec));
  if (sla.mobility == ovf::Mobility::Pinned) {
    return fail(ErrorCode::IllegalTransition,
                "VM '" + vm_id + "' is pinned to its site by its SLA (mobility=pinned)");
  }
  VANDRA_TRY_ASSIGN(const auto running, store_.active(vm_id));
  std::lock_guard lock(mu_);
  if (stopping_) {
    return fail(ErrorCode::Busy, "The agent is stopping");
  }
  // Runners that have ended are joined here (their records are in the store).
  for (auto it = active_.begin(); it != active_.end();) {
    bool ended = false;
    {
      std::lock_guard al(it->second->mu);
      ended = it->second->ended && !it->second->settling;
    }
    if (ended && it->second->runner.joinable()) {
      it->second->runner.join();
    }
    it = ended ? active_.erase(it) : std::next(it);
  }
  for (const auto& [id, a] : active_) {
    std::lock_guard al(a->mu);
    if (a->vm == vm_id && !a->ended) {
      return fail(ErrorCode::Busy, "VM '" + vm_id + "' is migrating already (" + id + ")");
    }
  }
  if (running) {
    return fail(ErrorCode::Busy, "VM '" + vm_id + "' has a migration that has not ended (" +
                                     running->id + ", " + std::string(toString(running->phase)) +
                                     ")");
  }
  auto a = std::make_shared<ActiveMigration>();
  a->id = o.id.empty() ? newMigrationId() : o.id;
  a->vm = vm_id;
  a->peer = o.to;
  a->content_refs = o.content_refs && config_.content_refs;
  MigrateRequest req;
  req.migration_id = a->id;
  req.vm_id = vm_id;
  req.source_site = config_.site;
  req.target_site = o.to;
  req.max_total = o.max_total;
  req.machine_type = config_.machine_type;
  req.cpu_model = config_.cpu_model;
  // The SLA's MaxMigrationMbps is a ceiling: the operator may ask for less, never more.
  a->cap_bytes_per_s = o.bandwidth_bytes_per_s;
  a->cap_by = o.bandwidth_bytes_per_s != 0 ? "operator" : "";
  if (sla.max_migration_mbps) {
    const uint64_t sla_cap = uint64_t{*sla.max_migration_mbps} * 1000000 / 8;
    if (sla_cap != 0 && (a->cap_bytes_per_s == 0 || sla_cap < a->cap_bytes_per_s)) {
      a->cap_bytes_per_s = sla_cap;
      a->cap_by = "sla";
    }
  }
  req.mirror.bandwidth_bytes_per_s = a->cap_bytes_per_s;
  req.ram.max_bandwidth_bytes_per_s = a->cap_bytes_per_s;
  // QEMU's downtime limit is planned at preflight from the SLA's budget and the link's
  // round trip (downtime_plan.h).
  if (sla.downtime_budget_ms) {
    req.downtime_budget_ms = *sla.downtime_budget_ms;
  }
  if (o.downtime_limit_ms != 0) {
    req.downtime_limit_ms = o.downtime_limit_ms;
  }
  // Post-copy only by the owner's opt-in (ADR 0032), and only towards a peer that takes it
  // (run() checks the link's version); its rate has a cap of its own in QEMU.
  req.ram.post_copy = sla.post_copy_allowed;
  req.ram.max_postcopy_bandwidth_bytes_per_s = a->cap_bytes_per_s;
  req.ram.auto_converge = o.auto_converge;
  req.mirror.converge.enabled = o.disk_converge;
  req.mirror.copy_mode = o.copy_mode;
  req.ram.max_total_time = std::chrono::duration_cast<std::chrono::milliseconds>(o.max_total);
  req.networks = o.networks;
  req.cancelled = [a]() -> std::optional<std::string> {
    std::lock_guard l(a->mu);
    return a->cancel_reason;
  };
  active_[a->id] = a;
  a->runner = std::thread([this, a, req]() mutable { run(*a, std::move(req)); });
  return json{{"id", a->id}, {"vm", vm_id}, {"to", o.to}, {"phase", "preflight"}, {"ended", false}};
}

void MigrationService::Impl::run(ActiveMigration& a, MigrateRequest req) {
  auto finish = defer([&] {
    std::lock_guard lock(a.mu);
    a.ended = true;
    ended_cv_.notify_all();
  });
  const MigrationNames names = migrationNames(config_.run_dir, a.id);
  const std::string& dir = names.dir;
  auto failEarly = [&](const Error& e) {
    // Nothing started yet: a record that says why, so the operator sees it.
    MigrationRecord r = newMigrationRecord(a.id, a.vm, MigrationRole::Source, a.peer, nowUs());
    if (auto ins = store_.insert(r)) {
      auto rb = advance(*ins, MigrationEvent::Failure, nowUs());
      if (rb) {
        rb->error = e.describe();
        if (auto upd = store_.update(*rb)) {
          if (auto done = advance(*upd, MigrationEvent::RollbackDone, nowUs())) {
            (void)store_.update(*done);
          }
        }
      }
    }
  };
  auto link = linkTo(a.peer);
  if (!link) {
    failEarly(link.error());
    return;
  }
  {
    std::lock_guard lock(a.mu);  // show() reads them
    a.link = *link;
    a.at_start = (*link)->tunnel->stats();
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto rmdir = defer([&] {
    std::error_code e2;
    fs::remove_all(dir, e2);
  });
  req.source_paths = {names.nbd_socket, names.source_migration_socket};
  if ((*link)->tunnel->version() < kPostCopyVersion) {
    req.ram.post_copy = false;  // the peer's agent would not start its QEMU for it
  }
  req.target_flushes = (*link)->tunnel->version() >= kTargetFlushesVersion;
  // Post-copy recovery: a new migration stream per attempt, on whatever link is up then.
  ReopenedStreams reopened;
  req.reopen_migration = reopener(a.id, a.peer, reopened);
  // RAM pages that are blocks of a base image the target holds too, or that the disk mirrors
  // sent already, go as references when the peer's agent reads them (content_refs.h).
  SourceContentRefs refs;
  tunnel::ForwardOptions nbd_options;
  tunnel::ForwardOptions mig_options;
  if (a.content_refs && (*link)->tunnel->version() >= kContentRefsVersion) {
    nbd_options.to_stream = refs.nbdFactory();
    mig_options.to_stream = refs.migrationFactory();
    req.at_shared_bases = [this, &refs](const std::vector<std::string>& digests) {
      refs.start(host_, digests);
    };
  }
  auto nbd = tunnel::forwardUnixSocket(*(*link)->tunnel, tunnel::ForwardMode::Listen,
                                       tunnel::StreamKind::Nbd, names.nbd_stream,
                                       req.source_paths.nbd_socket, std::move(nbd_options));
  auto mig = tunnel::forwardUnixSocket(*(*link)->tunnel, tunnel::ForwardMode::Listen,
                                       tunnel::StreamKind::Migration, names.migration_stream,
                                       req.source_paths.migration_socket, std::move(mig_options));
  auto control = (*link)->tunnel->openStream(tunnel::StreamKind::Control, a.id);
  if (!nbd || !mig || !control) {
    failEarly(!nbd ? nbd.error() : !mig ? mig.error() : control.error());
    return;
  }
  // The end of a migration must reach the peer even when the link died (its agent
  // restarting, the WAN down for a while): a new tunnel, tried for up to 30 s.
  StreamChannel channel(std::move(*control), [this, &a]() -> Result<tunnel::Stream> {
    const auto until = SteadyClock::now() + std::chrono::seconds(30);
    for (;;) {
      auto l = linkTo(a.peer);
      if (l) {
        return (*l)->tunnel->openStream(tunnel::StreamKind::Control, a.id);
      }
      if (SteadyClock::now() >= until) {
        return fail(l.error());
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));  // back-off between dials
    }
  });
  // The path's own round trip: the smoothed one carries the queues of a transfer that just
  // ended (a move back right after a move out measured 431 ms on a 50 ms link), and the
  // RAM's last copy accounts for queues in the plan already.
  req.link_rtt = [l = *link] { return l->tunnel->minRtt(); };
  // The guest's silence on this site's LAN around the switchover: what a client here sees.
  std::unique_ptr<LanSilenceMeter> meter;
  std::string meter_error;
  if (auto mac = firstNicMac(a.vm); !mac) {
    meter_error = mac.error().describe();
  } else if (auto m = LanSilenceMeter::start(*mac, lanInterfaces(a.vm, **link)); !m) {
    meter_error = m.error().describe();
  } else {
    meter = std::move(*m);
  }
  // At the guest's STOP this site's bridge sends its frames to the peer, where they wait
  // for the guest to start (lanAtTarget). Runs on the VM monitor's thread.
  std::mutex steer_mu;
  json steered;
  if (!config_.bridge.empty()) {
    if (auto macs = nicMacs(a.vm); macs) {
      req.at_guest_stop = [&, l = *link, m = *macs] {
        const int64_t stopped_at_us = nowUs();  // the guest's pause begins (bench: STOP to cont)
        json j = lanAtSourceStop(*l, m);
        j["stopped_at_us"] = stopped_at_us;
        std::lock_guard lock(steer_mu);
        steered = std::move(j);
      };
    }
  }
  std::optional<SteadyClock::time_point> paused_at;
  req.at_pause = [&paused_at, &refs, l = *link,
                  before = a.at_start.of(tunnel::StreamKind::Migration)](json& report) {
    paused_at = SteadyClock::now();
    const auto now = l->tunnel->stats().of(tunnel::StreamKind::Migration);
    report["tunnel_migration_bytes_at_pause"] = now.bytes_sent - before.bytes_sent;
    // QEMU's bytes as the agent took them (before compression, and before the references
    // when an encoder stands between QEMU and the tunnel): what QEMU's own count of bytes
    // written compares with.
    const uint64_t encoded_from = refs.plainBytes();
    report["tunnel_migration_plain_bytes_at_pause"] =
        encoded_from > 0 ? encoded_from : now.plain_bytes_sent - before.plain_bytes_sent;
  };
  const auto t0 = SteadyClock::now();
  auto rec = runSourceMigration(host_, store_, channel, req);
  {  // the guest runs at the peer or here again: frames from the peer are no longer sent back
    std::lock_guard lock(steer_mu);
    if (steered.is_object() && steered.contains("macs")) {
      uint64_t reflected = 0;
      std::lock_guard ll((*link)->mu);
      for (const auto& mac : steered["macs"]) {
        reflected += (*link)->lan ? (*link)->lan->unreflect(mac.get<std::string>()) : 0;
      }
      steered["frames_reflected"] = reflected;
    }
  }
  channel.close();
  refs.stop();
  // Why the migration stream broke, if it did (a reference the target refused names it).
  const std::string stream_error = *mig ? (*mig)->lastError() : std::string();
  nbd->reset();
  mig->reset();
  reopened.held.clear();
  if (!rec) {
    failEarly(rec.error());
    return;
  }
  // The account of what crossed the WAN for this migration.
  const auto now = (*link)->tunnel->stats();
  auto latest = store_.get(a.id);
  MigrationRecord r = latest && *latest ? **latest : *rec;
  r.report["total_s"] = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  r.report["wan_bytes"] = (now.wire_bytes_sent - a.at_start.wire_bytes_sent) +
                          (now.wire_bytes_received - a.at_start.wire_bytes_received);
  r.report["wan_bytes_migration"] = now.of(tunnel::StreamKind::Migration).bytes_sent -
                                    a.at_start.of(tunnel::StreamKind::Migration).bytes_sent;
  r.report["wan_bytes_nbd"] = (now.of(tunnel::StreamKind::Nbd).bytes_sent -
                               a.at_start.of(tunnel::StreamKind::Nbd).bytes_sent) +
                              (now.of(tunnel::StreamKind::Nbd).bytes_received -
                               a.at_start.of(tunnel::StreamKind::Nbd).bytes_received);
  // What the streams carried before compression, and what the compressors did (ADR 0026).
  const auto plain = [&](tunnel::StreamKind k) {
    return now.of(k).plain_bytes_sent - a.at_start.of(k).plain_bytes_sent;
  };
  r.report["plain_bytes_migration"] = plain(tunnel::StreamKind::Migration);
  r.report["plain_bytes_nbd"] = plain(tunnel::StreamKind::Nbd);
  const auto& z = now.compression;
  const auto& z0 = a.at_start.compression;
  r.report["compression"] = {
      {"plain_bytes", z.plain_bytes - z0.plain_bytes},
      {"compressed_plain_bytes", z.compressed_plain - z0.compressed_plain},
      {"compressed_bytes", z.compressed_bytes - z0.compressed_bytes},
      {"chunks_compressed", z.chunks_compressed - z0.chunks_compressed},
      {"chunks_plain", z.chunks_plain - z0.chunks_plain},
      {"compress_s", static_cast<double>(z.compress_ns - z0.compress_ns) / 1e9},
      {"quick_tries", z.quick_tries - z0.quick_tries},
      {"top_level", z.top_level},  // over the tunnel's life
      {"level", z.level}};
  r.report["content_refs"] = refs.report();
  // QEMU's own stream, when the encoder stood between it and the tunnel (the tunnel took the
  // encoded stream): what QEMU's count of bytes compares with.
  if (const uint64_t q = r.report["content_refs"].value("plain_bytes", uint64_t{0}); q > 0) {
    r.report["plain_bytes_migration"] = q;
  }
  if (r.phase != MigrationPhase::Done && !stream_error.empty()) {
    r.report["migration_stream_error"] = stream_error;
  }
  r.report["connections"] = (*link)->tunnel->connectionCount();
  r.report["bandwidth_cap_mbps"] = a.cap_bytes_per_s == 0
                                       ? json(nullptr)
                                       : json(static_cast<double>(a.cap_bytes_per_s) * 8 / 1e6);
  r.report["bandwidth_cap_by"] = a.cap_by.empty() ? json(nullptr) : json(a.cap_by);
  r.report["result"] = r.phase == MigrationPhase::Done ? "ok"
                       : r.error.empty()               ? std::string(toString(r.phase))
                                                       : r.error;
  json phases = json::object();
  for (size_t i = 0; i + 1 < r.timeline.size(); ++i) {
    phases[r.timeline[i].value("phase", "?")] =
        static_cast<double>(r.timeline[i + 1].value("at_us", int64_t{0}) -
                            r.timeline[i].value("at_us", int64_t{0})) /
        1e6;
  }
  r.report["phase_s"] = phases;
  {
    std::lock_guard lock(steer_mu);
    r.report["lan_steer"] = steered.is_null() ? json(nullptr) : steered;
  }
  // A client at this site saw the guest silent this long (null: no traffic to judge by).
  r.report["lan_silence_site"] = config_.site;
  std::optional<double> silence_ms;
  if (meter && paused_at) {
    if (auto s = meter->silenceAround(*paused_at, SteadyClock::now() + std::chrono::seconds(3))) {
      silence_ms = s->silence_ms;
      r.report["lan_silence_ms"] = s->silence_ms;
      r.report["lan_gap_ms"] = s->since_last_frame_ms;
      r.report["lan_frames"] = s->frames;
    } else {
      r.report["lan_silence_ms"] = nullptr;
      r.report["lan_silence_note"] =
          "no frame from the VM seen on this site's LAN on both sides of the pause";
    }
  } else {
    r.report["lan_silence_ms"] = nullptr;
    r.report["lan_silence_note"] = meter ? "the guest never paused" : meter_error;
  }
  if (!isTerminal(r.phase)) {
    noteWaiting(r, "", nowUs());
  }
  // The SLA's downtime budget against that silence (downtime_verdict.h).
  const json qemu_downtime = r.report.contains("downtime_ms") ? r.report["downtime_ms"] : json();
  addToReport(judgeDowntime(req.downtime_budget_ms, silence_ms,
                            qemu_downtime.is_number_unsigned()
                                ? std::optional<uint64_t>(qemu_downtime.get<uint64_t>())
                                : std::nullopt),
              r.report);
  (void)store_.update(r);
  if (!isTerminal(r.phase)) {
    {
      std::lock_guard lock(a.mu);
      a.settling = true;  // ended only once the settler has the peer's word
    }
    settleLater(a.id);
  }
}

// The running (or settling) migration @p id, if this agent drives it.
std::shared_ptr<ActiveMigration> MigrationService::Impl::activeById(const std::string& id) const {
  std::lock_guard lock(mu_);
  const auto it = active_.find(id);
  return it == active_.end() ? nullptr : it->second;
}

Result<json> MigrationService::Impl::show(const std::string& id) {
  VANDRA_TRY_ASSIGN(auto r, store_.get(id));
  const std::shared_ptr<ActiveMigration> a = activeById(id);
  if (!r && !a) {
    return fail(ErrorCode::NotFound, "No migration '" + id + "' at " + config_.site);
  }
  json out = r ? toJson(*r) : json{{"id", id},        {"vm", a->vm},          {"role", "source"},
                                   {"peer", a->peer}, {"phase", "preflight"}, {"ended", false}};
  if (r && waitingForPeer(id)) {
    addWaitingFields(out, *r);  // what it waits for, since when: an operator may resolve it
  }
  if (a) {
    // Ended once its runner has written the final report and nothing waits for the peer.
    std::lock_guard al(a->mu);
    out["ended"] = a->ended && !a->settling;
  }
  if (a && !(r && isTerminal(r->phase))) {
    json p = {
        {"elapsed_s", std::chrono::duration<double>(SteadyClock::now() - a->started).count()}};
    std::shared_ptr<PeerLink> link;
    tunnel::TunnelStats at_start;
    {
      std::lock_guard lock(a->mu);
      link = a->link;
      at_start = a->at_start;
    }
    if (link) {
      const auto now = link->tunnel->stats();
      p["wan_bytes"] = (now.wire_bytes_sent - at_start.wire_bytes_sent) +
                       (now.wire_bytes_received - at_start.wire_bytes_received);
    }
    if (auto q = agent_.outgoingProgress(a->vm)) {
      p["qemu_status"] = q->status;
      p["ram_transferred"] = q->ram_transferred;
      p["ram_remaining"] = q->ram_remaining;
      p["ram_total"] = q->ram_total;
      p["dirty_rate_bps"] = static_cast<uint64_t>(q->dirty_pages_rate * 4096.0);
      p["expected_downtime_ms"] = q->expected_downtime_ms;
      p["mbps"] = q->mbps;
      p["cpu_throttle_percentage"] = q->cpu_throttle_percentage;
      uint64_t copied = 0;
      uint64_t total = 0;
      for (const auto& j : q->jobs) {
        copied += j.offset;
        total += j.len;
      }
      p["disk_copied"] = copied;
      p["disk_total"] = total;
    }
    out["progress"] = p;
  }
  return out;
}

Result<json> MigrationService::Impl::list(const std::string& vm_id) {
  VANDRA_TRY_ASSIGN(const auto all, store_.list(vm_id));
  json out = json::array();
  for (const auto& r : all) {
    out.push_back(toJson(r));
    if (!isTerminal(r.phase) && waitingForPeer(r.id)) {
      addWaitingFields(out.back(), r);
    }
  }
  return json{{"migrations", out}};
}

Result<json> MigrationService::Impl::cancel(const std::string& id) {
  const std::shared_ptr<ActiveMigration> a = activeById(id);
  VANDRA_TRY_ASSIGN(auto r, store_.get(id));
  if (!a) {
    if (!r) {
      return fail(ErrorCode::NotFound, "No migration '" + id + "' at " + config_.site);
    }
    if (r->role == MigrationRole::Target) {
      return fail(ErrorCode::IllegalTransition, "Migration '" + id +
                                                    "' is driven by its source site (" +
                                                    r->peer_site + "): cancel it there");
    }
    return fail(ErrorCode::IllegalTransition,
                "Migration '" + id + "' has ended (" + std::string(toString(r->phase)) + ")");
  }
  if (r && !beforeSwitchoverCommitted(r->phase)) {
    return fail(ErrorCode::IllegalTransition, "Migration '" + id + "' is in " +
                                                  std::string(toString(r->phase)) +
                                                  ": the VM runs at " + a->peer + " now");
  }
  if (r && r->phase == MigrationPhase::Switchover) {
    // The guest is paused and its last state on the way: undoing now would only lengthen
    // the pause; a failure from here on still rolls back by itself.
    return fail(
        ErrorCode::IllegalTransition,
        "Migration '" + id +
            "' is switching over (the guest is paused for its last copy): too late to cancel");
  }
  {
    std::lock_guard lock(a->mu);
    if (a->ended) {
      return fail(ErrorCode::IllegalTransition, "Migration '" + id + "' has ended");
    }
    a->cancel_reason = "the operator cancelled it";
  }
  (void)agent_.interruptOutgoing(a->vm, "the operator cancelled it");
  return show(id);
}

Result<json> MigrationService::Impl::wait(const std::string& id, SteadyClock::time_point deadline) {
  const std::shared_ptr<ActiveMigration> a = activeById(id);
  if (a) {
    std::unique_lock lock(a->mu);
    if (!ended_cv_.wait_until(lock, deadline, [&] { return a->ended && !a->settling; })) {
      return fail(ErrorCode::Timeout, "Migration '" + id + "' has not ended in time");
    }
  } else {
    // A migration a restart left to the settler: until it has the peer's word.
    std::unique_lock lock(settle_mu_);
    if (!settled_cv_.wait_until(lock, deadline,
                                [&] { return settle_stop_ || settling_.count(id) == 0; })) {
      return fail(ErrorCode::Timeout, "Migration '" + id + "' has not ended in time");
    }
  }  // show() takes a->mu itself
  return show(id);
}

}  // namespace vandra::orchestrator
