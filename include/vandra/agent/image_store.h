// The site's image store: an imported package's disks become shared qcow2 base images
// (imported once per package content), and each VM gets its own qcow2 overlays on them.
// Layout: <root>/base/<key>/{vmspec.json,*.qcow2}, <root>/vms/<vm>/<disk>.qcow2.
// Must not: delete a base image a VM still uses, or leave half-imported folders behind.
//
// Return trips (ADR 0027): a migration's two sites both keep the disks as they stood at its
// switchover, under one key both derive from the migration's id (arrivalKey), as if they
// were a package's base images. The site the VM left keeps what it left (retainDeparted,
// for a time set by policy); the site it arrived at freezes the arrival image under the
// guest and writes on in a new overlay (stageArrival before the move, commitArrival at its
// end). A move back then finds the base at its target and sends only the overlay:
//
//   dc (source of m1)                     cloud (target of m1)
//   vms/web/d.qcow2 ── m1 ──mirror──────> vms/web/d.qcow2 (receives the copy)
//   after m1: base/<K(m1)>/d.qcow2        base/<K(m1)>/d.qcow2 (the same file, frozen)
//             (kept until it expires)     vms/web/d.qcow2 = overlay on it: what changed
//   m2, back:  vms/web/d.qcow2 = overlay on base/<K(m1)>  <── only the overlay ── cloud
#pragma once

#include <functional>
#include <memory>
#include <mutex>
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

  /// A package's content key: SHA-256 over the descriptor, the manifest and the member names
  /// and sizes (what importBase names the base folder by).
  static std::string packageKey(const ovf::Package& package);

  /// Verifies and imports @p package (ovf::importPackage) unless a package with the same
  /// content key is already there. Atomic: staged in the store, renamed into place.
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

  // ---- return trips (image_retention.cc) ------------------------------------------------

  /// The key under which both sites of migration @p migration_id keep the disks as they
  /// stood at its switchover (64 hex).
  static std::string arrivalKey(const std::string& migration_id);

  /// Target, once VM @p vm_id's incoming disks exist: a second name for each disk image in a
  /// staging folder (the same file: it is the arrival image) and, beside the VM's disk, a new
  /// empty overlay on the arrival image's final path, for commitArrival to put under the
  /// guest. Replaces a staging left by an earlier attempt. Errors: Io, Subprocess.
  struct ArrivalDisk {
    std::string disk_id;
    uint64_t capacity_bytes = 0;
    std::string overlay;  // the new overlay's path while staged (<disk>.next.qcow2)
  };
  [[nodiscard]] Result<std::vector<ArrivalDisk>> stageArrival(
      const std::string& vm_id, const std::string& migration_id,
      const std::vector<std::pair<std::string, uint64_t>>& disks);
  /// Target, after QEMU took the staged overlays of @p disk_ids (blockdev-snapshot): the
  /// arrival images become base/<arrivalKey>/ (with @p spec_json) and each overlay the VM's
  /// disk. Disks not named are unstaged (the VM keeps writing into its arrival image).
  [[nodiscard]] Result<void> commitArrival(const std::string& vm_id,
                                           const std::string& migration_id,
                                           const std::vector<std::string>& disk_ids,
                                           const std::string& spec_json);
  /// Removes what stageArrival made for VM @p vm_id (idempotent).
  void discardArrival(const std::string& vm_id);

  /// Source, once VM @p vm_id runs at the other site: keeps its disks (closed) as
  /// base/<arrivalKey(@p migration_id)>/ until @p expires_unix (seconds), instead of
  /// removing them. Errors: Io.
  [[nodiscard]] Result<void> retainDeparted(const std::string& vm_id,
                                            const std::string& migration_id,
                                            const std::string& spec_json, int64_t expires_unix);
  // ---- seeded moves (image_export.cc, ADR 0029) ------------------------------------------

  /// The folder an export of a VM freezes its disks in: base/<exportKey(@p export_id)>/.
  static std::string exportKey(const std::string& export_id);
  /// Export, while VM @p vm_id's operation lock is held: a second name for each disk image
  /// in a staging folder, under the name the import of the exported package gives it
  /// (ovf::importedDiskName(@p vs_id, disk)), and beside the VM's disk a new empty overlay on
  /// the image's final path, for the caller to put under the guest (or, with no QEMU
  /// running, for commitExport alone). Errors: NotFound (a disk), Io, Subprocess.
  struct ExportDisk {
    std::string disk_id;
    std::string frozen;   // the frozen image's final path: base/<exportKey>/<import name>
    std::string overlay;  // the new overlay while staged (<disk>.export.qcow2)
  };
  [[nodiscard]] Result<std::vector<ExportDisk>> stageExport(
      const std::string& vm_id, const std::string& export_id, const std::string& vs_id,
      const std::vector<std::pair<std::string, uint64_t>>& disks);
  /// After the overlays stand over the frozen images (in QEMU or, stopped, on disk): the
  /// staging folder becomes base/<exportKey>/ (kind "export", with @p spec_json, kept until
  /// @p expires_unix once nothing stands on it) and each overlay the VM's disk.
  [[nodiscard]] Result<void> commitExport(const std::string& vm_id, const std::string& export_id,
                                          const std::string& spec_json, int64_t expires_unix);
  /// Removes what stageExport made for VM @p vm_id (idempotent). Only before QEMU was asked
  /// to take the overlays: from then on an export is completed, never undone.
  void discardExport(const std::string& vm_id);
  /// At start: completes the exports a crash (or a failed commitExport) left half done, rolled
  /// forward whether or not QEMU had taken the overlays: an overlay QEMU never wrote is empty
  /// and stands on the very file the guest wrote on, so each disk reads the same either way,
  /// while undoing one QEMU took would lose what the guest wrote since. Staging folders with no
  /// overlay are removed (only second names of the disks). @p only_vm: that VM's alone (its
  /// operation lock held), else every VM's (at start). Returns the VMs completed.
  std::vector<std::string> completeExports(int64_t expires_unix, const std::string& only_vm = "");
  /// Once the exported package is written: its content key (packageKey). The frozen images
  /// then have the identity (baseDigest) that the same package's images have at any site
  /// that imports it, so a live move to such a site sends only what changed since.
  [[nodiscard]] Result<void> recordExportPackage(const std::string& export_id,
                                                 const std::string& package_key);
  /// A site that imported a package as a seed (importBase; @p fresh: this import made the
  /// folder) keeps its images until @p expires_unix once nothing stands on them (kind
  /// "seed"; a later seed of the same package extends it). A folder imported before as an
  /// ordinary package, or kept for a move back, is left as it is. Errors: NotFound, Io.
  /// Returns the expiry now recorded (0: none, the folder is not a seed).
  [[nodiscard]] Result<int64_t> markSeed(const std::string& key, int64_t expires_unix, bool fresh);

  /// Removes kept images no disk of a VM here (or another kept image) stands on any more:
  /// departed, export and seed ones once they expired (at @p now_unix), arrival ones once
  /// unused. Returns the keys removed.
  std::vector<std::string> sweepRetained(int64_t now_unix);

  const std::string& root() const { return root_; }

 private:
  explicit ImageStore(std::string root) : root_(std::move(root)) {}
  /// @p disk's backing file when it lies in this store's base folder, else "" (qemu-img info).
  Result<std::string> baseInStore(const std::string& disk) const;
  /// The content key base folder @p key stands for: the exported package's for an export's
  /// frozen images (recordExportPackage), else @p key itself.
  std::string identityOf(const std::string& key) const;
  std::string root_;
  // The sweep against an incoming VM's disks being made on a kept image (a departed VM's
  // disks found at preflight must still be there when its overlay is created).
  std::shared_ptr<std::mutex> retention_mu_ = std::make_shared<std::mutex>();
};

}  // namespace vandra::agent
