#pragma once

#include <CLI/CLI.hpp>

namespace vandra::cli {

/// `vandra bench ...`: measurements that print numbers (docs/benchmarks.md), never pass/fail.
void addBenchCommands(CLI::App& app, int& exit_code);

}  // namespace vandra::cli
