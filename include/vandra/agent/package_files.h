// Where an agent may read packages from: its import folders (vandrad --import-dir, plus its own
// upload folder <state-dir>/uploads), and the upload folder itself (PUT /v1/packages/{name}).
// A request names a path on the agent's host, and the agent runs as root: without these checks
// any file of the host could be opened (docs/agent/api.md, "Import folders").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"

namespace vandra::agent {

inline constexpr size_t kMaxUploadNameBytes = 128;
/// Default bound of one upload (vandrad --max-upload-mib).
inline constexpr uint64_t kDefaultMaxUploadBytes = 65536ULL << 20;

/// SHA-256 (hex) of the file at @p path, read whole, and its size. Errors: NotFound, Io.
struct FileDigest {
  std::string sha256;
  uint64_t size = 0;
};
[[nodiscard]] Result<FileDigest> sha256File(const std::string& path);

/// An upload's name: a plain file name of 1..128 characters of [A-Za-z0-9._-], ending in
/// ".ova", not starting with '.' (hidden names are the agent's partial files). Pure.
bool validUploadName(std::string_view name);

/// A package file of an import folder, opened (O_NOFOLLOW on its canonical path) so that what
/// was checked is what is read: readPath() names the open file, not the path.
struct OpenedPackage {
  std::string canonical;  // the file's canonical path, for messages and records
  UniqueFd fd;
  uint64_t size = 0;
  /// /proc/self/fd/N: opens the same file again, whatever happens to the path meanwhile.
  std::string readPath() const;
};

/// Opens @p path for an import when, with no ".." component and symlinks resolved, it is a
/// regular .ova file inside one of @p import_dirs. Errors: InvalidArgument (not absolute, a
/// ".." component, not .ova), NotFound, Forbidden (outside the folders, not a regular file),
/// naming the path and the folders.
[[nodiscard]] Result<OpenedPackage> openImportPackage(const std::string& path,
                                                      const std::vector<std::string>& import_dirs);

struct UploadInfo {
  std::string name;
  uint64_t size = 0;
  std::optional<std::string> sha256;  // hex, when the agent received it (uploads only)
};

/// One upload in progress: written to <dir>/.<name>.part (O_EXCL), digested as it goes.
/// Whatever has not been commit()ted is removed when it goes.
class UploadWriter {
 public:
  UploadWriter(UploadWriter&&) noexcept;
  UploadWriter& operator=(UploadWriter&&) = delete;
  UploadWriter(const UploadWriter&) = delete;
  UploadWriter& operator=(const UploadWriter&) = delete;
  ~UploadWriter();

  /// Appends @p n bytes. Errors: LimitExceeded (past the bound, or the folder's file system
  /// would keep less than UploadStore::kReserveBytes free), Io.
  [[nodiscard]] Result<void> write(const char* data, size_t n);
  /// Verifies the file as an OVF package (@p verify: the agent's package checks, on the path
  /// it is given), then renames it to <dir>/<name> unless that exists. Errors: the
  /// verification's, AlreadyExists, Io. On any error nothing is left.
  [[nodiscard]] Result<UploadInfo> commit(
      const std::function<Result<void>(const std::string& path)>& verify);
  uint64_t written() const { return written_; }

 private:
  friend class UploadStore;
  UploadWriter() = default;
  void discard();
  std::string dir_, name_, part_;
  UniqueFd fd_;
  uint64_t written_ = 0;
  uint64_t max_bytes_ = 0;
  uint64_t reserve_bytes_ = 0;
  void* digest_ = nullptr;  // EVP_MD_CTX*, kept out of this header
  bool done_ = false;
};

/// The agent's upload folder.
class UploadStore {
 public:
  /// Opens (creating) @p dir. Partial files left by a crash are removed.
  [[nodiscard]] static Result<UploadStore> open(const std::string& dir, uint64_t max_bytes);
  /// Free space kept on the folder's file system: an upload never fills it.
  static constexpr uint64_t kReserveBytes = 64ULL << 20;

  /// Starts upload @p name; @p declared_size (Content-Length) is checked against the bound
  /// and the free space first. Errors: InvalidArgument (name), AlreadyExists (that name, or an
  /// upload of it in progress), LimitExceeded, Io.
  [[nodiscard]] Result<UploadWriter> begin(const std::string& name,
                                           std::optional<uint64_t> declared_size) const;
  /// Uploads, by name. Hidden and partial files are left out.
  [[nodiscard]] Result<std::vector<UploadInfo>> list() const;
  /// Errors: InvalidArgument, NotFound, Io.
  [[nodiscard]] Result<UploadInfo> get(const std::string& name) const;
  /// Errors: InvalidArgument, NotFound, Io.
  [[nodiscard]] Result<void> remove(const std::string& name) const;
  /// Takes file @p path, which the agent wrote on the folder's file system (an export), as
  /// upload @p name: its digest recorded, moved in without replacing anything; on error
  /// @p path is left where it is. Errors: InvalidArgument, AlreadyExists, Io.
  [[nodiscard]] Result<UploadInfo> adopt(const std::string& name, const std::string& path) const;

  const std::string& dir() const { return dir_; }
  uint64_t maxBytes() const { return max_bytes_; }
  /// Bytes an upload may still use (free space minus the reserve).
  uint64_t available() const;

 private:
  UploadStore(std::string dir, uint64_t max_bytes) : dir_(std::move(dir)), max_bytes_(max_bytes) {}
  std::string dir_;
  uint64_t max_bytes_;
};

}  // namespace vandra::agent
