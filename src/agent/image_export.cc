// Seeded moves (image_store.h, ADR 0029): an export freezes a VM's disks in a base folder of
// the store, and once the exported package is written the frozen images take the identity
// the same package's images have at a site that imports it. A live move there then finds the
// base at its target and mirrors only the overlay the guest wrote since the export:
//
//   dc: export e1                                   cloud: the OVA imported as a seed
//   vms/web/d.qcow2 = overlay (what changed since)   base/<K>/vs-d.qcow2  (K = package key)
//        └─ base/<exportKey(e1)>/vs-d.qcow2          (kept until it expires, once unused)
//           retained.json: kind export, package_key K
//   move dc -> cloud: identity K at both sites ─> only the overlay is mirrored
#include <algorithm>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "kept_images.h"
#include "vandra/agent/image_store.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/inspect.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string stagingDir(const std::string& root, const std::string& vm_id) {
  return root + "/base/.export-" + vm_id;
}

bool isHexKey(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

std::string ImageStore::identityOf(const std::string& key) const {
  if (auto k = detail::readKept(fs::path(root_) / "base" / key)) {
    const std::string pk = k->value("package_key", "");
    if (k->value("kind", "") == "export" && isHexKey(pk)) {
      return pk;
    }
  }
  return key;
}

Result<std::vector<ImageStore::ExportDisk>> ImageStore::stageExport(
    const std::string& vm_id, const std::string& export_id, const std::string& vs_id,
    const std::vector<std::pair<std::string, uint64_t>>& disks) {
  discardExport(vm_id);
  const std::string staging = stagingDir(root_, vm_id);
  const std::string final_dir = root_ + "/base/" + exportKey(export_id);
  std::error_code ec;
  fs::create_directories(staging, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot make '" + staging + "': " + ec.message());
  }
  std::vector<ExportDisk> out;
  for (const auto& [id, capacity] : disks) {
    const std::string disk = root_ + "/vms/" + vm_id + "/" + id + ".qcow2";
    const std::string name = ovf::importedDiskName(vs_id, id);
    if (!fs::exists(disk, ec)) {
      discardExport(vm_id);
      return fail(ErrorCode::NotFound, "VM '" + vm_id + "' has no disk '" + id + "'");
    }
    // A second name for the disk image as it is: once the overlay stands over it, frozen.
    fs::create_hard_link(disk, staging + "/" + name, ec);
    if (ec) {
      discardExport(vm_id);
      return fail(ErrorCode::Io,
                  "Cannot link '" + disk + "' into '" + staging + "': " + ec.message());
    }
    ExportDisk e{id, final_dir + "/" + name, root_ + "/vms/" + vm_id + "/" + id + ".export.qcow2"};
    // -u: the backing file is where the frozen image will be once committed; QEMU takes the
    // overlay over its current node without opening it (blockdev-snapshot mode existing).
    auto made = runCapture({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b",
                            e.frozen, e.overlay, std::to_string(capacity)});
    if (!made) {
      discardExport(vm_id);
      return fail(made.error());
    }
    out.push_back(std::move(e));
  }
  return out;
}

Result<void> ImageStore::commitExport(const std::string& vm_id, const std::string& export_id,
                                      const std::string& spec_json, int64_t expires_unix) {
  const std::string staging = stagingDir(root_, vm_id);
  const fs::path final_dir = fs::path(root_) / "base" / exportKey(export_id);
  std::error_code ec;
  if (fs::exists(final_dir, ec)) {
    return fail(ErrorCode::AlreadyExists, "Export '" + export_id + "' was made before");
  }
  fs::rename(staging, final_dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot keep the exported images of '" + vm_id + "' as '" +
                                   final_dir.string() + "': " + ec.message());
  }
  const std::string vm_dir = root_ + "/vms/" + vm_id + "/";
  for (auto it = fs::directory_iterator(vm_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string file = it->path().filename().string();
    const std::string suffix = ".export.qcow2";
    if (file.size() > suffix.size() && file.ends_with(suffix)) {
      const std::string id = file.substr(0, file.size() - suffix.size());
      std::error_code rec;
      fs::rename(it->path(), vm_dir + id + ".qcow2", rec);
      if (rec) {
        return fail(ErrorCode::Io, "Cannot put the overlay of disk '" + id + "' of '" + vm_id +
                                       "' in place: " + rec.message());
      }
    }
  }
  VANDRA_TRY(detail::writeSmallFile(final_dir / "vmspec.json", spec_json));
  return detail::writeSmallFile(final_dir / detail::kKeptFile,
                                json{{"kind", "export"},
                                     {"vm", vm_id},
                                     {"export_id", export_id},
                                     {"at", static_cast<int64_t>(::time(nullptr))},
                                     {"expires", expires_unix}}
                                    .dump());
}

void ImageStore::discardExport(const std::string& vm_id) {
  std::error_code ec;
  const std::string vm_dir = root_ + "/vms/" + vm_id + "/";
  for (auto it = fs::directory_iterator(vm_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->path().filename().string().ends_with(".export.qcow2")) {
      std::error_code rec;
      fs::remove(it->path(), rec);
    }
  }
  fs::remove_all(stagingDir(root_, vm_id), ec);
}

std::vector<std::string> ImageStore::completeExports(int64_t expires_unix,
                                                     const std::string& only_vm) {
  const std::string suffix = ".export.qcow2";
  const std::string prefix = ".export-";
  std::vector<std::string> done;
  std::error_code ec;
  std::set<std::string> vms;  // VMs with a staging folder or an overlay left
  for (auto it = fs::directory_iterator(root_ + "/base", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) == 0) {
      vms.insert(name.substr(prefix.size()));
    }
  }
  for (auto vm = fs::directory_iterator(root_ + "/vms", ec); !ec && vm != fs::directory_iterator();
       vm.increment(ec)) {
    std::error_code dec;
    for (auto d = fs::directory_iterator(vm->path(), dec); !dec && d != fs::directory_iterator();
         d.increment(dec)) {
      if (d->path().filename().string().ends_with(suffix)) {
        vms.insert(vm->path().filename().string());
      }
    }
  }
  for (const auto& vm : vms) {
    if (!only_vm.empty() && vm != only_vm) {
      continue;
    }
    const std::string vm_dir = root_ + "/vms/" + vm + "/";
    const std::string staging = stagingDir(root_, vm);
    std::vector<fs::path> overlays;
    std::error_code dec;
    for (auto d = fs::directory_iterator(vm_dir, dec); !dec && d != fs::directory_iterator();
         d.increment(dec)) {
      if (d->path().filename().string().ends_with(suffix)) {
        overlays.push_back(d->path());
      }
    }
    std::error_code rec;
    if (overlays.empty()) {
      fs::remove_all(staging, rec);  // staged no overlay yet: second names only
      continue;
    }
    // Where the frozen images go: the folder the overlays' backing file names.
    auto info = runCapture({"qemu-img", "info", "--output=json", "-U", overlays.front().string()});
    const auto j = info ? json::parse(*info, nullptr, false) : json();
    const fs::path frozen = j.is_object() ? fs::path(j.value("backing-filename", "")) : fs::path();
    const fs::path final_dir = frozen.parent_path();
    if (final_dir.parent_path() != fs::path(root_) / "base" ||
        !isHexKey(final_dir.filename().string())) {
      continue;  // not one of ours: left for an operator to look at
    }
    if (fs::exists(staging, rec)) {
      fs::rename(staging, final_dir, rec);
      if (rec) {
        continue;
      }
    }
    for (const auto& o : overlays) {
      const std::string file = o.filename().string();
      fs::rename(o, vm_dir + file.substr(0, file.size() - suffix.size()) + ".qcow2", rec);
    }
    if (!fs::exists(final_dir / detail::kKeptFile, rec)) {
      (void)detail::writeSmallFile(final_dir / "vmspec.json", "{}");
      (void)detail::writeSmallFile(final_dir / detail::kKeptFile,
                                   json{{"kind", "export"},
                                        {"vm", vm},
                                        {"export_id", ""},
                                        {"at", static_cast<int64_t>(::time(nullptr))},
                                        {"expires", expires_unix}}
                                       .dump());
    }
    done.push_back(vm);
  }
  return done;
}

Result<void> ImageStore::recordExportPackage(const std::string& export_id,
                                             const std::string& package_key) {
  if (!isHexKey(package_key)) {
    return fail(ErrorCode::InvalidArgument, "Bad package key '" + package_key.substr(0, 80) + "'");
  }
  const fs::path dir = fs::path(root_) / "base" / exportKey(export_id);
  auto k = detail::readKept(dir);
  if (!k || k->value("kind", "") != "export") {
    return fail(ErrorCode::NotFound, "No export '" + export_id + "' in the store");
  }
  (*k)["package_key"] = package_key;
  return detail::writeSmallFile(dir / detail::kKeptFile, k->dump());
}

Result<int64_t> ImageStore::markSeed(const std::string& key, int64_t expires_unix, bool fresh) {
  const fs::path dir = fs::path(root_) / "base" / key;
  std::error_code ec;
  if (!isHexKey(key) || !fs::exists(dir / "vmspec.json", ec)) {
    return fail(ErrorCode::NotFound, "No base image '" + key.substr(0, 80) + "' in the store");
  }
  auto k = detail::readKept(dir);
  if (k ? k->value("kind", "") != "seed" : !fresh) {
    return int64_t{0};  // kept for a move back, or an ordinary package imported before
  }
  const int64_t until = std::max(expires_unix, k ? k->value("expires", int64_t{0}) : 0);
  VANDRA_TRY(detail::writeSmallFile(
      dir / detail::kKeptFile,
      json{{"kind", "seed"}, {"at", static_cast<int64_t>(::time(nullptr))}, {"expires", until}}
          .dump()));
  return until;
}

}  // namespace vandra::agent
