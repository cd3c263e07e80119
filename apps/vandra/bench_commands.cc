// `vandra bench boot`: time from importing the test guest's OVA to its service answering a
// client, through the site agent (system "vandra") and, side by side in the same testbed, by
// hand the way an operator without vandra would do it (system "qemu": untar the OVA,
// qemu-img convert each disk to qcow2, start qemu-system-x86_64 on a tap on the same bridge).
// Both boot the same disk with the same device model (the same pure command-line builder).
// One JSON object per run with --json; a summary table otherwise.
#include "bench_commands.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "bench_link.h"
#include "bench_migrate.h"
#include "bench_soak.h"
#include "cli_support.h"
#include "vandra/agent/agent_client.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/inspect.h"
#include "vandra/qemu/cmdline_builder.h"
#include "vandra/qemu/names.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/testbed.h"

namespace vandra::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kGuestIp = "10.10.0.10";

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct BootRun {
  std::string system;
  bool ok = false;
  std::string error;
  double import_s = 0;   // package -> disks ready
  double start_s = 0;    // start request -> QEMU running
  double service_s = 0;  // QEMU running -> the guest's service answers a client at dc
  double total_s = 0;    // import request -> service answers
};

json toJson(const BootRun& r) {
  json j = {{"system", r.system},   {"result", r.ok ? "ok" : r.error}, {"import_s", r.import_s},
            {"start_s", r.start_s}, {"service_s", r.service_s},        {"total_s", r.total_s}};
  return j;
}

// The guest answers PING from the client namespace (ARP cache flushed first: the previous run's
// VM had another MAC on the same address).
Result<void> waitService(const testbed::TestbedInfo& tb) {
  VANDRA_TRY(runCapture({"ip", "-n", tb.client_netns, "neigh", "flush", "all"}));
  VANDRA_TRY_ASSIGN(auto conn,
                    testbed::GuestConnection::connect(tb.client_netns, kGuestIp, 7000,
                                                      Clock::now() + std::chrono::seconds(300)));
  VANDRA_TRY(conn.ping("bench", std::chrono::seconds(30)));
  return {};
}

Result<BootRun> runVandra(const testbed::TestbedInfo& tb, agent::AgentClient& dc,
                          const std::string& ova, int n) {
  BootRun r;
  r.system = "vandra";
  const std::string id = "bench-" + std::to_string(n);
  auto cleanup = defer([&] {
    (void)dc.post("/v1/vms/" + id + "/kill", json::object());
    (void)dc.del("/v1/vms/" + id);
  });
  // Uploaded once, outside the timing (later runs find it on the agent); the import reads the
  // upload.
  const std::string upload = std::filesystem::path(ova).filename().string();
  VANDRA_TRY(dc.uploadPackage(ova, upload));
  const auto t0 = Clock::now();
  VANDRA_TRY(dc.post("/v1/vms", {{"id", id}, {"upload", upload}}));
  r.import_s = since(t0);
  const auto t1 = Clock::now();
  VANDRA_TRY(dc.post("/v1/vms/" + id + "/start", json::object()));
  r.start_s = since(t1);
  const auto t2 = Clock::now();
  VANDRA_TRY(waitService(tb));
  r.service_s = since(t2);
  r.total_s = since(t0);
  r.ok = true;
  return r;
}

Result<BootRun> runPlainQemu(const testbed::TestbedInfo& tb, const std::string& ova,
                             const std::string& work, int n) {
  BootRun r;
  r.system = "qemu";
  const std::string dir = work + "/qemu-" + std::to_string(n);
  const std::string pidfile = dir + "/qemu.pid";
  auto cleanup = defer([&] {
    std::ifstream in(pidfile);
    pid_t pid = 0;
    if (in >> pid && pid > 0) {
      ::kill(pid, SIGKILL);  // the pid QEMU wrote for this run, nothing found by name
      for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) {
        ::usleep(20000);
      }
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
  });
  const auto t0 = Clock::now();
  fs::create_directories(dir);
  VANDRA_TRY(runCapture({"tar", "-xf", ova, "-C", dir}));
  VANDRA_TRY_ASSIGN(const auto insp,
                    ovf::inspectPackage(dir + "/" +
                                            [&] {
                                              for (const auto& e : fs::directory_iterator(dir)) {
                                                if (e.path().extension() == ".ovf") {
                                                  return e.path().filename().string();
                                                }
                                              }
                                              return std::string("missing.ovf");
                                            }(),
                                        {}));
  const auto& vs = insp.spec.virtual_systems.at(0);
  qemu::QemuRunConfig rc;
  rc.accel = "tcg";
  const qemu::RunFiles files = qemu::runFiles(dir);
  rc.qmp_socket = files.qmp_socket;
  rc.qmp_event_socket = files.event_socket;
  rc.serial_log = files.serial_log;
  rc.pidfile = pidfile;
  for (const auto& d : vs.disks) {
    if (!d.file) {
      return fail(ErrorCode::Unsupported, "Disk " + d.id + " has no file");
    }
    const std::string out = dir + "/" + d.id + ".qcow2";
    VANDRA_TRY(runCapture({"qemu-img", "convert", "-O", "qcow2", dir + "/" + *d.file, out}));
    rc.disk_overlays[d.id] = out;
  }
  r.import_s = since(t0);
  const std::string tap = "vbq" + std::to_string(n % 1000);
  rc.nics.push_back({tap, std::nullopt});
  VANDRA_TRY_ASSIGN(auto argv, qemu::buildCommandLine(vs, rc));
  argv.insert(argv.begin(), {"ip", "netns", "exec", tb.site("dc")->netns});
  argv.push_back("-daemonize");
  const auto t1 = Clock::now();
  VANDRA_TRY(runCapture(argv));
  VANDRA_TRY(
      runCapture({"ip", "-n", tb.site("dc")->netns, "link", "set", tap, "master", "br0", "up"}));
  r.start_s = since(t1);
  const auto t2 = Clock::now();
  VANDRA_TRY(waitService(tb));
  r.service_s = since(t2);
  r.total_s = since(t0);
  r.ok = true;
  return r;
}

struct BootOptions {
  std::string guest_dir;
  int runs = 3;
  bool json = false;
};

int benchBoot(const BootOptions& o) {
  const std::string ova = fs::absolute(fs::path(o.guest_dir) / "test-guest.ova").string();
  if (!fs::exists(ova)) {
    return reportError("bench boot",
                       Error(ErrorCode::NotFound, "No test guest at " + ova + " (guest/build.sh)"));
  }
  std::string work = (fs::temp_directory_path() / "vandra-bench-XXXXXX").string();
  if (::mkdtemp(work.data()) == nullptr) {
    return reportError("bench boot", Error::fromErrno("Cannot create a work folder"));
  }
  auto rm = defer([&] {
    std::error_code ec;
    fs::remove_all(work, ec);
  });
  testbed::TestbedOptions to;
  to.profile = "lan";
  to.state_dir = work + "/testbed";
  to.agents = true;
  to.sites = {"dc", "cloud-eu"};  // one link is what it measures
  to.controller = false;
  auto tb = testbed::up(to);
  if (!tb) {
    return reportError("bench boot", tb.error());
  }
  auto down = defer([&] { (void)testbed::down(to.state_dir); });
  agent::AgentEndpoint ep{.host = "",
                          .port = 0,
                          .ca = tb->site("dc")->ca_cert,
                          .cert = tb->site("dc")->operator_cert,
                          .key = tb->site("dc")->operator_key,
                          .netns = tb->site("dc")->netns};
  (void)agent::parseHostPort(tb->site("dc")->agent_endpoint, ep);
  agent::AgentClient dc(ep);
  std::vector<BootRun> runs;
  for (int i = 0; i < o.runs; ++i) {
    // Alternate which system goes first so neither always runs on a warmer cache.
    for (int k = 0; k < 2; ++k) {
      const bool vandra_turn = (i + k) % 2 == 0;
      auto r = vandra_turn ? runVandra(*tb, dc, ova, i) : runPlainQemu(*tb, ova, work, i);
      BootRun br =
          r ? *r
            : BootRun{vandra_turn ? "vandra" : "qemu", false, r.error().describe(), 0, 0, 0, 0};
      if (o.json) {
        std::cout << toJson(br).dump() << "\n" << std::flush;
      }
      runs.push_back(br);
    }
  }
  bool all_ok = true;
  if (!o.json) {
    std::printf("%-7s %-4s %9s %9s %10s %9s\n", "system", "run", "import_s", "start_s", "service_s",
                "total_s");
    for (size_t i = 0; i < runs.size(); ++i) {
      const auto& r = runs[i];
      if (!r.ok) {
        std::printf("%-7s %-4zu FAILED: %s\n", r.system.c_str(), i / 2, r.error.c_str());
        continue;
      }
      std::printf("%-7s %-4zu %9.2f %9.2f %10.2f %9.2f\n", r.system.c_str(), i / 2, r.import_s,
                  r.start_s, r.service_s, r.total_s);
    }
  }
  for (const auto& r : runs) {
    all_ok = all_ok && r.ok;
  }
  return all_ok ? 0 : 1;
}

}  // namespace

void addBenchCommands(CLI::App& app, int& exit_code) {
  auto* bench =
      app.add_subcommand("bench", "Benchmarks that print numbers (root: they use the testbed)");
  bench->require_subcommand(1);
  static BootOptions bo;
  auto* boot = bench->add_subcommand(
      "boot", "Import of the test OVA to its service answering: vandra vs. by hand");
  boot->add_option("--guest-dir", bo.guest_dir, "Folder guest/build.sh filled")->required();
  boot->add_option("--runs", bo.runs, "Runs of each system")->check(CLI::Range(1, 50));
  boot->add_flag("--json", bo.json, "One JSON object per run");
  boot->callback([&] { exit_code = benchBoot(bo); });
  static BenchMigrateOptions mo;
  auto* mig = bench->add_subcommand(
      "migrate",
      "Live migration dc -> cloud-eu: vandra vs. plain QEMU vs. tuned QEMU over the same link");
  mig->add_option(
         "--guest-dir", mo.guest_dir,
         "Folder guest/build.sh filled (benchmark guest: --memory-mib 1024 --disk-mib 1024)")
      ->required();
  mig->add_option("--profile", mo.profile, "WAN profile")
      ->check(CLI::IsMember({"lan", "metro", "wan", "ldvm", "lossy"}));
  mig->add_option("--runs", mo.runs, "Runs of each system")->check(CLI::Range(1, 20));
  mig->add_option("--disk-data-mib", mo.disk_data_mib,
                  "Data written to the guest's data disk first")
      ->check(CLI::Range(1, 4096));
  mig->add_option("--wss-mib", mo.wss_mib, "Working set the guest dirties")
      ->check(CLI::Range(1, 4096));
  mig->add_option("--dirty-mbps", mo.dirty_mbps, "Rate it dirties it at (MB/s)")
      ->check(CLI::Range(0, 10000));
  mig->add_option("--tunnel-connections", mo.tunnel_connections,
                  "TCP connections of vandra's site tunnel")
      ->check(CLI::Range(1, 16));
  mig->add_option("--systems", mo.systems,
                  "Systems to run, alternating (default: qemu qemu-tuned vandra; "
                  "vandra-seeded: exported at dc and seeded at cloud-eu first, see --seed-age-s; "
                  "vandra-norefs: without content references, ADR 0030; vandra-postcopy: the "
                  "guest's SLA allows post-copy, ADR 0032)")
      ->check(CLI::IsMember(
          {"vandra", "vandra-seeded", "vandra-norefs", "vandra-postcopy", "qemu", "qemu-tuned"}))
      ->delimiter(',');
  mig->add_option("--congestion", mo.congestion,
                  "TCP congestion control of the whole testbed, every system (default: bbr)");
  mig->add_option("--tunnel-congestion", mo.tunnel_congestion,
                  "vandra's tunnel only (experiments, e.g. auto); default: the testbed's");
  mig->add_option("--tunnel-window-mib", mo.tunnel_window_mib,
                  "vandra's tunnel only (experiments): receive window per stream; default: "
                  "vandrad's")
      ->check(CLI::Range(1, 64));
  mig->add_option("--tunnel-window", mo.tunnel_window,
                  "vandra's tunnel only (experiments): fixed or follow (vandrad --tunnel-window)")
      ->check(CLI::IsMember({"fixed", "follow"}));
  mig->add_option("--multifd-channels", mo.multifd_channels, "qemu-tuned's multifd channels")
      ->check(CLI::Range(1, 16));
  mig->add_option("--max-total-s", mo.max_total_s, "Any system not done by then: a failed run")
      ->check(CLI::Range(10, 86400));
  mig->add_option("--content", mo.content,
                  "random: a pseudo-random disk pattern (--disk-data-mib); real: the real files of "
                  "a guest built with guest/build.sh --real-files-mib, read into its page cache")
      ->check(CLI::IsMember({"random", "real"}))
      ->capture_default_str();
  mig->add_option("--return-after-s", mo.return_after_s,
                  "vandra also moves the guest back this many seconds after its move out (a row "
                  "'vandra-back'): a return trip sends only what changed")
      ->check(CLI::Range(0, 3600));
  mig->add_option("--seed-age-s", mo.seed_age_s,
                  "vandra-seeded: how long the guest runs (and writes) at dc between its export "
                  "and its move")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  mig->add_flag("--json", mo.json, "One JSON object per run");
  mig->callback([&] { exit_code = benchMigrate(mo); });
  static BenchSoakOptions so;
  auto* soak = bench->add_subcommand(
      "soak",
      "One guest moved dc <-> cloud-eu N times by vandra, its data checked after every "
      "move; fails if a move fails or an agent grows");
  soak->add_option("--guest-dir", so.guest_dir, "Folder guest/build.sh filled")->required();
  soak->add_option("--migrations", so.migrations, "Moves, alternating direction")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  soak->add_option("--profile", so.profile, "WAN profile")
      ->check(CLI::IsMember({"lan", "metro", "wan", "ldvm", "lossy"}))
      ->capture_default_str();
  soak->add_option("--disk-data-mib", so.disk_data_mib, "Disk pattern checked after every move")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  soak->add_option("--wss-mib", so.wss_mib, "Working set the guest dirties")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  soak->add_option("--dirty-mbps", so.dirty_mbps, "Rate it dirties it at (MB/s)")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
  soak->add_option("--between-s", so.between_s, "Seconds the guest runs at a site between moves")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  soak->add_option("--max-total-s", so.max_total_s, "A move not done by then has failed")
      ->check(CLI::Range(10, 86400))
      ->capture_default_str();
  soak->add_flag("--json", so.json, "One JSON object per move, then a summary");
  soak->callback([&] { exit_code = benchSoak(so); });
  static BenchLinkOptions lo;
  auto* link = bench->add_subcommand(
      "link",
      "One bulk sender dc -> cloud-eu: vandra's site tunnel vs. one TCP connection per "
      "congestion control, on the same emulated link");
  link->add_option("--profiles", lo.profiles, "WAN profiles, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  link->add_option("--systems", lo.systems, "tcp-cubic, tcp-bbr, vandra (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  link->add_option("--runs", lo.runs, "Runs of each system per profile")
      ->check(CLI::Range(1, 20))
      ->capture_default_str();
  link->add_option("--seconds", lo.seconds, "How long each system sends")
      ->check(CLI::Range(1, 120))
      ->capture_default_str();
  link->add_flag("--json", lo.json, "One JSON object per transfer");
  link->callback([&] { exit_code = benchLink(lo); });
}

}  // namespace vandra::cli
