#include "vandra/common/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

namespace vandra {

Result<UniqueFd> UniqueFd::open(const std::string& path, int flags, int mode) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    return fail(Error::fromErrno("Cannot open '" + path + "'"));
  }
  return UniqueFd(fd);
}

Result<void> UniqueFd::close() {
  const int fd = std::exchange(fd_, -1);
  if (fd >= 0 && ::close(fd) != 0) {
    return fail(Error::fromErrno("close failed"));
  }
  return {};
}

void UniqueFd::reset() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

} // namespace vandra
