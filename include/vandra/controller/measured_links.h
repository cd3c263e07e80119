// Links between sites as the agents measure them (GET /v1/links on each agent, agent_link.h):
// each refresh the controller folds both ends' reports into the inventory's Link (measured
// values while fresh, else the configured ones), and judges each VM's live moves over them.
//
//   agent a: {peer b, rtt, throughput, times} ─┐
//   agent b: {peer a, rtt, throughput, times} ─┴─► applyLinkMeasurements(link a~b) ──► store
//                                                    └─► GET /v1/sla: liveMoveClauses (which
//                                                        moves the SLA's downtime budget no
//                                                        longer allows, naming the link)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vandra/common/link_measurement.h"
#include "vandra/controller/inventory.h"
#include "vandra/placement/fleet.h"

namespace vandra::controller {

/// A measurement newer than this many ms ahead of our clock is not believed (clock skew
/// between controller and agent is tolerated up to it).
inline constexpr int64_t kLinkClockSkewMs = 60000;

/// @p link with what @p reports (both ends', each about this pair) say: per value (RTT,
/// throughput) the newest measurement no older than @p max_age_ms (and above 0), else the
/// configured value. Pure.
[[nodiscard]] Link applyLinkMeasurements(const Link& link,
                                         const std::vector<LinkMeasurement>& reports,
                                         int64_t now_ms, int64_t max_age_ms);

/// The live moves of @p vm (from where it runs) that its SLA no longer allows over the link
/// alone: for every other site it may run at (its jurisdictions, price, ...) with a link from
/// here, the link's clause ("live move to cloud-eu: downtime_budget_ms over the link from dc:
/// ..."). Pinned VMs never move: none.
[[nodiscard]] std::vector<std::string> liveMoveClauses(const placement::Fleet& fleet,
                                                       const placement::Vm& vm);

}  // namespace vandra::controller
