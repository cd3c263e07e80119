// How `vandra vm ...` and `vandra migrate ...` reach one agent: its address and the mutual
// TLS files, given as flags or taken from the testbed's state (--site).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "vandra/agent/agent_client.h"
#include "vandra/common/result.h"

namespace vandra::cli {

struct AgentConn {
  std::string agent = "127.0.0.1:8443";  // host:port of vandrad
  std::string ca;                        // site CA (verifies the agent)
  std::string cert;                      // our client certificate
  std::string key;
  std::string netns;    // connect from inside this network namespace
  std::string testbed;  // testbed state folder: fills the above for --site
  std::string site;
  bool json = false;
  std::string controller;  // through the controller instead (controller_commands.h)
  std::string cli_config;
};

/// --agent, --ca, --cert, --key, --netns, --site, --testbed and --json on @p sub.
void addConn(CLI::App* sub, AgentConn& c);

/// --site: the agent's address, certificates and namespace from the testbed's state.
/// Errors: NotFound (no testbed, no agent there), InvalidArgument (unknown site, no files).
[[nodiscard]] Result<void> resolveConn(AgentConn& c);

/// A client for the agent @p c names (resolveConn first).
[[nodiscard]] Result<agent::AgentClient> clientFor(AgentConn& c);

}  // namespace vandra::cli
