// libFuzzer target: feeds arbitrary bytes to readDescriptor (strict and lax), readSla and
// rewriteSla, and checks invariants hostile input must never break: lax mode leaves no
// problems, the VmSpec survives JSON, and a successful rewriteSla reads back the same SLA.
// Must not touch the file system or the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/vm_spec_json.h"

namespace {

vandra::ovf::Sla fuzzSla() {
  vandra::ovf::Sla s;
  s.downtime_budget_ms = 500;
  s.jurisdictions = {"EU"};
  s.max_rtt = vandra::ovf::MaxRtt{"office", 30};
  s.anti_affinity_group = "web";
  s.max_cost_per_hour = 0.5;
  s.mobility = vandra::ovf::Mobility::Automatic;
  s.availability_percent = 99.95;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vandra::ovf;
  const std::string_view xml(reinterpret_cast<const char*>(data), size);

  auto strict = readDescriptor(xml, ReadOptions{});
  if (strict) {
    // JSON is the public form: it must serialise (valid UTF-8) and read back unchanged.
    const auto j = toJson(strict->spec);
    (void)j.dump();
    if (auto back = vmSpecFromJson(j); back && !(*back == strict->spec)) {
      std::abort();
    }
    ReadOptions lax;
    lax.lax = true;
    auto relaxed = readDescriptor(xml, lax);
    if (!relaxed || !relaxed->problems.empty() ||
        relaxed->spec.warnings.size() < strict->spec.warnings.size() + strict->problems.size()) {
      std::abort();
    }
  }

  auto sla = readSla(xml, "");
  (void)sla;

  const Sla want = fuzzSla();
  if (auto rewritten = rewriteSla(xml, "", want)) {
    auto got = readSla(*rewritten, "");
    // Appending the section adds three levels; a document already at the depth limit may
    // legitimately come back too deep.
    const bool too_deep = !got && got.error().code == vandra::ErrorCode::LimitExceeded;
    if (!too_deep && (!got || !got->has_value() || !(**got == want))) {
      std::abort();
    }
  }
  if (auto removed = rewriteSla(xml, "", std::nullopt)) {
    auto got = readSla(*removed, "");
    if (got && got->has_value()) {
      std::abort();  // the section was removed from every virtual system
    }
  }
  return 0;
}
