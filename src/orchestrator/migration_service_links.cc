// MigrationService: links to the peer sites (dial, adopt, one per peer) and the target's
// control-stream servers. migration_service_impl.h says where the rest is.
#include "content_refs.h"
#include "migration_service_impl.h"
#include "vandra/content/nbd_flags.h"

namespace vandra::orchestrator {

namespace fs = std::filesystem;

namespace {

// Whether the VM (its spec as the preflight brought it) may finish in post-copy.
bool postCopyAllowed(const json& spec_json) {
  auto spec = ovf::vmSpecFromJson(spec_json);
  return spec && !spec->virtual_systems.empty() && spec->virtual_systems.front().sla &&
         spec->virtual_systems.front().sla->post_copy_allowed;
}

}  // namespace

Result<void> MigrationService::Impl::startListening() {
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

tunnel::TunnelSettings MigrationService::Impl::settings() const {
  tunnel::TunnelSettings s = config_.tunnel;
  s.local_site = config_.site;
  return s;
}

// Serves the peer's streams on a link: control streams (incoming migrations) and the LAN.
void MigrationService::Impl::wire(const std::shared_ptr<PeerLink>& link, bool accepted) {
  std::weak_ptr<PeerLink> weak = link;
  TargetSide::Config tc;
  tc.site = config_.site;
  tc.jurisdictions = config_.jurisdictions;
  tc.machine_type = config_.machine_type;
  tc.cpu_model = config_.cpu_model;
  tc.networks = config_.networks;
  if (!config_.bridge.empty()) {
    tc.lan = [this, weak](const std::string& vm_id, TargetSide::Config::LanStep step) -> json {
      auto l = weak.lock();
      auto release = defer([&] { link_reaper_.drop(std::move(l)); });
      return l ? lanAtTarget(*l, vm_id, step) : json{{"error", "the link is gone"}};
    };
  }
  tc.paths = [this, weak](const std::string& id) {
    const MigrationNames names = migrationNames(config_.run_dir, id);
    std::error_code ec;
    fs::create_directories(names.dir, ec);
    StreamPaths p{names.nbd_socket, names.target_migration_socket};
    auto l = weak.lock();
    auto release = defer([&] { link_reaper_.drop(std::move(l)); });
    if (l) {
      std::vector<std::unique_ptr<tunnel::UnixForwarder>> fw;
      // The source may send RAM pages as references to base images this site holds too, or
      // to blocks its disk mirrors sent (content_refs.h): resolved here, checked by hash.
      std::vector<std::string> bases;
      bool post_copy = false;
      if (auto r = store_.get(id); r && *r) {
        const json digests = (**r).report.value("base_digests", json::object());
        for (const auto& [disk, digest] : digests.items()) {
          if (digest.is_string() && std::find(bases.begin(), bases.end(), digest) == bases.end()) {
            bases.push_back(digest.get<std::string>());
          }
        }
        post_copy = postCopyAllowed((**r).report.value("spec", json::object()));
      }
      auto refs = std::make_shared<TargetContentRefs>(host_, bases, names.dir);
      tunnel::ForwardOptions nbd_options;
      nbd_options.from_stream = [refs, f = refs->nbdFactory()](const tunnel::Stream& st) {
        return f(st);
      };
      // The source's mirrors never flush across the WAN: this agent flushes the disks itself
      // before it starts the guest (finishTarget; ADR 0033). Not in post-copy, where the
      // guest may start before that barrier could be kept.
      if (!post_copy) {
        nbd_options.to_stream = content::hideFlushFromClient(nullptr);
      }
      tunnel::ForwardOptions mig_options;
      mig_options.from_stream = [refs, f = refs->migrationFactory()](const tunnel::Stream& st) {
        return f(st);
      };
      if (auto f = tunnel::forwardUnixSocket(*l->tunnel, tunnel::ForwardMode::Connect,
                                             tunnel::StreamKind::Nbd, names.nbd_stream,
                                             p.nbd_socket, std::move(nbd_options))) {
        fw.push_back(std::move(*f));
      }
      if (auto f = tunnel::forwardUnixSocket(*l->tunnel, tunnel::ForwardMode::Connect,
                                             tunnel::StreamKind::Migration, names.migration_stream,
                                             p.migration_socket, std::move(mig_options))) {
        fw.push_back(std::move(*f));
      }
      std::lock_guard lock(l->mu);
      l->forwarders[id] = std::move(fw);
    }
    return p;
  };
  // Post-copy recovery: this attempt's stream, from the link the `recover` came on, to where
  // QEMU listens again (postcopy_ops.cc).
  tc.recover_path = [this, weak](const std::string& id, uint32_t attempt) -> Result<std::string> {
    auto l = weak.lock();
    auto release = defer([&] { link_reaper_.drop(std::move(l)); });
    if (!l) {
      return fail(ErrorCode::Io, "The link to the source is gone");
    }
    const MigrationNames names = migrationNames(config_.run_dir, id);
    std::error_code ec;
    fs::create_directories(names.dir, ec);
    const std::string socket = targetRecoverySocket(names);
    VANDRA_TRY_ASSIGN(auto f,
                      tunnel::forwardUnixSocket(*l->tunnel, tunnel::ForwardMode::Connect,
                                                tunnel::StreamKind::Migration,
                                                recoveryStreamName(id, attempt), socket, {}));
    std::lock_guard lock(l->mu);
    l->forwarders[id].push_back(std::move(f));
    return socket;
  };
  link->target = std::make_unique<TargetSide>(host_, store_, std::move(tc));
  wireProbe(link);
  link->tunnel->addStreamHandler(
      tunnel::StreamKind::Control, "",
      [this, weak](tunnel::StreamKind, const std::string&, tunnel::Stream s) {
        auto l = weak.lock();
        auto release = defer([&] { link_reaper_.drop(std::move(l)); });
        if (!l) {
          return;
        }
        std::lock_guard lock(l->mu);
        l->startServer([this, l = l.get(), s = std::make_shared<tunnel::Stream>(std::move(s))] {
          serveControl(*l, std::move(*s));
        });
      });
  if (accepted && !config_.bridge.empty()) {
    link->tunnel->addStreamHandler(
        tunnel::StreamKind::Ethernet, "lan",
        [this, weak](tunnel::StreamKind, const std::string&, tunnel::Stream s) {
          auto l = weak.lock();
          auto release = defer([&] { link_reaper_.drop(std::move(l)); });
          if (l) {
            attachLan(*l, std::move(s));
          }
        });
  }
}

void MigrationService::Impl::attachLan(PeerLink& l, tunnel::Stream s) {
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
  // Split horizon: a frame from one peer site never goes on to another. With three sites each
  // linked to the other two, the stretched LAN is a loop, and a broadcast would circle it
  // forever; every site links to every peer directly instead (keepLinksUp()).
  if (auto iso = runCapture({"bridge", "link", "set", "dev", tap, "isolated", "on"}); !iso) {
    said(iso.error());
    return;  // the TapBridge goes, and its tap with it: no loop is ever possible
  }
  std::lock_guard lock(l.mu);
  l.lan = std::move(*bridge);
}

// One control stream of the peer: each message answered by TargetSide, in order. When the
// stream ends (the source's agent stopped, the tunnel broke) before the switchover, the
// source is authoritative and will roll back: the target cleans up at once.
void MigrationService::Impl::serveControl(PeerLink& l, tunnel::Stream s) {
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
      fs::remove_all(migrationNames(config_.run_dir, last_id).dir, ec);
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
    tunnel::ControlMessage out = answer
                                     ? *answer
                                     : tunnel::ControlMessage(tunnel::Aborted{
                                           id, false, {answer.error().describe().substr(0, 500)}});
    if (std::holds_alternative<tunnel::Started>(out)) {
      closeUnconfirmedLater(id);
    }
    // A refused `recover` ends nothing: the guest runs here, the source tries again.
    if (std::holds_alternative<tunnel::Confirmed>(out) ||
        (std::holds_alternative<tunnel::Aborted>(out) &&
         !std::holds_alternative<tunnel::Recover>(*decoded))) {
      l.dropForwarders(id);
      std::error_code ec;
      fs::remove_all(migrationNames(config_.run_dir, id).dir, ec);
    }
    auto wire = tunnel::encodeControl(out);
    if (!wire || !s.writeMessage(*wire)) {
      return;
    }
  }
}

std::function<Result<std::string>(uint32_t)> MigrationService::Impl::reopener(
    const std::string& id, const std::string& peer, ReopenedStreams& keep) {
  return [this, id, peer, &keep](uint32_t attempt) -> Result<std::string> {
    VANDRA_TRY_ASSIGN(auto l, linkTo(peer));
    const MigrationNames names = migrationNames(config_.run_dir, id);
    std::error_code ec;
    fs::create_directories(names.dir, ec);
    const std::string socket = names.dir + "/mig-r" + std::to_string(attempt) + ".sock";
    VANDRA_TRY_ASSIGN(auto f,
                      tunnel::forwardUnixSocket(*l->tunnel, tunnel::ForwardMode::Listen,
                                                tunnel::StreamKind::Migration,
                                                recoveryStreamName(id, attempt), socket, {}));
    std::lock_guard lock(keep.mu);
    keep.held.emplace_back(std::move(l), std::move(f));
    return socket;
  };
}

// The send cap towards @p peer: its own, else the agent-wide one.
uint64_t MigrationService::Impl::capFor(const std::string& peer) const {
  for (const auto& p : config_.peers) {
    if (p.name == peer && p.bandwidth_bytes_per_s > 0) {
      return p.bandwidth_bytes_per_s;
    }
  }
  return config_.tunnel.bandwidth_bytes_per_s;
}

// Two sites that dial each other at once (a migration here, the link keeper there, right
// after the WAN came back) must end with the same one tunnel, and never by closing one a
// migration already runs on (a test saw "GOAWAY: agent stopping" end a migration that way).
// The handshake that completes first wins at both ends: a dialer that finds a link alive when
// its own dial completes keeps that one (linkTo), and an accepted tunnel is refused while this
// site's own dial is younger than the handshake timeout or the link is in use.
//
//   A dials T1 ---------> B accepts T1 (no live link: T1 is B's link)
//   A accepts T2 <------- B dials T2, completes: T1 is up, B keeps T1 and closes T2
//   A: T1 is young, or in use: A refuses T2            ... both ends run on T1
//
// A link this site holds but the peer lost (it restarted) is refused against for at most
// the idle timeout: then the tunnel is seen dead and the peer's next dial is taken.
// Why a tunnel that lost to this site's link to @p peer is closed (both ends say the same).
std::string MigrationService::Impl::linkUpAlready(const std::string& peer) const {
  return "site " + config_.site + " has a link to site " + peer + " up";
}

bool MigrationService::Impl::keepsAgainstNewcomer(const std::shared_ptr<PeerLink>& l) {
  if (!l->tunnel->alive()) {
    return false;
  }
  if (l->dialed && SteadyClock::now() - l->since < settings().handshake_timeout) {
    return true;
  }
  if (l.use_count() > 2) {  // links_, the caller's copy, and somebody running on it
    return true;
  }
  std::lock_guard lock(l->mu);  // not under mu_ (see wireProbe)
  return !l->forwarders.empty() ||
         std::any_of(l->servers.begin(), l->servers.end(),
                     [](const PeerLink::Server& sv) { return !sv.ended->load(); });
}

void MigrationService::Impl::adopt(std::unique_ptr<tunnel::Tunnel> t) {
  // The listener applies the agent-wide cap; this peer's own is known only now.
  t->setBandwidth(capFor(t->peerSite()));
  auto link = std::make_shared<PeerLink>();
  link->peer = t->peerSite();
  link->tunnel = std::move(t);
  wire(link, /*accepted=*/true);
  std::shared_ptr<PeerLink> old;
  for (;;) {
    std::shared_ptr<PeerLink> current;
    {
      std::lock_guard lock(mu_);
      if (auto it = links_.find(link->peer); it != links_.end()) {
        current = it->second;
      }
    }
    const bool keep = current && keepsAgainstNewcomer(current);
    std::lock_guard lock(mu_);
    auto& slot = links_[link->peer];
    if (slot != current) {
      continue;  // replaced meanwhile: judge the new one
    }
    if (keep) {
      link->tunnel->close(linkUpAlready(link->peer));
      // Its destructor joins the servers wire() started: not on the listener's thread.
      link_reaper_.drop(std::move(link));
      return;
    }
    old = std::move(slot);
    slot = link;
    break;
  }
  if (old) {
    old->tunnel->close("site " + link->peer + " dialed again: a newer link replaces this one");
  }
  linkUp(link->peer, /*dialed=*/false);
  // The old link (if any) ends on another thread: its destructor joins servers.
  link_reaper_.drop(std::move(old));
}

Result<std::shared_ptr<PeerLink>> MigrationService::Impl::linkTo(const std::string& peer) {
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
  link->dialed = true;
  wire(link, /*accepted=*/false);
  if (!config_.bridge.empty()) {
    VANDRA_TRY_ASSIGN(auto s, link->tunnel->openStream(tunnel::StreamKind::Ethernet, "lan"));
    attachLan(*link, std::move(s));
  }
  std::shared_ptr<PeerLink> old;
  std::shared_ptr<PeerLink> theirs;
  {
    std::lock_guard lock(mu_);
    auto& slot = links_[peer];
    if (slot && slot->tunnel->alive()) {
      // The peer dialed us meanwhile and that link is up: it is the one both ends keep
      // (adopt()). Ours goes, after mu_ (its destructor joins threads).
      link->tunnel->close(linkUpAlready(peer));
      theirs = slot;
    } else {
      old = std::move(slot);
      slot = link;
    }
  }
  old.reset();
  if (theirs) {
    link.reset();
    return theirs;
  }
  linkUp(peer, /*dialed=*/true);
  return link;
}

// In the event log: an operator (or a test) can wait for a link (GET /v1/events?wait_ms=).
void MigrationService::Impl::linkUp(const std::string& peer, bool dialed) {
  agent_.events().append("", "site", "peer-link-up",
                         {{"peer", peer}, {"by", dialed ? "dialed" : "accepted"}});
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

json MigrationService::Impl::peers() const {
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

}  // namespace vandra::orchestrator
