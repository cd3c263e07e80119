// Builds QEMU 7.2 precopy migration streams (qemu_stream.h has the layout) for the content
// tests and fuzz seeds: the records a real stream has, with chosen pages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vandra::content::test {

class StreamBuilder {
 public:
  StreamBuilder& be(uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) {
      s_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
    return *this;
  }
  StreamBuilder& raw(std::string_view b) {
    s_.append(b);
    return *this;
  }
  StreamBuilder& str8(std::string_view b) {
    be(b.size(), 1);
    return raw(b);
  }
  /// Magic, version, configuration with a capabilities subsection.
  StreamBuilder& header(const std::vector<std::string>& caps = {"xbzrle"}) {
    raw("QEVM").be(3, 4).be(0x07, 1).be(10, 4).raw("pc-q35-7.2");
    if (!caps.empty()) {
      be(0x05, 1).str8("configuration/capabilities").be(1, 4).be(caps.size(), 4);
      for (const auto& c : caps) {
        str8(c);
      }
    }
    return *this;
  }
  /// START of the "ram" section (id 2) with its block list, EOS and footer.
  StreamBuilder& ramStart(const std::vector<std::pair<std::string, uint64_t>>& blocks) {
    uint64_t total = 0;
    for (const auto& b : blocks) {
      total += b.second;
    }
    be(0x01, 1).be(2, 4).str8("ram").be(0, 4).be(4, 4).be(total | 0x04, 8);
    for (const auto& [name, len] : blocks) {
      str8(name).be(len, 8);
    }
    return eos();
  }
  StreamBuilder& part(uint8_t type = 0x02) { return be(type, 1).be(2, 4); }
  StreamBuilder& page(uint64_t offset, std::string_view block, std::string_view bytes) {
    be(offset | 0x08 | (block.empty() ? 0x20 : 0), 8);
    if (!block.empty()) {
      str8(block);
    }
    return raw(bytes);
  }
  StreamBuilder& zero(uint64_t offset, std::string_view block) {
    be(offset | 0x02 | (block.empty() ? 0x20 : 0), 8);
    if (!block.empty()) {
      str8(block);
    }
    return be(0, 1);
  }
  StreamBuilder& xbzrle(uint64_t offset, std::string_view data) {
    return be(offset | 0x40 | 0x20, 8).be(1, 1).be(data.size(), 2).raw(data);
  }
  StreamBuilder& eos() { return be(0x10, 8).be(0x7e, 1).be(2, 4); }
  /// A device's state (FULL) and the end of the stream: no more pages after it.
  StreamBuilder& devicesAndEof() {
    return be(0x04, 1)
        .be(3, 4)
        .str8("timer")
        .be(0, 4)
        .be(2, 4)
        .raw("opaque-device-state")
        .be(0x7e, 1)
        .be(3, 4)
        .be(0x00, 1);
  }
  const std::string& bytes() const { return s_; }

 private:
  std::string s_;
};

/// A page of 4096 bytes that is not all zero, different for each @p seed.
inline std::string pageOf(uint32_t seed) {
  std::string p(4096, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : p) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return p;
}

}  // namespace vandra::content::test
