// `vandra demo`: the main job, run end to end on this machine. Today it tells the OVF story:
// a VM with a disk and an SLA is exported as a signed OVA, verified against the site CA,
// its SLA edited in place (and re-signed), and imported to qcow2 — with every step checked.
// The live-migration story (testbed, agents) joins it as those issues land.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli_support.h"
#include "ovf_commands.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/disk_image.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/ovf/writer.h"

namespace vandra::cli {
namespace {

using nlohmann::json;
using namespace vandra::ovf;
namespace fs = std::filesystem;

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
  vs.nics.push_back({.network = "lan", .model = "virtio", .mac = "52:54:00:12:34:56", .connected = true});
  Sla sla;
  sla.downtime_budget_ms = 500;
  sla.jurisdictions = {"EU"};
  sla.mobility = Mobility::OnRequest;
  vs.sla = sla;
  spec.virtual_systems.push_back(vs);
  spec.networks.push_back({"lan", "The site LAN"});
  return spec;
}

struct Step {
  std::string name;
  bool ok = false;
  double seconds = 0;
  std::string detail;
};

class Demo {
public:
  Demo(bool as_json, std::string dir) : json_(as_json), dir_(std::move(dir)) {}

  int run() {
    auto total_start = std::chrono::steady_clock::now();
    const std::string disk = dir_ + "/web1-disk.raw";
    const std::string ova = dir_ + "/web1.ova";
    const std::string ca_key = dir_ + "/ca.key", ca_crt = dir_ + "/ca.crt";
    const std::string key = dir_ + "/signer.key", csr = dir_ + "/signer.csr", crt = dir_ + "/signer.crt";
    const VmSpec spec = demoSpec();

    bool ok = step("make disk image", [&]() -> Result<std::string> {
      VANDRA_TRY(runCapture({"qemu-img", "create", "-q", "-f", "raw", disk, "64M"}));
      // Recognisable data at the start and the end, so the import can be checked by content.
      VANDRA_TRY(runCapture({"qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", "-c",
                             "write -P 0xa5 63M 1M", disk}));
      return std::string("64 MiB raw image with patterns at 0 and 63 MiB");
    });
    ok = ok && step("make site CA and signer", [&]() -> Result<std::string> {
      VANDRA_TRY(runCapture({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
                             "-out", ca_crt, "-days", "2", "-subj", "/CN=vandra demo site CA"}));
      VANDRA_TRY(runCapture({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                             "-subj", "/CN=vandra demo signer"}));
      VANDRA_TRY(runCapture({"openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                             "-CAcreateserial", "-out", crt, "-days", "2"}));
      return std::string("RSA-2048 CA and signing certificate");
    });
    ok = ok && step("export signed OVA", [&]() -> Result<std::string> {
      ExportOptions eo;
      eo.disk_images["disk1"] = disk;
      VANDRA_TRY_ASSIGN(eo.sign_key, readSmallFile(key));
      VANDRA_TRY_ASSIGN(eo.sign_cert, readSmallFile(crt));
      eo.progress = [this](const std::string& s, double f) { bar_.update(s, f); };
      VANDRA_TRY(exportPackage(spec, ova, eo));
      bar_.finish();
      return "OVF 1.0, streamOptimized VMDK, SHA256 manifest, " + std::to_string(fs::file_size(ova)) +
             " bytes";
    });
    ok = ok && step("verify against site CA", [&]() -> Result<std::string> {
      VANDRA_TRY_ASSIGN(auto insp, inspectPackage(ova, {.lax = false, .configuration = "",
                                                        .trust_store = ca_crt, .verify_digests = true,
                                                        .progress = {}}));
      VANDRA_TRY(requireSound(insp));
      if (insp.package.signature.status != SignatureStatus::Trusted) {
        return fail(ErrorCode::CertificateUntrusted,
                    std::string("Signature is ") + std::string(toString(insp.package.signature.status)));
      }
      if (insp.spec.virtual_systems.size() != 1 || insp.spec.virtual_systems[0].sla != spec.virtual_systems[0].sla) {
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
      auto insp = inspectPackage(bad, {.lax = false, .configuration = "", .trust_store = ca_crt,
                                       .verify_digests = true, .progress = {}});
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
      VANDRA_TRY(editPackageSla(ova, sla, {.vs_id = "", .sign_key = key_pem, .sign_cert = crt_pem, .lax = false,
                                      .trust_store = ca_crt}));
      VANDRA_TRY_ASSIGN(auto insp, inspectPackage(ova, {.lax = false, .configuration = "",
                                                        .trust_store = ca_crt, .verify_digests = true,
                                                        .progress = {}}));
      VANDRA_TRY(requireSound(insp));
      if (insp.spec.virtual_systems[0].sla != sla) {
        return fail(ErrorCode::Internal, "Edited SLA not read back");
      }
      return std::string("mobility automatic, max 0.25 EUR/h; still trusted");
    });
    ok = ok && step("import to qcow2", [&]() -> Result<std::string> {
      ImportOptions io;
      io.inspect.trust_store = ca_crt;
      io.progress = [this](const std::string& s, double f) { bar_.update(s, f); };
      VANDRA_TRY_ASSIGN(auto r, importPackage(ova, dir_ + "/imported", io));
      bar_.finish();
      if (r.disks.size() != 1) {
        return fail(ErrorCode::Internal, "Expected one imported disk");
      }
      // Same guest-visible content as the original image.
      VANDRA_TRY(runCapture({"qemu-img", "compare", "-f", "raw", "-F", "qcow2", disk, r.disks[0].path}));
      return r.disks[0].path + " identical to the source image";
    });

    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - total_start).count();
    if (json_) {
      json steps = json::array();
      for (const auto& s : steps_) {
        steps.push_back({{"step", s.name}, {"ok", s.ok}, {"seconds", s.seconds}, {"detail", s.detail}});
      }
      std::cout << json{{"result", ok ? "ok" : "failed"}, {"total_s", total}, {"steps", steps}}.dump(2) << "\n";
    } else {
      std::cout << (ok ? "demo: ok" : "demo: FAILED") << " in " << total << " s\n";
    }
    return ok ? 0 : 1;
  }

private:
  template <class F>
  bool step(const std::string& name, F&& f) {
    const auto start = std::chrono::steady_clock::now();
    Result<std::string> r = f();
    bar_.finish();
    Step s{name, r.has_value(), std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
           r ? *r : r.error().describe()};
    if (!json_) {
      std::cout << (s.ok ? "[ok]   " : "[FAIL] ") << name << ": " << s.detail << "\n";
    }
    steps_.push_back(std::move(s));
    return r.has_value();
  }

  bool json_;
  std::string dir_;
  ProgressBar bar_{!json_};
  std::vector<Step> steps_;
};

} // namespace

void addDemoCommand(CLI::App& app, int& exit_code) {
  static bool as_json = false;
  static bool keep = false;
  auto* demo = app.add_subcommand("demo", "Run the main job end to end on this machine");
  demo->add_flag("--json", as_json, "Print one JSON object at the end");
  demo->add_flag("--keep", keep, "Keep the work folder (printed) instead of removing it");
  demo->callback([&] {
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
    exit_code = d.run();
  });
}

} // namespace vandra::cli
