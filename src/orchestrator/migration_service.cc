// MigrationService (migration_service.h): peer links over the site tunnel, the target's
// control-stream servers, and the source's migrations in the background.
#include "vandra/orchestrator/migration_service.h"

#include "migration_service_impl.h"

namespace vandra::orchestrator {

namespace fs = std::filesystem;

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

json toJson(const MigrationRecord& r) {
  json report = r.report;
  if (report.is_object()) {  // a target's working data, not its account
    report.erase("spec");
    report.erase("base_digests");
  }
  return {{"id", r.id},
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
}

// ---- stopping ----

MigrationService::Impl::~Impl() {
  stopMeter();        // before anything it samples or dials goes
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
  impl->startMeter();
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
std::vector<LinkMeasurement> MigrationService::links() {
  return impl_->links();
}
Result<LinkMeasurement> MigrationService::probe(const std::string& peer, uint64_t bytes) {
  return impl_->probe(peer, bytes);
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
