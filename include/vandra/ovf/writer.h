// Writes OVF packages: descriptor XML from a VmSpec (OVF 1.0 by default, 2.0 on request),
// streamOptimized VMDK disks, SHA256 manifest, optional signature, OVA (descriptor first,
// ustar). Output is what VMware ovftool and VirtualBox expect: hardware family, RASD element
// order, CIM OperatingSystemSection ids.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "vandra/common/result.h"
#include "vandra/ovf/package.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::ovf {

enum class WriteVersion : uint8_t { V1_0, V2_0 };

/// Builds the descriptor for @p spec. Pure function (no I/O). Disk `file` names and
/// FileSpec entries of @p spec are used as given. Errors: InvalidArgument naming the field.
[[nodiscard]] Result<std::string> writeDescriptor(const VmSpec& spec, WriteVersion version);

struct ExportOptions {
  WriteVersion version = WriteVersion::V1_0;
  bool ova = true;        // one .ova file; else a folder with .ovf/.mf/.vmdk
  std::string name;       // base name of the .ovf/.mf/.cert members ("" = first VS)
  std::string sign_key;   // PEM private key ("" = unsigned)
  std::string sign_cert;  // PEM certificate (chain) matching sign_key
  /// Disk id -> source image path (any format qemu-img reads).
  std::map<std::string, std::string> disk_images;
  /// Images may be qcow2 overlays on backing files inside this folder (an agent exporting
  /// its own VM's disks from its store); "" = self-contained images only.
  std::string backing_within;
  /// Progress: stage ("convert disk1", "write ova"), fraction 0..1.
  std::function<void(const std::string&, double)> progress;
};

/// Exports @p spec and its disk images to @p out_path. Images are converted to
/// streamOptimized VMDK with qemu-img; capacities are checked against the spec. Writes to a
/// temporary name and renames on success: on error nothing is left at @p out_path.
[[nodiscard]] Result<void> exportPackage(const VmSpec& spec, const std::string& out_path,
                                         const ExportOptions& options);

/// Replaces (or with nullopt removes) the SLA section of every virtual system (or of
/// @p vs_id) of the package at @p path, in place. The manifest is refreshed; a signature is
/// renewed when @p sign_key/@p sign_cert are given, else removed (and reported in the
/// returned warning text) because it no longer matches. Atomic: on error the package is
/// unchanged.
struct SlaEditOptions {
  std::string vs_id;
  std::string sign_key;
  std::string sign_cert;
  bool lax = false;
  std::string trust_store;  // for verifying the existing signature ("" = system default)
};
[[nodiscard]] Result<std::vector<std::string>> editPackageSla(const std::string& path,
                                                              const std::optional<Sla>& sla,
                                                              const SlaEditOptions& options);

}  // namespace vandra::ovf
