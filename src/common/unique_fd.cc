#include "vandra/common/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

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

Result<void> writeAll(int fd, const void* data, size_t n, const std::string& what) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return fail(Error::fromErrno("Cannot write '" + what + "'"));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

Result<void> replaceFile(const std::string& path, std::string_view text, int mode) {
  const std::string tmp = path + ".tmp";
  {
    VANDRA_TRY_ASSIGN(auto fd, UniqueFd::open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode));
    VANDRA_TRY(writeAll(fd.get(), text.data(), text.size(), tmp));
    if (::fsync(fd.get()) != 0) {
      return fail(Error::fromErrno("fsync " + tmp + " failed"));
    }
    VANDRA_TRY(fd.close());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(Error::fromErrno("Cannot replace " + path));
  }
  return {};
}

Result<size_t> readSome(int fd, void* buf, size_t n, const std::string& what) {
  for (;;) {
    const ssize_t r = ::read(fd, buf, n);
    if (r >= 0) {
      return static_cast<size_t>(r);
    }
    if (errno != EINTR) {
      return fail(Error::fromErrno("Cannot read '" + what + "'"));
    }
  }
}

void UniqueFd::reset() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace vandra
