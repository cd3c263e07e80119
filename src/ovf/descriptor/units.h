// Parses CIM programmatic units (DSP0004 Annex C) as OVF producers write them for memory
// and disk capacity: "byte * 2^20", "byte*2^30", "MegaBytes", "KB", "bytes", ...
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace vandra::ovf {

/// Multiplier in bytes for @p units, or nullopt when it is not a size unit.
std::optional<uint64_t> bytesPerUnit(std::string_view units);

/// Parses a whole number (decimal, optional surrounding spaces); nullopt on anything else.
std::optional<uint64_t> parseUint(std::string_view s);

/// value * multiplier, or nullopt on overflow.
std::optional<uint64_t> checkedMul(uint64_t value, uint64_t multiplier);

}  // namespace vandra::ovf
