// `vandra demo`: the main job, run end to end on this machine.
//   default     the whole story through the controller (demo_controller.cc);
//   --direct    one live migration straight between two agents, measured: the testbed comes up
//               (sites dc and cloud-eu, agents, emulated WAN), the test guest's OVA is
//               imported at dc through the agent API, started on QEMU, and moved live to
//               cloud-eu while a client at dc holds a TCP session with it;
//   --ovf-only  the package story, no root needed: a VM with a disk and an SLA is exported as
//               a signed OVA, verified against a CA, refused when tampered with, its SLA edited
//               in place (and re-signed), and imported to qcow2.
// Every step is checked; --json ends with one JSON object.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli_support.h"
#include "demo_controller.h"
#include "demo_steps.h"
#include "migrate_watch.h"
#include "migration_summary.h"
#include "ovf_commands.h"
#include "vandra/agent/agent_client.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/disk_image.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/ovf/writer.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/guest_workload.h"
#include "vandra/testbed/testbed.h"
#include "vandra/testbed/wan_emulator.h"

namespace vandra::cli {
namespace {

using nlohmann::json;
using namespace vandra::ovf;
namespace fs = std::filesystem;

// The guest's workload during the migration (the test guest has 256 MiB).
constexpr int kMemPatMib = 32;
constexpr int kDiskPatMib = 16;
constexpr int kDirtyMib = 32;
constexpr int kDirtyMbps = 20;

// The host device of the VM's first NIC, as its agent reports it (GET /v1/vms/{id}): the demo
// knows the sites only through their agents' API.
Result<std::string> firstTap(agent::AgentClient& agent, const std::string& vm) {
  VANDRA_TRY_ASSIGN(const json r, agent.get("/v1/vms/" + vm));
  if (!r.contains("taps") || !r["taps"].is_array() || r["taps"].empty() ||
      !r["taps"][0].is_string()) {
    return fail(ErrorCode::NotFound, "VM " + vm + " has no tap in its agent's record");
  }
  return r["taps"][0].get<std::string>();
}

VmSpec demoSpec() {
  VmSpec spec;
  VirtualSystemSpec vs;
  vs.id = "web1";
  vs.name = "web1";
  vs.vcpus = 1;
  vs.memory_mib = 256;
  vs.os = {.cim_id = 101, .family = "linux", .description = "other26xLinux64Guest"};
  vs.controllers.push_back({"scsi0", ControllerKind::Scsi, "virtio-scsi"});
  DiskSpec d;
  d.id = "disk1";
  d.capacity_bytes = 64ULL << 20;
  d.controller = "scsi0";
  d.format = "vmdk-stream";
  vs.disks.push_back(d);
  vs.nics.push_back(
      {.network = "lan", .model = "virtio", .mac = "52:54:00:12:34:56", .connected = true});
  Sla sla;
  sla.downtime_budget_ms = 500;
  sla.jurisdictions = {"EU"};
  sla.mobility = Mobility::OnRequest;
  vs.sla = sla;
  spec.virtual_systems.push_back(vs);
  spec.networks.push_back({"lan", "The site LAN"});
  return spec;
}

class Demo {
 public:
  Demo(bool as_json, std::string dir) : s_(as_json), dir_(std::move(dir)) {}

  int runOvf() {
    auto total_start = std::chrono::steady_clock::now();
    const std::string disk = dir_ + "/web1-disk.raw";
    const std::string ova = dir_ + "/web1.ova";
    const std::string ca_key = dir_ + "/ca.key", ca_crt = dir_ + "/ca.crt";
    const std::string key = dir_ + "/signer.key", csr = dir_ + "/signer.csr",
                      crt = dir_ + "/signer.crt";
    const VmSpec spec = demoSpec();

    bool ok = step("make disk image", [&]() -> Result<std::string> {
      VANDRA_TRY(runCapture({"qemu-img", "create", "-q", "-f", "raw", disk, "64M"}));
      // Recognisable data at the start and the end, so the import can be checked by content.
      VANDRA_TRY(runCapture({"qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", "-c",
                             "write -P 0xa5 63M 1M", disk}));
      return std::string("64 MiB raw image with patterns at 0 and 63 MiB");
    });
    ok = ok && step("make site CA and signer", [&]() -> Result<std::string> {
           VANDRA_TRY(runCapture({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                  "-keyout", ca_key, "-out", ca_crt, "-days", "2", "-subj",
                                  "/CN=vandra demo site CA"}));
           VANDRA_TRY(runCapture({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                                  "-out", csr, "-subj", "/CN=vandra demo signer"}));
           VANDRA_TRY(runCapture({"openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey",
                                  ca_key, "-CAcreateserial", "-out", crt, "-days", "2"}));
           return std::string("RSA-2048 CA and signing certificate");
         });
    ok = ok && step("export signed OVA", [&]() -> Result<std::string> {
           ExportOptions eo;
           eo.disk_images["disk1"] = disk;
           VANDRA_TRY_ASSIGN(eo.sign_key, readSmallFile(key));
           VANDRA_TRY_ASSIGN(eo.sign_cert, readSmallFile(crt));
           eo.progress = [this](const std::string& s, double f) { s_.bar().update(s, f); };
           VANDRA_TRY(exportPackage(spec, ova, eo));
           s_.bar().finish();
           return "OVF 1.0, streamOptimized VMDK, SHA256 manifest, " +
                  std::to_string(fs::file_size(ova)) + " bytes";
         });
    ok = ok && step("verify against site CA", [&]() -> Result<std::string> {
           VANDRA_TRY_ASSIGN(auto insp, inspectPackage(ova, {.lax = false,
                                                             .configuration = "",
                                                             .trust_store = ca_crt,
                                                             .verify_digests = true,
                                                             .progress = {},
                                                             .extra_trust = {}}));
           VANDRA_TRY(requireSound(insp));
           if (insp.package.signature.status != SignatureStatus::Trusted) {
             return fail(ErrorCode::CertificateUntrusted,
                         std::string("Signature is ") +
                             std::string(toString(insp.package.signature.status)));
           }
           if (insp.spec.virtual_systems.size() != 1 ||
               insp.spec.virtual_systems[0].sla != spec.virtual_systems[0].sla) {
             return fail(ErrorCode::Internal, "SLA did not survive the round trip");
           }
           return std::string("manifest verified, signature trusted, SLA intact");
         });
    ok = ok && step("refuse a tampered copy", [&]() -> Result<std::string> {
           const std::string bad = dir_ + "/tampered.ova";
           fs::copy_file(ova, bad);
           {
             std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
             f.seekp(static_cast<std::streamoff>(fs::file_size(bad) / 2));
             f.put('\x42');
           }
           auto insp = inspectPackage(bad, {.lax = false,
                                            .configuration = "",
                                            .trust_store = ca_crt,
                                            .verify_digests = true,
                                            .progress = {},
                                            .extra_trust = {}});
           if (insp && insp->problems.empty()) {
             return fail(ErrorCode::Internal, "A tampered package was accepted");
           }
           const Error e = insp ? insp->problems.front() : insp.error();
           return "refused: " + std::string(toString(e.code));
         });
    ok = ok && step("edit SLA in place and re-sign", [&]() -> Result<std::string> {
           Sla sla = *spec.virtual_systems[0].sla;
           VANDRA_TRY(applySlaAssignment(sla, "mobility", "automatic"));
           VANDRA_TRY(applySlaAssignment(sla, "max-cost-per-hour", "0.25"));
           VANDRA_TRY_ASSIGN(const std::string key_pem, readSmallFile(key));
           VANDRA_TRY_ASSIGN(const std::string crt_pem, readSmallFile(crt));
           VANDRA_TRY(editPackageSla(ova, sla,
                                     {.vs_id = "",
                                      .sign_key = key_pem,
                                      .sign_cert = crt_pem,
                                      .lax = false,
                                      .trust_store = ca_crt}));
           VANDRA_TRY_ASSIGN(auto insp, inspectPackage(ova, {.lax = false,
                                                             .configuration = "",
                                                             .trust_store = ca_crt,
                                                             .verify_digests = true,
                                                             .progress = {},
                                                             .extra_trust = {}}));
           VANDRA_TRY(requireSound(insp));
           if (insp.spec.virtual_systems[0].sla != sla) {
             return fail(ErrorCode::Internal, "Edited SLA not read back");
           }
           return std::string("mobility automatic, max 0.25 EUR/h; still trusted");
         });
    ok = ok && step("import to qcow2", [&]() -> Result<std::string> {
           ImportOptions io;
           io.inspect.trust_store = ca_crt;
           io.progress = [this](const std::string& s, double f) { s_.bar().update(s, f); };
           VANDRA_TRY_ASSIGN(auto r, importPackage(ova, dir_ + "/imported", io));
           s_.bar().finish();
           if (r.disks.size() != 1) {
             return fail(ErrorCode::Internal, "Expected one imported disk");
           }
           // Same guest-visible content as the original image.
           VANDRA_TRY(runCapture(
               {"qemu-img", "compare", "-f", "raw", "-F", "qcow2", disk, r.disks[0].path}));
           return r.disks[0].path + " identical to the source image";
         });

    s_.finish(ok, total_start, json::object());
    return ok ? 0 : 1;
  }

  struct SiteOptions {
    std::string guest_dir;
    std::string profile = "wan";
    bool keep = false;
    std::string console_dir;  // the controller story only
  };

  // The site story (see the file comment). Everything it makes (testbed, VM, QEMU) is gone at
  // the end unless --keep, also when a step fails.
  int runSites(const SiteOptions& o) {
    const auto total_start = std::chrono::steady_clock::now();
    const std::string ova = fs::absolute(fs::path(o.guest_dir) / "test-guest.ova").string();
    const std::string tb_dir = dir_ + "/testbed";
    const std::string vm = "web1";
    const std::string guest_ip = "10.10.0.10";
    json facts = json::object();
    std::optional<testbed::TestbedInfo> tb;
    std::optional<agent::AgentClient> dc;
    std::optional<agent::AgentClient> cloud;
    agent::AgentClient* home = nullptr;  // the agent of the site the VM lives at

    bool ok = step("test guest package", [&]() -> Result<std::string> {
      VANDRA_TRY_ASSIGN(auto insp, inspectPackage(ova, {}));
      VANDRA_TRY(requireSound(insp));
      const auto& vs = insp.spec.virtual_systems.at(0);
      if (!vs.sla) {
        return fail(ErrorCode::SlaInvalid, "The test guest's OVA carries no SLA section");
      }
      return ova + ": " + std::to_string(vs.vcpus) + " vCPU, " + std::to_string(vs.memory_mib) +
             " MiB, " + std::to_string(vs.disks.size()) + " disk(s), SLA downtime budget " +
             std::to_string(vs.sla->downtime_budget_ms.value_or(0)) + " ms";
    });
    auto teardown = defer([&] {
      if (o.keep || !tb) {
        return;
      }
      if (home != nullptr) {
        (void)home->post("/v1/vms/" + vm + "/kill", json::object());
        (void)home->del("/v1/vms/" + vm);
      }
      if (auto d = testbed::down(tb_dir); !d) {
        std::cerr << "vandra demo: testbed down: " << d.error().describe() << "\n";
      }
    });
    ok = ok && step("testbed up (profile " + o.profile + ")", [&]() -> Result<std::string> {
           testbed::TestbedOptions to;
           to.profile = o.profile;
           to.state_dir = tb_dir;
           to.agents = true;
           to.sites = {"dc", "cloud-eu"};  // the story moves one VM over one link
           to.controller = false;
           to.sites = {"dc", "cloud-eu"};  // one link is what it measures
           to.controller = false;
           VANDRA_TRY_ASSIGN(tb, testbed::up(to));
           agent::AgentEndpoint ep{.host = "",
                                   .port = 0,
                                   .ca = tb->site("dc")->ca_cert,
                                   .cert = tb->site("dc")->operator_cert,
                                   .key = tb->site("dc")->operator_key,
                                   .netns = tb->site("dc")->netns};
           VANDRA_TRY(agent::parseHostPort(tb->site("dc")->agent_endpoint, ep));
           dc.emplace(ep);
           home = &*dc;
           agent::AgentEndpoint cep{.host = "",
                                    .port = 0,
                                    .ca = tb->site("cloud-eu")->ca_cert,
                                    .cert = tb->site("cloud-eu")->operator_cert,
                                    .key = tb->site("cloud-eu")->operator_key,
                                    .netns = tb->site("cloud-eu")->netns};
           VANDRA_TRY(agent::parseHostPort(tb->site("cloud-eu")->agent_endpoint, cep));
           cloud.emplace(cep);
           VANDRA_TRY_ASSIGN(const auto host, dc->get("/v1/host"));
           facts["testbed"] = {{"id", tb->id},
                               {"state_dir", tb_dir},
                               {"dc_agent", tb->site("dc")->agent_endpoint},
                               {"cloud_eu_agent", tb->site("cloud-eu")->agent_endpoint}};
           return "sites dc (" + tb->site("dc")->lan_address + ", agent " +
                  tb->site("dc")->agent_endpoint + ") and cloud-eu (" +
                  tb->site("cloud-eu")->lan_address + ", agent " +
                  tb->site("cloud-eu")->agent_endpoint +
                  ") over the emulated WAN; dc agent offers " +
                  std::to_string(host["free"].value("memory_mib", 0)) + " MiB";
         });
    ok = ok && step("import at dc", [&]() -> Result<std::string> {
           // As an operator would: the local OVA goes up to the agent first (kept there when
           // it holds the same package already), then the agent imports its upload.
           const auto t_up = std::chrono::steady_clock::now();
           const std::string upload = std::filesystem::path(ova).filename().string();
           VANDRA_TRY(dc->uploadPackage(ova, upload));
           facts["upload_s"] =
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t_up).count();
           const auto t0 = std::chrono::steady_clock::now();
           VANDRA_TRY_ASSIGN(const auto r, dc->post("/v1/vms", {{"id", vm}, {"upload", upload}}));
           const double s =
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
           facts["import_s"] = s;
           return "VM " + vm + " " + r.value("state", "") +
                  " from the verified OVA (disks as qcow2 overlays on a shared base)";
         });
    std::chrono::steady_clock::time_point started_at;
    ok = ok && step("start at dc", [&]() -> Result<std::string> {
           VANDRA_TRY_ASSIGN(const auto r, dc->post("/v1/vms/" + vm + "/start", json::object()));
           started_at = std::chrono::steady_clock::now();
           VANDRA_TRY_ASSIGN(const std::string tap, firstTap(*dc, vm));
           VANDRA_TRY_ASSIGN(const std::string links,
                             runCapture({"ip", "-n", tb->site("dc")->netns, "-o", "link", "show",
                                         "master", tb->site("dc")->bridge}));
           if (links.find(tap) == std::string::npos) {
             return fail(ErrorCode::NotFound, "Tap " + tap + " is not on the dc bridge");
           }
           facts["qemu_pid"] = r.value("pid", 0);
           facts["tap"] = tap;
           return "QEMU pid " + std::to_string(r.value("pid", 0)) + " running; NIC tap " + tap +
                  " on dc " + tb->site("dc")->bridge;
         });
    std::optional<testbed::GuestConnection> conn;
    ok = ok && step("guest service answers a client at dc", [&]() -> Result<std::string> {
           VANDRA_TRY_ASSIGN(
               conn, testbed::GuestConnection::connect(tb->client_netns, guest_ip, 7000,
                                                       started_at + std::chrono::seconds(300)));
           VANDRA_TRY(conn->ping("boot", std::chrono::seconds(30)));
           const double boot =
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at).count();
           facts["start_to_service_s"] = boot;
           return "client " + tb->client_address + " reached " + guest_ip + ":7000 " +
                  formatSeconds(boot) + " after start (booted from its own disk under QEMU)";
         });
    ok = ok && step("client session", [&]() -> Result<std::string> {
           double sum = 0;
           double worst = 0;
           constexpr int kPings = 20;
           for (int i = 0; i < kPings; ++i) {
             VANDRA_TRY_ASSIGN(const auto rtt,
                               conn->ping(std::to_string(i), std::chrono::seconds(10)));
             const double ms = static_cast<double>(rtt.count()) / 1000.0;
             sum += ms;
             worst = std::max(worst, ms);
           }
           auto echo = testbed::GuestConnection::connect(
               tb->client_netns, guest_ip, 7000,
               std::chrono::steady_clock::now() + std::chrono::seconds(30));
           if (!echo) {
             return fail(std::move(echo).error());
           }
           VANDRA_TRY(echo->echo(256 * 1024, std::chrono::seconds(60)));
           facts["ping_avg_ms"] = sum / kPings;
           facts["ping_max_ms"] = worst;
           return std::to_string(kPings) + " pings avg " + formatMs(sum / kPings) + " (max " +
                  formatMs(worst) + "), 256 KiB echoed intact";
         });

    // The live migration: a workload in the guest, a client's TCP session held through it.
    std::string mac_before;
    std::optional<testbed::GuestWorkload> workload;
    ok = ok &&
         step("guest workload (memory and disk patterns, writers)", [&]() -> Result<std::string> {
           VANDRA_TRY_ASSIGN(const std::string dc_tap, firstTap(*dc, vm));
           VANDRA_TRY_ASSIGN(mac_before, testbed::learnedMac(tb->site("dc")->netns, dc_tap));
           VANDRA_TRY_ASSIGN(auto m,
                             conn->exec("vguest-mempat start " + std::to_string(kMemPatMib) + " 7",
                                        std::chrono::seconds(120)));
           if (m.exit_code != 0) {
             return fail(ErrorCode::Internal, "vguest-mempat start failed: " +
                                                  (m.out.empty() ? std::string() : m.out.back()));
           }
           VANDRA_TRY_ASSIGN(auto d, conn->exec("vguest-diskpat write /dev/vdb 5 0 " +
                                                    std::to_string(kDiskPatMib),
                                                std::chrono::seconds(120)));
           if (d.exit_code != 0) {
             return fail(ErrorCode::Internal, "vguest-diskpat write failed: " +
                                                  (d.out.empty() ? std::string() : d.out.back()));
           }
           // Every page dirtied and every block written through the migration is checked
           // at the end; the disk writer's region (56..64 MiB) is away from the pattern's.
           testbed::WorkloadOptions wo;
           wo.dirty_wss_mib = kDirtyMib;
           wo.dirty_rate_mbps = kDirtyMbps;
           VANDRA_TRY_ASSIGN(workload, testbed::GuestWorkload::start(*conn, wo));
           return std::to_string(kMemPatMib) + " MiB memory pattern, " +
                  std::to_string(kDiskPatMib) + " MiB disk pattern on /dev/vdb, dirtier on " +
                  std::to_string(kDirtyMib) + " MiB at " + std::to_string(kDirtyMbps) +
                  " MB/s, disk writer on " + std::to_string(wo.disk_len_mib) + " MiB at " +
                  std::to_string(wo.disk_rate_kibps) + " KiB/s (MAC " + mac_before + ")";
         });
    std::unique_ptr<testbed::SessionProbe> probe;
    ok =
        ok &&
        step("client at dc holds a TCP session, probing every 10 ms", [&]() -> Result<std::string> {
          VANDRA_TRY_ASSIGN(probe,
                            testbed::SessionProbe::start(
                                tb->client_netns, guest_ip, 7000, std::chrono::milliseconds(10),
                                std::chrono::steady_clock::now() + std::chrono::seconds(30)));
          return "session " + tb->client_address + " -> " + guest_ip + ":7000 (PROBE)";
        });
    json migration;
    ok =
        ok &&
        step("live migration dc -> cloud-eu over the " + o.profile + " WAN",
             [&]() -> Result<std::string> {
               VANDRA_TRY_ASSIGN(const auto begun,
                                 dc->post("/v1/vms/" + vm + "/migrate", {{"to", "cloud-eu"}}));
               VANDRA_TRY_ASSIGN(migration, followMigration(*dc, begun.value("id", ""), s_.bar(),
                                                            std::chrono::steady_clock::now() +
                                                                std::chrono::minutes(15)));
               if (migration.value("phase", "") != "done") {
                 return fail(ErrorCode::Io, "Migration " + begun.value("id", "") + " ended " +
                                                migration.value("phase", "") + ": " +
                                                migration.value("error", ""));
               }
               home = &*cloud;
               const json& rep = migration["report"];
               facts["migration"] = migration;
               facts["downtime_ms"] = rep.value("downtime_ms", 0);
               facts["wan_bytes"] = rep.value("wan_bytes", uint64_t{0});
               facts["migration_total_s"] = rep.value("total_s", 0.0);
               // The SLA's downtime budget against the agent's own measurement.
               for (const char* k : {"downtime_budget_ms", "interruption_ms", "sla_met"}) {
                 facts[k] = rep.contains(k) ? rep[k] : json(nullptr);
               }
               const json& met = facts["sla_met"];
               return migration.value("id", "") + " done in " +
                      formatSeconds(rep.value("total_s", 0.0)) + ", QEMU downtime " +
                      std::to_string(rep.value("downtime_ms", 0)) + " ms, " +
                      formatBytes(rep.value("wan_bytes", uint64_t{0})) + " over the WAN; " +
                      rep.value("sla_note", std::string("no SLA verdict")) +
                      (met.is_boolean() ? (met.get<bool>() ? " (SLA met)" : " (SLA NOT met)") : "");
             });
    ok = ok &&
         step("VM at cloud-eu, same MAC and IP, nothing left at dc", [&]() -> Result<std::string> {
           VANDRA_TRY_ASSIGN(const auto rec, cloud->get("/v1/vms/" + vm));
           if (rec.value("state", "") != "running") {
             return fail(ErrorCode::IllegalTransition,
                         "VM at cloud-eu is " + rec.value("state", ""));
           }
           VANDRA_TRY(
               conn->ping("after", std::chrono::seconds(30)));  // the old command session, same IP
           VANDRA_TRY_ASSIGN(const std::string tap, firstTap(*cloud, vm));
           VANDRA_TRY_ASSIGN(const std::string mac,
                             testbed::learnedMac(tb->site("cloud-eu")->netns, tap));
           if (mac != mac_before) {
             return fail(ErrorCode::Internal, "MAC changed: " + mac_before + " -> " + mac);
           }
           if (auto gone = dc->get("/v1/vms/" + vm);
               gone || gone.error().code != ErrorCode::NotFound) {
             return fail(ErrorCode::AlreadyExists, "VM " + vm + " is still registered at dc");
           }
           VANDRA_TRY_ASSIGN(const std::string links,
                             runCapture({"ip", "-n", tb->site("cloud-eu")->netns, "-o", "link",
                                         "show", "master", tb->site("cloud-eu")->bridge}));
           if (links.find(tap) == std::string::npos) {
             return fail(ErrorCode::NotFound, "Tap " + tap + " is not on the cloud-eu bridge");
           }
           return "running at cloud-eu (QEMU pid " + std::to_string(rec.value("pid", 0)) +
                  ", tap " + tap + " on cloud-eu " + tb->site("cloud-eu")->bridge + "), MAC " +
                  mac + ", " + guest_ip + " answers the client at dc through the tunnel";
         });
    ok = ok && step("client's TCP session intact", [&]() -> Result<std::string> {
           const auto r = probe->stop();
           facts["client_max_gap_ms"] = r.max_gap_ms;
           facts["tcp_bytes_lost"] = r.bytes_lost;
           facts["client_probes"] = r.probes_sent;
           if (!r.error.empty() || r.bytes_lost != 0 || r.answers != r.probes_sent) {
             return fail(ErrorCode::Io,
                         "The session lost bytes: " +
                             (r.error.empty() ? std::to_string(r.bytes_lost) + " bytes unanswered"
                                              : r.error));
           }
           return std::to_string(r.probes_sent) +
                  " probes, every byte back in order; longest gap " + formatMs(r.max_gap_ms);
         });
    // memory_check: the pattern written before and every page the dirtier wrote during the
    // migration; disk_check: the same for the disk pattern and the disk writer's blocks.
    ok = ok && step("memory and disk checks in the guest", [&]() -> Result<std::string> {
           VANDRA_TRY_ASSIGN(auto m, conn->exec("vguest-mempat check", std::chrono::seconds(120)));
           VANDRA_TRY_ASSIGN(auto d, conn->exec("vguest-diskpat check /dev/vdb 5 0 " +
                                                    std::to_string(kDiskPatMib),
                                                std::chrono::seconds(120)));
           VANDRA_TRY_ASSIGN(const auto w, workload->verify(*conn));
           const bool mem_ok = m.exit_code == 0 && !m.out.empty() &&
                               m.out.back().rfind("PASS", 0) == 0 && w.memory.pass;
           const bool disk_ok = d.exit_code == 0 && !d.out.empty() &&
                                d.out.back().rfind("PASS", 0) == 0 && w.disk.pass;
           facts["memory_check"] = mem_ok ? "pass" : "fail";
           facts["disk_check"] = disk_ok ? "pass" : "fail";
           const std::string said = (m.out.empty() ? "?" : m.out.back()) + "; " +
                                    (d.out.empty() ? "?" : d.out.back()) + "; " + w.describe();
           if (!mem_ok || !disk_ok) {
             return fail(ErrorCode::Internal, "Pattern check failed: " + said);
           }
           return said;
         });
    if (!facts.contains("memory_check")) {
      facts["memory_check"] = "fail";
      facts["disk_check"] = "fail";
    }
    for (const char* k : {"downtime_ms", "client_max_gap_ms", "tcp_bytes_lost", "wan_bytes",
                          "downtime_budget_ms", "interruption_ms", "sla_met"}) {
      if (!facts.contains(k)) {
        facts[k] = nullptr;
      }
    }

    if (!o.keep) {
      ok = step("clean up",
                [&]() -> Result<std::string> {
                  teardown.dismiss();
                  if (home != nullptr) {
                    // Not running (an earlier step failed) or never imported: nothing to undo
                    // there.
                    if (auto k = home->post("/v1/vms/" + vm + "/kill", json::object());
                        !k && k.error().code != ErrorCode::IllegalTransition &&
                        k.error().code != ErrorCode::NotFound) {
                      return fail(std::move(k).error());
                    }
                    if (auto d = home->del("/v1/vms/" + vm);
                        !d && d.error().code != ErrorCode::NotFound) {
                      return fail(std::move(d).error());
                    }
                  }
                  VANDRA_TRY(testbed::down(tb_dir));
                  tb.reset();
                  return std::string(
                      "VM deleted, testbed down: no namespace, process, tap or file left");
                }) &&
           ok;
    }
    s_.finish(
        ok, total_start, facts,
        o.keep && tb ? " (testbed kept: vandra testbed down --state-dir " + tb_dir + ")" : "");
    return ok ? 0 : 1;
  }

 private:
  template <class F>
  bool step(const std::string& name, F&& f) {
    return s_.step(name, std::forward<F>(f));
  }

  DemoSteps s_;
  std::string dir_;
};

}  // namespace

void addDemoCommand(CLI::App& app, int& exit_code) {
  static bool as_json = false;
  static bool keep = false;
  static bool ovf_only = false;
  static bool direct = false;
  static Demo::SiteOptions so;
  auto* demo =
      app.add_subcommand("demo", "Run the main job end to end on this machine (root: testbed)");
  demo->add_flag("--json", as_json, "Print one JSON object at the end");
  demo->add_flag("--keep", keep,
                 "Keep the work folder and the testbed (printed) instead of removing them");
  demo->add_flag("--ovf-only", ovf_only, "Only the package story (no testbed, no root)");
  demo->add_flag("--direct", direct,
                 "One live migration straight between two agents, measured (no controller)");
  demo->add_option(
      "--guest-dir", so.guest_dir,
      "Folder guest/build.sh filled (default: $VANDRA_GUEST_DIR, else build-guest/guest-out)");
  demo->add_option("--profile", so.profile, "WAN profile of the testbed")->capture_default_str();
  demo->add_option("--console", so.console_dir,
                   "The web console's built files (web/dist; tools/demo.sh builds them): the "
                   "controller serves them and the demo prints the address");
  demo->callback([&] {
    if (so.guest_dir.empty()) {
      const char* g = std::getenv("VANDRA_GUEST_DIR");
      so.guest_dir = g != nullptr && *g != '\0' ? g : "build-guest/guest-out";
    }
    if (!ovf_only && !fs::exists(fs::path(so.guest_dir) / "test-guest.ova")) {
      exit_code = reportError(
          "demo",
          Error(ErrorCode::NotFound, "No test guest in '" + so.guest_dir +
                                         "' (build it: guest/build.sh; tools/demo.sh does)"));
      return;
    }
    std::string tmpl = (fs::temp_directory_path() / "vandra-demo-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      exit_code = reportError("demo", Error::fromErrno("Cannot create a work folder"));
      return;
    }
    auto cleanup = defer([&] {
      if (!keep) {
        std::error_code ec;
        fs::remove_all(tmpl, ec);
      }
    });
    if (keep) {
      std::cerr << "work folder: " << tmpl << "\n";
    }
    Demo d(as_json, tmpl);
    so.keep = keep;
    if (!ovf_only && !direct) {
      exit_code = runControllerDemo(as_json, tmpl,
                                    {.guest_dir = so.guest_dir,
                                     .profile = so.profile,
                                     .keep = keep,
                                     .console_dir = so.console_dir});
      return;
    }
    exit_code = ovf_only ? d.runOvf() : d.runSites(so);
  });
}

}  // namespace vandra::cli
