// `vandra bench migrate --profile NAME`: a live migration of the test guest from dc to cloud-eu
// over the emulated WAN by three systems side by side in one testbed, alternating run by run:
//
//   system     | control      | RAM stream                 | disks              | TCP cc
//   vandra     | agents (TLS) | site tunnel (TLS)          | NBD in the tunnel  | testbed's
//   qemu       | this command | tcp:10.255.0.2:4444        | nbd tcp :10809     | testbed's
//   qemu-tuned | this command | the same, multifd zstd x N | the same, NBD first| testbed's
//
// (bench_qemu.cc has the two QEMU systems.) The QEMU guests reach the client at dc through
// the same stretched LAN as vandra's (QEMU has none of its own; without it its client would be
// cut off). Alike for all three: the same disks and device model, the same workload (a disk
// pattern, a dirtier), the same TCP congestion control in every namespace of the testbed
// (`testbed up --congestion`; vandra's tunnel is told the same), and the same measures:
// total_s from the first action at either site (the target QEMU's start included) to the
// guest running at the target; QEMU's downtime; the client's longest gap (SessionProbe,
// every 10 ms); bytes over the WAN (the counters of dc's device to cloud-eu, IP bytes both ways);
// TCP segments re-sent; CPU seconds of the migration machinery (MachineryCpu). A run with a lost
// TCP byte or a failed data check is a failed run. One JSON object per run with --json.
// --return-after-s S: vandra moves the guest back to dc S seconds later (its workload running
// meanwhile), measured the same way as a row "vandra-back": a return trip sends only what
// changed since the move out (ADR 0027).
#include "bench_migrate.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "bench_internal.h"
#include "cli_support.h"
#include "migrate_watch.h"
#include "vandra/agent/agent_client.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/guest_workload.h"
#include "vandra/testbed/testbed.h"

namespace vandra::cli {
namespace bench {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

json toJson(const MigrateRun& r) {
  return {{"system", r.system},
          {"profile", r.profile},
          {"congestion", r.congestion},
          {"connections", r.connections},
          {"result", r.result},
          {"total_s", r.total_s},
          {"downtime_ms", r.downtime_ms},
          {"client_max_gap_ms", r.client_max_gap_ms},
          {"client_max_gap_end_s", r.client_max_gap_end_s},
          {"tcp_bytes_lost", r.tcp_bytes_lost},
          {"wan_bytes", r.wan_bytes},
          {"tcp_retransmitted", r.tcp_retransmitted},
          {"cpu_s", r.cpu_s},
          {"detail", r.detail}};
}

Result<std::string> makeWorkDir(const std::string& prefix) {
  std::string work = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(work.data()) == nullptr) {
    return fail(Error::fromErrno("Cannot create a work folder"));
  }
  return work;
}

testbed::TestbedOptions benchTestbed(const std::string& work, const std::string& profile,
                                     const std::string& congestion) {
  testbed::TestbedOptions to;
  to.profile = profile;
  to.state_dir = work + "/testbed";
  to.agents = true;
  to.sites = {"dc", "cloud-eu"};  // one link is what it measures
  to.controller = false;
  to.congestion = congestion;
  return to;
}

agent::AgentClient agentClient(const testbed::SiteInfo& site) {
  agent::AgentEndpoint ep{.host = "",
                          .port = 0,
                          .ca = site.ca_cert,
                          .cert = site.operator_cert,
                          .key = site.operator_key,
                          .netns = site.netns};
  (void)agent::parseHostPort(site.agent_endpoint, ep);
  return agent::AgentClient(ep);
}

uint64_t netnsInode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

namespace {

std::string readLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

std::vector<std::string> numericEntries(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] >= '0' && e->d_name[0] <= '9') {
        out.emplace_back(e->d_name);
      }
    }
    ::closedir(d);
  }
  return out;
}

MachineryCpu::MachineryCpu(const testbed::TestbedInfo& tb) {
  for (const auto* s : {tb.site("dc"), tb.site("cloud-eu")}) {
    if (const uint64_t ino = netnsInode("/run/netns/" + s->netns); ino != 0) {
      netns_inodes_.push_back(ino);
    }
  }
  sample();
  sampler_ = std::thread([this] {
    while (!stop_.load()) {
      std::this_thread::sleep_for(100ms);
      sample();
    }
  });
}

MachineryCpu::~MachineryCpu() {
  (void)stop();
}

void MachineryCpu::sample() {
  std::lock_guard lock(mu_);
  for (const auto& p : numericEntries("/proc")) {
    const uint64_t ino = netnsInode("/proc/" + p + "/ns/net");
    if (std::find(netns_inodes_.begin(), netns_inodes_.end(), ino) == netns_inodes_.end()) {
      continue;
    }
    const std::string task_dir = "/proc/" + p + "/task";
    for (const auto& t : numericEntries(task_dir)) {
      const std::string stat = readLine(task_dir + "/" + t + "/stat");
      const auto close = stat.rfind(')');
      const auto open = stat.find('(');
      if (close == std::string::npos || open == std::string::npos) {
        continue;
      }
      // The guest's own work: QEMU's vCPU threads (-name debug-threads=on names them).
      if (stat.compare(open + 1, 4, "CPU ") == 0) {
        continue;
      }
      std::istringstream f(stat.substr(close + 2));
      std::vector<std::string> v{std::istream_iterator<std::string>(f),
                                 std::istream_iterator<std::string>()};
      if (v.size() < 20) {
        continue;
      }
      // Fields after the name, from 3 (state): utime 14, stime 15, starttime 22.
      const uint64_t ticks = std::stoull(v[11]) + std::stoull(v[12]);
      const uint64_t start = std::stoull(v[19]);
      auto key = std::make_tuple(std::stoi(p), std::stoi(t), start);
      auto [it, inserted] = threads_.try_emplace(key, Seen{first_pass_ ? ticks : 0, ticks});
      if (!inserted) {
        it->second.last = std::max(it->second.last, ticks);
      }
    }
  }
  first_pass_ = false;
}

double MachineryCpu::stop() {
  if (sampler_.joinable()) {
    stop_ = true;
    sampler_.join();
    sample();
  }
  std::lock_guard lock(mu_);
  uint64_t ticks = 0;
  for (const auto& [k, s] : threads_) {
    ticks += s.last - s.first;
  }
  return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// TCP segments retransmitted by dc's namespace so far (the sending side of both systems'
// streams): what the wire carried twice.
uint64_t retransmittedSegments(const testbed::TestbedInfo& tb) {
  auto snmp = runCapture({"ip", "netns", "exec", tb.site("dc")->netns, "cat", "/proc/net/snmp"});
  if (!snmp) {
    return 0;
  }
  // Two "Tcp:" lines: the field names, then the values.
  std::istringstream in(*snmp);
  std::string line;
  std::vector<std::string> names;
  while (std::getline(in, line)) {
    if (line.rfind("Tcp: ", 0) != 0) {
      continue;
    }
    std::istringstream words(line.substr(5));
    std::vector<std::string> fields{std::istream_iterator<std::string>(words),
                                    std::istream_iterator<std::string>()};
    if (names.empty()) {
      names = fields;
      continue;
    }
    for (size_t i = 0; i < names.size() && i < fields.size(); ++i) {
      if (names[i] == "RetransSegs") {
        return std::strtoull(fields[i].c_str(), nullptr, 10);
      }
    }
  }
  return 0;
}

// IP bytes through dc's WAN device, both ways.
uint64_t wanBytes(const testbed::TestbedInfo& tb) {
  uint64_t total = 0;
  const testbed::SiteInfo* dc = tb.site("dc");
  const testbed::WanEnd* wan = dc != nullptr ? dc->wanTo("cloud-eu") : nullptr;
  if (wan == nullptr) {
    return 0;
  }
  for (const char* dir : {"rx_bytes", "tx_bytes"}) {
    auto v = runCapture({"ip", "netns", "exec", dc->netns, "cat",
                         "/sys/class/net/" + wan->device + "/statistics/" + dir});
    total += v ? std::stoull(*v) : 0;
  }
  return total;
}

// The stamped dirtier and disk writer (testbed::GuestWorkload); the writer's 8 MiB right
// after the disk pattern.
testbed::WorkloadOptions benchWorkload(const BenchMigrateOptions& o) {
  testbed::WorkloadOptions w;
  w.dirty_wss_mib = o.wss_mib;
  w.dirty_rate_mbps = o.dirty_mbps;
  w.disk_offset_mib = o.content == "real" ? o.content_fs_mib : o.disk_data_mib;
  w.disk_len_mib = 8;
  return w;
}

// --content real: the data disk's files mounted read-only and read once, so that they sit in
// the page cache as a running VM's working files do (guest/programs/vguest-files.sh).
constexpr const char* kRealMount = "/mnt/data";

// The guest at dc answers; its workload started: a disk pattern, the dirtier and the disk
// writer.
Result<testbed::GuestConnection> startWorkload(const testbed::TestbedInfo& tb,
                                               const BenchMigrateOptions& o) {
  VANDRA_TRY(runCapture({"ip", "-n", tb.client_netns, "neigh", "flush", "all"}));
  VANDRA_TRY_ASSIGN(auto conn, testbed::GuestConnection::connect(tb.client_netns, kGuestIp, 7000,
                                                                 Clock::now() + 300s));
  VANDRA_TRY(conn.ping("bench", 30s));
  const std::string fill =
      o.content == "real" ? std::string("vguest-files load /dev/vdb ") + kRealMount
                          : "vguest-diskpat write /dev/vdb 3 0 " + std::to_string(o.disk_data_mib);
  VANDRA_TRY_ASSIGN(auto w, conn.exec(fill, 600s));
  if (w.exit_code != 0) {
    return fail(ErrorCode::Internal, "Filling the guest's disk or page cache failed: " + fill);
  }
  VANDRA_TRY(testbed::GuestWorkload::start(conn, benchWorkload(o)));
  return conn;
}

// After the run: the session's account, and the guest's data checked where it runs now: the
// disk pattern, every page the dirtier and every block the disk writer wrote. A failed
// check makes a failed run.
void finish(MigrateRun& r, testbed::SessionProbe& probe, testbed::GuestConnection& conn,
            const BenchMigrateOptions& o, std::chrono::duration<double> probe_to_begin) {
  const auto s = probe.stop();
  r.client_max_gap_ms = s.max_gap_ms;
  r.client_max_gap_end_s = s.max_gap_at_s - probe_to_begin.count();
  r.tcp_bytes_lost = s.bytes_lost;
  if (!s.error.empty() && r.result == "ok") {
    r.result = "session broken: " + s.error;
  }
  // Every real file against its SHA-256 from the build, or the disk pattern.
  auto d = conn.exec(o.content == "real"
                         ? std::string("vguest-files check ") + kRealMount
                         : "vguest-diskpat check /dev/vdb 3 0 " + std::to_string(o.disk_data_mib),
                     600s);
  if (r.result == "ok" && (!d || d->exit_code != 0)) {
    r.result = "disk check failed";
  }
  auto v = testbed::GuestWorkload::attach(benchWorkload(o)).verify(conn, 600s);
  if (r.result == "ok" && !v) {
    r.result = "workload check failed: " + v.error().describe();
  } else if (r.result == "ok" && !v->pass()) {
    r.result = "workload check failed: " + v->describe();
  }
  if (r.result == "ok" && r.tcp_bytes_lost > 0) {
    r.result = "the client lost " + std::to_string(r.tcp_bytes_lost) + " TCP bytes";
  }
}

namespace {

int64_t wallUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// When the guest ran at the target: the source's record of the target's word (event
// target_started, system-clock microseconds, as this host's clock).
std::optional<int64_t> targetStartedUs(const json& m) {
  if (!m.contains("timeline") || !m["timeline"].is_array()) {
    return std::nullopt;
  }
  for (const auto& e : m["timeline"]) {
    if (e.value("event", "") == "target_started") {
      return e.value("at_us", int64_t{0});
    }
  }
  return std::nullopt;
}

}  // namespace

// One move of VM @p id by vandra, from the site of @p src to @p to, the guest's workload
// running and the client's session watched throughout; its figures and checks.
Result<MigrateRun> moveVandra(const testbed::TestbedInfo& tb, agent::AgentClient& src,
                              const std::string& to, const std::string& id,
                              testbed::GuestConnection& conn, const BenchMigrateOptions& o,
                              const std::string& system) {
  MigrateRun r;
  r.system = system;
  r.profile = o.profile;
  r.connections = o.tunnel_connections;  // the report's "connections" has the tunnel's own count
  VANDRA_TRY_ASSIGN(auto probe, testbed::SessionProbe::start(tb.client_netns, kGuestIp, 7000, 10ms,
                                                             Clock::now() + 30s));
  const auto probing = Clock::now();
  MachineryCpu cpu(tb);
  const uint64_t wan0 = wanBytes(tb);
  const uint64_t retrans0 = retransmittedSegments(tb);
  const auto began = Clock::now();
  const int64_t began_us = wallUs();
  json body = {{"to", to}, {"max_total_s", o.max_total_s}};
  if (system.rfind("vandra-norefs", 0) == 0) {
    body["content_refs"] = false;  // QEMU's stream as it is: vandra without ADR 0030
  }
  VANDRA_TRY_ASSIGN(const auto begun, src.post("/v1/vms/" + id + "/migrate", body));
  ProgressBar quiet(false);
  VANDRA_TRY_ASSIGN(const auto m,
                    followMigration(src, begun.value("id", ""), quiet, Clock::now() + 30min));
  r.cpu_s = cpu.stop();
  r.wan_bytes = wanBytes(tb) - wan0;
  r.tcp_retransmitted = retransmittedSegments(tb) - retrans0;
  // The same span as the QEMU systems': from the request (the target QEMU starts inside it)
  // to the guest running at the target. The agent's own total_s (kept in detail) also
  // counts releasing the source and the confirmation's round trip.
  const auto started_us = targetStartedUs(m);
  r.total_s = started_us ? static_cast<double>(*started_us - began_us) / 1e6
                         : m["report"].value("total_s", 0.0);
  r.downtime_ms = m["report"].value("downtime_ms", uint64_t{0});
  r.detail = m["report"];
  // The target's share of the pause, from its own record of the same migration.
  if (const testbed::SiteInfo* there = tb.site(to); there != nullptr) {
    agent::AgentClient dst = agentClient(*there);
    if (auto t = dst.get("/v1/migrations/" + begun.value("id", "")); t && t->is_object()) {
      const json& tr = (*t)["report"];
      r.detail["target"] = {{"start_ms", tr.value("start_ms", json())},
                            {"lan_deliver", tr.value("lan_deliver", json())}};
      // The guest's whole pause, both agents on this host's clock: its STOP at the source to
      // `cont` at the target (QEMU's downtime ends when the source has sent the last bytes).
      const json steer = m["report"].value("lan_steer", json::object());
      const json start = tr.value("start_ms", json::object());
      if (steer.contains("stopped_at_us") && start.contains("running_at_us")) {
        r.detail["guest_pause_ms"] = static_cast<double>(start["running_at_us"].get<int64_t>() -
                                                         steer["stopped_at_us"].get<int64_t>()) /
                                     1000.0;
      }
    }
  }
  if (m["report"].contains("post_copy")) {
    // Post-copy: the guest runs at the target from the switch, but the move is over only
    // when its last page has arrived (the source is released right after).
    r.detail["switched_s"] = r.total_s;
    r.total_s = m["report"].value("total_s", r.total_s);
  }
  if (m.value("phase", "") != "done") {
    r.result = m.value("phase", "") + ": " + m.value("error", "");
  }
  finish(r, *probe, conn, o, began - probing);
  return r;
}

namespace {

// The USB-stick path of "vandra-seeded" (ADR 0029): VM @p id exported at @p from while it
// runs, the OVA (through @p work) seeded at @p to; the figures of each step.
Result<json> seedAt(agent::AgentClient& from, agent::AgentClient& to, const std::string& id,
                    const std::string& work) {
  const auto began = Clock::now();
  const std::string name = id + "-seed.ova";
  const std::string local = work + "/" + name;
  VANDRA_TRY_ASSIGN(const auto e, from.post("/v1/vms/" + id + "/export", {{"name", name}}));
  VANDRA_TRY(from.downloadFile("/v1/packages/" + name + "/file", local));
  (void)from.del("/v1/packages/" + name);
  const double export_s = std::chrono::duration<double>(Clock::now() - began).count();
  VANDRA_TRY(to.uploadPackage(local, name));
  VANDRA_TRY(to.post("/v1/seeds", {{"upload", name}}));
  (void)to.del("/v1/packages/" + name);
  std::error_code ec;
  fs::remove(local, ec);
  return json{{"export_bytes", e["package"].value("size", uint64_t{0})},
              {"export_s", export_s},
              {"freeze_ms", e.value("freeze_ms", 0.0)},
              {"seed_s", std::chrono::duration<double>(Clock::now() - began).count() - export_s}};
}

// vandra's run (@p system: vandra, vandra-seeded, vandra-norefs, vandra-postcopy): the guest
// imported and started at dc, moved to cloud-eu, and with o.return_after_s, moved back after
// that long. vandra-seeded: exported and seeded at cloud-eu first, moved o.seed_age_s later;
// vandra-postcopy: @p ova is the guest with PostCopy=allowed in its SLA.
Result<std::vector<MigrateRun>> runVandra(const testbed::TestbedInfo& tb, agent::AgentClient& dc,
                                          agent::AgentClient& cloud, const std::string& ova,
                                          const BenchMigrateOptions& o, int n,
                                          const std::string& system, const std::string& work) {
  const bool seeded = system == "vandra-seeded";
  const std::string id = "bench-" + std::to_string(n);
  auto cleanup = defer([&] {
    for (auto* a : {&dc, &cloud}) {
      (void)a->post("/v1/vms/" + id + "/kill", json::object());
      (void)a->del("/v1/vms/" + id);
    }
  });
  // Uploaded once (later runs find it on the agent); the import reads the upload.
  const std::string upload = std::filesystem::path(ova).filename().string();
  VANDRA_TRY(dc.uploadPackage(ova, upload));
  VANDRA_TRY(dc.post("/v1/vms", {{"id", id}, {"upload", upload}}));
  VANDRA_TRY(dc.post("/v1/vms/" + id + "/start", json::object()));
  VANDRA_TRY_ASSIGN(auto conn, startWorkload(tb, o));
  json seed;
  if (seeded) {
    VANDRA_TRY_ASSIGN(seed, seedAt(dc, cloud, id, work));
    // The guest runs on at dc, its dirtier and disk writer working, before it moves.
    std::this_thread::sleep_for(std::chrono::seconds(o.seed_age_s));
  }
  std::vector<MigrateRun> out;
  VANDRA_TRY_ASSIGN(auto there, moveVandra(tb, dc, "cloud-eu", id, conn, o, system));
  if (seeded) {
    there.detail["seed"] = seed;
    there.detail["seed_age_s"] = o.seed_age_s;
  }
  out.push_back(std::move(there));
  if (o.return_after_s >= 0 && out.back().result == "ok") {
    // The guest runs on at cloud-eu, its dirtier and disk writer working, before it comes back.
    std::this_thread::sleep_for(std::chrono::seconds(o.return_after_s));
    VANDRA_TRY_ASSIGN(auto back, moveVandra(tb, cloud, "dc", id, conn, o, system + "-back"));
    out.push_back(std::move(back));
  }
  return out;
}

}  // namespace
}  // namespace bench

using namespace bench;

std::string defaultCongestion(const std::string& profile) {
  // By measurement (docs/adr/0018-congestion-control-per-link.md): bbr, the host's default,
  // on every profile. With cubic, plain QEMU's one RAM connection on wan settled at about
  // 340 Mbit/s after its first losses (the emulator's one-BDP queue) and never converged
  // against the guest's 50 MB/s; on lossy cubic collapses for every system.
  (void)profile;
  return "bbr";
}

int benchMigrate(const BenchMigrateOptions& options) {
  BenchMigrateOptions o = options;
  const std::string ova = fs::absolute(fs::path(o.guest_dir) / "test-guest.ova").string();
  if (!fs::exists(ova)) {
    return reportError("bench migrate",
                       Error(ErrorCode::NotFound, "No test guest at " + ova + " (guest/build.sh)"));
  }
  if (o.content == "real") {
    // The guest must have been built with real files: content.json says where they end.
    auto text = readSmallFile((fs::path(o.guest_dir) / "content.json").string(), 4096);
    const json c = text ? json::parse(*text, nullptr, false) : json();
    if (!c.is_object() || c.value("content", "") != "real" || !c.contains("fs_mib") ||
        !c["fs_mib"].is_number_integer() || c["fs_mib"].get<int>() <= 0) {
      return reportError("bench migrate",
                         Error(ErrorCode::InvalidArgument,
                               "--content real needs a guest built with real files "
                               "(guest/build.sh --real-files-mib N): " +
                                   o.guest_dir + "/content.json does not say so"));
    }
    o.content_fs_mib = c["fs_mib"].get<int>();
  }
  auto made = makeWorkDir("vandra-benchmig");
  if (!made) {
    return reportError("bench migrate", made.error());
  }
  const std::string work = *made;
  auto rm = defer([&] {
    std::error_code ec;
    fs::remove_all(work, ec);
  });
  testbed::TestbedOptions to = benchTestbed(
      work, o.profile, o.congestion.empty() ? defaultCongestion(o.profile) : o.congestion);
  // vandra's tunnel is given the testbed's algorithm too (testbed::up): all systems alike.
  to.agent_args = {"--stop-timeout", "3", "--tunnel-connections",
                   std::to_string(o.tunnel_connections)};
  if (!o.tunnel_congestion.empty()) {
    to.agent_args.insert(to.agent_args.end(), {"--tunnel-congestion", o.tunnel_congestion});
  }
  if (o.tunnel_window_mib > 0) {
    to.agent_args.insert(to.agent_args.end(),
                         {"--tunnel-window-mib", std::to_string(o.tunnel_window_mib)});
  }
  if (!o.tunnel_window.empty()) {
    to.agent_args.insert(to.agent_args.end(), {"--tunnel-window", o.tunnel_window});
  }
  // vandra-postcopy: the same guest, its owner allowing post-copy (ADR 0032).
  const std::string postcopy_ova = work + "/test-guest-postcopy.ova";
  if (std::find(o.systems.begin(), o.systems.end(), "vandra-postcopy") != o.systems.end()) {
    std::error_code ec;
    fs::copy_file(ova, postcopy_ova, ec);
    if (ec) {
      return reportError(
          "bench migrate",
          Error(ErrorCode::Io, "Cannot copy " + ova + " to " + postcopy_ova + ": " + ec.message()));
    }
    if (auto set =
            runCapture({"/proc/self/exe", "ovf", "sla", "set", postcopy_ova, "post-copy=allowed"});
        !set) {
      return reportError("bench migrate", set.error());
    }
  }
  auto tb = testbed::up(to);
  if (!tb) {
    return reportError("bench migrate", tb.error());
  }
  auto down = defer([&] { (void)testbed::down(to.state_dir); });
  agent::AgentClient dc = agentClient(*tb->site("dc"));
  agent::AgentClient cloud = agentClient(*tb->site("cloud-eu"));
  // The sites' link (tunnel and stretched LAN) is up before the first run, as between sites
  // that keep it: no run pays for the dial, and every system's client has the LAN from the
  // start.
  if (auto linked = dc.post("/v1/peers/cloud-eu/connect", json::object()); !linked) {
    return reportError("bench migrate", linked.error());
  }
  std::vector<MigrateRun> runs;
  const size_t k_systems = o.systems.size();
  for (int i = 0; i < o.runs; ++i) {
    // The systems take turns, each run starting one further along (qemu, qemu-tuned, vandra |
    // qemu-tuned, vandra, qemu | ...), so that none always has the first run of a fresh
    // testbed or always follows the same system.
    for (size_t k = 0; k < k_systems; ++k) {
      const std::string& sys = o.systems[(static_cast<size_t>(i) + k) % k_systems];
      const int n = i * static_cast<int>(k_systems) + static_cast<int>(k);
      std::vector<MigrateRun> rows;
      if (sys.starts_with("vandra")) {
        auto r = runVandra(*tb, dc, cloud, sys == "vandra-postcopy" ? postcopy_ova : ova, o, n, sys,
                           work);
        if (r) {
          rows = std::move(*r);
        } else {
          rows.push_back({});
          rows.back().system = sys;
          rows.back().profile = o.profile;
          rows.back().result = r.error().describe();
        }
      } else {
        auto r = runQemu(*tb, ova, work, o, n, sys == "qemu-tuned");
        rows.push_back(r ? *r : MigrateRun{});
        if (!r) {
          rows.back().system = sys;
          rows.back().profile = o.profile;
          rows.back().result = r.error().describe();
        }
      }
      for (auto& mr : rows) {
        mr.congestion = to.congestion;
        mr.detail["content"] = o.content;
        if (sys.starts_with("vandra") && !o.tunnel_congestion.empty()) {
          mr.detail["tunnel_congestion"] = o.tunnel_congestion;  // not like for like
        }
        if (sys.starts_with("vandra") && o.tunnel_window_mib > 0) {
          mr.detail["tunnel_window_mib"] = o.tunnel_window_mib;
        }
        if (sys.starts_with("vandra") && !o.tunnel_window.empty()) {
          mr.detail["tunnel_window"] = o.tunnel_window;
        }
        if (o.json) {
          std::cout << toJson(mr).dump() << "\n" << std::flush;
        } else {
          std::printf(
              "%-10s %-6s run %d  %-6s total %7.2f s  downtime %5llu ms  gap %7.1f ms  lost %llu B "
              " "
              "WAN %8.1f MB  CPU %6.1f s\n",
              mr.system.c_str(), mr.profile.c_str(), i, mr.result == "ok" ? "ok" : "FAILED",
              mr.total_s, static_cast<unsigned long long>(mr.downtime_ms), mr.client_max_gap_ms,
              static_cast<unsigned long long>(mr.tcp_bytes_lost),
              static_cast<double>(mr.wan_bytes) / 1e6, mr.cpu_s);
          if (mr.result != "ok") {
            std::printf("           %s\n", mr.result.c_str());
          }
          std::fflush(stdout);
        }
        runs.push_back(mr);
      }
    }
  }
  bool all_ok = true;
  for (const auto& r : runs) {
    all_ok = all_ok && r.result == "ok";
  }
  return all_ok ? 0 : 1;
}

}  // namespace vandra::cli
