// Reads an OVF descriptor (0.9 to 2.1, as real tools write them) into a VmSpec.
// Treats its input as hostile: no DTD, no entities, bounded size and depth. Does no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::ovf {

/// Limits on descriptor input. The largest real descriptor in the corpus is 142 KB
/// (vCSA 6.5); 32 MiB leaves room for huge ProductSection blobs yet bounds memory.
inline constexpr size_t kMaxDescriptorBytes = 32U << 20;
/// Real descriptors nest about 8 deep; nested VirtualSystemCollections add 2 per level.
inline constexpr int kMaxXmlDepth = 64;
inline constexpr size_t kMaxXmlElements = 1U << 20;

struct ReadOptions {
  /// Deployment option to read; "" selects the default one (ovf:default="true", else the
  /// first listed, as DSP0243 says).
  std::string configuration;
  /// DSP0243 §? extensibility: unknown required sections become warnings instead of errors.
  bool lax = false;
};

/// What reading found. `problems` are what makes the descriptor unsound (each an Error with
/// its code and line); in lax mode they are moved to spec.warnings instead.
struct DescriptorReadResult {
  VmSpec spec;
  std::vector<Error> problems;
};

/// Parses @p xml. Fails outright (XmlMalformed, XmlForbidden, LimitExceeded, OvfInvalid)
/// only when no VmSpec can be built; other faults are listed in `problems`.
[[nodiscard]] Result<DescriptorReadResult> readDescriptor(std::string_view xml,
                                                          const ReadOptions& options);

/// Returns the SLA of virtual system @p vs_id ("" = the first) or nullopt.
/// Same hostile-input rules as readDescriptor.
[[nodiscard]] Result<std::optional<Sla>> readSla(std::string_view xml, std::string_view vs_id);

/// Returns @p xml with the SLA section of virtual system @p vs_id ("" = every virtual system)
/// replaced by @p sla, or removed when @p sla is nullopt. Everything else in the document is
/// kept as it was. Errors: as readDescriptor, SlaInvalid, NotFound for an unknown vs_id.
[[nodiscard]] Result<std::string> rewriteSla(std::string_view xml, std::string_view vs_id,
                                             const std::optional<Sla>& sla);

}  // namespace vandra::ovf
