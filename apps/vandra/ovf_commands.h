// `vandra ovf ...` subcommands: thin wrappers that parse options, call the OVF library and
// print human text or --json. No OVF logic lives here.
#pragma once

#include <CLI/CLI.hpp>

namespace vandra::cli {

/// Registers `ovf` and its subcommands on @p app; @p exit_code receives the result.
void addOvfCommands(CLI::App& app, int& exit_code);

/// Registers `demo`.
void addDemoCommand(CLI::App& app, int& exit_code);

}  // namespace vandra::cli
