#include "users.h"

#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "vandra/controller/console_auth.h"
#include "vandra/controller/inventory_json.h"
#include "vandra/controller/store.h"

namespace vandra::controller_app {
namespace {

// A password longer than this is a mistake (a key file given by error), not a password.
constexpr size_t kMaxPassword = 1024;

Result<std::string> readPassword(const std::string& from) {
  std::string text;
  if (from == "-") {
    std::getline(std::cin, text);
  } else {
    std::ifstream in(from);
    if (!in) {
      return fail(Error::fromErrno("Cannot read the password file '" + from + "'"));
    }
    std::getline(in, text);
  }
  if (!text.empty() && text.back() == '\r') {
    text.pop_back();
  }
  if (text.size() < 8 || text.size() > kMaxPassword) {
    return fail(ErrorCode::InvalidArgument,
                "The password must be 8 to 1024 characters (first line of the file)");
  }
  return text;
}

int report(const Error& e) {
  std::cerr << "vandra-controller user: " << e.describe() << "\n";
  return e.code == ErrorCode::InvalidArgument || e.code == ErrorCode::NotFound ? 3 : 1;
}

}  // namespace

void addUserCommand(CLI::App& app, UserCommand& cmd) {
  auto* user = app.add_subcommand("user", "Console users: add, remove, list");
  cmd.add = user->add_subcommand("add", "Add a user, or set an existing one's role and password");
  cmd.add->add_option("name", cmd.name, "User name")->required();
  cmd.add->add_option("--role", cmd.role, "operator or viewer")
      ->check(CLI::IsMember({"operator", "viewer"}))
      ->capture_default_str();
  cmd.add
      ->add_option("--password-file", cmd.password_file,
                   "File whose first line is the password (- = standard input)")
      ->required();
  cmd.remove = user->add_subcommand("remove", "Remove a user");
  cmd.remove->add_option("name", cmd.name, "User name")->required();
  cmd.list = user->add_subcommand("list", "List the users (never their passwords)");
  cmd.list->add_flag("--json", cmd.json, "One JSON object");
  user->require_subcommand(1);
  // --state-dir and --db belong to the main command: accepted after the subcommand too.
  for (auto* sub : {user, cmd.add, cmd.remove, cmd.list}) {
    sub->fallthrough();
  }
}

int runUserCommand(const UserCommand& cmd, const std::string& db) {
  auto store = controller::Store::open(db);
  if (!store) {
    return report(store.error());
  }
  if (cmd.add->parsed()) {
    if (auto ok = controller::checkName(cmd.name, "User"); !ok) {
      return report(ok.error());
    }
    auto password = readPassword(cmd.password_file);
    if (!password) {
      return report(password.error());
    }
    auto hash = controller::hashPassword(*password);
    if (!hash) {
      return report(hash.error());
    }
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    if (auto r = (*store)->putUser({cmd.name, cmd.role, *hash, now}); !r) {
      return report(r.error());
    }
    std::cout << "user " << cmd.name << " (" << cmd.role << ") saved\n";
    return 0;
  }
  if (cmd.remove->parsed()) {
    auto r = (*store)->deleteUser(cmd.name);
    if (!r) {
      return report(r.error());
    }
    if (!*r) {
      return report(Error(ErrorCode::NotFound, "No user '" + cmd.name + "'"));
    }
    std::cout << "user " << cmd.name << " removed\n";
    return 0;
  }
  auto all = (*store)->users();
  if (!all) {
    return report(all.error());
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& u : *all) {
    if (cmd.json) {
      out.push_back({{"name", u.name}, {"role", u.role}, {"created_at_ms", u.created_at_ms}});
    } else {
      std::cout << u.name << "\t" << u.role << "\n";
    }
  }
  if (cmd.json) {
    std::cout << nlohmann::json{{"users", out}}.dump(2) << "\n";
  }
  return 0;
}

}  // namespace vandra::controller_app
