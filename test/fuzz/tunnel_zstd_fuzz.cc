// libFuzzer target: arbitrary bytes as a compressed DATA payload (compress.h). What the reader
// accepts must be exactly the size it declared (at most kMaxPlainChunk), the size check must
// agree with the decoder, and a writer's encoding of the result must decode back to it. Must
// not touch the file system or the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "vandra/tunnel/compress.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vandra::tunnel;
  const std::string_view payload(reinterpret_cast<const char*>(data), size);
  auto declared = compressedChunkSize(payload);
  auto plain = decompressChunk(payload);
  if (!declared) {
    if (plain) {
      std::abort();  // the decoder took what the frame check refuses
    }
    return 0;
  }
  if (*declared == 0 || *declared > kMaxPlainChunk) {
    std::abort();
  }
  if (!plain) {
    return 0;  // a well-formed frame with corrupt content: refused, fine
  }
  if (plain->size() != *declared) {
    std::abort();
  }
  ChunkCompressor z;
  if (auto again = z.encode(*plain)) {
    auto back = decompressChunk(*again);
    if (!back || *back != *plain) {
      std::abort();
    }
  }
  return 0;
}
