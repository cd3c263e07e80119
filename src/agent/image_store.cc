#include "vandra/agent/image_store.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;

std::string sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

Result<ovf::VmSpec> readSpec(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec || size > (16U << 20)) {
    return fail(ErrorCode::Io, "Cannot read '" + path + "'");
  }
  std::string text(size, '\0');
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return fail(Error::fromErrno("Cannot read '" + path + "'"));
  }
  const size_t got = std::fread(text.data(), 1, size, f);
  std::fclose(f);
  text.resize(got);
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::Io, "'" + path + "' is not valid JSON");
  }
  return ovf::vmSpecFromJson(j);
}

}  // namespace

Result<ImageStore> ImageStore::open(const std::string& root) {
  std::error_code ec;
  for (const char* sub : {"base", "vms"}) {
    fs::create_directories(fs::path(root) / sub, ec);
    if (ec) {
      return fail(ErrorCode::Io,
                  "Cannot create '" + (fs::path(root) / sub).string() + "': " + ec.message());
    }
  }
  return ImageStore(fs::absolute(root).string());
}

std::string ImageStore::packageKey(const ovf::Package& package) {
  std::string material = package.descriptor;
  if (package.manifest) {
    for (const auto& e : *package.manifest) {
      material += "\n" + e.file + "=" + e.hex_digest;
    }
  }
  for (const auto& m : package.members) {
    material += "\n" + m.name + ":" + std::to_string(m.size);
  }
  return sha256Hex(material);
}

Result<BaseImage> ImageStore::importBase(const std::string& package,
                                         const ovf::ImportOptions& options) {
  // Verify first (also gives the content for the key); importPackage verifies again while it
  // extracts, which is what protects the conversion.
  VANDRA_TRY_ASSIGN(const ovf::Inspection insp, ovf::inspectPackage(package, options.inspect));
  if (!options.inspect.lax) {
    VANDRA_TRY(ovf::requireSound(insp));
  }
  BaseImage base;
  base.key = packageKey(insp.package);
  base.dir = root_ + "/base/" + base.key;
  std::error_code ec;
  if (fs::exists(base.dir + "/vmspec.json", ec)) {
    VANDRA_TRY_ASSIGN(base.spec, readSpec(base.dir + "/vmspec.json"));
    base.reused = true;
    return base;
  }
  const std::string staging =
      root_ + "/base/.import-" + base.key + "-" + std::to_string(::getpid());
  fs::remove_all(staging, ec);
  auto cleanup = defer([&] { fs::remove_all(staging, ec); });
  VANDRA_TRY_ASSIGN(ovf::ImportResult r, ovf::importPackage(package, staging, options));
  fs::rename(staging, base.dir, ec);
  if (ec && !fs::exists(base.dir + "/vmspec.json")) {
    return fail(ErrorCode::Io, "Cannot move the import into '" + base.dir + "': " + ec.message());
  }
  // Another import of the same content may have won the rename race; either is complete.
  cleanup.dismiss();
  fs::remove_all(staging, ec);
  VANDRA_TRY_ASSIGN(base.spec, readSpec(base.dir + "/vmspec.json"));
  return base;
}

namespace {
// A new VM's own folder; AlreadyExists when the VM has one.
Result<void> makeVmDir(const std::string& dir) {
  std::error_code ec;
  if (!fs::create_directory(dir, ec)) {
    return fail(ec ? ErrorCode::Io : ErrorCode::AlreadyExists,
                "VM folder '" + dir + "' already exists or cannot be made");
  }
  return {};
}
}  // namespace

Result<std::vector<VmDisk>> ImageStore::createOverlays(const std::string& vm_id,
                                                       const BaseImage& base,
                                                       const std::string& vs_id) {
  const ovf::VirtualSystemSpec* vs = nullptr;
  for (const auto& v : base.spec.virtual_systems) {
    if (vs_id.empty() ? vs == nullptr : v.id == vs_id) {
      vs = &v;
    }
  }
  if (vs == nullptr) {
    return fail(ErrorCode::NotFound, "No virtual system '" + vs_id + "' in the package");
  }
  const std::string dir = root_ + "/vms/" + vm_id;
  VANDRA_TRY(makeVmDir(dir));
  std::error_code ec;
  auto cleanup = defer([&] { fs::remove_all(dir, ec); });
  std::vector<VmDisk> out;
  for (const auto& d : vs->disks) {
    if (!d.file) {
      return fail(ErrorCode::Internal, "Imported disk '" + d.id + "' has no file");
    }
    VmDisk disk{d.id, dir + "/" + d.id + ".qcow2", d.capacity_bytes};
    // The overlay reads the shared base; writes stay in the VM's own file.
    VANDRA_TRY(runCapture({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                           base.dir + "/" + *d.file, disk.path}));
    out.push_back(std::move(disk));
  }
  cleanup.dismiss();
  return out;
}

Result<std::string> ImageStore::baseInStore(const std::string& disk) const {
  VANDRA_TRY_ASSIGN(const std::string info,
                    runCapture({"qemu-img", "info", "--output=json", "-U", disk}));
  const auto j = nlohmann::json::parse(info, nullptr, false);
  const std::string base =
      j.is_object() ? j.value("full-backing-filename", j.value("backing-filename", "")) : "";
  if (base.empty() || base.rfind(root_ + "/base/", 0) != 0 ||
      base.find("/../") != std::string::npos) {
    return std::string();
  }
  return base;
}

Result<std::vector<VmDisk>> ImageStore::overlaysLike(
    const std::string& vm_id, const std::string& source_vm,
    const std::vector<std::pair<std::string, uint64_t>>& disk_ids) {
  const std::string dir = root_ + "/vms/" + vm_id;
  VANDRA_TRY(makeVmDir(dir));
  std::error_code ec;
  auto cleanup = defer([&] { fs::remove_all(dir, ec); });
  std::vector<VmDisk> out;
  for (const auto& [id, capacity] : disk_ids) {
    const std::string source = root_ + "/vms/" + source_vm + "/" + id + ".qcow2";
    if (!fs::exists(source, ec)) {
      return fail(ErrorCode::NotFound, "VM '" + source_vm + "' has no disk '" + id + "'");
    }
    // Only a base inside this store: an overlay never points a new VM anywhere else.
    VANDRA_TRY_ASSIGN(const std::string base, baseInStore(source));
    if (base.empty()) {
      return fail(ErrorCode::DiskImageInvalid,
                  "Disk '" + id + "' of '" + source_vm + "' has no base image in the store");
    }
    VmDisk disk{id, dir + "/" + id + ".qcow2", capacity};
    VANDRA_TRY(runCapture(
        {"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, disk.path}));
    out.push_back(std::move(disk));
  }
  cleanup.dismiss();
  return out;
}

namespace {
// A base image's identity across sites: its package's content key and its file name.
std::string digestOf(const std::string& key, const std::string& file) {
  return sha256Hex("vandra base image\n" + key + "\n" + file);
}
}  // namespace

std::string ImageStore::arrivalKey(const std::string& migration_id) {
  return sha256Hex("vandra arrival\n" + migration_id);
}

std::string ImageStore::exportKey(const std::string& export_id) {
  return sha256Hex("vandra export\n" + export_id);
}

Result<std::string> ImageStore::baseDigest(const std::string& vm_id,
                                           const std::string& disk_id) const {
  const std::string disk = root_ + "/vms/" + vm_id + "/" + disk_id + ".qcow2";
  std::error_code ec;
  if (!fs::exists(disk, ec)) {
    return fail(ErrorCode::NotFound, "VM '" + vm_id + "' has no disk '" + disk_id + "'");
  }
  VANDRA_TRY_ASSIGN(const std::string base, baseInStore(disk));
  const std::string prefix = root_ + "/base/";
  if (base.empty()) {
    return std::string();
  }
  const fs::path rel = fs::path(base.substr(prefix.size()));
  auto it = rel.begin();
  if (std::distance(rel.begin(), rel.end()) != 2) {
    return std::string();  // not <key>/<file>
  }
  const std::string key = it->string();
  const std::string file = (++it)->string();
  return digestOf(identityOf(key), file);
}

std::optional<std::string> ImageStore::findBase(const std::string& digest) const {
  std::error_code ec;
  for (auto d = fs::directory_iterator(root_ + "/base", ec); !ec && d != fs::directory_iterator();
       d.increment(ec)) {
    const std::string key = d->path().filename().string();
    if (key.empty() || key[0] == '.' || !fs::exists(d->path() / "vmspec.json", ec)) {
      continue;  // a staging folder or an import in progress
    }
    const std::string identity = identityOf(key);
    std::error_code fec;
    for (auto f = fs::directory_iterator(d->path(), fec); !fec && f != fs::directory_iterator();
         f.increment(fec)) {
      if (f->path().extension() == ".qcow2" &&
          digestOf(identity, f->path().filename().string()) == digest) {
        return f->path().string();
      }
    }
  }
  return std::nullopt;
}

Result<std::vector<VmDisk>> ImageStore::createIncoming(const std::string& vm_id,
                                                       const std::vector<IncomingDisk>& disks) {
  const std::lock_guard hold(*retention_mu_);
  const std::string dir = root_ + "/vms/" + vm_id;
  std::error_code ec;
  // The caller holds the VM's lock and knows no VM of that name: a folder there is a
  // leftover of an earlier, interrupted incoming migration.
  fs::remove_all(dir, ec);
  VANDRA_TRY(makeVmDir(dir));
  auto cleanup = defer([&] { fs::remove_all(dir, ec); });
  std::vector<VmDisk> out;
  for (const auto& d : disks) {
    VmDisk disk{d.disk_id, dir + "/" + d.disk_id + ".qcow2", d.capacity_bytes};
    if (d.base_path.empty()) {
      VANDRA_TRY(runCapture({"qemu-img", "create", "-q", "-f", "qcow2", disk.path,
                             std::to_string(d.capacity_bytes)}));
    } else {
      // The same virtual size as the source's disk, whatever the base's own size.
      VANDRA_TRY(runCapture({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                             d.base_path, disk.path, std::to_string(d.capacity_bytes)}));
    }
    out.push_back(std::move(disk));
  }
  cleanup.dismiss();
  return out;
}

Result<void> ImageStore::removeVm(const std::string& vm_id) {
  std::error_code ec;
  fs::remove_all(root_ + "/vms/" + vm_id, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot remove the disks of '" + vm_id + "': " + ec.message());
  }
  return {};
}

}  // namespace vandra::agent
