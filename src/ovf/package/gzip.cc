// gunzipFile: streams a gzip member (ovf:compression="gzip") through zlib into a new file,
// bounded in output so a gzip bomb cannot fill the disk. Removes its output on any error.
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <memory>
#include <vector>

#include "vandra/common/scope_guard.h"
#include "vandra/common/unique_fd.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf {
namespace {

constexpr size_t kBlock = 1U << 20;

struct InflateEnd {
  void operator()(z_stream* z) const { inflateEnd(z); }
};

}  // namespace

Result<uint64_t> gunzipFile(const std::string& src, const std::string& dest, uint64_t max_output) {
  VANDRA_TRY_ASSIGN(UniqueFd in, UniqueFd::open(src, O_RDONLY));
  const int raw = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (raw < 0) {
    Error e = Error::fromErrno("Cannot create '" + dest + "'");
    if (e.sys_errno == EEXIST) {
      e.code = ErrorCode::AlreadyExists;
    }
    return fail(std::move(e));
  }
  UniqueFd out(raw);
  auto remove_dest = defer([&dest] { ::unlink(dest.c_str()); });

  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {  // 16: gzip header, not zlib
    return fail(ErrorCode::Internal, "zlib: inflateInit2 failed");
  }
  std::unique_ptr<z_stream, InflateEnd> z_owner(&z);
  std::vector<unsigned char> ibuf(kBlock);
  std::vector<unsigned char> obuf(kBlock);
  uint64_t written = 0;
  bool in_member = true;  // gzip files may hold several concatenated members
  bool saw_data = false;
  for (;;) {
    const ssize_t got = ::read(in.get(), ibuf.data(), ibuf.size());
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return fail(Error::fromErrno("Cannot read '" + src + "'"));
    }
    if (got == 0) {
      break;
    }
    saw_data = true;
    z.next_in = ibuf.data();
    z.avail_in = static_cast<uInt>(got);
    // Also loops while the output buffer came back full: zlib may hold more output.
    bool full = false;
    while (z.avail_in > 0 || full) {
      if (!in_member) {
        if (z.avail_in == 0) {
          break;
        }
        inflateReset(&z);
        in_member = true;
      }
      z.next_out = obuf.data();
      z.avail_out = static_cast<uInt>(obuf.size());
      const int rc = inflate(&z, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        return fail(ErrorCode::DiskImageInvalid,
                    "'" + src + "' is not valid gzip: " + (z.msg != nullptr ? z.msg : "?"));
      }
      const size_t produced = obuf.size() - z.avail_out;
      full = z.avail_out == 0;
      written += produced;
      if (written > max_output) {
        return fail(ErrorCode::LimitExceeded,
                    "'" + src + "' inflates to more than " + std::to_string(max_output) + " bytes");
      }
      VANDRA_TRY(writeAll(out.get(), obuf.data(), produced, dest));
      if (rc == Z_STREAM_END) {
        in_member = false;
      } else if (rc == Z_BUF_ERROR && produced == 0) {
        break;  // needs more input
      }
    }
  }
  if (!saw_data || in_member) {
    return fail(ErrorCode::DiskImageInvalid, "'" + src + "' is truncated gzip data");
  }
  VANDRA_TRY(out.close());
  remove_dest.dismiss();
  return written;
}

}  // namespace vandra::ovf
