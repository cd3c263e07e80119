// `vandra pki ...` (site CA and certificates) and `vandra vm ...` (talk to an agent over
// mutual TLS): thin wrappers over vandra::pki and the agent API.
#pragma once

#include <CLI/CLI.hpp>

namespace vandra::cli {

void addPkiCommands(CLI::App& app, int& exit_code);
void addVmCommands(CLI::App& app, int& exit_code);

}  // namespace vandra::cli
