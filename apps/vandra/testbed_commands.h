// `vandra testbed up|down|status`: the one-machine testbed (site namespaces, bridges, client,
// user-space WAN emulator). Thin wrappers over vandra/testbed/testbed.h; text or --json.
#pragma once

#include <CLI/CLI.hpp>

namespace vandra::cli {

/// Registers `testbed` and its subcommands on @p app; @p exit_code receives the result.
void addTestbedCommands(CLI::App& app, int& exit_code);

}  // namespace vandra::cli
