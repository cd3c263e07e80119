// OVA tar writing with libarchive (ustar, as OVF requires; pax size records only for members
// of 8 GiB and more). Members are regular files, mode 0644, owner 0; names are written as
// given (checked by the caller). Nothing here extracts or follows names on disk.
#include "ova_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <ctime>
#include <memory>
#include <vector>

#include "fs_util.h"
#include "vandra/common/unique_fd.h"

namespace vandra::ovf::detail {
namespace {

constexpr uint64_t kUstarMaxSize = 077777777777ULL;  // 11 octal digits

struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
struct ReadFree {
  void operator()(::archive* a) const { archive_read_free(a); }
};

Error archiveError(::archive* a, const std::string& what) {
  const char* msg = a != nullptr ? archive_error_string(a) : nullptr;
  return Error(ErrorCode::Io, what + ": " + (msg != nullptr ? msg : "libarchive error"));
}

}  // namespace

Result<OvaStream> OvaStream::create(const std::string& out_path, bool large) {
  if (exists(out_path)) {
    return fail(ErrorCode::AlreadyExists, "'" + out_path + "' already exists");
  }
  OvaStream s;
  s.path_ = out_path;
  s.a_ = archive_write_new();
  if (s.a_ == nullptr) {
    return fail(ErrorCode::Internal, "archive_write_new failed");
  }
  const int fmt =
      large ? archive_write_set_format_pax_restricted(s.a_) : archive_write_set_format_ustar(s.a_);
  // No padding to 10 KiB blocks beyond what tar needs: 512-byte records are enough.
  if (fmt != ARCHIVE_OK || archive_write_set_bytes_per_block(s.a_, 10240) != ARCHIVE_OK ||
      archive_write_open_filename(s.a_, out_path.c_str()) != ARCHIVE_OK) {
    return fail(archiveError(s.a_, "Cannot create '" + out_path + "'"));
  }
  return s;
}

OvaStream::OvaStream(OvaStream&& o) noexcept
    : a_(std::exchange(o.a_, nullptr)), path_(std::move(o.path_)) {}

OvaStream::~OvaStream() {
  if (a_ != nullptr) {
    archive_write_free(a_);
  }
}

Result<void> OvaStream::header(const std::string& name, uint64_t size) {
  VANDRA_TRY(checkMemberName(name));
  std::unique_ptr<archive_entry, EntryFree> e(archive_entry_new());
  archive_entry_set_pathname(e.get(), name.c_str());
  archive_entry_set_size(e.get(), static_cast<la_int64_t>(size));
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), 0644);
  archive_entry_set_uid(e.get(), 0);
  archive_entry_set_gid(e.get(), 0);
  archive_entry_set_mtime(e.get(), std::time(nullptr), 0);
  if (archive_write_header(a_, e.get()) != ARCHIVE_OK) {
    return fail(archiveError(a_, "Cannot write tar header for '" + name + "'"));
  }
  return {};
}

Result<void> OvaStream::data(const char* p, size_t n) {
  while (n > 0) {
    const la_ssize_t w = archive_write_data(a_, p, n);
    if (w <= 0) {
      return fail(archiveError(a_, "Cannot write '" + path_ + "'"));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

Result<void> OvaStream::addBytes(const std::string& name, std::string_view bytes) {
  VANDRA_TRY(header(name, bytes.size()));
  return data(bytes.data(), bytes.size());
}

Result<void> OvaStream::addFile(const std::string& name, const std::string& path,
                                const std::function<void(uint64_t)>& on_bytes) {
  VANDRA_TRY_ASSIGN(UniqueFd fd, UniqueFd::open(path, O_RDONLY));
  VANDRA_TRY_ASSIGN(const uint64_t size, fileSize(path));
  VANDRA_TRY(header(name, size));
  std::vector<char> buf(1U << 20);
  uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return fail(Error::fromErrno("Cannot read '" + path + "'"));
    }
    if (n == 0) {
      return fail(ErrorCode::Io, "'" + path + "' shrank while it was archived");
    }
    const auto len = std::min(static_cast<uint64_t>(n), size - done);
    VANDRA_TRY(data(buf.data(), static_cast<size_t>(len)));
    done += len;
    if (on_bytes) {
      on_bytes(len);
    }
  }
  return {};
}

Result<void> OvaStream::addFrom(TarMemberReader& member) {
  VANDRA_TRY(header(member.name, member.size));
  std::vector<char> buf(1U << 20);
  uint64_t done = 0;
  for (;;) {
    VANDRA_TRY_ASSIGN(const size_t n, member.read(buf.data(), buf.size()));
    if (n == 0) {
      break;
    }
    VANDRA_TRY(data(buf.data(), n));
    done += n;
  }
  if (done != member.size) {
    return fail(ErrorCode::ArchiveInvalid, "Member '" + member.name + "' is truncated");
  }
  return {};
}

Result<void> OvaStream::close() {
  if (archive_write_close(a_) != ARCHIVE_OK) {
    return fail(archiveError(a_, "Cannot finish '" + path_ + "'"));
  }
  archive_write_free(a_);
  a_ = nullptr;
  return syncPath(path_);
}

Result<void> writeOva(const std::string& out_path, const std::vector<OvaMember>& members,
                      const std::function<void(uint64_t, uint64_t)>& progress) {
  uint64_t total = 0;
  bool large = false;
  for (const auto& m : members) {
    VANDRA_TRY(checkMemberName(m.name));
    uint64_t size = 0;
    if (m.bytes) {
      size = m.bytes->size();
    } else {
      VANDRA_TRY_ASSIGN(size, fileSize(m.source_path));
    }
    large = large || size > kUstarMaxSize;
    total += size;
  }
  VANDRA_TRY_ASSIGN(OvaStream s, OvaStream::create(out_path, large));
  uint64_t done = 0;
  for (const auto& m : members) {
    if (m.bytes) {
      VANDRA_TRY(s.addBytes(m.name, *m.bytes));
      done += m.bytes->size();
    } else {
      VANDRA_TRY(s.addFile(m.name, m.source_path, [&](uint64_t n) {
        done += n;
        if (progress) {
          progress(done, total);
        }
      }));
    }
    if (progress) {
      progress(done, total);
    }
  }
  return s.close();
}

Result<void> forEachTarMember(const std::string& path,
                              const std::function<Result<void>(TarMemberReader&)>& on_member) {
  std::unique_ptr<::archive, ReadFree> a(archive_read_new());
  if (!a || archive_read_support_format_tar(a.get()) != ARCHIVE_OK ||
      archive_read_open_filename(a.get(), path.c_str(), 65536) != ARCHIVE_OK) {
    return fail(archiveError(a.get(), "Cannot open '" + path + "'"));
  }
  for (;;) {
    archive_entry* e = nullptr;
    const int rc = archive_read_next_header(a.get(), &e);
    if (rc == ARCHIVE_EOF) {
      return {};
    }
    if (rc != ARCHIVE_OK) {
      Error err = archiveError(a.get(), "Cannot read '" + path + "'");
      err.code = ErrorCode::ArchiveInvalid;
      return fail(std::move(err));
    }
    if (archive_entry_filetype(e) != AE_IFREG) {
      continue;  // openPackage refuses such packages; never carried over
    }
    TarMemberReader m;
    m.name = archive_entry_pathname(e) != nullptr ? archive_entry_pathname(e) : "";
    m.size = static_cast<uint64_t>(archive_entry_size(e));
    ::archive* ap = a.get();
    m.read = [ap, &path](char* buf, size_t n) -> Result<size_t> {
      const la_ssize_t r = archive_read_data(ap, buf, n);
      if (r < 0) {
        Error err = archiveError(ap, "Cannot read '" + path + "'");
        err.code = ErrorCode::ArchiveInvalid;
        return fail(std::move(err));
      }
      return static_cast<size_t>(r);
    };
    VANDRA_TRY(on_member(m));
  }
}

}  // namespace vandra::ovf::detail
