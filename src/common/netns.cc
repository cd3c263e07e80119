#include "vandra/common/netns.h"

#include <fcntl.h>
#include <sched.h>

#include <thread>

#include "vandra/common/unique_fd.h"

namespace vandra {

Result<void> runInNetns(const std::string& netns, const std::function<void()>& fn) {
  if (netns.empty()) {
    fn();
    return {};
  }
  if (netns.find('/') != std::string::npos || netns == "." || netns == "..") {
    return fail(ErrorCode::InvalidArgument, "Bad network namespace name '" + netns + "'");
  }
  Result<void> out;
  std::thread t([&] {
    auto ns = UniqueFd::open("/run/netns/" + netns, O_RDONLY);
    if (!ns) {
      out = fail(std::move(ns).error());
      return;
    }
    if (::setns(ns->get(), CLONE_NEWNET) != 0) {
      out = fail(Error::fromErrno("Cannot enter network namespace " + netns));
      return;
    }
    fn();
  });
  t.join();
  return out;
}

}  // namespace vandra
