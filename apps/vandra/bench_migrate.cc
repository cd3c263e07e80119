// `vandra bench migrate --profile NAME`: a live migration of the test guest from dc to cloud
// over the emulated WAN, by vandra (the agents, the site tunnel) and, side by side in the same
// testbed, by plain QEMU the way an operator without vandra would do it (system "qemu": the
// target QEMU started by hand with -incoming, an NBD server on the target's WAN address,
// blockdev-mirror from the source over TCP, QEMU's own TCP migration, default settings).
//
//   system  | control      | RAM stream           | disks             | client's LAN at cloud
//   vandra  | agents (TLS) | site tunnel (TLS)    | NBD in the tunnel | the tunnel's stretched LAN
//   qemu    | this command | tcp:10.255.0.2:4444  | nbd tcp :10809    | the same stretched LAN
//
// The plain-QEMU guest reaches the client at dc through the same stretched LAN (QEMU has
// none of its own; without it its client would be cut off). Both runs boot the same disks
// with the same device model, carry the same workload (a disk pattern, a dirtier) and are
// measured the same way: total time, QEMU's downtime, the client's longest gap (SessionProbe,
// every 10 ms), bytes over the WAN (dc's wan0 counters: IP bytes both ways) and CPU seconds
// of the whole host (/proc/stat) during the migration. One JSON object per run with --json.
#include "bench_migrate.h"

#include <signal.h>
#include <unistd.h>

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

#include "cli_support.h"
#include "migrate_watch.h"
#include "vandra/agent/agent_client.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/inspect.h"
#include "vandra/qemu/cmdline_builder.h"
#include "vandra/qmp/qmp_client.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/guest_workload.h"
#include "vandra/testbed/testbed.h"

namespace vandra::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kGuestIp = "10.10.0.10";

struct MigrateRun {
  std::string system;
  std::string profile;
  std::string result = "ok";
  double total_s = 0;
  uint64_t downtime_ms = 0;
  double client_max_gap_ms = 0;
  double client_max_gap_end_s = 0;  // when that gap ended, seconds after the migration began
  uint64_t tcp_bytes_lost = 0;
  uint64_t wan_bytes = 0;
  uint64_t tcp_retransmitted = 0;  // segments dc's namespace sent again meanwhile
  double cpu_s = 0;
  int connections = 0;  // vandra: TCP connections of the site tunnel; qemu: 1 (+1 per NBD disk)
  json detail = json::object();  // vandra: the migration's report (phase times, bytes by stream)
};

json toJson(const MigrateRun& r) {
  return {{"system", r.system},
          {"profile", r.profile},
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

// Busy CPU seconds of the whole host so far (all cores; /proc/stat, USER_HZ ticks).
double hostCpuSeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return static_cast<double>(user + nice + system + irq + softirq) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// IP bytes through dc's WAN device, both ways.
// TCP segments retransmitted by dc's namespace so far (the sending side of both systems'
// streams): what the wire carried twice.
uint64_t retransmittedSegments(const testbed::TestbedInfo& tb) {
  auto snmp = runCapture({"ip", "netns", "exec", tb.dc.netns, "cat", "/proc/net/snmp"});
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

uint64_t wanBytes(const testbed::TestbedInfo& tb) {
  uint64_t total = 0;
  for (const char* dir : {"rx_bytes", "tx_bytes"}) {
    auto v = runCapture({"ip", "netns", "exec", tb.dc.netns, "cat",
                         std::string("/sys/class/net/wan0/statistics/") + dir});
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
  w.disk_offset_mib = o.disk_data_mib;
  w.disk_len_mib = 8;
  return w;
}

// The guest at dc answers; its workload started: a disk pattern, the dirtier and the disk
// writer.
Result<testbed::GuestConnection> startWorkload(const testbed::TestbedInfo& tb,
                                               const BenchMigrateOptions& o) {
  VANDRA_TRY(runCapture({"ip", "-n", tb.client_netns, "neigh", "flush", "all"}));
  VANDRA_TRY_ASSIGN(auto conn, testbed::GuestConnection::connect(tb.client_netns, kGuestIp, 7000,
                                                                 Clock::now() + 300s));
  VANDRA_TRY(conn.ping("bench", 30s));
  VANDRA_TRY_ASSIGN(
      auto w,
      conn.exec("vguest-diskpat write /dev/vdb 3 0 " + std::to_string(o.disk_data_mib), 600s));
  if (w.exit_code != 0) {
    return fail(ErrorCode::Internal, "diskpat write failed");
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
  auto d = conn.exec("vguest-diskpat check /dev/vdb 3 0 " + std::to_string(o.disk_data_mib), 600s);
  if (r.result == "ok" && (!d || d->exit_code != 0)) {
    r.result = "disk check failed";
  }
  auto v = testbed::GuestWorkload::attach(benchWorkload(o)).verify(conn, 600s);
  if (r.result == "ok" && !v) {
    r.result = "workload check failed: " + v.error().describe();
  } else if (r.result == "ok" && !v->pass()) {
    r.result = "workload check failed: " + v->describe();
  }
}

Result<MigrateRun> runVandra(const testbed::TestbedInfo& tb, agent::AgentClient& dc,
                             agent::AgentClient& cloud, const std::string& ova,
                             const BenchMigrateOptions& o, int n) {
  MigrateRun r{"vandra", o.profile};
  r.connections = o.tunnel_connections;
  const std::string id = "bench-" + std::to_string(n);
  auto cleanup = defer([&] {
    for (auto* a : {&dc, &cloud}) {
      (void)a->post("/v1/vms/" + id + "/kill", json::object());
      (void)a->del("/v1/vms/" + id);
    }
  });
  VANDRA_TRY(dc.post("/v1/vms", {{"id", id}, {"package", ova}}));
  VANDRA_TRY(dc.post("/v1/vms/" + id + "/start", json::object()));
  VANDRA_TRY_ASSIGN(auto conn, startWorkload(tb, o));
  VANDRA_TRY_ASSIGN(auto probe, testbed::SessionProbe::start(tb.client_netns, kGuestIp, 7000, 10ms,
                                                             Clock::now() + 30s));
  const auto probing = Clock::now();
  const double cpu0 = hostCpuSeconds();
  const uint64_t wan0 = wanBytes(tb);
  const uint64_t retrans0 = retransmittedSegments(tb);
  const auto began = Clock::now();
  VANDRA_TRY_ASSIGN(const auto begun, dc.post("/v1/vms/" + id + "/migrate",
                                              {{"to", "cloud"}, {"max_total_s", o.max_total_s}}));
  ProgressBar quiet(false);
  VANDRA_TRY_ASSIGN(const auto m,
                    followMigration(dc, begun.value("id", ""), quiet, Clock::now() + 30min));
  r.cpu_s = hostCpuSeconds() - cpu0;
  r.wan_bytes = wanBytes(tb) - wan0;
  r.tcp_retransmitted = retransmittedSegments(tb) - retrans0;
  r.total_s = m["report"].value("total_s", 0.0);
  r.downtime_ms = m["report"].value("downtime_ms", uint64_t{0});
  r.detail = m["report"];
  if (m.value("phase", "") != "done") {
    r.result = m.value("phase", "") + ": " + m.value("error", "");
  }
  finish(r, *probe, conn, o, began - probing);
  return r;
}

// A QEMU of the plain run: its folder, pid file and monitor.
struct PlainQemu {
  std::string dir;
  qmp::QmpClientPtr qmp;
  ~PlainQemu() {
    if (qmp) {
      qmp->close();
    }
    std::ifstream in(dir + "/qemu.pid");
    pid_t pid = 0;
    if (in >> pid && pid > 0) {
      ::kill(pid, SIGKILL);  // the pid QEMU wrote for this run, nothing found by name
      for (int i = 0; i < 200 && ::kill(pid, 0) == 0; ++i) {
        ::usleep(20000);
      }
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

Result<json> qmpDo(qmp::QmpClient& c, const std::string& name, json args = json::object()) {
  return c.execute(qmp::makeCommand(name, std::move(args)));
}

Result<void> launchPlain(PlainQemu& q, const ovf::VirtualSystemSpec& vs,
                         const std::map<std::string, std::string>& disks, const std::string& netns,
                         const std::string& tap, bool incoming) {
  qemu::QemuRunConfig rc;
  rc.accel = "tcg";
  rc.qmp_socket = q.dir + "/qmp.sock";
  rc.qmp_event_socket = q.dir + "/events.sock";
  rc.serial_log = q.dir + "/serial.log";
  rc.pidfile = q.dir + "/qemu.pid";
  rc.disk_overlays = disks;
  rc.nics.push_back({tap, std::nullopt});
  if (incoming) {
    rc.incoming = "defer";
    rc.start_paused = true;  // as libvirt does: cont once the NBD exports are gone
  }
  VANDRA_TRY_ASSIGN(auto argv, qemu::buildCommandLine(vs, rc));
  argv.insert(argv.begin(), {"ip", "netns", "exec", netns});
  argv.push_back("-daemonize");
  VANDRA_TRY(runCapture(argv));
  VANDRA_TRY(runCapture({"ip", "-n", netns, "link", "set", tap, "master", "br0", "up"}));
  VANDRA_TRY_ASSIGN(q.qmp, qmp::connectQmp(rc.qmp_socket, {}));
  return {};
}

Result<std::string> migrationStatus(qmp::QmpClient& c) {
  VANDRA_TRY_ASSIGN(const auto q, qmpDo(c, "query-migrate"));
  return q.value("status", std::string("none"));
}

Result<MigrateRun> runPlainQemu(const testbed::TestbedInfo& tb, const std::string& ova,
                                const std::string& work, const BenchMigrateOptions& o, int n) {
  MigrateRun r{"qemu", o.profile};
  r.connections = 1;
  PlainQemu src{work + "/qsrc-" + std::to_string(n), nullptr};
  PlainQemu dst{work + "/qdst-" + std::to_string(n), nullptr};
  fs::create_directories(src.dir);
  fs::create_directories(dst.dir);
  VANDRA_TRY(runCapture({"tar", "-xf", ova, "-C", src.dir}));
  std::string ovf_name;
  for (const auto& e : fs::directory_iterator(src.dir)) {
    if (e.path().extension() == ".ovf") {
      ovf_name = e.path().filename().string();
    }
  }
  VANDRA_TRY_ASSIGN(const auto insp, ovf::inspectPackage(src.dir + "/" + ovf_name, {}));
  const auto& vs = insp.spec.virtual_systems.at(0);
  std::map<std::string, std::string> src_disks;
  std::map<std::string, std::string> dst_disks;
  for (const auto& d : vs.disks) {
    if (!d.file) {
      return fail(ErrorCode::Unsupported, "Disk " + d.id + " has no file");
    }
    src_disks[d.id] = src.dir + "/" + d.id + ".qcow2";
    dst_disks[d.id] = dst.dir + "/" + d.id + ".qcow2";
    VANDRA_TRY(runCapture(
        {"qemu-img", "convert", "-O", "qcow2", src.dir + "/" + *d.file, src_disks[d.id]}));
    VANDRA_TRY(runCapture({"qemu-img", "create", "-q", "-f", "qcow2", dst_disks[d.id],
                           std::to_string(d.capacity_bytes)}));
  }
  const std::string tap = "vbq" + std::to_string(n % 1000);
  VANDRA_TRY(launchPlain(src, vs, src_disks, tb.dc.netns, tap, false));
  VANDRA_TRY_ASSIGN(auto conn, startWorkload(tb, o));
  VANDRA_TRY_ASSIGN(auto probe, testbed::SessionProbe::start(tb.client_netns, kGuestIp, 7000, 10ms,
                                                             Clock::now() + 30s));
  const auto probing = Clock::now();
  // The target at cloud: same devices, empty disks, exports on its WAN address.
  VANDRA_TRY(launchPlain(dst, vs, dst_disks, tb.cloud.netns, tap, true));
  const std::string target = tb.cloud.wan_address;
  VANDRA_TRY(
      qmpDo(*dst.qmp, "nbd-server-start",
            {{"addr", {{"type", "inet"}, {"data", {{"host", target}, {"port", "10809"}}}}}}));
  for (const auto& d : vs.disks) {
    VANDRA_TRY(qmpDo(*dst.qmp, "block-export-add",
                     {{"type", "nbd"},
                      {"id", "exp-" + d.id},
                      {"node-name", "fmt-" + d.id},
                      {"writable", true},
                      {"name", "fmt-" + d.id}}));
  }
  VANDRA_TRY(qmpDo(*dst.qmp, "migrate-incoming", {{"uri", "tcp:" + target + ":4444"}}));

  const double cpu0 = hostCpuSeconds();
  const uint64_t wan0 = wanBytes(tb);
  const uint64_t retrans0 = retransmittedSegments(tb);
  const auto t0 = Clock::now();
  // Mirrors: one NBD client node and one blockdev-mirror per disk, default copy mode.
  for (const auto& d : vs.disks) {
    VANDRA_TRY(qmpDo(*src.qmp, "blockdev-add",
                     {{"driver", "nbd"},
                      {"node-name", "nbd-" + d.id},
                      {"server", {{"type", "inet"}, {"host", target}, {"port", "10809"}}},
                      {"export", "fmt-" + d.id}}));
    VANDRA_TRY(qmpDo(*src.qmp, "blockdev-mirror",
                     {{"job-id", "mirror-" + d.id},
                      {"device", "fmt-" + d.id},
                      {"target", "nbd-" + d.id},
                      {"sync", "full"}}));
  }
  const auto deadline = Clock::now() + std::chrono::seconds(o.max_total_s);
  auto allReady = [&]() -> Result<bool> {
    VANDRA_TRY_ASSIGN(const auto jobs, qmpDo(*src.qmp, "query-block-jobs"));
    size_t ready = 0;
    for (const auto& j : jobs) {
      ready += j.value("ready", false) ? 1U : 0U;
    }
    return ready == vs.disks.size();
  };
  // Polling as a script would (QMP's events would do too; the interval is far below the
  // migration's seconds).
  for (;;) {
    VANDRA_TRY_ASSIGN(const bool ready, allReady());
    if (ready) {
      break;
    }
    if (Clock::now() > deadline) {
      return fail(ErrorCode::Timeout, "Mirrors not ready");
    }
    std::this_thread::sleep_for(100ms);
  }
  VANDRA_TRY(qmpDo(*src.qmp, "migrate", {{"uri", "tcp:" + target + ":4444"}}));
  for (;;) {
    VANDRA_TRY_ASSIGN(const std::string st, migrationStatus(*src.qmp));
    if (st == "completed") {
      break;
    }
    if (st == "failed" || st == "cancelled") {
      return fail(ErrorCode::Io, "QEMU's migration " + st);
    }
    if (Clock::now() > deadline) {
      (void)qmpDo(*src.qmp, "migrate_cancel");
      return fail(ErrorCode::Timeout, "QEMU's migration did not complete in " +
                                          std::to_string(o.max_total_s) +
                                          " s (RAM pre-copy never converged)");
    }
    std::this_thread::sleep_for(20ms);
  }
  // The source is paused now (postmigrate): the mirrors finish what is left, then the
  // target drops its exports and runs.
  for (const auto& d : vs.disks) {
    VANDRA_TRY(qmpDo(*src.qmp, "block-job-cancel", {{"device", "mirror-" + d.id}}));
  }
  for (;;) {
    VANDRA_TRY_ASSIGN(const auto jobs, qmpDo(*src.qmp, "query-block-jobs"));
    if (jobs.empty()) {
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  for (;;) {
    VANDRA_TRY_ASSIGN(const std::string st, migrationStatus(*dst.qmp));
    if (st == "completed") {
      break;
    }
    if (st == "failed" || Clock::now() > deadline) {
      return fail(ErrorCode::Io, "The target's incoming migration: " + st);
    }
    std::this_thread::sleep_for(5ms);
  }
  VANDRA_TRY(qmpDo(*dst.qmp, "nbd-server-stop"));
  VANDRA_TRY(qmpDo(*dst.qmp, "cont"));
  r.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
  VANDRA_TRY_ASSIGN(const auto q, qmpDo(*src.qmp, "query-migrate"));
  r.downtime_ms = q.value("downtime", uint64_t{0});
  r.detail = {{"ram_bytes", q.contains("ram") ? q["ram"].value("transferred", uint64_t{0}) : 0},
              {"ram_total_ms", q.value("total-time", uint64_t{0})}};
  r.cpu_s = hostCpuSeconds() - cpu0;
  r.wan_bytes = wanBytes(tb) - wan0;
  r.tcp_retransmitted = retransmittedSegments(tb) - retrans0;
  src.qmp->close();
  src.qmp.reset();
  std::ifstream in(src.dir + "/qemu.pid");
  pid_t pid = 0;
  if (in >> pid && pid > 0) {
    ::kill(pid, SIGKILL);  // the source ends once the target runs, as after any migration
  }
  finish(r, *probe, conn, o, t0 - probing);
  return r;
}

}  // namespace

int benchMigrate(const BenchMigrateOptions& o) {
  const std::string ova = fs::absolute(fs::path(o.guest_dir) / "test-guest.ova").string();
  if (!fs::exists(ova)) {
    return reportError("bench migrate",
                       Error(ErrorCode::NotFound, "No test guest at " + ova + " (guest/build.sh)"));
  }
  std::string work = (fs::temp_directory_path() / "vandra-benchmig-XXXXXX").string();
  if (::mkdtemp(work.data()) == nullptr) {
    return reportError("bench migrate", Error::fromErrno("Cannot create a work folder"));
  }
  auto rm = defer([&] {
    std::error_code ec;
    fs::remove_all(work, ec);
  });
  testbed::TestbedOptions to;
  to.profile = o.profile;
  to.state_dir = work + "/testbed";
  to.agents = true;
  to.agent_args = {"--stop-timeout", "3", "--tunnel-connections",
                   std::to_string(o.tunnel_connections)};
  auto tb = testbed::up(to);
  if (!tb) {
    return reportError("bench migrate", tb.error());
  }
  auto down = defer([&] { (void)testbed::down(to.state_dir); });
  auto client = [](const testbed::SiteInfo& s) {
    agent::AgentEndpoint ep{.host = "",
                            .port = 0,
                            .ca = s.ca_cert,
                            .cert = s.operator_cert,
                            .key = s.operator_key,
                            .netns = s.netns};
    (void)agent::parseHostPort(s.agent_endpoint, ep);
    return agent::AgentClient(ep);
  };
  agent::AgentClient dc = client(tb->dc);
  agent::AgentClient cloud = client(tb->cloud);
  // The sites' link (tunnel and stretched LAN) is up before the first run, as between sites
  // that keep it: no run pays for the dial, and both systems' clients have the LAN from the start.
  if (auto linked = dc.post("/v1/peers/cloud/connect", json::object()); !linked) {
    return reportError("bench migrate", linked.error());
  }
  std::vector<MigrateRun> runs;
  for (int i = 0; i < o.runs; ++i) {
    // The systems alternate (qemu, vandra | vandra, qemu | ...), so that neither always has
    // the first run of a fresh testbed (the link, and with it the LAN both systems' clients
    // use, is up before the first run).
    for (int k = 0; k < 2; ++k) {
      const bool vandra_turn = (i + k) % 2 == 1;
      auto r =
          vandra_turn ? runVandra(*tb, dc, cloud, ova, o, i) : runPlainQemu(*tb, ova, work, o, i);
      MigrateRun mr =
          r ? *r : MigrateRun{vandra_turn ? "vandra" : "qemu", o.profile, r.error().describe()};
      if (o.json) {
        std::cout << toJson(mr).dump() << "\n" << std::flush;
      } else {
        std::printf(
            "%-7s %-6s run %d  %-10s total %7.2f s  downtime %5llu ms  gap %7.1f ms  lost %llu B  "
            "WAN %8.1f MB  CPU %6.1f s\n",
            mr.system.c_str(), mr.profile.c_str(), i, mr.result == "ok" ? "ok" : "FAILED",
            mr.total_s, static_cast<unsigned long long>(mr.downtime_ms), mr.client_max_gap_ms,
            static_cast<unsigned long long>(mr.tcp_bytes_lost),
            static_cast<double>(mr.wan_bytes) / 1e6, mr.cpu_s);
        if (mr.result != "ok") {
          std::printf("        %s\n", mr.result.c_str());
        }
        std::fflush(stdout);
      }
      runs.push_back(mr);
    }
  }
  bool all_ok = true;
  for (const auto& r : runs) {
    all_ok = all_ok && r.result == "ok";
  }
  return all_ok ? 0 : 1;
}

}  // namespace vandra::cli
