// `vandra demo`'s main story, through the controller (demo_controller.cc).
#pragma once

#include <string>

namespace vandra::cli {

struct ControllerDemoOptions {
  std::string guest_dir;  // guest/build.sh's output (test-guest.ova, boot.raw, vmspec.json)
  std::string profile = "wan";
  bool keep = false;  // leave the testbed running (and say how to take it down)
  /// The web console's built files (web/dist; "" = no console): served by the controller,
  /// its address and users printed.
  std::string console_dir;
};

/// Runs the story in work folder @p dir; 0 when every step passed.
int runControllerDemo(bool as_json, const std::string& dir, const ControllerDemoOptions& o);

}  // namespace vandra::cli
