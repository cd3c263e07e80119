// `vandra demo`'s main story, through the controller (demo_controller.cc).
#pragma once

#include <string>

namespace vandra::cli {

struct ControllerDemoOptions {
  std::string guest_dir;  // guest/build.sh's output (test-guest.ova, boot.raw, vmspec.json)
  std::string profile = "wan";
  bool keep = false;  // leave the testbed running (and say how to take it down)
};

/// Runs the story in work folder @p dir; 0 when every step passed.
int runControllerDemo(bool as_json, const std::string& dir, const ControllerDemoOptions& o);

}  // namespace vandra::cli
