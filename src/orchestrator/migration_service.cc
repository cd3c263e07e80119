// MigrationService (migration_service.h): peer links over the site tunnel, the target's
// control-stream servers, and the source's migrations in the background.
#include "vandra/orchestrator/migration_service.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "vandra/agent/agent_client.h"
#include "vandra/common/ethernet.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/orchestrator/lan_silence.h"
#include "vandra/orchestrator/migrator.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/qemu/cmdline_builder.h"
#include "vandra/tunnel/control.h"
#include "vandra/tunnel/forward.h"

namespace vandra::orchestrator {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kControlTimeout = std::chrono::seconds(180);  // one answer of the target

int64_t nowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string newMigrationId() {
  std::random_device rd;
  std::uniform_int_distribution<uint32_t> d(0, 15);
  std::string id = "m-";
  for (int i = 0; i < 12; ++i) {
    id += "0123456789abcdef"[d(rd)];
  }
  return id;
}

// The LAN tap of a link to @p peer: "vw" + 8 hex digits (FNV-1a of the name and a counter:
// a new link's tap may exist while the dead link's is still being taken down), at most 15
// characters as Linux wants.
std::string lanTapName(const std::string& peer) {
  static std::atomic<uint32_t> links{0};
  uint32_t h = 2166136261U;
  for (char c : peer + "#" + std::to_string(links.fetch_add(1))) {
    h = (h ^ static_cast<uint8_t>(c)) * 16777619U;
  }
  static const char* hex = "0123456789abcdef";
  std::string n = "vw";
  for (int i = 7; i >= 0; --i) {
    n += hex[(h >> (i * 4)) & 0xF];
  }
  return n;
}

json toJson(const MigrationRecord& r) {
  json report = r.report;
  if (report.is_object()) {  // a target's working data, not its account
    report.erase("spec");
    report.erase("base_digests");
  }
  json out = {{"id", r.id},
              {"vm", r.vm_id},
              {"role", std::string(toString(r.role))},
              {"peer", r.peer_site},
              {"phase", std::string(toString(r.phase))},
              {"ended", isTerminal(r.phase)},
              {"created_us", r.created_us},
              {"updated_us", r.updated_us},
              {"timeline", r.timeline},
              {"error", r.error},
              {"report", report}};
  return out;
}

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

}  // namespace

// ---- a link to one peer site ----------------------------------------------------------------

struct PeerLink {
  std::string peer;
  std::unique_ptr<tunnel::Tunnel> tunnel;
  std::mutex mu;  // guards the members below
  std::unique_ptr<tunnel::TapBridge> lan;
  std::map<std::string, std::vector<std::unique_ptr<tunnel::UnixForwarder>>>
      forwarders;                    // by migration id
  std::vector<std::thread> servers;  // one per control stream the peer opened
  std::unique_ptr<TargetSide> target;

  ~PeerLink() {
    if (tunnel) {
      tunnel->close("agent stopping");  // every stream fails: the servers' reads end
    }
    for (auto& t : servers) {
      if (t.joinable()) {
        t.join();
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
      : agent_(agent), store_(store), config_(std::move(config)) {}

  ~Impl() {
    listener_.reset();  // no new tunnels
    std::map<std::string, std::shared_ptr<ActiveMigration>> active;
    {
      std::lock_guard lock(mu_);
      active = active_;
      stopping_ = true;
    }
    for (auto& [id, a] : active) {
      {
        std::lock_guard lock(a->mu);
        a->cancel_reason = "the agent is stopping";
      }
      (void)agent_.interruptOutgoing(a->vm, "the agent is stopping");
    }
    for (auto& [id, a] : active) {
      if (a->runner.joinable()) {
        a->runner.join();
      }
    }
    {
      std::lock_guard lock(settle_mu_);
      settle_stop_ = true;
    }
    settle_cv_.notify_all();
    settled_cv_.notify_all();
    {
      std::lock_guard lock(mu_);
      for (auto& [peer, l] : links_) {
        l->tunnel->close("agent stopping");  // a settle waiting on the peer gives up now
      }
    }
    if (settler_.joinable()) {
      settler_.join();
    }
    std::map<std::string, std::shared_ptr<PeerLink>> links;
    {
      std::lock_guard lock(mu_);
      links.swap(links_);
    }
    links.clear();  // outside mu_: a link's threads may still report through it
  }

  Result<void> startListening() {
    if (!config_.listen) {
      return {};
    }
    tunnel::ListenerOptions lo;
    static_cast<tunnel::TunnelSettings&>(lo) = settings();
    for (const auto& p : config_.peers) {
      lo.peer_sites.push_back(p.name);
    }
    lo.bind_host = config_.listen_host;
    lo.port = config_.listen_port;
    lo.on_tunnel = [this](std::unique_ptr<tunnel::Tunnel> t) { adopt(std::move(t)); };
    // The WAN side may be down or gone when the agent starts: the agent serves its VMs
    // anyway and the listener binds once the address is back (listenerChanged).
    lo.retry_bind = true;
    lo.on_status = [this](const tunnel::ListenerStatus& st) { listenerChanged(st); };
    VANDRA_TRY_ASSIGN(listener_, tunnel::TunnelListener::listen(lo));
    return {};
  }

  uint16_t port() const { return listener_ ? listener_->port() : 0; }

  // ---- links ----

  tunnel::TunnelSettings settings() const {
    tunnel::TunnelSettings s = config_.tunnel;
    s.local_site = config_.site;
    return s;
  }

  // Serves the peer's streams on a link: control streams (incoming migrations) and the LAN.
  void wire(const std::shared_ptr<PeerLink>& link, bool accepted) {
    std::weak_ptr<PeerLink> weak = link;
    TargetSide::Config tc;
    tc.site = config_.site;
    tc.jurisdiction = config_.jurisdiction;
    tc.machine_type = config_.machine_type;
    tc.cpu_model = config_.cpu_model;
    tc.networks = config_.networks;
    if (!config_.bridge.empty()) {
      tc.lan = [this, weak](const std::string& vm_id, TargetSide::Config::LanStep step) -> json {
        auto l = weak.lock();
        return l ? lanAtTarget(*l, vm_id, step) : json{{"error", "the link is gone"}};
      };
    }
    tc.paths = [this, weak](const std::string& id) {
      const std::string dir = config_.run_dir + "/" + id;
      std::error_code ec;
      fs::create_directories(dir, ec);
      StreamPaths p{dir + "/nbd.sock", dir + "/in.sock"};
      if (auto l = weak.lock()) {
        std::vector<std::unique_ptr<tunnel::UnixForwarder>> fw;
        if (auto f =
                tunnel::forwardUnixSocket(*l->tunnel, tunnel::ForwardMode::Connect,
                                          tunnel::StreamKind::Nbd, id + "/nbd", p.nbd_socket)) {
          fw.push_back(std::move(*f));
        }
        if (auto f = tunnel::forwardUnixSocket(*l->tunnel, tunnel::ForwardMode::Connect,
                                               tunnel::StreamKind::Migration, id + "/mig",
                                               p.migration_socket)) {
          fw.push_back(std::move(*f));
        }
        std::lock_guard lock(l->mu);
        l->forwarders[id] = std::move(fw);
      }
      return p;
    };
    link->target = std::make_unique<TargetSide>(agent_, store_, std::move(tc));
    link->tunnel->addStreamHandler(
        tunnel::StreamKind::Control, "",
        [this, weak](tunnel::StreamKind, const std::string&, tunnel::Stream s) {
          auto l = weak.lock();
          if (!l) {
            return;
          }
          std::lock_guard lock(l->mu);
          l->servers.emplace_back(
              [this, l = l.get(), s = std::move(s)]() mutable { serveControl(*l, std::move(s)); });
        });
    if (accepted && !config_.bridge.empty()) {
      link->tunnel->addStreamHandler(
          tunnel::StreamKind::Ethernet, "lan",
          [this, weak](tunnel::StreamKind, const std::string&, tunnel::Stream s) {
            if (auto l = weak.lock()) {
              attachLan(*l, std::move(s));
            }
          });
    }
  }

  void attachLan(PeerLink& l, tunnel::Stream s) {
    const std::string tap = lanTapName(l.peer);
    auto said = [this](const Error& e) {
      std::lock_guard lock(mu_);  // peers() reports it
      lan_error_ = e.describe();
    };
    auto bridge = tunnel::bridgeTap(tap, "", std::move(s));
    if (!bridge) {
      said(bridge.error());
      return;
    }
    if (auto up = runCapture({"ip", "link", "set", tap, "master", config_.bridge, "up"}); !up) {
      said(up.error());
      return;
    }
    std::lock_guard lock(l.mu);
    l.lan = std::move(*bridge);
  }

  // One control stream of the peer: each message answered by TargetSide, in order. When the
  // stream ends (the source's agent stopped, the tunnel broke) before the switchover, the
  // source is authoritative and will roll back: the target cleans up at once.
  void serveControl(PeerLink& l, tunnel::Stream s) {
    std::string last_id;
    auto orphaned = defer([&] {
      if (last_id.empty()) {
        return;
      }
      auto r = store_.get(last_id);
      const bool abandoned = r && *r && (*r)->role == MigrationRole::Target &&
                             !isTerminal((*r)->phase) && beforeSwitchoverCommitted((*r)->phase);
      if (abandoned || (r && *r && isTerminal((*r)->phase))) {
        l.dropForwarders(last_id);  // first: the VM's deletion is the sign that all is gone
        std::error_code ec;
        fs::remove_all(config_.run_dir + "/" + last_id, ec);
      }
      if (abandoned) {
        (void)l.target->handle(
            tunnel::Abort{last_id, "the source's control stream ended before the switchover",
                          tunnel::MigrationPhase::Preflight});
      }
    });
    for (;;) {
      auto msg = s.readMessage();
      if (!msg || !*msg) {
        return;  // closed (the migration is over) or the tunnel is down
      }
      auto decoded = tunnel::decodeControl(**msg);
      if (!decoded) {
        s.close(tunnel::WireError::ProtocolError, decoded.error().describe().substr(0, 200));
        return;
      }
      const std::string id = migrationId(*decoded);
      last_id = id;
      auto answer = l.target->handle(*decoded);
      tunnel::ControlMessage out =
          answer ? *answer
                 : tunnel::ControlMessage(
                       tunnel::Aborted{id, false, {answer.error().describe().substr(0, 500)}});
      if (std::holds_alternative<tunnel::Started>(out)) {
        closeUnconfirmedLater(id);
      }
      if (std::holds_alternative<tunnel::Confirmed>(out) ||
          std::holds_alternative<tunnel::Aborted>(out)) {
        l.dropForwarders(id);
        std::error_code ec;
        fs::remove_all(config_.run_dir + "/" + id, ec);
      }
      auto wire = tunnel::encodeControl(out);
      if (!wire || !s.writeMessage(*wire)) {
        return;
      }
    }
  }

  // The send cap towards @p peer: its own, else the agent-wide one.
  uint64_t capFor(const std::string& peer) const {
    for (const auto& p : config_.peers) {
      if (p.name == peer && p.bandwidth_bytes_per_s > 0) {
        return p.bandwidth_bytes_per_s;
      }
    }
    return config_.tunnel.bandwidth_bytes_per_s;
  }

  void adopt(std::unique_ptr<tunnel::Tunnel> t) {
    // The listener applies the agent-wide cap; this peer's own is known only now.
    t->setBandwidth(capFor(t->peerSite()));
    auto link = std::make_shared<PeerLink>();
    link->peer = t->peerSite();
    link->tunnel = std::move(t);
    wire(link, /*accepted=*/true);
    std::shared_ptr<PeerLink> old;
    {
      std::lock_guard lock(mu_);
      old = std::move(links_[link->peer]);
      links_[link->peer] = link;
    }
    linkUp(link->peer, /*dialed=*/false);
    // The old link (if any) ends on another thread: its destructor joins servers.
    if (old) {
      std::thread([o = std::move(old)]() mutable { o.reset(); }).detach();
    }
  }

  // In the event log: an operator (or a test) can wait for a link (GET /v1/events?wait_ms=).
  void linkUp(const std::string& peer, bool dialed) {
    agent_.events().append("", "site", "peer-link-up",
                           {{"peer", peer}, {"by", dialed ? "dialed" : "accepted"}});
  }

  Result<std::shared_ptr<PeerLink>> linkTo(const std::string& peer) {
    std::lock_guard dial(dial_mu_);  // one dial at a time: never two links to one peer
    {
      std::lock_guard lock(mu_);
      if (auto it = links_.find(peer); it != links_.end() && it->second->tunnel->alive()) {
        return it->second;
      }
    }
    const auto p = std::find_if(config_.peers.begin(), config_.peers.end(),
                                [&](const PeerSite& s) { return s.name == peer; });
    if (p == config_.peers.end()) {
      return fail(ErrorCode::NotFound,
                  "No peer site '" + peer + "' is configured at " + config_.site);
    }
    tunnel::TunnelOptions to;
    static_cast<tunnel::TunnelSettings&>(to) = settings();
    to.peer_site = p->name;
    to.bandwidth_bytes_per_s = capFor(p->name);
    to.host = p->host;
    to.port = p->port;
    to.connections = config_.connections;
    VANDRA_TRY_ASSIGN(auto t, tunnel::Tunnel::connect(to));
    auto link = std::make_shared<PeerLink>();
    link->peer = peer;
    link->tunnel = std::move(t);
    wire(link, /*accepted=*/false);
    if (!config_.bridge.empty()) {
      VANDRA_TRY_ASSIGN(auto s, link->tunnel->openStream(tunnel::StreamKind::Ethernet, "lan"));
      attachLan(*link, std::move(s));
    }
    std::shared_ptr<PeerLink> old;
    {
      std::lock_guard lock(mu_);
      old = std::move(links_[peer]);
      links_[peer] = link;
    }
    old.reset();
    linkUp(peer, /*dialed=*/true);
    return link;
  }

  // ---- source ----

  Result<json> begin(const std::string& vm_id, const MigrateOptions& o) {
    VANDRA_TRY_ASSIGN(const agent::VmRecord vm, agent_.get(vm_id));
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
    const auto spec = json::parse(vm.spec_json, nullptr, false);
    const json sla = spec.is_object() && spec.contains("virtual_systems") &&
                             !spec["virtual_systems"].empty() &&
                             spec["virtual_systems"][0].contains("sla") &&
                             spec["virtual_systems"][0]["sla"].is_object()
                         ? spec["virtual_systems"][0]["sla"]
                         : json::object();
    if (sla.value("mobility", std::string()) == "pinned") {
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
    if (sla.contains("max_migration_mbps") && sla["max_migration_mbps"].is_number_unsigned()) {
      const uint64_t sla_cap = sla["max_migration_mbps"].get<uint64_t>() * 1000000 / 8;
      if (sla_cap != 0 && (a->cap_bytes_per_s == 0 || sla_cap < a->cap_bytes_per_s)) {
        a->cap_bytes_per_s = sla_cap;
        a->cap_by = "sla";
      }
    }
    req.mirror.bandwidth_bytes_per_s = a->cap_bytes_per_s;
    req.ram.max_bandwidth_bytes_per_s = a->cap_bytes_per_s;
    // QEMU's downtime limit is planned at preflight from the SLA's budget and the link's
    // round trip (downtime_plan.h).
    if (sla.contains("downtime_budget_ms") && sla["downtime_budget_ms"].is_number_unsigned()) {
      req.downtime_budget_ms = sla["downtime_budget_ms"].get<uint64_t>();
    }
    if (o.downtime_limit_ms != 0) {
      req.downtime_limit_ms = o.downtime_limit_ms;
    }
    req.ram.auto_converge = o.auto_converge;
    req.mirror.copy_mode = o.copy_mode;
    req.ram.max_total_time = std::chrono::duration_cast<std::chrono::milliseconds>(o.max_total);
    req.cancelled = [a]() -> std::optional<std::string> {
      std::lock_guard l(a->mu);
      return a->cancel_reason;
    };
    active_[a->id] = a;
    a->runner = std::thread([this, a, req]() mutable { run(*a, std::move(req)); });
    return json{
        {"id", a->id}, {"vm", vm_id}, {"to", o.to}, {"phase", "preflight"}, {"ended", false}};
  }

  void run(ActiveMigration& a, MigrateRequest req) {
    auto finish = defer([&] {
      std::lock_guard lock(a.mu);
      a.ended = true;
      ended_cv_.notify_all();
    });
    const std::string dir = config_.run_dir + "/" + a.id;
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
    req.source_paths = {dir + "/nbd.sock", dir + "/mig.sock"};
    auto nbd = tunnel::forwardUnixSocket(*(*link)->tunnel, tunnel::ForwardMode::Listen,
                                         tunnel::StreamKind::Nbd, a.id + "/nbd",
                                         req.source_paths.nbd_socket);
    auto mig = tunnel::forwardUnixSocket(*(*link)->tunnel, tunnel::ForwardMode::Listen,
                                         tunnel::StreamKind::Migration, a.id + "/mig",
                                         req.source_paths.migration_socket);
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
    req.link_rtt = [l = *link] { return l->tunnel->rtt(); };
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
          json j = lanAtSourceStop(*l, m);
          std::lock_guard lock(steer_mu);
          steered = std::move(j);
        };
      }
    }
    std::optional<SteadyClock::time_point> paused_at;
    req.at_pause = [&paused_at, l = *link,
                    before =
                        a.at_start.of(tunnel::StreamKind::Migration).bytes_sent](json& report) {
      paused_at = SteadyClock::now();
      report["tunnel_migration_bytes_at_pause"] =
          l->tunnel->stats().of(tunnel::StreamKind::Migration).bytes_sent - before;
    };
    const auto t0 = SteadyClock::now();
    auto rec = runSourceMigration(agent_, store_, channel, req);
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
    nbd->reset();
    mig->reset();
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
    if (meter && paused_at) {
      if (auto s = meter->silenceAround(*paused_at, SteadyClock::now() + std::chrono::seconds(3))) {
        r.report["lan_silence_ms"] = s->silence_ms;
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
  std::shared_ptr<ActiveMigration> activeById(const std::string& id) const {
    std::lock_guard lock(mu_);
    const auto it = active_.find(id);
    return it == active_.end() ? nullptr : it->second;
  }

  // ---- settling what needs the peer's word (migrator.h, settleSourceMigration) ----

  void startSettler() {
    settler_ = std::thread([this] { settleLoop(); });
  }

  void settleLater(const std::string& id) {
    {
      std::lock_guard lock(settle_mu_);
      settling_.try_emplace(id, Settle{SteadyClock::now(), std::chrono::seconds(1), false, false});
    }
    settle_cv_.notify_all();
  }

  // A target whose guest runs waits for the source's confirm, for config_.confirm_timeout.
  void closeUnconfirmedLater(const std::string& id) {
    {
      std::lock_guard lock(settle_mu_);
      confirm_due_[id] = SteadyClock::now() + config_.confirm_timeout;
    }
    settle_cv_.notify_all();
  }

  // The source never confirmed (its site gone, its agent down for good): the guest runs
  // here and has since the `started` answer, so this site closes the migration. A source
  // that comes back asks (query), hears `done` with the guest running, and releases its copy.
  void closeUnconfirmed(const std::string& id) {
    auto r = store_.get(id);
    if (!r || !*r || (*r)->role != MigrationRole::Target ||
        (*r)->phase != MigrationPhase::Confirm) {
      return;  // confirmed meanwhile, or gone
    }
    MigrationRecord rec = **r;
    const auto vm = agent_.get(rec.vm_id);
    const bool runs = vm && vm->state == agent::VmState::Running && vm->pid != 0 &&
                      agent::observeProcess(vm->pid, vm->pid_start_time).alive;
    if (!runs) {
      rec.error = "The source (" + rec.peer_site +
                  ") has not confirmed, and the guest no longer runs here: an operator must look";
      (void)store_.update(rec);
      return;
    }
    auto closed = advance(rec, MigrationEvent::TargetConfirmed, nowUs());
    if (!closed) {
      return;
    }
    closed->error = "The source (" + rec.peer_site + ") did not confirm within " +
                    std::to_string(config_.confirm_timeout.count()) +
                    " s; the guest runs here, so this site closed it";
    closed->report["closed_unconfirmed"] = true;
    if (store_.update(*closed)) {
      agent_.events().append(rec.vm_id, "migration", "migration-closed-unconfirmed",
                             {{"migration", id}, {"source", rec.peer_site}});
    }
  }

  // Each record is tried when due, then again after 1, 2, 4 ... 30 s until it is settled;
  // unconfirmed targets are closed when their time is up.
  void settleLoop() {
    std::unique_lock lock(settle_mu_);
    while (!settle_stop_) {
      const auto now = SteadyClock::now();
      std::vector<std::string> due;
      auto next = SteadyClock::time_point::max();
      for (auto& [id, e] : settling_) {
        if (e.resolving) {
          continue;  // the operator's word decides it now (resolve)
        }
        if (e.due <= now) {
          due.push_back(id);
          e.trying = true;
        } else {
          next = std::min(next, e.due);
        }
      }
      std::vector<std::string> unconfirmed;
      for (auto it = confirm_due_.begin(); it != confirm_due_.end();) {
        if (it->second <= now) {
          unconfirmed.push_back(it->first);
          it = confirm_due_.erase(it);
        } else {
          next = std::min(next, it->second);
          ++it;
        }
      }
      if (!unconfirmed.empty()) {
        lock.unlock();
        for (const auto& id : unconfirmed) {
          closeUnconfirmed(id);
        }
        lock.lock();
        continue;
      }
      if (due.empty()) {
        if (next == SteadyClock::time_point::max()) {
          settle_cv_.wait(lock);
        } else {
          settle_cv_.wait_until(lock, next);
        }
        continue;
      }
      lock.unlock();
      std::vector<std::pair<std::string, bool>> tried;
      for (const auto& id : due) {
        tried.emplace_back(id, settleOnce(id));
      }
      lock.lock();
      for (const auto& [id, done] : tried) {
        auto it = settling_.find(id);
        if (it == settling_.end()) {
          continue;
        }
        it->second.trying = false;
        settled_cv_.notify_all();  // a resolve waits for the try to end
        if (done) {
          settling_.erase(it);
          settled_cv_.notify_all();
        } else {
          it->second.backoff =
              std::min<std::chrono::seconds>(it->second.backoff * 2, std::chrono::seconds(30));
          it->second.due = SteadyClock::now() + it->second.backoff;
        }
      }
    }
  }

  // One try: true once the record needs nothing more of the peer.
  bool settleOnce(const std::string& id) {
    {
      std::lock_guard lock(settle_mu_);
      if (settle_stop_) {
        return false;  // the agent is stopping: the next start asks again
      }
    }
    auto r = store_.get(id);
    if (!r) {
      return false;  // the store failed: try again later
    }
    bool done =
        !*r || (*r)->role != MigrationRole::Source ||
        ((*r)->phase != MigrationPhase::Switchover && (*r)->phase != MigrationPhase::Confirm);
    if (!done) {
      MigrationRecord rec = **r;
      auto link = linkTo(rec.peer_site);
      auto stream = link ? (*link)->tunnel->openStream(tunnel::StreamKind::Control, id)
                         : Result<tunnel::Stream>(fail(link.error()));
      if (!stream) {
        rec.error =
            "Waiting for " + rec.peer_site +
            " to say whether it runs the guest: cannot reach it: " + stream.error().describe();
        noteWaiting(rec, "peer " + rec.peer_site + " unreachable: " + stream.error().describe(),
                    nowUs());
        (void)store_.update(rec);
        return false;
      }
      StreamChannel channel(std::move(*stream),
                            [this, peer = rec.peer_site, id]() -> Result<tunnel::Stream> {
                              VANDRA_TRY_ASSIGN(auto l, linkTo(peer));
                              return l->tunnel->openStream(tunnel::StreamKind::Control, id);
                            });
      auto out = settleSourceMigration(agent_, store_, channel, rec);
      channel.close();
      if (!out) {
        return false;
      }
      done = isTerminal(out->phase);
      if (!done) {
        noteWaiting(*out, "", nowUs());
        (void)store_.update(*out);
      }
      if (done) {
        out->report["result"] = out->phase == MigrationPhase::Done ? "ok"
                                : out->error.empty() ? std::string(toString(out->phase))
                                                     : out->error;
        (void)store_.update(*out);
        agent_.events().append(out->vm_id, "migration", "migration-settled",
                               {{"migration", id}, {"phase", std::string(toString(out->phase))}});
      }
    }
    if (done) {
      const std::shared_ptr<ActiveMigration> a = activeById(id);
      if (a) {
        std::lock_guard lock(a->mu);
        a->settling = false;
        ended_cv_.notify_all();
      }
    }
    return done;
  }

  // Where the VM's frames cross this site's LAN: its own tap, and the link's LAN tap.
  static std::vector<std::string> lanInterfaces(const std::string& vm_id, PeerLink& link) {
    std::vector<std::string> out{agent::tapName(vm_id, 0)};
    std::lock_guard lock(link.mu);
    if (link.lan) {
      out.push_back(link.lan->name());
    }
    return out;
  }

  // The MACs of the VM's NICs as QEMU runs them, NIC i on tap agent::tapName(vm_id, i).
  Result<std::vector<std::string>> nicMacs(const std::string& vm_id) {
    VANDRA_TRY_ASSIGN(const agent::VmRecord vm, agent_.get(vm_id));
    const auto j = json::parse(vm.spec_json, nullptr, false);
    if (j.is_discarded()) {
      return fail(ErrorCode::InvalidArgument, "VM '" + vm_id + "' has an unreadable spec");
    }
    VANDRA_TRY_ASSIGN(const ovf::VmSpec spec, ovf::vmSpecFromJson(j));
    if (spec.virtual_systems.empty() || spec.virtual_systems.front().nics.empty()) {
      return fail(ErrorCode::NotFound, "VM '" + vm_id + "' has no NIC");
    }
    std::vector<std::string> out;
    for (size_t i = 0; i < spec.virtual_systems.front().nics.size(); ++i) {
      VANDRA_TRY_ASSIGN(std::string mac, qemu::nicMac(spec.virtual_systems.front(), i));
      out.push_back(std::move(mac));
    }
    return out;
  }

  // The first NIC's MAC, as QEMU runs it.
  Result<std::string> firstNicMac(const std::string& vm_id) {
    VANDRA_TRY_ASSIGN(auto macs, nicMacs(vm_id));
    return macs.front();
  }

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

  json lanAtTarget(PeerLink& l, const std::string& vm_id, TargetSide::Config::LanStep step) {
    using Step = TargetSide::Config::LanStep;
    auto macs = nicMacs(vm_id);
    if (!macs) {
      return {{"error", macs.error().describe()}};
    }
    json out = {{"macs", *macs}};
    std::vector<std::string> errors;
    uint64_t delivered = 0;
    uint64_t discarded = 0;
    std::lock_guard lock(l.mu);  // the link's LAN tap stays while we use it
    if (!l.lan) {
      return {{"error", "no stretched LAN on the link to " + l.peer}};
    }
    for (size_t i = 0; i < macs->size(); ++i) {
      const std::string& mac = (*macs)[i];
      if (step == Step::Hold) {
        if (auto h = l.lan->hold(mac, kLanHoldLifetime); !h) {
          errors.push_back(h.error().describe());
        }
      } else if (step == Step::Deliver) {
        // First the bridge, so the frames released next (and all later ones) reach the guest.
        if (auto p = pointBridgeAt("", mac, agent::tapName(vm_id, i)); !p) {
          errors.push_back(p.error().describe());
        }
        const auto r = l.lan->release(mac, kLanHeldMaxAge);
        delivered += r.delivered;
        discarded += r.discarded;
      } else {
        discarded += l.lan->drop(mac);
      }
    }
    if (step != Step::Hold) {
      out["frames_delivered"] = delivered;
      out["frames_discarded"] = discarded;
    }
    if (!errors.empty()) {
      out["error"] = errors.front();
    }
    return out;
  }

  // The source's half, at the guest's STOP: frames for the VM go to the peer from now on.
  json lanAtSourceStop(PeerLink& l, const std::vector<std::string>& macs) {
    const auto t0 = SteadyClock::now();
    std::string tap;
    {
      std::lock_guard lock(l.mu);
      if (l.lan) {
        tap = l.lan->name();
      }
    }
    if (tap.empty()) {
      return {{"error", "no stretched LAN on the link to " + l.peer}};
    }
    json out = {{"macs", macs}, {"to", tap}};
    for (const auto& mac : macs) {
      if (auto p = pointBridgeAt("", mac, tap); !p) {
        out["error"] = p.error().describe();
        break;
      }
      // What clients at the peer's site send the guest comes here: back it goes, to wait there.
      std::lock_guard lock(l.mu);
      if (auto r = l.lan ? l.lan->reflect(mac, kLanHoldLifetime) : Result<void>{}; !r) {
        out["error"] = r.error().describe();
        break;
      }
    }
    out["took_ms"] = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
    return out;
  }

  // The settler holds migration @p id (its runner, if any, has handed it over) and no resolve
  // owns it: it waits for the peer's word, and an operator may resolve it.
  bool waitingForPeer(const std::string& id) {
    if (const std::shared_ptr<ActiveMigration> a = activeById(id)) {
      std::lock_guard lock(a->mu);
      if (!a->ended) {
        return false;
      }
    }
    std::lock_guard lock(settle_mu_);
    const auto it = settling_.find(id);
    return !settle_stop_ && it != settling_.end() && !it->second.resolving;
  }

  Result<json> show(const std::string& id) {
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

  Result<json> list(const std::string& vm_id) {
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

  Result<json> cancel(const std::string& id) {
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

  Result<json> wait(const std::string& id, SteadyClock::time_point deadline) {
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

  json peers() const {
    json out = json::array();
    std::lock_guard lock(mu_);
    for (const auto& [name, l] : links_) {
      const auto st = l->tunnel->stats();
      json j = {{"site", name},
                {"link", l->tunnel->alive() ? "up" : "down"},
                {"alive", l->tunnel->alive()},
                {"connections", l->tunnel->connectionCount()},
                {"wire_bytes_sent", st.wire_bytes_sent},
                {"wire_bytes_received", st.wire_bytes_received},
                {"bandwidth_mbps", static_cast<double>(l->tunnel->bandwidth()) * 8 / 1e6}};
      if (auto rtt = l->tunnel->rtt()) {
        j["rtt_us"] = rtt->count();
      }
      if (auto e = l->tunnel->error()) {
        j["error"] = e->describe();  // why it went down
      }
      std::lock_guard ll(l->mu);
      if (l->lan) {
        const auto c = l->lan->counters();
        j["lan"] = {{"tap", l->lan->name()},
                    {"frames_sent", c.frames_sent},
                    {"frames_received", c.frames_received},
                    {"dropped", c.dropped}};
      }
      out.push_back(j);
    }
    for (const auto& p : config_.peers) {  // configured, never linked yet
      if (links_.count(p.name) == 0) {
        out.push_back({{"site", p.name},
                       {"link", "down"},
                       {"alive", false},
                       {"address", p.host + ":" + std::to_string(p.port)}});
      }
    }
    if (!lan_error_.empty()) {
      out.push_back({{"lan_error", lan_error_}});
    }
    return out;
  }

  Result<json> recover();
  Result<json> resolve(const std::string& id, const Resolution& how);
  void listenerChanged(const tunnel::ListenerStatus& st);
  std::optional<tunnel::ListenerStatus> listenerStatus() const {
    return listener_ ? std::optional(listener_->status()) : std::nullopt;
  }

  agent::AgentService& agent_;
  MigrationStore& store_;
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
};

// ---- recovery ---------------------------------------------------------------------------------

Result<json> MigrationService::Impl::recover() {
  VANDRA_TRY_ASSIGN(const auto all, store_.list(""));
  json done = json::array();
  for (auto r : all) {
    if (isTerminal(r.phase)) {
      continue;
    }
    Observation seen;
    auto vm = agent_.get(r.vm_id);
    seen.local_qemu_alive =
        vm && vm->pid != 0 && agent::observeProcess(vm->pid, vm->pid_start_time).alive;
    if (seen.local_qemu_alive && r.role == MigrationRole::Target &&
        r.phase == MigrationPhase::Switchover) {
      seen.local_guest_running = agent_.incomingGuestRuns(r.vm_id).value_or(false);
    }
    const RecoveryStep step = recoveryFor(r.role, r.phase, seen);
    json entry = {{"id", r.id},
                  {"vm", r.vm_id},
                  {"role", std::string(toString(r.role))},
                  {"phase", std::string(toString(r.phase))},
                  {"step", std::string(toString(step))}};
    auto setPhase = [&](MigrationEvent e, const std::string& why) {
      if (auto n = advance(r, e, nowUs())) {
        if (!why.empty()) {
          n->error = why;
        }
        if (auto u = store_.update(*n)) {
          r = *u;
        }
      }
    };
    switch (step) {
      case RecoveryStep::AdoptTarget: {
        // The guest has run here: it must not run at the source again. Confirm is written
        // now; the source hears it when it asks (query) and releases its copy.
        auto adopted = agent_.adoptIncoming(r.vm_id);
        if (adopted) {
          setPhase(MigrationEvent::TargetStarted, "");
          closeUnconfirmedLater(r.id);
          entry["result"] = "adopted: the guest ran here already";
          break;
        }
        entry["adopt_error"] = adopted.error().describe();
        [[fallthrough]];  // it does not run after all: the source's copy is the one
      }
      case RecoveryStep::CleanUpTarget: {
        auto undone = agent_.abortIncoming(r.vm_id);
        setPhase(MigrationEvent::Failure, "the target agent restarted before the switchover");
        setPhase(undone ? MigrationEvent::RollbackDone : MigrationEvent::RollbackFailed, "");
        entry["result"] = undone ? "cleaned" : undone.error().describe();
        break;
      }
      case RecoveryStep::RollBack:
      case RecoveryStep::ResumeRollback: {
        // The source QEMU: whatever migration or mirror it still runs is cancelled by QMP and
        // the guest resumed (the agent's own startup recovery re-attached it).
        std::string result = "rolled back";
        if (seen.local_qemu_alive) {
          if (auto c = agent_.cancelStrayMigration(r.vm_id); !c) {
            result = "source not cleaned: " + c.error().describe();
          }
        }
        if (r.phase != MigrationPhase::RollingBack) {
          setPhase(MigrationEvent::Failure, "the source agent restarted before the switchover");
        }
        setPhase(MigrationEvent::RollbackDone, "");
        entry["result"] = result;
        break;
      }
      case RecoveryStep::MarkFailed:
        setPhase(MigrationEvent::Failure,
                 "the agent restarted and found neither side running the guest");
        setPhase(MigrationEvent::RollbackFailed, "");
        entry["result"] = "failed";
        break;
      case RecoveryStep::WaitForPeer:
      case RecoveryStep::FinishConfirm:
        // The target's word decides (settleSourceMigration): asked in the background, so
        // that an unreachable peer does not hold up this agent's start.
        noteWaiting(r, "peer " + r.peer_site + "'s word (asking it since this agent restarted)",
                    nowUs());
        if (auto u = store_.update(r)) {
          r = *u;
        }
        settleLater(r.id);
        entry["result"] = "asking " + r.peer_site;
        break;
      case RecoveryStep::KeepTarget:
        closeUnconfirmedLater(r.id);  // the source's confirm settles it, or the timeout
        entry["result"] = "left for the peer";
        break;
      case RecoveryStep::Nothing:
        entry["result"] = "left for the peer";
        break;
    }
    done.push_back(entry);
  }
  return done;
}

// ---- the operator's word on a source that waits for its peer (resolve.h) ----------------------

Result<json> MigrationService::Impl::resolve(const std::string& id, const Resolution& how) {
  VANDRA_TRY_ASSIGN(auto r, store_.get(id));
  if (!r) {
    if (activeById(id)) {  // begun, its record not written yet
      return fail(ErrorCode::IllegalTransition,
                  "Migration '" + id + "' is starting: it is not waiting for its peer");
    }
    return fail(ErrorCode::NotFound, "No migration '" + id + "' at " + config_.site);
  }
  auto release = [&] {  // the settler takes it up again (unless it settled meanwhile)
    std::lock_guard lock(settle_mu_);
    if (auto it = settling_.find(id); it != settling_.end()) {
      it->second.resolving = false;
      it->second.due = SteadyClock::now();
    }
    settle_cv_.notify_all();
  };
  bool runner_done = true;  // a runner still talking to the peer owns the record
  if (const std::shared_ptr<ActiveMigration> a = activeById(id)) {
    std::lock_guard lock(a->mu);
    runner_done = a->ended;
  }
  {
    std::unique_lock lock(settle_mu_);
    auto it = settling_.find(id);
    const bool waiting =
        runner_done && it != settling_.end() && !it->second.resolving && !settle_stop_;
    VANDRA_TRY(checkResolvable(*r, how.action, waiting));
    it->second.resolving = true;
    // A try under way ends first: at most a dial and a query (handshake and answer timeouts).
    if (!settled_cv_.wait_for(lock, std::chrono::seconds(90), [&] {
          const auto e = settling_.find(id);
          return settle_stop_ || e == settling_.end() || !e->second.trying;
        })) {
      lock.unlock();
      release();
      return fail(ErrorCode::Timeout, "Migration '" + id + "' is being asked of " + r->peer_site +
                                          " right now: try again");
    }
    if (settle_stop_) {
      return fail(ErrorCode::Busy, "The agent is stopping");
    }
  }
  // The try may have settled it meanwhile: then there is nothing left to decide.
  auto now = store_.get(id);
  if (!now || !*now) {
    release();
    return fail(!now ? now.error() : Error(ErrorCode::NotFound, "Migration '" + id + "' is gone"));
  }
  if (auto ok = checkResolvable(**now, how.action, true); !ok) {
    release();
    return fail(ok.error());
  }
  auto out = resolveSourceMigration(agent_, store_, **now, how);
  {
    std::lock_guard lock(settle_mu_);
    if (out && isTerminal(out->phase)) {
      settling_.erase(id);
      settled_cv_.notify_all();
    }
  }
  if (!out) {
    release();
    return fail(out.error());
  }
  agent_.events().append(out->vm_id, "migration", "migration-resolved",
                         {{"migration", id},
                          {"action", std::string(toString(how.action))},
                          {"reason", how.reason},
                          {"who", how.who},
                          {"phase", std::string(toString(out->phase))}});
  if (const std::shared_ptr<ActiveMigration> a = activeById(id)) {
    std::lock_guard lock(a->mu);
    a->settling = false;
    ended_cv_.notify_all();
  }
  return show(id);
}

// The listener bound (or began retrying): in the event log, so an operator or a test can wait
// for it (GET /v1/events?wait_ms=), and to whoever wants the port (vandrad's port file).
void MigrationService::Impl::listenerChanged(const tunnel::ListenerStatus& st) {
  json data = {{"address", st.address}, {"attempts", st.attempts}};
  if (st.state == tunnel::ListenerStatus::State::Listening) {
    data["port"] = st.port;
  } else if (st.last_error) {
    data["error"] = st.last_error->describe();
  }
  agent_.events().append("", "site", "tunnel-" + std::string(tunnel::toString(st.state)), data);
  if (st.state == tunnel::ListenerStatus::State::Listening && config_.on_listening) {
    config_.on_listening(st.port);
  }
}

// ---- the public face ----------------------------------------------------------------------------

MigrationService::MigrationService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MigrationService::~MigrationService() = default;

Result<std::unique_ptr<MigrationService>> MigrationService::start(agent::AgentService& agent,
                                                                  MigrationStore& store,
                                                                  MigrationServiceConfig config) {
  if (config.site.empty() || config.run_dir.empty()) {
    return fail(ErrorCode::InvalidArgument,
                "A migration service needs its site name and a run folder");
  }
  // Sockets of migrations that were running when the agent stopped: none runs now.
  std::error_code ec;
  fs::remove_all(config.run_dir, ec);
  fs::create_directories(config.run_dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot create " + config.run_dir + ": " + ec.message());
  }
  auto impl = std::make_unique<Impl>(agent, store, std::move(config));
  VANDRA_TRY(impl->recover());
  VANDRA_TRY(impl->startListening());
  impl->startSettler();
  return std::make_unique<MigrationService>(std::move(impl));
}

Result<json> MigrationService::begin(const std::string& vm_id, const MigrateOptions& o) {
  return impl_->begin(vm_id, o);
}
Result<json> MigrationService::show(const std::string& id) {
  return impl_->show(id);
}
Result<json> MigrationService::list(const std::string& vm_id) {
  return impl_->list(vm_id);
}
Result<json> MigrationService::cancel(const std::string& id) {
  return impl_->cancel(id);
}
Result<json> MigrationService::wait(const std::string& id, SteadyClock::time_point deadline) {
  return impl_->wait(id, deadline);
}
Result<json> MigrationService::recover() {
  return impl_->recover();
}
uint16_t MigrationService::tunnelPort() const {
  return impl_->port();
}
std::optional<tunnel::ListenerStatus> MigrationService::listenerStatus() const {
  return impl_->listenerStatus();
}
Result<json> MigrationService::resolve(const std::string& id, const Resolution& how) {
  return impl_->resolve(id, how);
}
json MigrationService::peers() const {
  return impl_->peers();
}
Result<json> MigrationService::connect(const std::string& peer) {
  VANDRA_TRY(impl_->linkTo(peer));
  for (const auto& p : impl_->peers()) {
    if (p.value("site", "") == peer) {
      return p;
    }
  }
  return fail(ErrorCode::Io, "The link to '" + peer + "' went down again at once");
}

Result<PeerSite> parsePeerSpec(const std::string& spec) {
  auto bad = [&](const std::string& why) {
    return fail(ErrorCode::InvalidArgument,
                "Peer '" + spec.substr(0, 200) + "' is not NAME=HOST:PORT[,mbps=N]: " + why);
  };
  if (spec.size() > 512) {
    return bad("longer than 512 characters");
  }
  const auto eq = spec.find('=');
  if (eq == std::string::npos) {
    return bad("no '='");
  }
  PeerSite p;
  p.name = spec.substr(0, eq);
  if (p.name.empty() || p.name.size() > 64 ||
      p.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
    return bad("the site name must be 1..64 of a-z 0-9 -");
  }
  std::string rest = spec.substr(eq + 1);
  if (const auto comma = rest.find(','); comma != std::string::npos) {
    const std::string opt = rest.substr(comma + 1);
    rest.resize(comma);
    if (opt.rfind("mbps=", 0) != 0) {
      return bad("unknown option '" + opt + "' (only mbps=N)");
    }
    const std::string n = opt.substr(5);
    char* end = nullptr;
    errno = 0;
    const double mbps = n.empty() ? 0 : std::strtod(n.c_str(), &end);
    if (n.empty() || errno != 0 || end == nullptr || *end != '\0' || !(mbps > 0) || mbps > 1e6) {
      return bad("mbps must be a number above 0 and at most 1000000");
    }
    p.bandwidth_bytes_per_s = static_cast<uint64_t>(mbps * 1e6 / 8);
  }
  agent::AgentEndpoint ep;
  if (!agent::parseHostPort(rest, ep)) {
    return bad("'" + rest + "' is not HOST:PORT");
  }
  p.host = ep.host;
  p.port = static_cast<uint16_t>(ep.port);
  return p;
}

}  // namespace vandra::orchestrator
