// Helpers the content codecs share (internal to src/content): big-endian fields, the block
// checks both ends apply.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace vandra::content::detail {

/// The big-endian unsigned integer in @p b (at most 8 bytes).
inline uint64_t readBe(std::string_view b) {
  uint64_t v = 0;
  for (const char c : b) {
    v = v << 8 | static_cast<uint8_t>(c);
  }
  return v;
}

/// Appends the low @p bytes bytes of @p v, big-endian.
inline void putBe(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

/// Whether every byte of @p b is zero.
inline bool isZero(std::string_view b) {
  return b.find_first_not_of('\0') == std::string_view::npos;
}

/// SHA-256 of one 4 KiB block (what a reference carries and the target checks).
std::array<unsigned char, 32> blockSha256(const char* block);

}  // namespace vandra::content::detail
