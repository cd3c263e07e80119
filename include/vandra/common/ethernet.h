// Ethernet addresses and the Linux bridge's forwarding table (bridge(8) from iproute2): what
// the agents use to steer a VM's frames across a switchover (docs/migration/orchestrator.md,
// "The LAN across the switchover").
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "vandra/common/result.h"

namespace vandra {

using MacAddress = std::array<uint8_t, 6>;

/// "aa:bb:cc:dd:ee:ff" (either case). Errors: InvalidArgument naming the text.
[[nodiscard]] Result<MacAddress> parseMac(const std::string& text);
/// Lower case, colon separated.
std::string formatMac(const MacAddress& mac);

/// Points the forwarding entry of @p mac on the bridge that port @p port belongs to at
/// @p port, in network namespace @p netns ("" = ours): frames to @p mac leave by @p port from
/// now on. The entry stays a learned (dynamic) one, so the next frame from @p mac on another
/// port moves it again. Errors: InvalidArgument (MAC), Io (no such port, not bridged).
[[nodiscard]] Result<void> pointBridgeAt(const std::string& netns, const std::string& mac,
                                         const std::string& port);

/// The port of bridge @p bridge whose forwarding entry holds @p mac. Errors: NotFound (no
/// entry), InvalidArgument (MAC), Io.
[[nodiscard]] Result<std::string> bridgePortOf(const std::string& netns, const std::string& bridge,
                                               const std::string& mac);

}  // namespace vandra
