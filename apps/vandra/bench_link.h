// `vandra bench link`: how much of an emulated link one bulk sender gets, vandra's site tunnel
// side by side with one plain TCP connection per congestion control, on the same testbed
// link and in the same invocation (bench_link.cc has the rules).
#pragma once

#include <string>
#include <vector>

namespace vandra::cli {

struct BenchLinkOptions {
  std::vector<std::string> profiles{"wan", "lossy"};
  /// tcp-cubic, tcp-bbr (one TCP connection with that congestion control), vandra (the site
  /// tunnel as vandrad runs it: TLS, one connection, congestion control "auto", its windows).
  std::vector<std::string> systems{"tcp-cubic", "tcp-bbr", "vandra"};
  int runs = 2;
  int seconds = 10;  // each system sends this long
  bool json = false;
};

/// Exit 0 when every transfer completed (whatever its rate).
int benchLink(const BenchLinkOptions& options);

}  // namespace vandra::cli
