// vandra: the command-line front end. Every operation has a subcommand; output is text for
// people or one JSON document with --json. Exit codes: cli_support.h.
#include <CLI/CLI.hpp>
#include <iostream>

#include "bench_commands.h"
#include "cli_support.h"
#include "controller_commands.h"
#include "ovf_commands.h"
#include "placement_commands.h"
#include "site_commands.h"
#include "testbed_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"vandra: move running VMs between sites, carried by OVF/OVA with their SLA"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vandra 0.1.0");
  int exit_code = 0;
  vandra::cli::addOvfCommands(app, exit_code);
  vandra::cli::addDemoCommand(app, exit_code);
  vandra::cli::addPkiCommands(app, exit_code);
  vandra::cli::addVmCommands(app, exit_code);
  vandra::cli::addTestbedCommands(app, exit_code);
  vandra::cli::addBenchCommands(app, exit_code);
  vandra::cli::addPlacementCommands(app, exit_code);
  vandra::cli::addControllerCommands(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
