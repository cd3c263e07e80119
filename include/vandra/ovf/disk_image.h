// Disk images of a package: identify the real format of an image (never trusting its name
// or the descriptor), and convert to qcow2 / streamOptimized VMDK with qemu-img
// (Debian's qemu-utils), reporting progress.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "vandra/common/result.h"

namespace vandra::ovf {

struct ImageInfo {
  std::string format;     // qemu-img's name: "vmdk", "qcow2", "raw", "vpc", "vhdx"
  std::string subformat;  // VMDK create type: "streamOptimized", "monolithicSparse", ...
  uint64_t virtual_size = 0;
  uint64_t actual_size = 0;
  /// Names another file the image reads from (qcow2/vmdk backing file, vmdk extent outside
  /// the image, qcow2 external data file); "" when the image is self-contained. Hostile
  /// images use this to read host files, so convertImage refuses such sources.
  std::string external_file;
};

/// `qemu-img info --output=json` on @p path, with the format probed from content.
/// Errors: Subprocess, DiskImageInvalid (unreadable / not an image).
[[nodiscard]] Result<ImageInfo> probeImage(const std::string& path);

/// Converts @p src to @p dst in @p dst_format ("qcow2" or "vmdk-stream"), calling
/// @p progress with 0..1. @p expected_capacity (bytes, 0 = unchecked) must equal the image's
/// virtual size, else DiskImageInvalid. Sources that are not self-contained
/// (ImageInfo::external_file) are refused (DiskImageInvalid), except a qcow2 whose backing file
/// lies inside folder @p backing_within (an agent's own store; "" = none allowed): the chain
/// is read whole. On error @p dst is removed.
[[nodiscard]] Result<void> convertImage(const std::string& src, const std::string& dst,
                                        const std::string& dst_format, uint64_t expected_capacity,
                                        const std::function<void(double)>& progress,
                                        const std::string& backing_within = "");

}  // namespace vandra::ovf
