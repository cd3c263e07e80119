// File helpers of the writer: temp directories beside a target, whole-file reads/writes with
// fsync, digests, no-replace renames. Internal. Never follows a caller's name outside the
// directory it is given, and reports every failing call with its errno.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "vandra/common/result.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf::detail {

/// Creates a private directory next to @p target ("<dir>/.<name>.vandra-XXXXXX").
Result<std::string> makeTempDirBeside(const std::string& target);
/// Parent directory of @p path ("." when it has none).
std::string parentDir(const std::string& path);
/// Final component of @p path.
std::string baseName(const std::string& path);
/// Removes @p path and everything below it; errors are ignored (cleanup path).
void removeTree(const std::string& path) noexcept;
bool exists(const std::string& path);
bool isDirectory(const std::string& path);

Result<void> writeFile(const std::string& path, std::string_view bytes);
Result<std::string> readFile(const std::string& path, uint64_t max_bytes);
Result<uint64_t> fileSize(const std::string& path);
/// fsync of a file or directory by name.
Result<void> syncPath(const std::string& path);
/// rename(2) that fails with AlreadyExists instead of replacing @p to.
Result<void> renameNoReplace(const std::string& from, const std::string& to);
/// rename(2) replacing @p to atomically.
Result<void> renameReplace(const std::string& from, const std::string& to);

/// Lower-case hex digest of a file / of bytes.
Result<std::string> digestFile(const std::string& path, DigestAlgorithm algorithm);
Result<std::string> digestBytes(std::string_view bytes, DigestAlgorithm algorithm);
/// Digest of everything @p read returns until it returns 0.
Result<std::string> digestStream(const std::function<Result<size_t>(char*, size_t)>& read,
                                 DigestAlgorithm algorithm);

/// A member name we write: a plain file name, no separators, not "." / "..", printable.
Result<void> checkMemberName(const std::string& name);

}  // namespace vandra::ovf::detail
