// vandrad: the site agent. Serves the agent API (include/vandra/agent/http_api.h) over mutual
// TLS 1.3 with the site CA; state (registry, images) under --state-dir. Ends cleanly on
// SIGTERM/SIGINT. QEMU processes it starts are not its children's children: they keep running
// when the agent stops (a later agent re-attaches; see recovery.h).
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "vandra/agent/agent_client.h"
#include "vandra/agent/epoch_fence.h"
#include "vandra/agent/http_api.h"
#include "vandra/common/failpoint.h"
#include "vandra/common/subprocess.h"
#include "vandra/orchestrator/migration_api.h"
#include "vandra/orchestrator/migration_store.h"
#include "vandra/pki/https_server.h"
#include "vandra/pki/tls.h"
#include "vandra/qemu/cmdline_builder.h"

namespace {

constexpr size_t kServerThreads = 64;

uint64_t detectMemoryMib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    if (key == "MemTotal:") {
      return kib / 1024;
    }
    in.ignore(256, '\n');
  }
  return 0;
}

// KVM when /dev/kvm answers AND QEMU can really run a vCPU on it: some hosts (nested
// virtualisation) expose a /dev/kvm on which QEMU aborts setting up the vCPU's MSRs. So the
// probe starts QEMU once with -accel kvm -cpu host, paused, and quits it over QMP at once.
bool kvmUsable() {
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  const bool api = ::ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
  ::close(fd);
  if (!api) {
    return false;
  }
  // Fixed text only: no input reaches the shell.
  auto probe = vandra::runCapture(
      {"sh", "-c",
       "printf '{\"execute\":\"qmp_capabilities\"}\\n{\"execute\":\"quit\"}\\n' | "
       "timeout 30 qemu-system-x86_64 -machine q35,accel=kvm -cpu host -m 32 -nodefaults "
       "-no-user-config "
       "-display none -S -qmp stdio >/dev/null"});
  if (!probe) {
    std::cerr << "vandrad: /dev/kvm is present but QEMU cannot use it; using TCG ("
              << probe.error().describe().substr(0, 200) << ")\n";
  }
  return probe.has_value();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vandrad: the vandra site agent"};
  vandra::agent::AgentConfig cfg;
  vandra::pki::TlsIdentity tls;
  std::string listen = "127.0.0.1";
  int port = 8443;
  std::string port_file;
  uint64_t vcpus = std::thread::hardware_concurrency();
  uint64_t memory_mib = detectMemoryMib();
  uint64_t disk_gib = 0;
  uint64_t reserved_memory_mib = 512;
  app.add_option("--state-dir", cfg.state_dir, "Registry and image store")->required();
  app.add_option("--listen", listen, "Address to listen on");
  app.add_option("--port", port, "TCP port (0 = any free port; see --port-file)");
  app.add_option("--port-file", port_file, "Write the port here once listening");
  app.add_option("--tls-ca", tls.ca_path, "Site CA: clients must present a certificate it issued")
      ->required();
  app.add_option("--tls-cert", tls.cert_path, "Agent certificate")->required();
  app.add_option("--tls-key", tls.key_path, "Agent key")->required();
  app.add_option("--trust-store", cfg.trust_store, "CA for OVF package signatures");
  app.add_option("--capacity-vcpus", vcpus, "vCPUs the agent may hand out (default: host cores)");
  app.add_option("--capacity-memory-mib", memory_mib,
                 "Memory the agent may hand out (default: host)");
  app.add_option("--capacity-disk-gib", disk_gib,
                 "Disk for VM images (default: free space of --state-dir)");
  app.add_option("--reserved-memory-mib", reserved_memory_mib, "Memory kept for the host");
  app.add_option("--bridge", cfg.bridge, "Site bridge the VMs' taps join");
  app.add_option("--import-dir", cfg.import_dirs,
                 "A folder import requests may name packages in (repeatable; "
                 "<state-dir>/uploads always is one)")
      ->check(CLI::ExistingDirectory);
  double retain_hours = 24;
  app.add_option("--retain-departed-hours", retain_hours,
                 "How long a VM's disks stay here after it moved away, so that a move back "
                 "sends only what changed (0: removed at once)")
      ->check(CLI::Range(0.0, 24.0 * 365));
  double keep_export_hours = 24 * 7;
  app.add_option("--keep-exports-hours", keep_export_hours,
                 "How long an export's frozen disks, or a seed no VM uses, stay here (a live "
                 "move to a site holding the export sends only what changed since)")
      ->check(CLI::Range(0.0, 24.0 * 366));
  uint64_t max_upload_mib = vandra::agent::kDefaultMaxUploadBytes >> 20;
  app.add_option("--max-upload-mib", max_upload_mib, "Largest package upload (MiB)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30));
  int stop_timeout_s = 30;
  app.add_option("--stop-timeout", stop_timeout_s,
                 "Seconds to wait for an ACPI shutdown before forcing");
  std::string accel_opt = "auto";
  app.add_option("--accel", accel_opt, "kvm, tcg or auto (kvm when /dev/kvm works)")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}));
  // Live migration between sites (migration_service.h): on when --site is given.
  vandra::orchestrator::MigrationServiceConfig mig;
  std::string tunnel_listen;
  std::vector<std::string> peer_specs;
  app.add_option("--site", mig.site,
                 "This site's name: enables live migration over the site tunnel");
  app.add_option("--jurisdiction", mig.jurisdictions,
                 "Where this site is (checked against a VM's SLA): a label such as EU; "
                 "repeat it or give a comma list for several (EU,SE)")
      ->delimiter(',');
  app.add_option("--tunnel-listen", tunnel_listen,
                 "HOST:PORT the site tunnel listens on (port 0: any)");
  app.add_option("--tunnel-cert", mig.tunnel.cert_path, "Site certificate (SAN DNS = --site)");
  app.add_option("--tunnel-key", mig.tunnel.key_path, "Its key");
  app.add_option("--tunnel-ca", mig.tunnel.ca_bundle_path,
                 "CAs of the peer sites this site trusts");
  app.add_option(
      "--tunnel-crl", mig.tunnel.crl_path,
      "CRLs of those CAs (PEM; vandra pki revoke writes one): revoked peers are refused");
  app.add_option("--tunnel-connections", mig.connections,
                 "TCP connections per tunnel this site dials")
      ->check(CLI::Range(1, 16));
  auto* congestion = app.add_option(
      "--tunnel-congestion", mig.tunnel.congestion_control,
      "TCP congestion control of the tunnel's connections (default auto: cubic, bbr on a "
      "connection that loses without a queue; \"\": the host's)");
  std::string tunnel_compression = "auto";
  app.add_option("--tunnel-compression", tunnel_compression,
                 "Compression of the migration and NBD streams this site sends: auto (zstd, "
                 "level adapted to the link and the CPU; content that does not compress goes "
                 "as it is) or off")
      ->check(CLI::IsMember({"auto", "off"}));
  double tunnel_mbps = 0;
  // A stream moves at most its window per round trip: QEMU's migration stream is one stream,
  // so the window must cover the link's bandwidth-delay product (1 Gbit/s x 50 ms = 6.25 MB;
  // 4 MiB held it to 60 MB/s on the wan profile, docs/benchmarks.md).
  uint32_t tunnel_window_mib = 16;
  app.add_option("--tunnel-window-mib", tunnel_window_mib, "Receive window per tunnel stream (MiB)")
      ->check(CLI::Range(1, 1024));
  // follow by measurement (docs/adr/0028-windows-that-follow-the-reader.md): a shorter
  // pause both ways on wan, the same total time.
  std::string tunnel_window = "follow";
  app.add_option("--tunnel-window", tunnel_window,
                 "follow: each stream grants what its reader takes in a few round trips (fewer "
                 "bytes queued at a switchover); fixed: its whole --tunnel-window-mib")
      ->check(CLI::IsMember({"fixed", "follow"}))
      ->capture_default_str();
  std::string content_refs = "on";
  app.add_option("--content-refs", content_refs,
                 "on: RAM pages that are blocks of a base image the target holds too go as "
                 "references to them (checked by SHA-256 there; ADR 0030); off: as bytes")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--tunnel-bandwidth-mbps", tunnel_mbps,
                 "Cap of each site tunnel (all its migrations, Mbit/s; 0: none)");
  app.add_option("--peer", peer_specs,
                 "A peer site: NAME=HOST:PORT[,mbps=N] (repeatable; mbps: this site pair's cap)");
  app.add_option("--network", mig.networks,
                 "A network name the site bridge serves (repeatable; none: any)");
  int64_t confirm_timeout_s = mig.confirm_timeout.count();
  app.add_option("--confirm-timeout-s", confirm_timeout_s,
                 "As a target, close a migration the source has not confirmed after this long (the "
                 "guest runs here)")
      ->check(CLI::Range(int64_t{1}, int64_t{7 * 24 * 3600}));
  std::string tunnel_port_file;
  app.add_option("--tunnel-port-file", tunnel_port_file,
                 "Write the tunnel port here once listening");
  std::vector<std::string> failpoints;
  app.add_option(
         "--failpoint", failpoints,
         "Fault tests only: die (SIGKILL) on reaching this point of a migration (repeatable)")
      ->check(CLI::IsMember(vandra::knownFailpoints()));
  CLI11_PARSE(app, argc, argv);
  cfg.max_upload_bytes = max_upload_mib << 20;
  cfg.retain_departed = std::chrono::seconds(static_cast<int64_t>(retain_hours * 3600));
  cfg.keep_exports = std::chrono::seconds(static_cast<int64_t>(keep_export_hours * 3600));
  // A site trusts its peer sites' exports (signed with their site certificates) and signs
  // its own with its site certificate (ADR 0029).
  if (!mig.tunnel.ca_bundle_path.empty()) {
    cfg.extra_trust.push_back(std::filesystem::absolute(mig.tunnel.ca_bundle_path).string());
  }
  cfg.sign_cert = mig.tunnel.cert_path;
  cfg.sign_key = mig.tunnel.key_path;
  for (auto& d : cfg.import_dirs) {
    d = std::filesystem::absolute(d).string();
  }
  for (const auto& f : failpoints) {
    vandra::armFailpoint(f);
  }

  if (disk_gib == 0) {
    struct statvfs fs {};
    std::filesystem::create_directories(cfg.state_dir);
    if (::statvfs(cfg.state_dir.c_str(), &fs) == 0) {
      disk_gib = (static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize) >> 30;
    }
  }
  const std::string ovmf = "/usr/share/OVMF/OVMF_CODE.fd";
  cfg.capacity.total = {vcpus, memory_mib, disk_gib << 30};
  cfg.capacity.reserved = {0, reserved_memory_mib, 0};
  cfg.stop_timeout = std::chrono::seconds(stop_timeout_s);
  const std::string use_accel = accel_opt == "auto" ? (kvmUsable() ? "kvm" : "tcg") : accel_opt;
  cfg.command_line = [use_accel, ovmf](const vandra::ovf::VirtualSystemSpec& vs,
                                       const std::vector<vandra::agent::VmDisk>& disks,
                                       const vandra::agent::VmRunPaths& paths) {
    vandra::qemu::QemuRunConfig rc;
    rc.accel = use_accel;
    rc.cpu = use_accel == "kvm" ? "host" : "qemu64";
    rc.qmp_socket = paths.qmp_socket;
    rc.qmp_event_socket = paths.event_socket;
    rc.serial_log = paths.serial_log;
    rc.pidfile = paths.dir + "/qemu.pid";
    for (const auto& d : disks) {
      rc.disk_overlays[d.disk_id] = d.path;
    }
    for (const auto& tap : paths.taps) {
      rc.nics.push_back({tap, std::nullopt});
    }
    rc.start_paused =
        !vandra::qemu::startupQmpCommands(vs).empty();  // the agent sets them, then cont
    if (paths.incoming) {
      rc.incoming = "defer";   // migration target: waits for the stream, paused until the
      rc.start_paused = true;  // agent has removed its NBD exports
    }
    if (std::filesystem::exists(ovmf)) {
      rc.ovmf_code = ovmf;
    }
    return vandra::qemu::buildCommandLine(vs, rc);
  };
  auto service = vandra::agent::AgentService::open(cfg);
  if (!service) {
    std::cerr << "vandrad: " << service.error().describe() << "\n";
    return 1;
  }
  vandra::agent::AgentMetrics metrics;  // GET /metrics; outlives the server and the migrations
  vandra::orchestrator::MigrationStorePtr mig_store;
  std::unique_ptr<vandra::orchestrator::MigrationService> migrations;
  if (!mig.site.empty()) {
    for (const auto& p : peer_specs) {
      auto peer = vandra::orchestrator::parsePeerSpec(p);
      if (!peer) {
        std::cerr << "vandrad: " << peer.error().describe() << "\n";
        return 2;
      }
      mig.peers.push_back(*peer);
    }
    if (!tunnel_listen.empty()) {
      vandra::agent::AgentEndpoint ep;
      if (!vandra::agent::parseHostPort(tunnel_listen, ep)) {
        std::cerr << "vandrad: --tunnel-listen '" << tunnel_listen << "' is not HOST:PORT\n";
        return 2;
      }
      mig.listen_host = ep.host;
      mig.listen_port = static_cast<uint16_t>(ep.port);
    } else {
      mig.listen = false;
    }
    mig.run_dir = cfg.state_dir + "/run/m";
    mig.tunnel.bandwidth_bytes_per_s = static_cast<uint64_t>(tunnel_mbps * 1e6 / 8);
    mig.confirm_timeout = std::chrono::seconds(confirm_timeout_s);
    if (auto cc = vandra::tunnel::checkCongestionControl(mig.tunnel.congestion_control); !cc) {
      if (congestion->count() > 0) {
        std::cerr << "vandrad: --tunnel-congestion: " << cc.error().describe() << "\n";
        return 2;
      }
      std::cerr << "vandrad: " << cc.error().describe() << "; the tunnel uses the host's default\n";
      mig.tunnel.congestion_control.clear();
    }
    mig.tunnel.receive_window = tunnel_window_mib << 20;
    mig.tunnel.window_follows_reader = tunnel_window == "follow";
    mig.tunnel.compression = *vandra::tunnel::parseCompression(tunnel_compression);
    mig.content_refs = content_refs == "on";
    mig.bridge = cfg.bridge;
    mig.cpu_model = use_accel == "kvm" ? "host" : "qemu64";
    mig.metrics = &metrics;
    auto st = vandra::orchestrator::openSqliteMigrationStore(cfg.state_dir + "/migrations.db");
    if (!st) {
      std::cerr << "vandrad: " << st.error().describe() << "\n";
      return 1;
    }
    mig_store = std::move(*st);
    // The tunnel listener binds now, or (its address not there: the WAN device down or
    // gone) keeps trying in the background: this agent serves its VMs either way.
    mig.on_listening = [tunnel_port_file, site = mig.site](uint16_t bound_port) {
      std::cerr << "vandrad: site " << site << ", site tunnel listening on port " << bound_port
                << "\n";
      if (!tunnel_port_file.empty()) {
        std::ofstream(tunnel_port_file + ".tmp") << bound_port << "\n";
        std::error_code ec;
        std::filesystem::rename(tunnel_port_file + ".tmp", tunnel_port_file, ec);
      }
    };
    auto ms = vandra::orchestrator::MigrationService::start(**service, *mig_store, mig);
    if (!ms) {
      std::cerr << "vandrad: migration service: " << ms.error().describe() << "\n";
      return 1;
    }
    migrations = std::move(*ms);
    if (auto ls = migrations->listenerStatus();
        ls && ls->state == vandra::tunnel::ListenerStatus::State::Retrying) {
      std::cerr << "vandrad: site " << mig.site << ": the site tunnel cannot listen yet ("
                << (ls->last_error ? ls->last_error->describe() : std::string("?"))
                << "); retrying in the background\n";
    }
    std::cerr << "vandrad: site " << mig.site << ", " << mig.peers.size() << " peer site(s)\n";
  }
  // Commands from a controller carry its leadership epoch: a deposed one is refused.
  auto fence = vandra::agent::EpochFence::open(cfg.state_dir + "/controller-epoch");
  if (!fence) {
    std::cerr << "vandrad: " << fence.error().describe() << "\n";
    return 1;
  }
  // Many operators and tools at once (docs/benchmarks.md, "Agent API and memory"): 64 workers,
  // long polls of /events hold one each (https_server.h says what else it sets).
  auto server = vandra::pki::makeHttpsServer(tls, kServerThreads);
  if (!server) {
    std::cerr << "vandrad: " << server.error().describe() << "\n";
    return 1;
  }
  vandra::agent::registerRoutes(*server->server, **service, &*fence, &metrics);
  if (migrations) {
    vandra::orchestrator::registerMigrationRoutes(*server->server, *migrations);
  }
  if (auto bound = vandra::pki::bindHttps(*server, listen, port); !bound) {
    std::cerr << "vandrad: " << bound.error().describe() << "\n";
    return 1;
  }
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << server->bound_port << "\n";
    std::filesystem::rename(port_file + ".tmp", port_file);
  }
  std::cerr << "vandrad: listening on " << listen << ":" << server->bound_port << " (mutual TLS)\n";
  auto* agent = service->get();
  // Long polls of /events answer now instead of holding the stop.
  vandra::pki::serveUntilSignal(*server, [agent] { agent->events().wakeAll(); });
  migrations.reset();  // running migrations roll back, tunnels close; before the agent goes
  return 0;
}
