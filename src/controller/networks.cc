// Networks across sites (inventory.h, translateNetworks): one rule for the preflight's check
// and for the names a move sends, so that what passed the preflight is what the agents do.
#include <algorithm>

#include "vandra/controller/inventory.h"

namespace vandra::controller {

NetworkTranslation translateNetworks(const std::vector<std::string>& networks,
                                     const std::string& from, const std::string& to,
                                     const std::vector<std::string>& there,
                                     const std::vector<NetworkMapping>& mappings) {
  NetworkTranslation out;
  for (const auto& net : networks) {
    std::string dest;
    for (const auto& m : mappings) {
      auto a = m.members.find(from);
      auto b = m.members.find(to);
      if (a != m.members.end() && a->second == net && b != m.members.end()) {
        dest = b->second;
      }
    }
    if (dest.empty() && std::find(there.begin(), there.end(), net) != there.end()) {
      dest = net;  // the same name on both sides
    }
    if (dest.empty() || std::find(there.begin(), there.end(), dest) == there.end()) {
      if (std::find(out.missing.begin(), out.missing.end(), net) == out.missing.end()) {
        out.missing.push_back(net);
      }
    } else if (dest != net) {
      out.renames[net] = dest;
    }
  }
  return out;
}

}  // namespace vandra::controller
