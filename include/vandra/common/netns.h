// Network namespaces (ip-netns(8) names under /run/netns). setns(2) changes only the calling
// thread, and a socket keeps the namespace it was created in: so work "inside" a namespace
// runs on a thread of its own that joins it first, and the caller's thread never moves.
#pragma once

#include <functional>
#include <string>

#include "vandra/common/result.h"

namespace vandra {

/// Runs @p fn on a new thread that has joined network namespace @p netns, and waits for it.
/// Empty @p netns: runs @p fn on the caller's thread. Errors: NotFound (no such namespace),
/// Io (setns refused: not root?). @p fn's own outcome is for it to report.
[[nodiscard]] Result<void> runInNetns(const std::string& netns, const std::function<void()>& fn);

}  // namespace vandra
