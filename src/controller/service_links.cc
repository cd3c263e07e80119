// The controller's links measured (measured_links.h): each refresh (leader only, after the
// agents' capacity and VMs) every reachable agent's GET /v1/links is read, with a short
// timeout, and folded into the inventory's Link of each pair it names.
#include <algorithm>
#include <cstdio>

#include "vandra/controller/inventory_json.h"
#include "vandra/controller/measured_links.h"
#include "vandra/controller/service.h"
#include "vandra/placement/solver.h"

namespace vandra::controller {
namespace {

std::string oneDecimal(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

Link applyLinkMeasurements(const Link& link, const std::vector<LinkMeasurement>& reports,
                           int64_t now_ms, int64_t max_age_ms) {
  Link out = link;
  out.configured_rtt_ms = link.rtt_source == kMeasured ? link.configured_rtt_ms : link.rtt_ms;
  out.configured_mbps = link.mbps_source == kMeasured ? link.configured_mbps : link.mbps;
  const auto fresh = [&](int64_t at) {
    return at > 0 && at <= now_ms + kLinkClockSkewMs && now_ms - at <= max_age_ms;
  };
  const LinkMeasurement* rtt = nullptr;
  const LinkMeasurement* tput = nullptr;
  for (const auto& m : reports) {
    if (m.rtt_ms && *m.rtt_ms > 0 && fresh(m.rtt_at_ms) &&
        (rtt == nullptr || m.rtt_at_ms > rtt->rtt_at_ms)) {
      rtt = &m;
    }
    if (m.throughput_mbps && *m.throughput_mbps > 0 && fresh(m.throughput_at_ms) &&
        (tput == nullptr || m.throughput_at_ms > tput->throughput_at_ms)) {
      tput = &m;
    }
  }
  if (rtt != nullptr) {
    out.rtt_ms = std::min(*rtt->rtt_ms, kMaxLinkRttMs);
    out.rtt_source = kMeasured;
    out.rtt_measured_at_ms = std::min(rtt->rtt_at_ms, now_ms);
  } else {
    out.rtt_ms = out.configured_rtt_ms;
    out.rtt_source = kConfigured;
    out.rtt_measured_at_ms = 0;
  }
  if (tput != nullptr) {
    out.mbps = std::min(*tput->throughput_mbps, kMaxLinkMbps);
    out.mbps_source = kMeasured;
    out.mbps_method = std::string(toString(tput->throughput_method));
    out.mbps_measured_at_ms = std::min(tput->throughput_at_ms, now_ms);
  } else {
    out.mbps = out.configured_mbps;
    out.mbps_source = kConfigured;
    out.mbps_method.clear();
    out.mbps_measured_at_ms = 0;
  }
  const bool measured_now = rtt != nullptr || tput != nullptr;
  const bool measured_before = link.rtt_source == kMeasured || link.mbps_source == kMeasured;
  if (measured_now) {
    out.measured_at_ms = std::max(out.rtt_measured_at_ms, out.mbps_measured_at_ms);
  } else if (measured_before) {
    out.measured_at_ms = now_ms;  // back to the configured values from now on
  }
  return out;
}

std::vector<std::string> liveMoveClauses(const placement::Fleet& fleet, const placement::Vm& vm) {
  std::vector<std::string> out;
  if (vm.site.empty() || vm.sla.mobility == ovf::Mobility::Pinned) {
    return out;
  }
  for (const auto& site : fleet.sites) {
    const bool linked =
        std::any_of(fleet.links.begin(), fleet.links.end(), [&](const placement::Link& l) {
          return (l.a == vm.site && l.b == site.name) || (l.b == vm.site && l.a == site.name);
        });
    if (site.name == vm.site || !linked) {
      continue;
    }
    placement::Vm placed = vm;
    placed.site.clear();  // may it run there at all? Else the link is not what stops it.
    if (!placement::slaClause(fleet, placed, site).empty()) {
      continue;
    }
    const std::string clause = placement::slaClause(fleet, vm, site);
    if (!clause.empty()) {
      out.push_back("live move to " + site.name + ": " + clause);
    }
  }
  return out;
}

void ControllerService::refreshLinks() {
  auto hosts = store_.hosts();
  auto links = store_.links();
  if (!hosts || !links) {
    return;
  }
  std::map<std::string, std::vector<LinkMeasurement>> by_site;  // what each site's agents say
  for (const auto& h : *hosts) {
    auto it = links_.find(h.name);
    if (!h.reachable || it == links_.end()) {
      continue;  // not asked again this round: its timeout was spent already
    }
    auto measured = it->second->links();
    if (!measured) {
      continue;  // an older agent (NotFound), or gone since: the configured values stand
    }
    auto& mine = by_site[h.site];
    mine.insert(mine.end(), measured->begin(), measured->end());
  }
  for (const auto& l : *links) {
    std::vector<LinkMeasurement> reports;
    for (const auto& [site, ms] : by_site) {
      for (const auto& m : ms) {
        if ((site == l.a && m.peer == l.b) || (site == l.b && m.peer == l.a)) {
          reports.push_back(m);
        }
      }
    }
    const Link n = applyLinkMeasurements(l, reports, now(), options_.link_max_age_ms);
    if (toJson(n) == toJson(l)) {
      continue;
    }
    (void)store_.putLink(n);
    if (n.rtt_source != l.rtt_source || n.mbps_source != l.mbps_source) {
      (void)store_.appendEvent({0, now(), "link", l.a + "~" + l.b,
                                "rtt " + n.rtt_source + " " + oneDecimal(n.rtt_ms) +
                                    " ms, throughput " + n.mbps_source + " " + oneDecimal(n.mbps) +
                                    " Mbit/s" +
                                    (n.mbps_method.empty() ? "" : " (" + n.mbps_method + ")")});
    }
  }
}

}  // namespace vandra::controller
