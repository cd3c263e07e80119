#pragma once

#include <CLI/CLI.hpp>

namespace vandra::cli {

/// `vandra placement solve FLEET.json [--json]`: the placement engine offline, no controller
/// (docs/placement/fleet.md).
void addPlacementCommands(CLI::App& app, int& exit_code);

}  // namespace vandra::cli
