// `vandra vm export` and `vandra vm seed`: a running VM's disks as a signed OVA, and that OVA
// imported at another site as base images only, so that a later live move there sends only
// what the guest wrote since the export (ADR 0029, the USB-stick path).
#pragma once

#include <CLI/CLI.hpp>

namespace vandra::cli {

/// Adds `export` and `seed` under @p vm.
void addSeedCommands(CLI::App* vm, int& exit_code);

}  // namespace vandra::cli
