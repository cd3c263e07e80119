// libFuzzer target: arbitrary bytes as the client side of an NBD connection (nbd_stream.h), as
// the target's tunnel end sees the peer's disk mirror, in input-chosen chunk sizes. Every
// block reported must be whole and 4 KiB-aligned, and the same input split otherwise must
// report the same blocks. Must not touch the file system or the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/content/nbd_stream.h"

namespace {

std::vector<std::pair<uint64_t, std::string>> scanAll(std::string_view in, size_t chunk) {
  vandra::content::NbdWriteScanner s;
  std::vector<std::pair<uint64_t, std::string>> got;
  for (size_t at = 0; at < in.size(); at += chunk) {
    s.scan(in.substr(at, chunk), [&](uint64_t off, std::string_view b) {
      if (off % vandra::content::kPageSize != 0 || b.size() != vandra::content::kPageSize) {
        std::abort();
      }
      got.emplace_back(off, std::string(b));
    });
  }
  return got;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  if (scanAll(in, 1 + data[0] * 29u) != scanAll(in, in.size() + 1)) {
    std::abort();
  }
  return 0;
}
