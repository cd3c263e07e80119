// AgentService's export of a VM and import of a seed (agent_service.h; ADR 0029):
//
//   export (site A)                              seed (site B)
//   lock VM ─ stage overlays ─ QMP transaction   upload the OVA ─ verify (digests, signature
//   (running) ─ commit: frozen images in base/    against the peers' CAs) ─ importBase ─ kept
//   ─ unlock ─ OVA from the frozen images ─ key   as a seed until it expires, once unused
//   of the package recorded ─ OVA into uploads
//   live move A -> B later: both hold the images under one identity: only the overlay goes
#include <openssl/rand.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "vandra/agent/agent_service.h"
#include "vandra/common/scope_guard.h"
#include "vandra/ovf/writer.h"
#include "vandra/qemu/names.h"
#include "vandra/qmp/commands.h"
#include "vm_spec_parse.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

Result<std::string> randomHexId() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    return fail(ErrorCode::Internal, "OpenSSL: no random bytes for an export id");
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : b) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

Result<std::string> readPem(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec || size > (1U << 20)) {
    return fail(ErrorCode::Io, "Cannot read the signing file '" + path + "'");
  }
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (!in.good() && !in.eof()) {
    return fail(ErrorCode::Io, "Cannot read the signing file '" + path + "'");
  }
  return text;
}

double msSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

Result<ExportResult> AgentService::exportVm(const ExportRequest& req) {
  const auto started = Clock::now();
  const std::string name =
      req.name.empty() ? req.id + "-" + std::to_string(::time(nullptr)) + ".ova" : req.name;
  if (!validUploadName(name)) {
    return fail(ErrorCode::InvalidArgument,
                "Bad package name '" + name.substr(0, 200) +
                    "': 1..128 characters of A-Z a-z 0-9 . _ -, ending in .ova");
  }
  if (uploads_.get(name)) {
    return fail(ErrorCode::AlreadyExists, "An upload named '" + name + "' already exists");
  }
  ExportResult out;
  VANDRA_TRY_ASSIGN(out.export_id, randomHexId());
  ovf::VmSpec spec;
  std::map<std::string, std::string> images;  // disk id -> frozen image
  {
    VANDRA_TRY_ASSIGN(auto held, lockVm(req.id));
    VANDRA_TRY_ASSIGN(const VmRecord r, get(req.id));
    out.running = r.state == VmState::Running;
    if (!out.running && r.state != VmState::Created && r.state != VmState::Stopped) {
      return fail(ErrorCode::IllegalTransition,
                  "VM '" + req.id + "' is " + std::string(toString(r.state)) +
                      ": only a running, created or stopped VM is exported");
    }
    VANDRA_TRY_ASSIGN(spec, detail::parseVmSpec(r.spec_json));
    const ovf::VirtualSystemSpec& vs = spec.virtual_systems.front();
    for (const auto& m : vs.media) {
      if (m.file) {
        return fail(ErrorCode::Unsupported, "VM '" + req.id + "' has a drive with an image ('" +
                                                *m.file + "'); media are not exported");
      }
    }
    std::vector<std::pair<std::string, uint64_t>> disks;
    for (const auto& d : vs.disks) {
      disks.emplace_back(d.id, d.capacity_bytes);
    }
    VANDRA_TRY_ASSIGN(const auto staged, store_.stageExport(req.id, out.export_id, vs.id, disks));
    auto undo = defer([&] { store_.discardExport(req.id); });
    const auto keep = std::chrono::duration_cast<std::chrono::seconds>(config_.keep_exports);
    const int64_t expires = static_cast<int64_t>(::time(nullptr)) + keep.count();
    if (out.running) {
      VANDRA_TRY_ASSIGN(auto qmp, qmp::connectQmp(runPaths(req.id).qmp_socket, {}));
      VANDRA_TRY_ASSIGN(const auto nodes, migration::deviceNodes(*qmp));
      VANDRA_TRY_ASSIGN(const auto names, qemu::diskNames(vs.disks));
      std::vector<qmp::SnapshotAction> actions;
      for (size_t i = 0; i < names.size(); ++i) {
        auto node = nodes.find(names[i].device_id);
        if (node == nodes.end()) {
          return fail(ErrorCode::NotFound, "QEMU has no device '" + names[i].device_id +
                                               "' for disk '" + names[i].disk_id + "'");
        }
        // "x" + 4 hex of the export + the disk's safe name: unique in this QEMU, < 32 bytes.
        actions.push_back({node->second, staged[i].overlay,
                           "x" + out.export_id.substr(0, 4) + "-" +
                               names[i].format_node.substr(std::string("fmt-").size())});
      }
      const auto t = Clock::now();
      // From the request on, QEMU may have taken the overlays: undone only when it refused
      // (a transaction is all or none), else completed (completeExports).
      undo.dismiss();
      if (auto snap = qmp::snapshotAll(*qmp, actions); !snap) {
        if (snap.error().code == ErrorCode::QmpError) {
          store_.discardExport(req.id);
        } else {
          (void)store_.completeExports(expires, req.id);
        }
        return fail(snap.error());
      }
      out.freeze_ms = msSince(t);
    }
    undo.dismiss();
    if (auto c = store_.commitExport(req.id, out.export_id, r.spec_json, expires); !c) {
      // The guest may write into the overlays already: complete it as a restart would.
      (void)store_.completeExports(expires, req.id);
      return fail(c.error());
    }
    for (const auto& s : staged) {
      images[s.disk_id] = s.frozen;
    }
  }
  events_.append(
      req.id, "export", "frozen",
      {{"export_id", out.export_id}, {"running", out.running}, {"freeze_ms", out.freeze_ms}});
  // The frozen images do not change any more: the package is written without the VM's lock.
  const auto writing = Clock::now();
  ovf::ExportOptions eo;
  eo.name = req.id;
  eo.disk_images = images;
  eo.backing_within = store_.root();
  if (req.sign && !config_.sign_cert.empty() && !config_.sign_key.empty()) {
    VANDRA_TRY_ASSIGN(eo.sign_cert, readPem(config_.sign_cert));
    VANDRA_TRY_ASSIGN(eo.sign_key, readPem(config_.sign_key));
    out.signed_package = true;
  }
  const std::string tmp = uploads_.dir() + "/.export-" + out.export_id + ".ova";
  auto remove_tmp = defer([&] {
    std::error_code ec;
    fs::remove(tmp, ec);
  });
  VANDRA_TRY(ovf::exportPackage(spec, tmp, eo));
  // What a site importing the package will see: its key and its images' names.
  ovf::InspectOptions io;
  io.lax = true;  // our own site's signature need not chain to our trust store
  // The writer digested every member as it wrote it, and the key needs only the descriptor,
  // the manifest and the members' names and sizes: no second read of the disks.
  io.verify_digests = false;
  VANDRA_TRY_ASSIGN(const ovf::Inspection insp, ovf::inspectPackage(tmp, io));
  if (out.signed_package && insp.package.signature.status == ovf::SignatureStatus::Invalid) {
    return fail(ErrorCode::SignatureInvalid, "The export's signature does not verify");
  }
  const auto& written = insp.spec.virtual_systems;
  for (const auto& [disk_id, frozen] : images) {
    bool named = false;
    for (const auto& vs : written) {
      for (const auto& d : vs.disks) {
        named = named || (d.id == disk_id &&
                          fs::path(frozen).filename() == ovf::importedDiskName(vs.id, d.id));
      }
    }
    if (!named) {
      return fail(ErrorCode::Internal,
                  "The exported descriptor does not name disk '" + disk_id + "' as frozen");
    }
  }
  out.package_key = ImageStore::packageKey(insp.package);
  VANDRA_TRY(store_.recordExportPackage(out.export_id, out.package_key));
  VANDRA_TRY_ASSIGN(out.package, uploads_.adopt(name, tmp));
  out.write_s = msSince(writing) / 1000.0;
  events_.append(req.id, "export", "written",
                 {{"export_id", out.export_id},
                  {"package", name},
                  {"bytes", out.package.size},
                  {"signed", out.signed_package},
                  {"seconds", msSince(started) / 1000.0}});
  return out;
}

Result<SeedResult> AgentService::importSeed(const std::string& name, std::chrono::seconds keep,
                                            bool lax) {
  VANDRA_TRY(uploads_.get(name));
  const std::string path = uploads_.dir() + "/" + name;
  {
    std::lock_guard lock(importing_mu_);
    importing_.insert(path);
  }
  auto done = defer([&] {
    std::lock_guard lock(importing_mu_);
    importing_.erase(importing_.find(path));
  });
  std::lock_guard one_import(import_mu_);
  ovf::ImportOptions io;
  io.inspect.lax = lax;
  io.inspect.trust_store = config_.trust_store;
  io.inspect.extra_trust = config_.extra_trust;
  VANDRA_TRY_ASSIGN(const BaseImage base, store_.importBase(path, io));
  SeedResult out;
  out.key = base.key;
  out.reused = base.reused;
  VANDRA_TRY_ASSIGN(out.expires_unix,
                    store_.markSeed(base.key, static_cast<int64_t>(::time(nullptr)) + keep.count(),
                                    !base.reused));
  for (const auto& vs : base.spec.virtual_systems) {
    for (const auto& d : vs.disks) {
      if (d.file) {
        out.disks.push_back(*d.file);
      }
    }
  }
  return out;
}

}  // namespace vandra::agent
