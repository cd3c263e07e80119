// The small file that marks a folder of the image store as a kept image (return trips,
// ADR 0027; seeded moves, ADR 0029), shared by image_retention.cc and image_export.cc.
//   base/<key>/retained.json = {"kind": "arrival"|"departed"|"export"|"seed",
//                               "vm", "at", "expires", ["package_key"]}
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "vandra/common/result.h"

namespace vandra::agent::detail {

inline constexpr const char* kKeptFile = "retained.json";

/// The folder's retained.json when it has a readable one (at most 64 KiB).
std::optional<nlohmann::json> readKept(const std::filesystem::path& dir);

/// Replaces @p path whole (a crash leaves the old file or the new one).
[[nodiscard]] Result<void> writeSmallFile(const std::filesystem::path& path,
                                          const std::string& text);

}  // namespace vandra::agent::detail
