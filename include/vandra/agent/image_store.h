// The site's image store: an imported package's disks become shared qcow2 base images
// (imported once per package content), and each VM gets its own qcow2 overlays on them.
// Layout: <root>/base/<key>/{vmspec.json,*.qcow2}, <root>/vms/<vm>/<disk>.qcow2.
// Must not: delete a base image a VM still uses, or leave half-imported folders behind.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::agent {

struct BaseImage {
  std::string key;                   // content key (hex)
  std::string dir;                   // <root>/base/<key>
  ovf::VmSpec spec;                  // disks point at qcow2 files in dir
  bool reused = false;               // already in the store: nothing was converted
};

struct VmDisk {
  std::string disk_id;
  std::string path;                  // the VM's overlay
  uint64_t capacity_bytes = 0;
};

class ImageStore {
public:
  /// Opens (creating) the store under @p root.
  [[nodiscard]] static Result<ImageStore> open(const std::string& root);

  /// Verifies and imports @p package (ovf::importPackage) unless a package with the same
  /// content key is already there. The key is SHA-256 over the descriptor, the manifest and
  /// the member names and sizes. Atomic: staged in the store, renamed into place.
  [[nodiscard]] Result<BaseImage> importBase(const std::string& package, const ovf::ImportOptions& options);

  /// Creates overlays for virtual system @p vs of @p base for VM @p vm_id. Errors:
  /// AlreadyExists (the VM has disks), NotFound (no such virtual system).
  [[nodiscard]] Result<std::vector<VmDisk>> createOverlays(const std::string& vm_id, const BaseImage& base,
                                                           const std::string& vs_id);

  /// Creates overlays for VM @p vm_id on the same base images as VM @p source_vm's disks
  /// @p disk_ids (each overlay's backing file, read with `qemu-img info`). Errors:
  /// AlreadyExists, NotFound (the source has no such disk), Subprocess.
  [[nodiscard]] Result<std::vector<VmDisk>> overlaysLike(const std::string& vm_id, const std::string& source_vm,
                                                         const std::vector<std::pair<std::string, uint64_t>>& disk_ids);

  /// Removes the VM's overlays (idempotent).
  [[nodiscard]] Result<void> removeVm(const std::string& vm_id);

  const std::string& root() const { return root_; }

private:
  explicit ImageStore(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

} // namespace vandra::agent
