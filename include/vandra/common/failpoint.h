// Failpoints: named places where a fault test makes this process die on purpose, e.g. "the
// source agent crashes while the guest is paused for its switchover", a window of a few
// hundred milliseconds that no test could hit by timing. Armed only on request
// (`vandrad --failpoint NAME`); while none is armed, failpoint() is one relaxed atomic load.
//
//   vandrad --failpoint source-paused ...   ->  armFailpoint("source-paused")
//   ... the orchestrator reaches failpoint("source-paused")  ->  message on stderr, SIGKILL
//
// The names the agent has are listed in docs/migration/orchestrator.md ("Fault tests").
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace vandra {

/// Arms @p name: the next failpoint(name) runs the action (by default: SIGKILL to itself,
/// which runs no destructor, exactly like a crash).
void armFailpoint(std::string_view name);

/// Runs the action when @p name is armed. The action runs at most once per arming.
void failpoint(std::string_view name);

/// Unit tests: @p action instead of dying (empty: die again); disarmFailpoints() clears all.
void setFailpointAction(std::function<void(std::string_view)> action);
void disarmFailpoints();

/// The failpoints this build has, for `--failpoint` to check a name against.
const std::vector<std::string>& knownFailpoints();

}  // namespace vandra
