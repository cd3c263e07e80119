// The commands that go through the controller (docs/controller/openapi.json): `vandra site`,
// `vandra sla status`, `vandra audit`, `vandra mobility`, and `vandra vm list|show|migrate|
// start|stop` when no agent is named. Where the controller is, and the certificate to show it:
//
//   --controller HOST:PORT --ca --cert --key        (flags)
//   VANDRA_CONTROLLER, VANDRA_CONTROLLER_CA/_CERT/_KEY  (environment)
//   --cli-config FILE, $VANDRA_CONFIG, /run/vandra/testbed/cli.json, ~/.config/vandra/cli.json
//     {"controller": "HOST:PORT", "ca": ..., "cert": ..., "key": ...}   (first found wins)
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "vandra/agent/agent_client.h"
#include "vandra/common/result.h"

namespace vandra::cli {

struct ControllerConn {
  std::string controller;
  std::string ca;
  std::string cert;
  std::string key;
  std::string config;
  bool json = false;
};

/// Adds --controller, --ca, --cert, --key, --cli-config and --json to @p sub.
void addControllerConn(CLI::App* sub, ControllerConn& c);
/// A client for the controller from the flags, else the environment, else a config file.
/// Errors: NotFound (none configured), InvalidArgument (a bad file or address).
[[nodiscard]] Result<agent::AgentClient> controllerClient(const ControllerConn& c);
/// Whether a controller is configured (for the vm commands: no agent named and one found).
bool controllerConfigured(const ControllerConn& c);

void addControllerCommands(CLI::App& app, int& exit_code);

// `vandra vm ...` through the controller (the vm commands call these when no agent is named).
int controllerVmList(const ControllerConn& c);
int controllerVmShow(const ControllerConn& c, const std::string& vm);
int controllerVmMigrate(const ControllerConn& c, const std::string& vm, const std::string& to,
                        const std::string& reason, bool no_wait);
int controllerVmAction(const ControllerConn& c, const std::string& vm, const std::string& action);

/// `vandra vm import ID FILE` through the controller: FILE goes up to the controller, which
/// places the VM (or checks --place-at), maps its networks and has the site's agent import it.
struct ControllerImport {
  std::string id;
  std::string file;
  std::string upload_name;  // "" = FILE's name
  std::string vs;
  std::string site;               // "" = placement decides
  std::vector<std::string> maps;  // "OVF network=site network"
  bool start = false;
  bool lax = false;
  std::string reason;
};
int controllerVmImport(const ControllerConn& c, const ControllerImport& r);

}  // namespace vandra::cli
