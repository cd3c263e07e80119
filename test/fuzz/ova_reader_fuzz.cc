// libFuzzer target: feeds arbitrary bytes to openPackageFromMemory as an OVA and checks the
// invariants hostile input must never break (flat member names, bounded descriptor and
// member count). Must not touch the file system or the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/package.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vandra::ovf;
  OpenOptions options;
  // A trust store that cannot load keeps each run cheap and independent of the host.
  options.trust_store = "/nonexistent/vandra-fuzz-trust";
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto pkg = openPackageFromMemory(bytes, "fuzz.ova", options);
  if (!pkg) {
    return 0;
  }
  if (pkg->descriptor.size() > kMaxDescriptorBytes || pkg->members.size() > kMaxPackageMembers ||
      pkg->descriptor_name.empty()) {
    std::abort();
  }
  for (const auto& m : pkg->members) {
    if (m.name.empty() || m.name.find('/') != std::string::npos || m.name == ".." ||
        m.name.size() > kMaxMemberNameBytes) {
      std::abort();
    }
  }
  return 0;
}
