// The operations users run on a package: inspect (package + descriptor checked against each
// other -> VmSpec), validate (every problem listed), and import (extract, decompress and
// convert disks to qcow2 in a folder). Shared by the CLI and, later, the agent.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/package.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::ovf {

struct InspectOptions {
  bool lax = false;           // problems become warnings (ovftool --lax)
  std::string configuration;  // deployment option ("" = default)
  std::string trust_store;    // CA file/dir for signatures ("" = system default)
  bool verify_digests = true;
  std::function<void(uint64_t, uint64_t)> progress;  // bytes read / total
  std::vector<std::string> extra_trust;              // CA files trusted as well
};

struct Inspection {
  VmSpec spec;                  // warnings include package warnings
  Package package;              // descriptor text, members, manifest, signature
  std::vector<Error> problems;  // package + descriptor + cross-reference problems, in order
};

/// Opens and checks everything; never stops at the first problem. Fails outright only when
/// the package cannot be read at all or the descriptor cannot be parsed.
[[nodiscard]] Result<Inspection> inspectPackage(const std::string& path,
                                                const InspectOptions& options);

/// The problems of @p inspection as one error for callers that need a sound package: the
/// first problem, its message suffixed with how many more there are. Ok when none.
[[nodiscard]] Result<void> requireSound(const Inspection& inspection);

struct ImportOptions {
  InspectOptions inspect;
  std::string virtual_system;  // id; "" = every virtual system
  /// Progress: stage text ("verify", "extract", "convert disk1"), fraction 0..1.
  std::function<void(const std::string&, double)> progress;
};

struct ImportedDisk {
  std::string vs_id;
  std::string disk_id;
  std::string path;  // qcow2 file in the destination folder
  uint64_t capacity_bytes = 0;
};

struct ImportResult {
  VmSpec spec;
  std::vector<ImportedDisk> disks;
};

/// The file name importPackage gives disk @p disk_id of virtual system @p vs_id
/// ("<vs>-<disk>.qcow2", characters outside [A-Za-z0-9._-] replaced).
std::string importedDiskName(const std::string& vs_id, const std::string& disk_id);

/// Verifies the package (refusing unsound ones unless lax), extracts it into a staging
/// folder inside @p dest_dir, reassembles chunks, decompresses gzip members, converts every
/// disk to qcow2 (`<vs>-<disk>.qcow2`) checking its real format and capacity against the
/// descriptor, writes `vmspec.json`, and removes the staging folder. On error @p dest_dir is
/// left as it was.
[[nodiscard]] Result<ImportResult> importPackage(const std::string& path,
                                                 const std::string& dest_dir,
                                                 const ImportOptions& options);

}  // namespace vandra::ovf
