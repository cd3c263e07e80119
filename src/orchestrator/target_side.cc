// The target's side of a migration (migrator.h, TargetSide): one step object per phase with
// work at the target, each answering the source's message for it, driven by the transition
// table like the source's steps (source_steps.h).
//
//   message     accepted in    written before the work (table's   work           written after
//                              forward path, one write)
//   preflight   (no record)    -                                  PreflightDst   preflight
//   prepare     preflight      prepare_target                     PrepareDst     mirror_disks
//   switchover  mirror_disks   (precopy_ram) switchover           SwitchoverDst  confirm
//   confirm     confirm        -                                  ConfirmDst     done
//   query, abort: any phase (abort only before the switchover is committed: rollback() of
//   every step, each idempotent: the LAN's held frames dropped, QEMU and disks removed).
#include <algorithm>
#include <map>

#include "source_steps.h"
#include "vandra/agent/agent_service.h"
#include "vandra/common/failpoint.h"
#include "vandra/orchestrator/migrator.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/qemu/names.h"

namespace vandra::orchestrator {

using detail::nowUs;
using detail::persist;

struct TargetSide::Context {
  MigrationHost& host;
  MigrationStore& store;
  const Config& config;
};

// One phase of the target's side.
class TargetSide::Step {
 public:
  virtual ~Step() = default;
  /// The phase the source's message for this step finds the record in.
  virtual MigrationPhase acceptedIn() const = 0;
  /// The phase whose work run() does (written before it starts).
  virtual MigrationPhase phase() const = 0;
  /// The work; an error rolls the target back. @p r may gain report entries.
  virtual Result<void> run(Context& ctx, MigrationRecord& r) = 0;
  /// The answer once the completion of phase() is written.
  virtual tunnel::ControlMessage answer(const MigrationRecord& r) = 0;
  /// Undoes run() (idempotent; also called when it never ran). Returns what is left.
  virtual std::vector<std::string> rollback(Context& ctx, MigrationRecord& r) = 0;
};

namespace {

using LanStep = TargetSide::Config::LanStep;

double msBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// @p spec (a VmSpec's JSON, from the peer) with its NICs' networks renamed by @p map.
Result<nlohmann::json> renameNetworks(const nlohmann::json& spec,
                                      const std::map<std::string, std::string>& map) {
  VANDRA_TRY_ASSIGN(ovf::VmSpec parsed, ovf::vmSpecFromJson(spec));
  VANDRA_TRY(agent::mapNetworks(parsed, map));
  return ovf::toJson(parsed);
}

// The preflight answer's jurisdiction text (at most 64 bytes on the wire): the labels joined
// with commas, as many whole labels as fit.
std::string jurisdictionText(const std::vector<std::string>& labels) {
  constexpr size_t kMax = 64;
  std::string out;
  for (const auto& l : labels) {
    const size_t add = l.size() + (out.empty() ? 0 : 1);
    if (out.size() + add > kMax) {
      break;
    }
    out += (out.empty() ? "" : ",") + l;
  }
  return out;
}

// Can this site host the VM? On yes, the record (phase preflight). No record before it, so
// not a Step: its message creates what the others find.
Result<tunnel::ControlMessage> preflightDst(TargetSide::Context& ctx, const tunnel::Preflight& pf) {
  tunnel::PreflightResult res;
  res.migration_id = pf.migration_id;
  res.target_site = ctx.config.site;
  res.jurisdiction = jurisdictionText(ctx.config.jurisdictions);
  // Capacity.
  VANDRA_TRY_ASSIGN(const agent::Resources free, ctx.host.freeCapacity());
  res.free = {static_cast<uint32_t>(free.vcpus), free.memory_mib, free.disk_bytes};
  uint64_t disk = 0;
  for (const auto& d : pf.disks) {
    disk += d.virtual_size;
  }
  // The agent's one capacity check (agent/capacity.h), as prepareIncoming applies it later.
  if (auto fits = ctx.host.checkFits({pf.vcpus, pf.memory_mib, disk}); !fits) {
    if (fits.error().code != ErrorCode::CapacityExceeded) {
      return fail(fits.error());
    }
    res.reasons.push_back(fits.error().message);
  }
  // The SLA's jurisdictions: the VM may only live where its owner allows. An SLA this site
  // cannot read is refused: it could not check it.
  if (const auto sla = detail::slaFromMessage(pf.sla); !sla) {
    res.reasons.push_back("the SLA cannot be read here: " + sla.error().describe());
  } else if (!sla->jurisdictions.empty() &&
             std::find_first_of(sla->jurisdictions.begin(), sla->jurisdictions.end(),
                                ctx.config.jurisdictions.begin(),
                                ctx.config.jurisdictions.end()) == sla->jurisdictions.end()) {
    res.reasons.push_back("the SLA allows " + nlohmann::json(sla->jurisdictions).dump() +
                          ", this site is in " + nlohmann::json(ctx.config.jurisdictions).dump());
  }
  // The same virtual hardware: a guest must not see its machine or CPU change under it.
  if (pf.machine_type != ctx.config.machine_type) {
    res.reasons.push_back("the VM runs on machine type '" + pf.machine_type +
                          "', this site runs '" + ctx.config.machine_type + "'");
  }
  if (pf.cpu_model != ctx.config.cpu_model) {
    res.reasons.push_back("the VM runs with CPU model '" + pf.cpu_model + "', this site runs '" +
                          ctx.config.cpu_model + "'");
  }
  // The NICs' networks by this site's names, when the source says they are called otherwise
  // here (the controller's mapping): renamed in the spec the VM is registered with, so that
  // the check below and the VM's record here see this site's names.
  nlohmann::json spec = pf.spec;
  std::vector<std::string> networks = pf.networks;
  if (!pf.network_map.empty()) {
    if (auto renamed = renameNetworks(pf.spec, pf.network_map); !renamed) {
      // A reason is at most kMaxControlText bytes of UTF-8: cut before a whole character.
      std::string why = renamed.error().message;
      if (why.size() > 400) {
        size_t cut = 400;
        while (cut > 0 && (static_cast<unsigned char>(why[cut]) & 0xC0) == 0x80) {
          --cut;
        }
        why.resize(cut);
      }
      res.reasons.push_back("the network map cannot be applied: " + why);
    } else {
      spec = std::move(*renamed);
    }
    networks.clear();
    for (const auto& n : pf.networks) {
      const auto it = pf.network_map.find(n);
      const std::string& here = it != pf.network_map.end() ? it->second : n;
      if (std::find(networks.begin(), networks.end(), here) == networks.end()) {
        networks.push_back(here);
      }
    }
  }
  // Every network of the VM's NICs must exist here (the stretched site LAN).
  if (!ctx.config.networks.empty()) {
    for (const auto& n : networks) {
      if (std::find(ctx.config.networks.begin(), ctx.config.networks.end(), n) ==
          ctx.config.networks.end()) {
        res.reasons.push_back("no network '" + n + "' here (this site has " +
                              std::to_string(ctx.config.networks.size()) + ": " +
                              ctx.config.networks.front() +
                              (ctx.config.networks.size() > 1 ? ", ..." : "") + ")");
      }
    }
  }
  if (auto existing = ctx.host.vm(pf.vm_id); existing) {
    res.reasons.push_back("a VM named '" + pf.vm_id + "' exists here already");
  }
  // Base images this site holds too: those disks become overlays on them, and the source
  // sends only its overlay.
  nlohmann::json bases = nlohmann::json::object();
  for (const auto& d : pf.disks) {
    if (!d.base_digest.empty() && ctx.host.hasBase(d.base_digest)) {
      bases[d.id] = d.base_digest;
      if (std::find(res.bases_present.begin(), res.bases_present.end(), d.base_digest) ==
          res.bases_present.end()) {
        res.bases_present.push_back(d.base_digest);
      }
    }
  }
  res.ok = res.reasons.empty();
  if (res.ok) {
    MigrationRecord r = newMigrationRecord(pf.migration_id, pf.vm_id, MigrationRole::Target,
                                           pf.source_site, nowUs());
    r.report["spec"] = spec;  // prepare needs it
    if (!pf.network_map.empty()) {
      r.report["network_map"] = pf.network_map;
    }
    r.report["base_digests"] = bases;
    auto inserted = ctx.store.insert(r);
    if (!inserted) {
      res.ok = false;
      res.reasons.push_back(inserted.error().describe());
    }
  }
  return tunnel::ControlMessage(res);
}

// Disks, QEMU -incoming, NBD exports; the LAN starts holding the guest's frames.
class PrepareDst : public TargetSide::Step {
 public:
  MigrationPhase acceptedIn() const override { return MigrationPhase::Preflight; }
  MigrationPhase phase() const override { return MigrationPhase::PrepareTarget; }
  Result<void> run(TargetSide::Context& ctx, MigrationRecord& r) override {
    const StreamPaths paths = ctx.config.paths(r.id);
    agent::IncomingRequest in{r.vm_id,
                              r.report.value("spec", nlohmann::json::object()).dump(),
                              paths.nbd_socket,
                              paths.migration_socket,
                              {},
                              r.id};
    const nlohmann::json bases = r.report.value("base_digests", nlohmann::json::object());
    for (const auto& [disk, digest] : bases.items()) {
      if (digest.is_string()) {
        in.base_digests[disk] = digest.get<std::string>();
      }
    }
    VANDRA_TRY(ctx.host.prepareIncoming(in));
    if (ctx.config.lan) {
      r.report["lan_hold"] = ctx.config.lan(r.vm_id, LanStep::Hold);
    }
    return {};
  }
  tunnel::ControlMessage answer(const MigrationRecord& r) override {
    tunnel::Prepared out;
    out.migration_id = r.id;
    out.ready = true;
    // The spec was checked when the VM was prepared here; its disks' export names are the
    // builder's format nodes (vandra/qemu/names.h).
    auto spec = ovf::vmSpecFromJson(r.report.value("spec", nlohmann::json::object()));
    if (spec && !spec->virtual_systems.empty()) {
      if (auto names = qemu::diskNames(spec->virtual_systems.front().disks)) {
        for (const auto& n : *names) {
          out.exports.push_back({n.disk_id, n.format_node});
        }
      }
    }
    return out;
  }
  std::vector<std::string> rollback(TargetSide::Context& ctx, MigrationRecord& r) override {
    if (ctx.config.lan) {  // first: it reads the VM's MACs, which go with the VM
      r.report["lan_drop"] = ctx.config.lan(r.vm_id, LanStep::Drop);
    }
    auto undone = ctx.host.abortIncoming(r.vm_id);
    if (!undone) {
      return {undone.error().describe().substr(0, 500)};
    }
    return {};
  }
};

// The guest is paused at the source: the incoming migration completes, the guest starts here.
class SwitchoverDst : public TargetSide::Step {
 public:
  MigrationPhase acceptedIn() const override { return MigrationPhase::MirrorDisks; }
  MigrationPhase phase() const override { return MigrationPhase::Switchover; }
  Result<void> run(TargetSide::Context& ctx, MigrationRecord& r) override {
    failpoint("target-before-start");
    const auto asked = Clock::now();
    VANDRA_TRY_ASSIGN(
        pid_, ctx.host.finishIncoming(r.vm_id, true, Clock::now() + std::chrono::seconds(120)));
    const auto running = Clock::now();
    const int64_t running_at_us = nowUs();  // system clock: the source's STOP compares with it
    failpoint("target-started");
    if (ctx.config.lan) {  // the guest runs: its frames that waited go to it now
      r.report["lan_deliver"] = ctx.config.lan(r.vm_id, LanStep::Deliver);
    }
    // Where the target's share of the pause goes: the incoming migration's end, the flush
    // barrier and `cont` (finishIncoming), then the frames that waited for the guest.
    r.report["start_ms"] = {{"finish_incoming", msBetween(asked, running)},
                            {"lan_deliver", msBetween(running, Clock::now())},
                            {"running_at_us", running_at_us}};
    return {};
  }
  tunnel::ControlMessage answer(const MigrationRecord& r) override {
    return tunnel::Started{r.id, pid_};
  }
  std::vector<std::string> rollback(TargetSide::Context&, MigrationRecord&) override {
    return {};  // PrepareDst's rollback removes the QEMU this step could not finish
  }

 private:
  uint64_t pid_ = 0;
};

// The source let go of its copy: the migration is done here.
class ConfirmDst : public TargetSide::Step {
 public:
  MigrationPhase acceptedIn() const override { return MigrationPhase::Confirm; }
  MigrationPhase phase() const override { return MigrationPhase::Confirm; }
  Result<void> run(TargetSide::Context&, MigrationRecord&) override {
    failpoint("target-before-confirmed");
    return {};
  }
  tunnel::ControlMessage answer(const MigrationRecord& r) override {
    return tunnel::Confirmed{r.id};
  }
  std::vector<std::string> rollback(TargetSide::Context&, MigrationRecord&) override {
    return {};  // never: confirm is past the point of no return
  }
};

}  // namespace

TargetSide::TargetSide(MigrationHost& host, MigrationStore& store, Config config)
    : host_(host), store_(store), config_(std::move(config)) {
  steps_.push_back(std::make_unique<PrepareDst>());
  steps_.push_back(std::make_unique<SwitchoverDst>());
  steps_.push_back(std::make_unique<ConfirmDst>());
}

TargetSide::~TargetSide() = default;

Result<MigrationRecord> TargetSide::record(const std::string& migration_id) {
  VANDRA_TRY_ASSIGN(auto r, store_.get(migration_id));
  if (!r || r->role != MigrationRole::Target) {
    return fail(ErrorCode::NotFound, "No incoming migration '" + migration_id + "' here");
  }
  return *r;
}

tunnel::Aborted TargetSide::rollBack(MigrationRecord r, const std::string& why) {
  Context ctx{host_, store_, config_};
  tunnel::Aborted a;
  a.migration_id = r.id;
  if (auto s = persist(store_, r, MigrationEvent::Failure); s) {
    r = *s;
  }
  for (const auto& s : steps_) {
    auto left = s->rollback(ctx, r);
    a.leftovers.insert(a.leftovers.end(), left.begin(), left.end());
  }
  a.cleaned = a.leftovers.empty();
  r.error = why;
  (void)persist(store_, r,
                a.cleaned ? MigrationEvent::RollbackDone : MigrationEvent::RollbackFailed);
  return a;
}

// One phase's message: the record walked along the table's forward path to the step's phase
// (one write, before the work), the work, its completion written, the answer.
Result<tunnel::ControlMessage> TargetSide::runStep(Step& step, const std::string& migration_id) {
  VANDRA_TRY_ASSIGN(MigrationRecord r, record(migration_id));
  if (step.phase() == MigrationPhase::Confirm && r.phase == MigrationPhase::Done) {
    return step.answer(r);  // the source asks again: acknowledged again
  }
  if (r.phase != step.acceptedIn()) {
    return fail(ErrorCode::IllegalTransition, "Migration '" + migration_id + "' is in phase " +
                                                  std::string(toString(r.phase)) + " here, not " +
                                                  std::string(toString(step.acceptedIn())));
  }
  if (r.phase != step.phase()) {
    while (r.phase != step.phase()) {
      const auto e = completionOf(r.phase);
      if (!e) {
        return fail(ErrorCode::Internal,
                    "No forward path to " + std::string(toString(step.phase())));
      }
      VANDRA_TRY_ASSIGN(r, advance(std::move(r), *e, nowUs()));
    }
    VANDRA_TRY_ASSIGN(r, store_.update(r));  // before the side effects
  }
  Context ctx{host_, store_, config_};
  if (auto done = step.run(ctx, r); !done) {
    return tunnel::ControlMessage(rollBack(r, done.error().describe()));
  }
  VANDRA_TRY_ASSIGN(r, persist(store_, r, *completionOf(step.phase())));
  return step.answer(r);
}

// Post-copy: the guest runs here and the source's pages stopped coming. This QEMU listens
// again, for the attempt's own stream (postcopy_src.cc draws the exchange). Accepted while the
// record waits for the source's confirm, or after this site closed it unconfirmed: either way
// the guest may still miss pages.
Result<tunnel::ControlMessage> TargetSide::recover(const tunnel::Recover& rc) {
  VANDRA_TRY_ASSIGN(MigrationRecord r, record(rc.migration_id));
  if (r.phase != MigrationPhase::Confirm && r.phase != MigrationPhase::Done) {
    return fail(ErrorCode::IllegalTransition,
                "Migration '" + r.id + "' is in phase " + std::string(toString(r.phase)) +
                    " here: only a guest handed over in post-copy is recovered");
  }
  if (!config_.recover_path) {
    return fail(ErrorCode::Unsupported, "This agent cannot recover a post-copy");
  }
  VANDRA_TRY_ASSIGN(const std::string socket, config_.recover_path(r.id, rc.attempt));
  const auto done =
      host_.recoverPostcopyIn(r.vm_id, socket, Clock::now() + std::chrono::seconds(20));
  nlohmann::json& tries = r.report["post_copy_recoveries"];
  if (!tries.is_array()) {
    tries = nlohmann::json::array();
  }
  if (tries.size() >= 20) {
    tries.erase(tries.begin());  // a long outage keeps the last 20
  }
  tries.push_back({{"attempt", rc.attempt},
                   {"at_us", nowUs()},
                   {"error", done ? "" : done.error().describe().substr(0, 500)}});
  (void)store_.update(r);
  VANDRA_TRY(done);
  return tunnel::ControlMessage(tunnel::Recovering{r.id, rc.attempt});
}

Result<tunnel::ControlMessage> TargetSide::handle(const tunnel::ControlMessage& msg) {
  if (const auto* pf = std::get_if<tunnel::Preflight>(&msg)) {
    Context ctx{host_, store_, config_};
    return preflightDst(ctx, *pf);
  }
  if (const auto* p = std::get_if<tunnel::Prepare>(&msg)) {
    return runStep(*steps_[0], p->migration_id);
  }
  if (const auto* sw = std::get_if<tunnel::Switchover>(&msg)) {
    return runStep(*steps_[1], sw->migration_id);
  }
  if (const auto* c = std::get_if<tunnel::Confirm>(&msg)) {
    return runStep(*steps_[2], c->migration_id);
  }
  if (const auto* rc = std::get_if<tunnel::Recover>(&msg)) {
    return recover(*rc);
  }
  if (const auto* q = std::get_if<tunnel::Query>(&msg)) {
    tunnel::Status st;
    st.migration_id = q->migration_id;
    auto r = record(q->migration_id);
    if (r) {
      st.known = true;
      st.phase = std::string(toString(r->phase));
      const auto vm = host_.vm(r->vm_id);
      st.guest_running = vm && vm->guest_running;
    }
    return tunnel::ControlMessage(st);
  }
  if (const auto* a = std::get_if<tunnel::Abort>(&msg)) {
    auto r = record(a->migration_id);
    if (!r) {
      return tunnel::ControlMessage(tunnel::Aborted{a->migration_id, true, {}});  // nothing here
    }
    if (isTerminal(r->phase)) {
      return tunnel::ControlMessage(
          tunnel::Aborted{a->migration_id, r->phase != MigrationPhase::Failed, {}});
    }
    if (!beforeSwitchoverCommitted(r->phase)) {
      return fail(ErrorCode::IllegalTransition,
                  "Migration '" + a->migration_id + "' has switched over: the guest runs here");
    }
    return tunnel::ControlMessage(rollBack(*r, a->reason));
  }
  return fail(ErrorCode::TunnelProtocol,
              "Unexpected message " + std::string(tunnel::typeName(msg)) + " at the target");
}

}  // namespace vandra::orchestrator
