// libFuzzer target: arbitrary bytes as a fleet file (JSON) -> fleetFromJson -> solve. A fleet
// that reads must solve or be refused as invalid, and a solution accounts for every VM once
// (placed or unplaced, never both). Small fleets only reach the solver, so that a run stays
// quick. Must not touch the file system or the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "vandra/placement/fleet_json.h"
#include "vandra/placement/solver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vandra::placement;
  if (size > (64U << 10)) {
    return 0;
  }
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return 0;
  }
  auto fleet = fleetFromJson(j);
  if (!fleet) {
    return 0;
  }
  size_t hosts = 0;
  for (const auto& s : fleet->sites) {
    hosts += s.hosts.size();
  }
  if (fleet->vms.size() > 40 || hosts > 20) {
    return 0;
  }
  SolveOptions o;
  o.exact_limit = 2000;  // keep each input fast; larger searches take the greedy pass
  auto s = solve(*fleet, o);
  if (!s) {
    return 0;
  }
  std::set<std::string> seen;
  for (const auto& p : s->placements) {
    if (!seen.insert(p.vm).second) {
      std::abort();
    }
  }
  for (const auto& u : s->unplaced) {
    if (!seen.insert(u.vm).second || u.reasons.size() != fleet->sites.size()) {
      std::abort();
    }
  }
  if (seen.size() != fleet->vms.size()) {
    std::abort();
  }
  (void)toJson(*s).dump();
  return 0;
}
