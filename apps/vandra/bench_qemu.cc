// The two QEMU baselines of `vandra bench migrate`, driven from this command over QMP (typed
// commands: vandra/qmp/commands.h; progress and the downtime plan from vandra's own libraries),
// with QEMU's own TCP streams over the emulated WAN:
//
//   source (dc)                                   target (cloud-eu, -incoming defer -S)
//                        <- t0: target QEMU started, nbd-server-start 10.255.0.2:10809,
//                           block-export-add per disk, [tuned: multifd caps/params],
//                           migrate-incoming tcp:10.255.0.2:4444
//   qemu:  blockdev-add nbd + blockdev-mirror, disk by disk
//   tuned: blockdev-add nbd for every disk, then the mirrors
//   wait until every mirror is ready
//   [tuned: xbzrle, auto-converge, multifd zstd x N, downtime limit planned as vandra's]
//   migrate tcp:... ; [tuned: raise the limit as vandra's engine does] ; completed
//   block-job-cancel (the mirrors finish what the paused source has left)
//                                                 completed -> nbd-server-stop, cont: t1
//
// "qemu" is plain QEMU with its defaults, the way libvirt drives it; "qemu-tuned" is the
// best QEMU 7.2 alone can do on the same link (docs/benchmarks.md).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>

#include "bench_internal.h"
#include "cli_support.h"
#include "vandra/common/subprocess.h"
#include "vandra/migration/qemu_migration.h"
#include "vandra/orchestrator/downtime_plan.h"
#include "vandra/ovf/inspect.h"
#include "vandra/qemu/cmdline_builder.h"
#include "vandra/qemu/names.h"
#include "vandra/qmp/commands.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::cli::bench {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
namespace bq = qmp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr uint16_t kNbdPort = 10809;
constexpr uint16_t kMigrationPort = 4444;

// A QEMU of the run: its folder, pid file and monitor.
struct RunQemu {
  std::string dir;
  qmp::QmpClientPtr qmp;
  pid_t pid() const {
    std::ifstream in(dir + "/qemu.pid");
    pid_t p = 0;
    return in >> p && p > 0 ? p : 0;
  }
  void kill() {
    if (qmp) {
      qmp->close();
      qmp.reset();
    }
    if (const pid_t p = pid(); p > 0) {
      ::kill(p, SIGKILL);  // the pid QEMU wrote for this run, nothing found by name
      for (int i = 0; i < 200 && ::kill(p, 0) == 0; ++i) {
        ::usleep(20000);
      }
    }
  }
  ~RunQemu() {
    kill();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

Result<void> launch(RunQemu& q, const ovf::VirtualSystemSpec& vs,
                    const std::map<std::string, std::string>& disks, const std::string& netns,
                    const std::string& tap, bool incoming) {
  qemu::QemuRunConfig rc;
  rc.accel = "tcg";
  const qemu::RunFiles files = qemu::runFiles(q.dir);
  rc.qmp_socket = files.qmp_socket;
  rc.qmp_event_socket = files.event_socket;
  rc.serial_log = files.serial_log;
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

// The link's round trip as the source sees it: the shortest of three TCP handshakes with
// the target's NBD server (vandra plans from its tunnel's measured RTT the same way).
Result<std::chrono::microseconds> measureRtt(const testbed::TestbedInfo& tb) {
  std::optional<std::chrono::microseconds> best;
  for (int i = 0; i < 3; ++i) {
    VANDRA_TRY_ASSIGN(auto s, testbed::socketInNetns(tb.site("dc")->netns, AF_INET, SOCK_STREAM));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(kNbdPort);
    ::inet_pton(AF_INET, tb.site("cloud-eu")->wanTo("dc")->address.c_str(), &sa.sin_addr);
    const auto t = Clock::now();
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      return fail(Error::fromErrno("Cannot reach the target's NBD server"));
    }
    const auto d = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t);
    best = best ? std::min(*best, d) : d;
  }
  return *best;
}

json parametersJson(const bq::MigrationParameters& p) {
  json j = json::object();
  auto put = [&](const char* k, const auto& v) {
    if (v) {
      j[k] = *v;
    }
  };
  put("downtime-limit", p.downtime_limit_ms);
  put("max-bandwidth", p.max_bandwidth);
  put("xbzrle-cache-size", p.xbzrle_cache_size);
  put("multifd-channels", p.multifd_channels);
  put("multifd-zstd-level", p.multifd_zstd_level);
  if (p.multifd_compression) {
    j["multifd-compression"] = bq::toString(*p.multifd_compression);
  }
  return j;
}

}  // namespace

Result<MigrateRun> runQemu(const testbed::TestbedInfo& tb, const std::string& ova,
                           const std::string& work, const BenchMigrateOptions& o, int n,
                           bool tuned) {
  MigrateRun r;
  r.system = tuned ? "qemu-tuned" : "qemu";
  r.profile = o.profile;
  const std::string tag = (tuned ? "t" : "q") + std::to_string(n);
  RunQemu src{work + "/src-" + tag, nullptr};
  RunQemu dst{work + "/dst-" + tag, nullptr};
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
  const std::string tap = (tuned ? "vbt" : "vbq") + std::to_string(n % 1000);
  VANDRA_TRY(launch(src, vs, src_disks, tb.site("dc")->netns, tap, false));
  if (!tuned) {  // QEMU's defaults, as they are on this QEMU (docs/benchmarks.md)
    VANDRA_TRY_ASSIGN(const auto defaults, bq::queryParameters(*src.qmp));
    r.detail["qemu_defaults"] = parametersJson(defaults);
  }
  VANDRA_TRY_ASSIGN(auto conn, startWorkload(tb, o));
  VANDRA_TRY_ASSIGN(auto probe, testbed::SessionProbe::start(tb.client_netns, kGuestIp, 7000, 10ms,
                                                             Clock::now() + 30s));
  const auto probing = Clock::now();
  MachineryCpu cpu(tb);
  const uint64_t wan0 = wanBytes(tb);
  const uint64_t retrans0 = retransmittedSegments(tb);
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::seconds(o.max_total_s);

  // The target at cloud-eu: same devices, empty disks, exports on its WAN address.
  VANDRA_TRY(launch(dst, vs, dst_disks, tb.site("cloud-eu")->netns, tap, true));
  const bq::InetAddress nbd{tb.site("cloud-eu")->wanTo("dc")->address, kNbdPort};
  const bq::InetAddress mig{tb.site("cloud-eu")->wanTo("dc")->address, kMigrationPort};
  VANDRA_TRY(bq::nbdServerStart(*dst.qmp, nbd));
  VANDRA_TRY_ASSIGN(const auto disks, qemu::diskNames(vs.disks));
  for (const auto& d : disks) {
    VANDRA_TRY(bq::blockExportAddNbd(*dst.qmp, d.format_node));
  }
  bq::MigrationParameters multifd;
  if (tuned) {
    multifd.multifd_channels = static_cast<uint32_t>(o.multifd_channels);
    multifd.multifd_compression = bq::MultifdCompression::Zstd;
    VANDRA_TRY(bq::setCapabilities(*dst.qmp, {{bq::MigrationCapability::Multifd, true}}));
    VANDRA_TRY(bq::setParameters(*dst.qmp, multifd));
  }
  VANDRA_TRY(bq::migrateIncoming(*dst.qmp, mig));

  // The source's downtime limit, planned as vandra plans it (downtime_plan.h): the SLA's
  // budget less the switchover's round trips on its path; 100 ms first, raised while not
  // converging.
  migration::SourceMigration plan_state;
  if (tuned) {
    VANDRA_TRY_ASSIGN(const auto rtt, measureRtt(tb));
    std::optional<uint64_t> budget;
    if (vs.sla && vs.sla->downtime_budget_ms) {
      budget = *vs.sla->downtime_budget_ms;
    }
    // Plain QEMU's path: its NBD flushes cross the WAN (no target agent hides them).
    const auto plan = orchestrator::planDowntime(budget, std::nullopt, rtt,
                                                 orchestrator::switchoverRoundTrips(false, false));
    plan_state.downtime_limit_ms = plan.initial_limit_ms;
    plan_state.max_downtime_limit_ms = plan.max_limit_ms;
    plan_state.auto_converge = true;
    r.detail["downtime_plan"] = {{"rtt_ms", static_cast<double>(rtt.count()) / 1000.0},
                                 {"initial_limit_ms", plan.initial_limit_ms},
                                 {"max_limit_ms", plan.max_limit_ms}};
  }

  // Mirrors: one NBD client node and one blockdev-mirror per disk, default copy mode. Tuned:
  // every NBD node first (blockdev-add holds QEMU's main loop for the negotiation's round
  // trips; started after a mirror it would queue behind that mirror's data).
  // The NBD client nodes and jobs get the engine's names (vandra/migration/qemu_migration.h).
  for (const auto& d : disks) {
    const std::string client = migration::nbdClientNode(d.format_node);
    VANDRA_TRY(bq::blockdevAddNbd(*src.qmp, client, nbd, d.format_node));
    if (!tuned) {
      VANDRA_TRY(bq::blockdevMirror(*src.qmp, migration::mirrorJobId(d.format_node), d.format_node,
                                    client));
    }
  }
  if (tuned) {
    for (const auto& d : disks) {
      VANDRA_TRY(bq::blockdevMirror(*src.qmp, migration::mirrorJobId(d.format_node), d.format_node,
                                    migration::nbdClientNode(d.format_node)));
    }
  }
  r.connections = 1 + static_cast<int>(vs.disks.size()) + (tuned ? o.multifd_channels : 0);
  // Polling as a script would (QMP's events would do too; the interval is far below the
  // migration's seconds).
  for (;;) {
    VANDRA_TRY_ASSIGN(const auto jobs, bq::queryBlockJobs(*src.qmp));
    const auto ready = std::count_if(jobs.begin(), jobs.end(), [](auto& j) { return j.ready; });
    if (static_cast<size_t>(ready) == vs.disks.size()) {
      break;
    }
    if (Clock::now() > deadline) {
      return fail(ErrorCode::Timeout, "Mirrors not ready");
    }
    std::this_thread::sleep_for(100ms);
  }
  const double mirrors_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (tuned) {
    VANDRA_TRY(bq::setCapabilities(*src.qmp, {{bq::MigrationCapability::Multifd, true},
                                              {bq::MigrationCapability::Xbzrle, true},
                                              {bq::MigrationCapability::AutoConverge, true}}));
    bq::MigrationParameters p = multifd;
    p.downtime_limit_ms = plan_state.downtime_limit_ms;
    p.max_bandwidth = 0;  // no rate limit (vandra's engine sets the same)
    // The XBZRLE cache vandra uses: an eighth of the guest's RAM, 16..512 MiB.
    p.xbzrle_cache_size =
        std::clamp<uint64_t>((vs.memory_mib << 20) / 8, 16ULL << 20, 512ULL << 20);
    VANDRA_TRY(bq::setParameters(*src.qmp, p));
    VANDRA_TRY_ASSIGN(const auto now, bq::queryParameters(*src.qmp));
    r.detail["parameters"] = parametersJson(now);
  }
  VANDRA_TRY(bq::migrate(*src.qmp, mig));
  json raised = json::array();
  migration::MigrationProgress last;
  for (;;) {
    auto now = migration::progress(*src.qmp);
    if (!now && now.error().code == ErrorCode::Timeout && Clock::now() < deadline) {
      // QEMU 7.2 holds its main loop while its migration thread sends the last copy after
      // stopping the guest; on a long, thin link that outlasts query-migrate's 5 s. The
      // late answer is dropped by the client: ask again.
      continue;
    }
    VANDRA_TRY_ASSIGN(last, std::move(now));
    if (last.status == "completed") {
      break;
    }
    if (last.status == "failed" || last.status == "cancelled") {
      return fail(ErrorCode::Io, "QEMU's migration " + last.status + ": " + last.error_desc);
    }
    if (tuned && last.status == "active") {
      const auto v = migration::judgePrecopy(plan_state, last);
      if (v.raise_to) {
        bq::MigrationParameters p;
        p.downtime_limit_ms = *v.raise_to;
        VANDRA_TRY(bq::setParameters(*src.qmp, p));
        plan_state.downtime_limit_ms = *v.raise_to;
        raised.push_back(*v.raise_to);
      }
      if (v.judged) {
        plan_state.limit_raised_at_sync = last.dirty_sync_count;
      }
    }
    if (Clock::now() > deadline) {
      (void)bq::migrateCancel(*src.qmp);
      return fail(ErrorCode::Timeout, "QEMU's migration did not complete in " +
                                          std::to_string(o.max_total_s) +
                                          " s (RAM pre-copy never converged)");
    }
    std::this_thread::sleep_for(20ms);
  }
  // The source is paused now (postmigrate): the mirrors finish what is left, then the
  // target drops its exports and runs.
  for (const auto& d : disks) {
    VANDRA_TRY(bq::blockJobCancel(*src.qmp, migration::mirrorJobId(d.format_node)));
  }
  for (;;) {
    VANDRA_TRY_ASSIGN(const auto jobs, bq::queryBlockJobs(*src.qmp));
    if (jobs.empty()) {
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  for (;;) {
    VANDRA_TRY_ASSIGN(const auto in, migration::progress(*dst.qmp));
    if (in.status == "completed") {
      break;
    }
    if (in.status == "failed" || Clock::now() > deadline) {
      return fail(ErrorCode::Io, "The target's incoming migration: " + in.status);
    }
    std::this_thread::sleep_for(5ms);
  }
  VANDRA_TRY(bq::nbdServerStop(*dst.qmp));
  VANDRA_TRY(bq::cont(*dst.qmp));
  r.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
  r.downtime_ms = last.downtime_ms.value_or(0);
  r.detail["ram_bytes"] = last.ram_transferred;
  r.detail["ram_total_ms"] = last.total_time_ms;
  r.detail["mirrors_s"] = mirrors_s;
  if (tuned) {
    r.detail["raised_limits"] = raised;
    r.detail["cpu_throttle_pct_at_end"] = last.cpu_throttle_percentage;
  }
  r.wan_bytes = wanBytes(tb) - wan0;
  r.tcp_retransmitted = retransmittedSegments(tb) - retrans0;
  cpu.sample();  // the source's last CPU, before it goes
  src.kill();    // the source ends once the target runs, as after any migration
  r.cpu_s = cpu.stop();
  finish(r, *probe, conn, o, t0 - probing);
  return r;
}

}  // namespace vandra::cli::bench
