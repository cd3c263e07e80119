// `vandra placement solve`: reads a fleet file, prints where each VM goes, what cannot be
// placed and why, the moves and the cost per hour. Exit 0 when it solved (some VMs may stay
// unplaced: that is an answer), 3 for a fleet file that is not valid.
#include "placement_commands.h"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "vandra/placement/fleet_json.h"
#include "vandra/placement/solver.h"

namespace vandra::cli {
namespace {

constexpr size_t kMaxFleetFile = 256U << 20;

Result<placement::Solution> solveFile(const std::string& path) {
  VANDRA_TRY_ASSIGN(const std::string text, readSmallFile(path, kMaxFleetFile));
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::InvalidArgument, "Fleet file " + path + " is not JSON");
  }
  VANDRA_TRY_ASSIGN(const placement::Fleet fleet, placement::fleetFromJson(j));
  return placement::solve(fleet);
}

void print(const placement::Solution& s) {
  for (const auto& p : s.placements) {
    std::cout << p.vm << " -> " << p.site << " / " << p.host << "\n";
  }
  for (const auto& m : s.moves) {
    std::cout << "move " << m.vm << ": " << m.from
              << (m.from_host.empty() ? "" : " / " + m.from_host) << " -> " << m.to << " / "
              << m.to_host << "\n";
  }
  for (const auto& u : s.unplaced) {
    std::cout << u.vm << ": cannot be placed\n";
    for (const auto& r : u.reasons) {
      std::cout << "  " << r.site << ": " << r.clause << "\n";
    }
  }
  char cost[64];
  std::snprintf(cost, sizeof cost, "%.4f", s.cost_per_hour);
  std::cout << s.placements.size() << " placed, " << s.unplaced.size() << " not, " << s.moves.size()
            << " moves, " << cost << " per hour (" << (s.exact ? "exhaustive search" : "greedy")
            << ")\n";
}

}  // namespace

void addPlacementCommands(CLI::App& app, int& exit_code) {
  auto* placement = app.add_subcommand("placement", "The placement engine, offline");
  placement->require_subcommand(1);
  auto* solve = placement->add_subcommand(
      "solve", "Place a fleet's VMs by their SLAs and the sites' capacity and prices");
  static std::string file;
  static bool as_json = false;
  solve->add_option("FLEET", file, "Fleet file (docs/placement/fleet.md)")->required();
  solve->add_flag("--json", as_json, "One JSON document");
  solve->callback([&exit_code] {
    auto s = solveFile(file);
    if (!s) {
      exit_code = reportError("placement solve", s.error());
      return;
    }
    if (as_json) {
      std::cout << placement::toJson(*s).dump(2) << "\n";
    } else {
      print(*s);
    }
  });
}

}  // namespace vandra::cli
