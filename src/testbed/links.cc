// The testbed's sites and the emulated links between them: which sites exist, their fixed
// addresses, and one vandra-wanem per pair of sites whose two TUN devices move into the two
// site namespaces. Addresses depend on a site's and a pair's place in knownSites(), not on
// which sites were asked for, so dc-cloud-eu is 10.255.0.0/30 whether cloud-us exists or not.
//
//   pair            link net        first end            second end
//   dc-cloud-eu     10.255.0.0/30   dc wan-eu .1         cloud-eu wan-dc .2
//   dc-cloud-us     10.255.1.0/30   dc wan-us .1         cloud-us wan-dc .2
//   cloud-eu-us     10.255.2.0/30   cloud-eu wan-us .1   cloud-us wan-eu .2
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <sstream>

#include "testbed_internal.h"
#include "vandra/common/unique_fd.h"

namespace vandra::testbed {

using namespace internal;

namespace {

namespace fs = std::filesystem;

const SiteSpec* specOf(const std::string& name) {
  for (const auto& s : knownSites()) {
    if (name == s.name) {
      return &s;
    }
  }
  return nullptr;
}

// The pair's place among all pairs of knownSites() (i < j): its link net 10.255.<it>.0/30.
int pairIndex(int i, int j) {
  const int n = static_cast<int>(knownSites().size());
  return i * (2 * n - i - 1) / 2 + (j - i - 1);
}

// Root-namespace names of a pair's TUN devices before they move (IFNAMSIZ: 15).
std::string tunName(const std::string& id, int pair, char side) {
  return "vtb" + id + std::to_string(pair) + side;
}

std::string formatRate(uint64_t bps) {
  std::ostringstream o;
  o << static_cast<double>(bps) / 1e6;
  return o.str();
}

// Moves @p tun into @p site as its end towards @p peer, addresses it and routes the peer's
// LAN through it.
Result<void> attachEnd(const SiteInfo& site, const SiteInfo& peer, const std::string& tun) {
  const WanEnd* end = site.wanTo(peer.name);
  VANDRA_TRY(ip({"link", "set", "dev", tun, "netns", site.netns}));
  VANDRA_TRY(ipIn(site.netns, {"link", "set", "dev", tun, "name", end->device}));
  VANDRA_TRY(ipIn(site.netns, {"addr", "add", end->address + "/32", "peer",
                               end->peer_address + "/32", "dev", end->device}));
  VANDRA_TRY(ipIn(site.netns, {"link", "set", "dev", end->device, "txqueuelen", "1000", "up"}));
  VANDRA_TRY(ipIn(site.netns, {"route", "add", peer.lan, "dev", end->device}));
  return {};
}

// Signals the emulator recorded as @p r: SIGUSR1 cuts its link, SIGUSR2 restores it.
Result<void> signalWanem(const Resource& r, bool cut) {
  UniqueFd fd(pidfdOpen(r.pid));
  if (!fd.valid() || presence(r) != Presence::Ours) {
    return fail(ErrorCode::NotFound, "The WAN emulator " + r.name + " is not running");
  }
  if (pidfdSendSignal(fd.get(), cut ? SIGUSR1 : SIGUSR2) != 0) {
    return fail(Error::fromErrno("Cannot signal the WAN emulator " + r.name));
  }
  return {};
}

}  // namespace

const std::vector<SiteSpec>& knownSites() {
  // dc is the home and small; cloud-us is the cheapest, and the farthest from the office.
  static const std::vector<SiteSpec> sites = {
      {"dc", "dc", 0, {"EU", "SE"}, 4, 1024, 0.030, 0.004, 4},
      {"cloud-eu", "eu", 1, {"EU", "DE"}, 8, 4096, 0.025, 0.0035, 25},
      {"cloud-us", "us", 2, {"US"}, 8, 4096, 0.012, 0.0015, 110},
  };
  return sites;
}

const WanEnd* SiteInfo::wanTo(const std::string& peer) const {
  for (const auto& w : wans) {
    if (w.peer == peer) {
      return &w;
    }
  }
  return nullptr;
}

const SiteInfo* TestbedInfo::site(const std::string& name) const {
  for (const auto& s : sites) {
    if (s.name == name) {
      return &s;
    }
  }
  return nullptr;
}

SiteInfo* TestbedInfo::site(const std::string& name) {
  return const_cast<SiteInfo*>(std::as_const(*this).site(name));
}

namespace internal {

Result<std::vector<const SiteSpec*>> selectSites(const std::vector<std::string>& names) {
  std::vector<const SiteSpec*> out;
  for (const auto& n : names) {
    const SiteSpec* s = specOf(n);
    if (s == nullptr) {
      std::string known;
      for (const auto& k : knownSites()) {
        known += (known.empty() ? "" : ", ") + std::string(k.name);
      }
      return fail(ErrorCode::InvalidArgument,
                  "Unknown testbed site '" + n + "' (known: " + known + ")");
    }
    if (std::find(out.begin(), out.end(), s) != out.end()) {
      return fail(ErrorCode::InvalidArgument, "Testbed site '" + n + "' is asked for twice");
    }
    out.push_back(s);
  }
  if (names.empty()) {
    for (const auto& k : knownSites()) {
      out.push_back(&k);
    }
  }
  if (std::find(out.begin(), out.end(), specOf("dc")) == out.end()) {
    return fail(ErrorCode::InvalidArgument, "The testbed needs site dc (the client is there)");
  }
  std::sort(out.begin(), out.end(),
            [](const SiteSpec* x, const SiteSpec* y) { return x->index < y->index; });
  return out;
}

TestbedInfo makeInfo(const State& st, const std::string& dir) {
  TestbedInfo t;
  t.id = st.id;
  t.profile = st.profile;
  t.congestion = st.congestion;
  t.state_dir = dir;
  const std::string prefix = "vtb-" + st.id + "-";
  auto specs = selectSites(st.sites);
  for (const SiteSpec* spec : specs ? *specs : std::vector<const SiteSpec*>{}) {
    SiteInfo s;
    s.name = spec->name;
    s.jurisdictions = spec->jurisdictions;
    s.netns = prefix + spec->name;
    s.bridge = "br0";
    const std::string net = "10." + std::to_string(10 * (spec->index + 1)) + ".0.";
    s.lan_address = net + "1/24";
    s.lan = net + "0/24";
    s.site_dir = (fs::path(dir) / "sites" / s.name).string();
    s.ca_cert = s.site_dir + "/pki/ca.crt";
    s.operator_cert = s.site_dir + "/pki/operator.crt";
    s.operator_key = s.site_dir + "/pki/operator.key";
    t.sites.push_back(std::move(s));
  }
  // Each pair: the site first in order takes .1 of the pair's /30, the other .2.
  for (size_t i = 0; i < t.sites.size(); ++i) {
    for (size_t j = i + 1; j < t.sites.size(); ++j) {
      const SiteSpec* a = specOf(t.sites[i].name);
      const SiteSpec* b = specOf(t.sites[j].name);
      const std::string net = "10.255." + std::to_string(pairIndex(a->index, b->index)) + ".";
      t.sites[i].wans.push_back(
          {b->name, std::string("wan-") + b->short_name, net + "1", net + "2"});
      t.sites[j].wans.push_back(
          {a->name, std::string("wan-") + a->short_name, net + "2", net + "1"});
      t.links.push_back({a->name, b->name, -1});
    }
  }
  // Each site lists its ends in site order (the pairs above add them out of order for the
  // later sites).
  for (auto& s : t.sites) {
    std::sort(s.wans.begin(), s.wans.end(), [](const WanEnd& x, const WanEnd& y) {
      return specOf(x.peer)->index < specOf(y.peer)->index;
    });
  }
  t.client_netns = prefix + "client";
  t.client_address = "10.10.0.100";
  const fs::path cdir = fs::path(dir) / "controller";
  t.controller_dir = cdir.string();
  t.controller_ca = (cdir / "pki" / "ca.crt").string();
  t.operator_cert = (cdir / "pki" / "operator.crt").string();
  t.operator_key = (cdir / "pki" / "operator.key").string();
  t.viewer_cert = (cdir / "pki" / "viewer.crt").string();
  t.viewer_key = (cdir / "pki" / "viewer.key").string();
  t.cli_config = (fs::path(dir) / "cli.json").string();
  t.console_users = (cdir / "console-users.json").string();
  return t;
}

std::string wanemRole(const std::string& a, const std::string& b) {
  return "wanem-" + a + "-" + b;
}

Result<void> makeLinks(Builder& b, const TestbedOptions& o, const Profile& profile,
                       const std::string& wanem, const State& state, TestbedInfo& info) {
  const LinkParams& l = profile.link;
  for (auto& link : info.links) {
    const SiteInfo& sa = *info.site(link.a);
    const SiteInfo& sb = *info.site(link.b);
    const int pair = pairIndex(specOf(link.a)->index, specOf(link.b)->index);
    // The TUNs appear in the root namespace (recorded first), then move.
    const std::string tun_a = tunName(state.id, pair, 'a');
    const std::string tun_b = tunName(state.id, pair, 'b');
    VANDRA_TRY(b.record({"link", tun_a, -1, 0, "", {}}));
    VANDRA_TRY(b.record({"link", tun_b, -1, 0, "", {}}));
    std::array<int, 2> pipe_fds{-1, -1};
    if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) {
      return fail(Error::fromErrno("pipe failed"));
    }
    UniqueFd ready_r(pipe_fds[0]);
    UniqueFd ready_w(pipe_fds[1]);
    // Keep the write end away from 0..3 so dup2 onto 3 always clears close-on-exec.
    UniqueFd ready_w_high(::fcntl(ready_w.get(), F_DUPFD_CLOEXEC, 10));
    if (!ready_w_high.valid()) {
      return fail(Error::fromErrno("fcntl failed"));
    }
    ready_w = UniqueFd();
    const std::string tag = "vtb-" + state.id + "-" + link.a + "-" + link.b;
    // Each link its own seed: the same loss pattern on every link would be a coincidence no
    // real WAN has.
    const std::vector<std::string> argv = {
        wanem,
        "--a",
        tun_a,
        "--b",
        tun_b,
        "--profile",
        profile.name,
        "--rate-mbit",
        formatRate(l.rate_bps),
        "--delay-ms",
        std::to_string(std::chrono::duration<double, std::milli>(l.delay).count()),
        "--loss-pct",
        std::to_string(l.loss * 100.0),
        "--queue-packets",
        std::to_string(l.queue_packets),
        "--queue-bytes",
        std::to_string(l.queue_bytes),
        "--seed",
        std::to_string(o.seed + static_cast<uint64_t>(pair)),
        "--ready-fd",
        "3",
        "--tag",
        tag};
    const std::string log_path =
        (fs::path(o.state_dir) / ("wanem-" + link.a + "-" + link.b + ".log")).string();
    VANDRA_TRY_ASSIGN(link.wanem_pid, startRecorded(b, wanemRole(link.a, link.b), argv,
                                                    "--tag " + tag, log_path, ready_w_high.get()));
    ready_w_high = UniqueFd();
    VANDRA_TRY(waitReady(ready_r.get(), log_path));
    VANDRA_TRY(attachEnd(sa, sb, tun_a));
    VANDRA_TRY(attachEnd(sb, sa, tun_b));
  }
  return {};
}

}  // namespace internal

Result<void> cutWan(const std::string& state_dir, bool cut) {
  VANDRA_TRY_ASSIGN(auto state, loadState(state_dir));
  if (!state) {
    return fail(ErrorCode::NotFound, "No testbed recorded in " + state_dir);
  }
  bool any = false;
  for (const auto& r : state->resources) {
    if (r.kind == "process" && r.name.rfind("wanem-", 0) == 0 && presence(r) == Presence::Ours) {
      VANDRA_TRY(signalWanem(r, cut));
      any = true;
    }
  }
  if (!any) {
    return fail(ErrorCode::NotFound,
                "The testbed in " + state_dir + " has no running WAN emulator");
  }
  return {};
}

Result<void> cutWan(const std::string& state_dir, const std::string& a, const std::string& b,
                    bool cut) {
  VANDRA_TRY_ASSIGN(auto state, loadState(state_dir));
  if (!state) {
    return fail(ErrorCode::NotFound, "No testbed recorded in " + state_dir);
  }
  for (const auto& r : state->resources) {
    if (r.kind == "process" && (r.name == wanemRole(a, b) || r.name == wanemRole(b, a))) {
      return signalWanem(r, cut);
    }
  }
  return fail(ErrorCode::NotFound,
              "The testbed in " + state_dir + " has no link between " + a + " and " + b);
}

}  // namespace vandra::testbed
