// libFuzzer target: decodes arbitrary bytes as a control message; what decodes must encode,
// decode again to an equal message, and encode to the same text (a fixed point). Must not
// touch the file system or the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "vandra/tunnel/control.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vandra::tunnel;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto msg = decodeControl(text);
  if (!msg) {
    return 0;
  }
  auto encoded = encodeControl(*msg);
  if (!encoded || encoded->size() > kMaxControlMessage) {
    std::abort();
  }
  auto back = decodeControl(*encoded);
  if (!back || !(*back == *msg) || typeName(*back) != typeName(*msg) ||
      migrationId(*back) != migrationId(*msg)) {
    std::abort();
  }
  auto again = encodeControl(*back);
  if (!again || *again != *encoded) {
    std::abort();
  }
  return 0;
}
