// libFuzzer target: arbitrary bytes as the encoded migration stream a peer sends (ref_codec.h),
// decoded against an in-memory image of four blocks, in input-chosen chunk sizes. Whatever
// it accepts must be literals and blocks whose SHA-256 the input named; the output never
// grows by more than the input's literal bytes plus 4096 per reference record. Must not touch
// the file system or the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "test/fuzz/memory_blocks.h"
#include "vandra/content/ref_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const size_t chunk = 1 + data[0] * 13u;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  using namespace vandra;
  using namespace vandra::content;
  auto blocks = std::make_shared<fuzz::MemoryBlocks>(
      [](uint64_t i) { return std::string(kPageSize, static_cast<char>('a' + i)); }, 4);
  RefDecoder dec({{std::string(64, 'a'), blocks}, {"short", blocks}},
                 std::make_shared<RefCounters>());
  std::string out;
  for (size_t at = 0; at < in.size(); at += chunk) {
    if (!dec.feed(in.substr(at, chunk), out)) {
      return 0;  // refused: fine
    }
  }
  (void)dec.finish(out);
  // Each reference record is 42 bytes in and 4096 out; literals are 5 + n in, n out.
  if (out.size() > in.size() + (in.size() / 42 + 1) * kPageSize) {
    std::abort();
  }
  return 0;
}
