// The site's image store: an imported package's disks become shared qcow2 base images
// (imported once per package content), and each VM gets its own qcow2 overlays on them.
// Layout: <root>/base/<key>/{vmspec.json,*.qcow2}, <root>/vms/<vm>/<disk>.qcow2.
// Must not: delete a base image a VM still uses, or leave half-imported folders behind.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::agent {

struct BaseImage {
  std::string key;      // content key (hex)
  std::string dir;      // <root>/base/<key>
  ovf::VmSpec spec;     // disks point at qcow2 files in dir
  bool reused = false;  // already in the store: nothing was converted
};

struct VmDisk {
  std::string disk_id;
  std::string path;  // the VM's overlay
  uint64_t capacity_bytes = 0;
};

class ImageStore {
 public:
  /// Opens (creating) the store under @p root.
  [[nodiscard]] static Result<ImageStore> open(const std::string& root);

  /// Verifies and imports @p package (ovf::importPackage) unless a package with the same
  /// content key is already there. The key is SHA-256 over the descriptor, the manifest and
  /// the member names and sizes. Atomic: staged in the store, renamed into place.
  [[nodiscard]] Result<BaseImage> importBase(const std::string& package,
                                             const ovf::ImportOptions& options);

  /// Creates overlays for virtual system @p vs of @p base for VM @p vm_id. Errors:
  /// AlreadyExists (the VM has disks), NotFound (no such virtual system).
  [[nodiscard]] Result<std::vector<VmDisk>> createOverlays(const std::string& vm_id,
                                                           const BaseImage& base,
                                                           const std::string& vs_id);

  /// Creates overlays for VM @p vm_id on the same base images as VM @p source_vm's disks
  /// @p disk_ids (each overlay's backing file, read with `qemu-img info`). Errors:
  /// AlreadyExists, NotFound (the source has no such disk), Subprocess.
  [[nodiscard]] Result<std::vector<VmDisk>> overlaysLike(
      const std::string& vm_id, const std::string& source_vm,
      const std::vector<std::pair<std::string, uint64_t>>& disk_ids);

  /// The identity of the base image under VM @p vm_id's disk @p disk_id: a digest (64 hex)
  /// of the base's content key and file name, the same at every site that imported the same
  /// package; "" when the disk has no base in this store (e.g. it arrived as a full copy).
  /// Errors: NotFound (no such disk), Subprocess (qemu-img).
  [[nodiscard]] Result<std::string> baseDigest(const std::string& vm_id,
                                               const std::string& disk_id) const;

  /// The base image whose baseDigest() is @p digest, if this store holds it: its path.
  [[nodiscard]] std::optional<std::string> findBase(const std::string& digest) const;

  /// Creates VM @p vm_id's disks for an incoming migration: an empty image of each disk's
  /// virtual size, or, for a disk with a base path, an overlay on that base (only the
  /// source's overlay is then copied). Errors: AlreadyExists, Subprocess.
  struct IncomingDisk {
    std::string disk_id;
    uint64_t capacity_bytes = 0;
    std::string base_path;  // "" = an empty image
  };
  [[nodiscard]] Result<std::vector<VmDisk>> createIncoming(const std::string& vm_id,
                                                           const std::vector<IncomingDisk>& disks);

  /// Removes the VM's overlays (idempotent).
  [[nodiscard]] Result<void> removeVm(const std::string& vm_id);

  const std::string& root() const { return root_; }

 private:
  explicit ImageStore(std::string root) : root_(std::move(root)) {}
  /// @p disk's backing file when it lies in this store's base folder, else "" (qemu-img info).
  Result<std::string> baseInStore(const std::string& disk) const;
  std::string root_;
};

}  // namespace vandra::agent
