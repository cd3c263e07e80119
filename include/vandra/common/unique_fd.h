// UniqueFd: sole owner of a file descriptor; closes it on destruction. Move-only.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "vandra/common/result.h"

namespace vandra {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }

  /// open(2) with O_CLOEXEC added. Errors: Io (with errno), NotFound for ENOENT.
  [[nodiscard]] static Result<UniqueFd> open(const std::string& path, int flags, int mode = 0600);

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  /// Closes now and reports the error close(2) gave (data may be lost on some filesystems).
  [[nodiscard]] Result<void> close();

 private:
  void reset();
  int fd_ = -1;
};

/// write(2) until all @p n bytes are written, retrying EINTR. Errors: Io naming @p what.
[[nodiscard]] Result<void> writeAll(int fd, const void* data, size_t n, const std::string& what);

/// Replaces @p path with @p text: written beside it (path + ".tmp"), fsync'ed, then renamed
/// over it, so a crash leaves the old file or the new one. Errors: Io naming the file.
[[nodiscard]] Result<void> replaceFile(const std::string& path, std::string_view text,
                                       int mode = 0600);

/// read(2) retrying EINTR: the bytes read, 0 at end of file. Errors: Io naming @p what.
[[nodiscard]] Result<size_t> readSome(int fd, void* buf, size_t n, const std::string& what);

}  // namespace vandra
