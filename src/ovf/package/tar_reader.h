// One-pass streaming reader of an OVA tar (ustar, pax, GNU) over libarchive, from a file
// descriptor or memory. It reports what each header says and streams member data in
// blocks; it does not judge names or types (package_reader does) and never writes files.
#pragma once

#include <archive.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"

namespace vandra::ovf::detail {

enum class TarEntryKind : uint8_t { Regular, Directory, Symlink, Hardlink, Device, Fifo, Other };

struct TarEntry {
  std::string name;  // as stored, "./" prefix removed
  bool name_readable = true;
  TarEntryKind kind = TarEntryKind::Other;
  uint64_t size = 0;
  bool sparse = false;
};

struct ArchiveFree {
  void operator()(struct archive* a) const { archive_read_free(a); }
};

class TarReader {
 public:
  /// Errors: NotFound / Io for the file, ArchiveInvalid when it is not a tar at all.
  [[nodiscard]] static Result<TarReader> openFile(const std::string& path);
  /// @p bytes must outlive the reader.
  [[nodiscard]] static Result<TarReader> openMemory(std::string_view bytes);

  /// Next header, nullopt at the end of the archive. Errors: ArchiveInvalid.
  [[nodiscard]] Result<std::optional<TarEntry>> next();
  /// Streams the current member's data to @p sink in blocks; returns the byte count.
  /// Errors: ArchiveInvalid (truncated), or whatever @p sink returns.
  [[nodiscard]] Result<uint64_t> readData(
      const std::function<Result<void>(std::string_view)>& sink);
  /// Skips the current member's data (seeks when reading a file). Errors: ArchiveInvalid.
  [[nodiscard]] Result<void> skipData();

  /// Bytes of the archive consumed so far and its total size (for bounds and progress).
  uint64_t position() const;
  /// Offset of the current member's header in the archive.
  uint64_t headerPosition() const;
  uint64_t totalSize() const { return total_size_; }

 private:
  TarReader() = default;
  [[nodiscard]] Error archiveError(const std::string& what) const;

  UniqueFd fd_;
  std::unique_ptr<struct archive, ArchiveFree> archive_;
  uint64_t total_size_ = 0;
};

}  // namespace vandra::ovf::detail
