// libarchive-backed streaming tar reader (see tar_reader.h). Only the tar formats are
// enabled: no compression filters, no other archive formats, so hostile input cannot reach
// code paths an OVA never needs.
#include "tar_reader.h"

#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>

namespace vandra::ovf::detail {
namespace {

// Large reads keep syscalls rare when hashing multi-GiB disks.
constexpr size_t kReadBlock = 1U << 20;

Result<std::unique_ptr<struct archive, ArchiveFree>> newTarArchive() {
  std::unique_ptr<struct archive, ArchiveFree> a(archive_read_new());
  if (!a) {
    return fail(ErrorCode::Internal, "libarchive: out of memory");
  }
  archive_read_support_format_tar(a.get());  // ustar, pax, GNU
  return a;
}

}  // namespace

Error TarReader::archiveError(const std::string& what) const {
  const char* msg = archive_error_string(archive_.get());
  return Error(ErrorCode::ArchiveInvalid,
               what + (msg != nullptr ? std::string(": ") + msg : std::string()));
}

Result<TarReader> TarReader::openFile(const std::string& path) {
  TarReader r;
  VANDRA_TRY_ASSIGN(r.fd_, UniqueFd::open(path, O_RDONLY));
  struct stat st {};
  if (fstat(r.fd_.get(), &st) != 0) {
    return fail(Error::fromErrno("Cannot stat '" + path + "'"));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorCode::InvalidArgument, "'" + path + "' is not a regular file");
  }
  r.total_size_ = static_cast<uint64_t>(st.st_size);
  VANDRA_TRY_ASSIGN(r.archive_, newTarArchive());
  if (archive_read_open_fd(r.archive_.get(), r.fd_.get(), kReadBlock) != ARCHIVE_OK) {
    return fail(r.archiveError("'" + path + "' is not a tar archive"));
  }
  return r;
}

Result<TarReader> TarReader::openMemory(std::string_view bytes) {
  TarReader r;
  r.total_size_ = bytes.size();
  VANDRA_TRY_ASSIGN(r.archive_, newTarArchive());
  if (archive_read_open_memory(r.archive_.get(), bytes.data(), bytes.size()) != ARCHIVE_OK) {
    return fail(r.archiveError("Not a tar archive"));
  }
  return r;
}

Result<std::optional<TarEntry>> TarReader::next() {
  struct archive_entry* e = nullptr;
  const int rc = archive_read_next_header(archive_.get(), &e);
  if (rc == ARCHIVE_EOF) {
    return std::optional<TarEntry>();
  }
  // ARCHIVE_WARN still yields a usable header (e.g. a name not convertible to the locale);
  // RETRY/FATAL mean the header block itself is damaged.
  if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
    return fail(archiveError("Damaged tar header"));
  }
  TarEntry out;
  const char* name = archive_entry_pathname(e);
  if (name == nullptr) {
    name = archive_entry_pathname_utf8(e);
  }
  if (name == nullptr) {
    out.name_readable = false;
  } else {
    out.name = name;
    while (out.name.size() > 2 && out.name.starts_with("./")) {
      out.name.erase(0, 2);
    }
  }
  const la_int64_t size = archive_entry_size(e);
  out.size = size > 0 ? static_cast<uint64_t>(size) : 0;
  out.sparse = archive_entry_sparse_count(e) > 0;
  if (archive_entry_hardlink(e) != nullptr) {
    out.kind = TarEntryKind::Hardlink;
  } else {
    switch (archive_entry_filetype(e)) {
      case AE_IFREG:
        out.kind = TarEntryKind::Regular;
        break;
      case AE_IFDIR:
        out.kind = TarEntryKind::Directory;
        break;
      case AE_IFLNK:
        out.kind = TarEntryKind::Symlink;
        break;
      case AE_IFCHR:
      case AE_IFBLK:
        out.kind = TarEntryKind::Device;
        break;
      case AE_IFIFO:
        out.kind = TarEntryKind::Fifo;
        break;
      default:
        out.kind = TarEntryKind::Other;
        break;
    }
  }
  return std::optional<TarEntry>(std::move(out));
}

Result<uint64_t> TarReader::readData(const std::function<Result<void>(std::string_view)>& sink) {
  uint64_t done = 0;
  for (;;) {
    const void* buf = nullptr;
    size_t len = 0;
    la_int64_t offset = 0;
    const int rc = archive_read_data_block(archive_.get(), &buf, &len, &offset);
    if (rc == ARCHIVE_EOF) {
      return done;
    }
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      return fail(archiveError("Cannot read member data"));
    }
    // Sparse members are rejected before reading, so data must be contiguous.
    if (offset < 0 || static_cast<uint64_t>(offset) != done) {
      return fail(ErrorCode::ArchiveInvalid, "Member data has holes");
    }
    VANDRA_TRY(sink(std::string_view(static_cast<const char*>(buf), len)));
    done += len;
  }
}

Result<void> TarReader::skipData() {
  if (archive_read_data_skip(archive_.get()) != ARCHIVE_OK) {
    return fail(archiveError("Cannot skip member data"));
  }
  return {};
}

uint64_t TarReader::position() const {
  const la_int64_t n = archive_filter_bytes(archive_.get(), -1);
  return n > 0 ? static_cast<uint64_t>(n) : 0;
}

}  // namespace vandra::ovf::detail

namespace vandra::ovf::detail {

uint64_t TarReader::headerPosition() const {
  const la_int64_t n = archive_read_header_position(archive_.get());
  return n > 0 ? static_cast<uint64_t>(n) : 0;
}

}  // namespace vandra::ovf::detail
