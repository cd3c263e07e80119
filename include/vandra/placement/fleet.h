// Placement's input and output (docs/placement/fleet.md): sites with hosts, prices and
// jurisdiction labels, named user locations with their round trip to each site, the links
// between sites, and VMs with their SLA (ovf::Sla: the one SLA model) and where they run now;
// out come where each VM runs, the VMs that cannot run anywhere with the clause or resource
// that excluded each site, the moves, and the fleet's cost per hour. Plain values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vandra/ovf/sla.h"

namespace vandra::placement {

struct Price {
  std::string currency = "EUR";  // ISO 4217
  double vcpu_hour = 0;
  double memory_gib_hour = 0;
  bool operator==(const Price&) const = default;
};

struct Host {
  std::string name;  // unique in the fleet
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;
};

struct Site {
  std::string name;
  std::vector<std::string> jurisdictions;  // labels such as "EU", "SE"
  double vcpu_overcommit = 1.0;            // vCPUs a host offers per core; memory and disk: 1
  Price price;
  std::vector<Host> hosts;
};

/// A named place users work from, with its round trip to each site (for SLA max_rtt).
struct Location {
  std::string name;
  std::map<std::string, double> rtt_ms;  // site -> ms
};

/// A link between two sites (either direction), as the tunnel measured it.
struct Link {
  std::string a;
  std::string b;
  double rtt_ms = 0;
  double mbps = 0;
};

struct Vm {
  std::string name;
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;
  std::string site;  // where it runs now; "" = not placed yet
  std::string host;  // "" = anywhere in site
  ovf::Sla sla;
  std::optional<double> dirty_rate_mbps;  // measured; a live move needs a faster link
};

struct Fleet {
  std::vector<Site> sites;
  std::vector<Location> locations;
  std::vector<Link> links;
  std::vector<Vm> vms;
};

struct Placement {
  std::string vm;
  std::string site;
  std::string host;
  bool operator==(const Placement&) const = default;
};

/// Why a site cannot take a VM: the SLA clause or the resource, with the numbers.
struct Reason {
  std::string site;
  std::string clause;  // "jurisdiction US not in [EU]", "dc-h1: memory 1024 MiB free, 4096 needed"
  bool operator==(const Reason&) const = default;
};

struct Unplaced {
  std::string vm;
  std::vector<Reason> reasons;  // one per site, in the fleet's site order
};

struct Move {
  std::string vm;
  std::string from;  // site
  std::string to;    // site
  std::string from_host;
  std::string to_host;
};

struct Solution {
  std::vector<Placement> placements;  // in the fleet's VM order
  std::vector<Unplaced> unplaced;
  std::vector<Move> moves;
  double cost_per_hour = 0;  // of every placed VM, at its site's prices
  bool exact = false;        // found by exhaustive search (small fleets), not the greedy pass
};

/// A VM's cost at a site: vcpus x vcpu_hour + memory_mib / 1024 x memory_gib_hour.
double costPerHour(const Vm& vm, const Site& site);

}  // namespace vandra::placement
