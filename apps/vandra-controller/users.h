// `vandra-controller user add|remove|list`: the people who may sign in to the web console,
// kept in the controller's database (passwords as scrypt hashes, console_auth.h). Run beside
// a running controller or before it starts; a changed user signs in again.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace vandra::controller_app {

struct UserCommand {
  CLI::App* add = nullptr;
  CLI::App* remove = nullptr;
  CLI::App* list = nullptr;
  std::string name;
  std::string role = "viewer";
  std::string password_file;  // "-" = standard input
  bool json = false;
  bool chosen() const {
    return (add != nullptr && add->parsed()) || (remove != nullptr && remove->parsed()) ||
           (list != nullptr && list->parsed());
  }
};

void addUserCommand(CLI::App& app, UserCommand& cmd);
/// Runs the chosen subcommand against database @p db. Returns the exit code.
int runUserCommand(const UserCommand& cmd, const std::string& db);

}  // namespace vandra::controller_app
