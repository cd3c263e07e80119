// libFuzzer target: arbitrary bytes as the server side of an NBD connection (nbd_flags.h), as
// the target agent's filter sees its QEMU's NBD server, in input-chosen chunk sizes. The output
// must be as long as the input, differ from it only by cleared bits, and not depend on how the
// input was split. Must not touch the file system or the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "vandra/content/nbd_flags.h"

namespace {

std::string filterAll(std::string_view in, size_t chunk) {
  using vandra::content::NbdServerFlagsFilter;
  NbdServerFlagsFilter f(vandra::content::kNbdFlagSendFlush | vandra::content::kNbdFlagSendFua,
                         nullptr);
  std::string out;
  for (size_t at = 0; at < in.size(); at += chunk) {
    if (!f.feed(in.substr(at, chunk), out)) {
      std::abort();  // the filter never refuses: it passes on what it does not know
    }
  }
  if (!f.finish(out)) {
    std::abort();
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string out = filterAll(in, 1 + data[0] % 23u);
  if (out.size() != in.size() || out != filterAll(in, in.size() + 1)) {
    std::abort();
  }
  for (size_t i = 0; i < in.size(); ++i) {
    if ((static_cast<uint8_t>(out[i]) & ~static_cast<uint8_t>(in[i])) != 0) {
      std::abort();  // a bit set that the server did not set
    }
  }
  return 0;
}
