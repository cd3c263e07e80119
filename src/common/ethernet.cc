// MAC addresses and bridge forwarding entries (ethernet.h), through bridge(8).
#include "vandra/common/ethernet.h"

#include <cstdio>
#include <sstream>
#include <vector>

#include "vandra/common/subprocess.h"

namespace vandra {
namespace {

std::vector<std::string> bridgeCommand(const std::string& netns, std::vector<std::string> args) {
  std::vector<std::string> argv{"bridge"};
  if (!netns.empty()) {
    argv.insert(argv.end(), {"-n", netns});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

}  // namespace

Result<MacAddress> parseMac(const std::string& text) {
  std::array<unsigned, 6> v{};
  char extra = 0;
  if (text.size() != 17 || std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1],
                                       &v[2], &v[3], &v[4], &v[5], &extra) != 6) {
    return fail(ErrorCode::InvalidArgument,
                "'" + text + "' is not a MAC address (aa:bb:cc:dd:ee:ff)");
  }
  for (size_t i = 2; i < text.size(); i += 3) {
    if (text[i] != ':') {
      return fail(ErrorCode::InvalidArgument,
                  "'" + text + "' is not a MAC address (aa:bb:cc:dd:ee:ff)");
    }
  }
  MacAddress out{};
  for (size_t i = 0; i < 6; ++i) {
    out[i] = static_cast<uint8_t>(v[i]);
  }
  return out;
}

std::string formatMac(const MacAddress& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return buf;
}

Result<void> pointBridgeAt(const std::string& netns, const std::string& mac,
                           const std::string& port) {
  VANDRA_TRY_ASSIGN(const MacAddress m, parseMac(mac));
  // "dynamic": a learned entry, not a static one: the guest's next frame elsewhere moves it.
  VANDRA_TRY(runCapture(
      bridgeCommand(netns, {"fdb", "replace", formatMac(m), "dev", port, "master", "dynamic"})));
  return {};
}

Result<std::string> bridgePortOf(const std::string& netns, const std::string& bridge,
                                 const std::string& mac) {
  VANDRA_TRY_ASSIGN(const MacAddress m, parseMac(mac));
  const std::string want = formatMac(m);
  VANDRA_TRY_ASSIGN(const std::string table,
                    runCapture(bridgeCommand(netns, {"fdb", "show", "br", bridge})));
  std::istringstream in(table);
  std::string line;
  while (std::getline(in, line)) {
    // "52:54:00:12:34:56 dev vt0123 master br0 "; the bridge's own entries have no "master".
    std::istringstream words(line);
    std::string addr, dev_word, dev, master_word;
    words >> addr >> dev_word >> dev >> master_word;
    if (addr == want && dev_word == "dev" && master_word == "master") {
      return dev;
    }
  }
  return fail(ErrorCode::NotFound, "Bridge " + bridge + (netns.empty() ? "" : " in " + netns) +
                                       " has no entry for " + want);
}

}  // namespace vandra
