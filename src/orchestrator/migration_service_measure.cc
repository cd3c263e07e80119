// MigrationService: measuring the links to the peer sites (GET /v1/links) and the bounded
// throughput probe (POST /v1/links/{peer}/probe). migration_service_impl.h says where the
// rest is; link_meter.h the bookkeeping.
//
// The meter thread, once a second: every link's tunnel counters into its LinkMeter; and while
// someone asks for the links (GET /v1/links in the last kLinksWantedFor), a link to each
// configured peer that has none is dialed (bounded by the tunnel's handshake timeout; backing
// off when it fails), so that a link gets its RTT without a migration. Two sites must not dial
// each other at the same moment (each new tunnel from a peer replaces the link: both would
// drop): the site whose name sorts first dials at once, the other only after kSecondDialerWait.
//
// The probe (one stream; the far end times it, as a hostile prober's input):
//
//   prober (POST .../probe)                        peer (wire(): Control "link-probe")
//   one at a time, not while a migration           one at a time per link, not while a
//   runs on the link, kProbeMinInterval apart      migration runs on it (else refused)
//   OPEN control "link-probe"           ─────────►
//   "vandra-link-probe 1 <N>"           ─────────►  N in 1..kMaxProbeBytes, else reset
//   N bytes, END_STREAM                 ─────────►  t0 when the OPEN arrived, t1 at the last
//                                                   read; more than N, fewer, or past
//                                                   kProbeTimeout: reset
//                                       ◄─────────  "ok <N> <N: the bytes timed> <t1-t0 us>"
//   rate = those bytes / that time (Mbit/s), into the meter as method "probe"
#include "migration_service_impl.h"

namespace vandra::orchestrator {

namespace {

constexpr auto kMeterTick = std::chrono::seconds(1);
constexpr auto kLinksWantedFor = std::chrono::minutes(10);
constexpr auto kSecondDialerWait = std::chrono::seconds(15);
constexpr auto kDialBackoffMin = std::chrono::seconds(5);
constexpr auto kDialBackoffMax = std::chrono::seconds(300);
constexpr auto kProbeTimeout = std::chrono::seconds(30);
constexpr auto kProbeHeaderTimeout = std::chrono::seconds(5);
constexpr auto kProbeMinInterval = std::chrono::seconds(5);
constexpr size_t kProbeChunk = 64 * 1024;
constexpr const char* kProbeLabel = "link-probe";
constexpr const char* kProbeMagic = "vandra-link-probe 1 ";

int64_t nowMs() {
  return nowUs() / 1000;
}

// A decimal in [lo, hi], all of @p s.
std::optional<uint64_t> decimal(std::string_view s, uint64_t lo, uint64_t hi) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  const uint64_t v = std::strtoull(std::string(s).c_str(), nullptr, 10);
  if (v < lo || v > hi) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

uint64_t nextLinkGeneration() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

void MigrationService::Impl::startMeter() {
  meter_ = std::thread([this] { meterLoop(); });
}

void MigrationService::Impl::stopMeter() {
  {
    std::lock_guard lock(meter_mu_);
    meter_stop_ = true;
  }
  meter_cv_.notify_all();
  if (meter_.joinable()) {
    meter_.join();
  }
}

void MigrationService::Impl::meterLoop() {
  std::unique_lock lock(meter_mu_);
  while (!meter_stop_) {
    lock.unlock();
    sampleLinks();
    keepLinksUp();
    lock.lock();
    meter_cv_.wait_for(lock, kMeterTick, [&] { return meter_stop_ || meter_kick_; });
    meter_kick_ = false;
  }
}

void MigrationService::Impl::sampleLinks() {
  std::vector<std::shared_ptr<PeerLink>> links;
  {
    std::lock_guard lock(mu_);
    for (const auto& [peer, l] : links_) {
      links.push_back(l);
    }
  }
  for (const auto& l : links) {
    const auto st = l->tunnel->stats();
    LinkSample s;
    s.at_ms = nowMs();
    s.steady_us =
        std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now().time_since_epoch())
            .count();
    s.alive = l->tunnel->alive();
    s.generation = l->generation;
    s.frame_bytes = st.frame_bytes_sent + st.frame_bytes_received;
    for (auto k : {tunnel::StreamKind::Migration, tunnel::StreamKind::Nbd}) {
      s.bulk_sent += st.of(k).bytes_sent;
      s.bulk_received += st.of(k).bytes_received;
    }
    s.pongs = st.pongs_received;
    s.last_rtt_us = st.last_rtt_us;
    std::lock_guard lock(meter_mu_);
    meters_.try_emplace(l->peer, l->peer).first->second.observe(s);
  }
}

// While the links are asked for, or the LAN is stretched to a peer: dial each configured peer
// without a link (see the top). The stretched LAN forwards with split horizon (attachLan):
// a site reaches a VM at another only over a direct link, so all of them must be up.
void MigrationService::Impl::keepLinksUp() {
  const auto now = SteadyClock::now();
  std::vector<std::shared_ptr<PeerLink>> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [peer, l] : links_) {
      all.push_back(l);
    }
  }
  bool lan_stretched = false;
  for (const auto& l : all) {
    std::lock_guard lock(l->mu);  // not under mu_ (see wireProbe)
    lan_stretched = lan_stretched || l->lan != nullptr;
  }
  {
    std::lock_guard lock(meter_mu_);
    if (!config_.keep_links_measured || (links_wanted_until_ < now && !lan_stretched)) {
      return;
    }
  }
  for (const auto& p : config_.peers) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        return;
      }
      auto it = links_.find(p.name);
      if (it != links_.end() && it->second->tunnel->alive()) {
        std::lock_guard ml(meter_mu_);
        dialing_[p.name] = {};
        continue;
      }
    }
    {
      std::lock_guard lock(meter_mu_);
      Dialing& d = dialing_[p.name];
      if (d.since == SteadyClock::time_point{}) {
        d.since = now;
      }
      if (now < d.next || (config_.site > p.name && now < d.since + kSecondDialerWait)) {
        continue;
      }
    }
    auto dialed = linkTo(p.name);  // bounded by the tunnel's handshake timeout
    std::lock_guard lock(meter_mu_);
    Dialing& d = dialing_[p.name];
    if (dialed) {
      d = {};
    } else {
      d.backoff = std::clamp(d.backoff * 2, std::chrono::seconds(kDialBackoffMin),
                             std::chrono::seconds(kDialBackoffMax));
      d.next = SteadyClock::now() + d.backoff;
    }
  }
}

std::vector<LinkMeasurement> MigrationService::Impl::links() {
  std::vector<LinkMeasurement> out;
  std::set<std::string> alive;
  {
    std::lock_guard lock(mu_);
    for (const auto& [peer, l] : links_) {
      if (l->tunnel->alive()) {
        alive.insert(peer);
      }
    }
  }
  const bool was_wanted = [&] {
    std::lock_guard lock(meter_mu_);
    const bool w = links_wanted_until_ >= SteadyClock::now();
    links_wanted_until_ = SteadyClock::now() + kLinksWantedFor;
    for (const auto& p : config_.peers) {
      auto it = meters_.find(p.name);
      LinkMeasurement m = it != meters_.end() ? it->second.report() : LinkMeasurement{};
      m.peer = p.name;
      m.connected = alive.contains(p.name);  // now, not at the last tick
      out.push_back(std::move(m));
    }
    return w;
  }();
  if (!was_wanted) {  // dial now rather than at the next tick
    {
      std::lock_guard lock(meter_mu_);
      meter_kick_ = true;
    }
    meter_cv_.notify_all();
  }
  return out;
}

bool MigrationService::Impl::migratingOver(const std::string& peer) {
  std::vector<std::shared_ptr<ActiveMigration>> active;
  std::shared_ptr<PeerLink> link;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, a] : active_) {
      active.push_back(a);
    }
    if (auto it = links_.find(peer); it != links_.end()) {
      link = it->second;
    }
  }
  for (const auto& a : active) {
    std::lock_guard lock(a->mu);
    if (a->peer == peer && (!a->ended || a->settling)) {
      return true;
    }
  }
  if (link) {  // a migration from the peer to here has its forwarders on the link
    std::lock_guard lock(link->mu);
    return !link->forwarders.empty();
  }
  return false;
}

Result<LinkMeasurement> MigrationService::Impl::probe(const std::string& peer, uint64_t bytes) {
  if (bytes == 0 || bytes > kMaxProbeBytes) {
    return fail(ErrorCode::InvalidArgument,
                "A probe sends 1.." + std::to_string(kMaxProbeBytes) + " bytes");
  }
  if (probing_.exchange(true)) {
    return fail(ErrorCode::Busy, "A link probe runs already (one at a time)");
  }
  auto done = defer([&] { probing_ = false; });
  {
    std::lock_guard lock(meter_mu_);
    auto it = last_probe_.find(peer);
    if (it != last_probe_.end() && SteadyClock::now() < it->second + kProbeMinInterval) {
      return fail(ErrorCode::Busy, "The link to '" + peer + "' was probed less than " +
                                       std::to_string(kProbeMinInterval.count()) + " s ago");
    }
  }
  auto busy = [&] {
    return fail(ErrorCode::Busy,
                "A migration runs on the link to '" + peer + "': no probe until it has ended");
  };
  if (migratingOver(peer)) {
    return busy();
  }
  VANDRA_TRY_ASSIGN(auto link, linkTo(peer));  // bounded by the handshake timeout
  if (migratingOver(peer)) {
    return busy();
  }
  {
    std::lock_guard lock(meter_mu_);
    last_probe_[peer] = SteadyClock::now();
  }
  const auto deadline = SteadyClock::now() + kProbeTimeout;
  VANDRA_TRY_ASSIGN(auto s, link->tunnel->openStream(tunnel::StreamKind::Control, kProbeLabel));
  VANDRA_TRY(s.writeMessage(kProbeMagic + std::to_string(bytes), deadline));
  const std::string chunk(kProbeChunk, '\0');
  for (uint64_t sent = 0; sent < bytes;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kProbeChunk, bytes - sent));
    VANDRA_TRY(s.write(std::string_view(chunk).substr(0, n), deadline));
    sent += n;
  }
  VANDRA_TRY(s.closeWrite());
  VANDRA_TRY_ASSIGN(auto answer, s.readMessage(deadline));
  s.close();
  // "ok <N> <timed bytes> <us>", from the peer: checked before it is believed.
  auto bad = [&](const std::string& why) {
    return fail(ErrorCode::TunnelProtocol, "The probe's answer from '" + peer + "' " + why);
  };
  if (!answer || answer->size() > 80 || answer->rfind("ok ", 0) != 0) {
    return bad(answer ? "is not 'ok N BYTES US'" : "never came");
  }
  std::vector<std::string_view> parts;
  std::string_view rest(*answer);
  rest.remove_prefix(3);
  while (!rest.empty() && parts.size() < 4) {
    const auto sp = rest.find(' ');
    parts.push_back(rest.substr(0, sp));
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
  }
  if (parts.size() != 3 || !rest.empty()) {
    return bad("is not 'ok N BYTES US'");
  }
  const auto n = decimal(parts[0], bytes, bytes);
  const auto timed = decimal(parts[1], 1, bytes);
  const auto us =
      decimal(parts[2], 1, static_cast<uint64_t>(std::chrono::microseconds(kProbeTimeout).count()));
  if (!n || !timed || !us) {
    return bad("does not fit what was sent (" + answer->substr(0, 80) + ")");
  }
  const double mbps = static_cast<double>(*timed) * 8 / static_cast<double>(*us);
  if (mbps > kMaxLinkMbps) {
    return bad("claims " + std::to_string(mbps) + " Mbit/s");
  }
  std::lock_guard lock(meter_mu_);
  auto& meter = meters_.try_emplace(peer, peer).first->second;
  meter.recordProbe(mbps, nowMs());
  LinkMeasurement m = meter.report();
  m.connected = link->tunnel->alive();
  return m;
}

// The peer's probe streams on @p link (see the top): at most one at a time per link.
void MigrationService::Impl::wireProbe(const std::shared_ptr<PeerLink>& link) {
  std::weak_ptr<PeerLink> weak = link;
  link->tunnel->addStreamHandler(
      tunnel::StreamKind::Control, kProbeLabel,
      [this, weak](tunnel::StreamKind, const std::string& label, tunnel::Stream s) {
        auto l = weak.lock();
        auto release = defer([&] { link_reaper_.drop(std::move(l)); });
        if (!l || label != kProbeLabel) {
          s.close(tunnel::WireError::StreamRefused, "not a probe");
          return;
        }
        if (l->probe_serving.exchange(true)) {
          s.close(tunnel::WireError::StreamRefused, "a probe runs on this link already");
          return;
        }
        // Timed from here (the OPEN arrived, the bytes follow it): the server thread may start
        // late, with much of the probe buffered already.
        const auto opened = SteadyClock::now();
        std::lock_guard lock(l->mu);  // never mu_ here: ~Impl holds it while tunnels close
        l->startServer([this, l = l.get(), s = std::make_shared<tunnel::Stream>(std::move(s)),
                        opened] { serveProbe(*l, std::move(*s), opened); });
      });
}

void MigrationService::Impl::serveProbe(PeerLink& l, tunnel::Stream s,
                                        SteadyClock::time_point opened) {
  auto done = defer([&] { l.probe_serving = false; });
  if (migratingOver(l.peer)) {
    s.close(tunnel::WireError::StreamRefused, "a migration runs on this link");
    return;
  }
  const auto start = SteadyClock::now();
  const auto deadline = start + kProbeTimeout;
  auto header = s.readMessage(std::min(deadline, start + kProbeHeaderTimeout));
  const std::string magic = kProbeMagic;
  if (!header || !*header || (*header)->size() > 64 || (*header)->rfind(magic, 0) != 0) {
    s.close(tunnel::WireError::ProtocolError, "not a probe header");
    return;
  }
  const auto want = decimal(std::string_view(**header).substr(magic.size()), 1, kMaxProbeBytes);
  if (!want) {
    s.close(tunnel::WireError::ProtocolError,
            "a probe sends 1.." + std::to_string(kMaxProbeBytes) + " bytes");
    return;
  }
  std::string buf(kProbeChunk, '\0');
  uint64_t total = 0;
  SteadyClock::time_point t1{};
  for (;;) {
    auto n = s.read(buf.data(), buf.size(), deadline);
    if (!n) {
      s.close(tunnel::WireError::Cancelled, n.error().describe().substr(0, 200));
      return;
    }
    if (*n == 0) {
      break;
    }
    total += *n;
    if (total > *want) {
      s.close(tunnel::WireError::ProtocolError, "more bytes than announced");
      return;
    }
    t1 = SteadyClock::now();
  }
  if (total != *want) {
    s.close(tunnel::WireError::ProtocolError, "fewer bytes than announced");
    return;
  }
  const auto us = std::max<int64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(t1 - opened).count(), 1);
  (void)s.writeMessage(
      "ok " + std::to_string(total) + " " + std::to_string(total) + " " + std::to_string(us),
      deadline);
  s.close();
}

}  // namespace vandra::orchestrator
