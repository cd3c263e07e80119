// Private helpers of the tunnel codecs: big-endian writers, a bounds-checked reader that
// never reads past its input (a short read latches a failure and yields zeros / empty), and
// the UTF-8 check shared by frame labels and control-message strings.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "vandra/common/result.h"

namespace vandra::tunnel::wire {

inline void putU8(std::string& out, uint8_t v) {
  out.push_back(static_cast<char>(v));
}
inline void putU16(std::string& out, uint16_t v) {
  putU8(out, static_cast<uint8_t>(v >> 8));
  putU8(out, static_cast<uint8_t>(v));
}
inline void putU32(std::string& out, uint32_t v) {
  putU16(out, static_cast<uint16_t>(v >> 16));
  putU16(out, static_cast<uint16_t>(v));
}
inline void putU64(std::string& out, uint64_t v) {
  putU32(out, static_cast<uint32_t>(v >> 32));
  putU32(out, static_cast<uint32_t>(v));
}
template <size_t N>
void putBytes(std::string& out, const std::array<uint8_t, N>& b) {
  for (const uint8_t x : b) {
    putU8(out, x);
  }
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  uint8_t u8() {
    if (!need(1)) {
      return 0;
    }
    return static_cast<uint8_t>(in_[pos_++]);
  }
  uint16_t u16() {
    const auto hi = u8();
    return static_cast<uint16_t>((hi << 8) | u8());
  }
  uint32_t u32() {
    const uint32_t hi = u16();
    return (hi << 16) | u16();
  }
  uint64_t u64() {
    const uint64_t hi = u32();
    return (hi << 32) | u32();
  }
  template <size_t N>
  void bytes(std::array<uint8_t, N>& b) {
    for (auto& x : b) {
      x = u8();
    }
  }
  /// The next @p n bytes (a view into the input), or empty when fewer are left.
  std::string_view take(size_t n) {
    if (!need(n)) {
      return {};
    }
    const std::string_view v = in_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  bool ok() const { return !short_; }

  /// TunnelProtocol when the payload ended early or has bytes after its last field.
  Result<void> finish(std::string_view what) const {
    if (short_) {
      return fail(ErrorCode::TunnelProtocol, std::string(what) + " payload of " +
                                                 std::to_string(in_.size()) +
                                                 " bytes is too short for its fields");
    }
    if (pos_ != in_.size()) {
      return fail(ErrorCode::TunnelProtocol, std::string(what) + " payload has " +
                                                 std::to_string(in_.size() - pos_) +
                                                 " trailing byte(s) after its last field");
    }
    return {};
  }

 private:
  bool need(size_t n) {
    if (short_ || in_.size() - pos_ < n) {
      short_ = true;
      return false;
    }
    return true;
  }

  std::string_view in_;
  size_t pos_ = 0;
  bool short_ = false;
};

/// Well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF) without
/// C0 control characters or DEL.
bool isCleanUtf8(std::string_view s);

/// [a-z0-9-]{1,64}: a site name (HELLO, control messages).
bool isSiteName(std::string_view s);

/// [A-Za-z0-9_.-]{1,64}: an id in control messages.
bool isId(std::string_view s);

/// @p s for an error message: at most 64 bytes, bytes outside printable ASCII as \xNN.
std::string printable(std::string_view s);

}  // namespace vandra::tunnel::wire
