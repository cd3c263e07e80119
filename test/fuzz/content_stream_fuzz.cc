// libFuzzer target: arbitrary bytes as QEMU's migration stream through the source's content
// encoder (qemu_stream.h, ref_codec.h), in input-chosen chunk sizes. The scanner's pieces must
// cover the input exactly with pages of at most 4096 bytes, and the target's decoder must give
// back the input byte for byte, with references to an in-memory image holding a few pages
// (the first byte picks the chunk size). Must not touch the file system or the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "test/fuzz/memory_blocks.h"
#include "vandra/content/ref_codec.h"

namespace {

using namespace vandra;
using namespace vandra::content;

// Blocks 0..3: all 0x00 (never indexed), 'A', "QEVM"-led, and 0xff.
std::string blockOf(uint64_t i) {
  std::string b(kPageSize, static_cast<char>(i == 1 ? 'A' : i == 3 ? '\xff' : 0));
  if (i == 2) {
    b.replace(0, 4, "QEVM");
  }
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const size_t chunk = 1 + data[0] * 37u;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  QemuStreamScanner scanner;
  std::vector<StreamPiece> pieces;
  size_t page_run = 0;
  for (size_t at = 0; at < in.size(); at += chunk) {
    const std::string_view part = in.substr(at, chunk);
    pieces.clear();
    scanner.scan(part, pieces);
    size_t sum = 0;
    for (const auto& p : pieces) {
      sum += p.length;
      if (p.page) {
        page_run = p.page_start ? p.length : page_run + p.length;
        if (page_run > kPageSize || p.length == 0) {
          std::abort();
        }
      }
    }
    if (sum != part.size()) {
      std::abort();
    }
  }

  // A "real" index needs a file; the decoder's side is what takes hostile bytes, so the
  // encoder here sends everything as literals and the round trip must still be exact.
  const std::string digest(64, 'f');
  auto set = std::make_shared<RefIndexSet>(std::vector<std::string>{digest});
  RefEncoder enc(set, std::make_shared<RefCounters>());
  std::string encoded;
  for (size_t at = 0; at < in.size(); at += chunk) {
    if (!enc.feed(in.substr(at, chunk), encoded)) {
      std::abort();
    }
  }
  if (!enc.finish(encoded)) {
    std::abort();
  }
  RefDecoder dec({{digest, std::make_shared<fuzz::MemoryBlocks>(blockOf, 4)}},
                 std::make_shared<RefCounters>());
  std::string plain;
  for (size_t at = 0; at < encoded.size(); at += chunk) {
    if (!dec.feed(std::string_view(encoded).substr(at, chunk), plain)) {
      std::abort();
    }
  }
  if (!dec.finish(plain) || plain != in) {
    std::abort();
  }
  return 0;
}
