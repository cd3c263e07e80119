// Writes an OVA: a tar (ustar) of the given members in the given order. Internal. The caller
// decides the order (descriptor first); this unit only streams bytes and never resolves
// member names against the filesystem.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"

struct archive;  // libarchive handle, kept out of this header

namespace vandra::ovf::detail {

struct OvaMember {
  std::string name;                  // name inside the tar
  std::string source_path;           // file to copy, used when `bytes` is not set
  std::optional<std::string> bytes;  // content given in memory
};

/// Creates @p out_path (must not exist) with @p members. ustar; members of 8 GiB or more
/// get a pax size record (ustar cannot express them). Progress: bytes done, bytes total.
Result<void> writeOva(const std::string& out_path, const std::vector<OvaMember>& members,
                      const std::function<void(uint64_t, uint64_t)>& progress);

/// Calls @p on_member for each regular member of the tar at @p path, in order, with a reader
/// for its content. Used to carry members over when an OVA is rewritten.
struct TarMemberReader {
  std::string name;
  uint64_t size = 0;
  std::function<Result<size_t>(char*, size_t)> read;  // 0 at end
};
Result<void> forEachTarMember(const std::string& path,
                              const std::function<Result<void>(TarMemberReader&)>& on_member);

/// Like writeOva, but members may also come from another tar (see copyFrom).
class OvaStream {
 public:
  static Result<OvaStream> create(const std::string& out_path, bool large);
  OvaStream(OvaStream&&) noexcept;
  OvaStream& operator=(OvaStream&&) = delete;
  OvaStream(const OvaStream&) = delete;
  OvaStream& operator=(const OvaStream&) = delete;
  ~OvaStream();

  Result<void> addBytes(const std::string& name, std::string_view bytes);
  Result<void> addFile(const std::string& name, const std::string& path,
                       const std::function<void(uint64_t)>& on_bytes);
  Result<void> addFrom(TarMemberReader& member);
  /// Finishes the archive and syncs the file.
  Result<void> close();

 private:
  OvaStream() = default;
  Result<void> header(const std::string& name, uint64_t size);
  Result<void> data(const char* p, size_t n);
  ::archive* a_ = nullptr;
  std::string path_;
};

}  // namespace vandra::ovf::detail
