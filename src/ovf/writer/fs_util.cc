// File helpers for the writer (see fs_util.h). Uses POSIX calls directly so every failure
// carries its errno; std::filesystem only for recursive removal (with error_code, no throw).
#include "fs_util.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <memory>
#include <vector>

#include "vandra/common/unique_fd.h"

namespace vandra::ovf::detail {

std::string parentDir(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') {
    p.pop_back();
  }
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : p.substr(0, slash);
}

std::string baseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') {
    p.pop_back();
  }
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

Result<std::string> makeTempDirBeside(const std::string& target) {
  std::string tmpl = parentDir(target) + "/." + baseName(target) + ".vandra-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    return fail(Error::fromErrno("Cannot create a temporary directory beside '" + target + "'"));
  }
  return std::string(buf.data());
}

void removeTree(const std::string& path) noexcept {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

bool isDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<void> writeFile(const std::string& path, std::string_view bytes) {
  VANDRA_TRY_ASSIGN(UniqueFd fd, UniqueFd::open(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
  VANDRA_TRY(writeAll(fd.get(), bytes.data(), bytes.size(), path));
  if (::fsync(fd.get()) != 0) {
    return fail(Error::fromErrno("Cannot sync '" + path + "'"));
  }
  return fd.close();
}

Result<std::string> readFile(const std::string& path, uint64_t max_bytes) {
  VANDRA_TRY_ASSIGN(UniqueFd fd, UniqueFd::open(path, O_RDONLY));
  std::string out;
  std::array<char, 65536> buf{};
  for (;;) {
    VANDRA_TRY_ASSIGN(const size_t n, readSome(fd.get(), buf.data(), buf.size(), path));
    if (n == 0) {
      break;
    }
    out.append(buf.data(), n);
    if (out.size() > max_bytes) {
      return fail(ErrorCode::LimitExceeded,
                  "'" + path + "' is larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  return out;
}

Result<uint64_t> fileSize(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return fail(Error::fromErrno("Cannot stat '" + path + "'"));
  }
  return static_cast<uint64_t>(st.st_size);
}

Result<void> syncPath(const std::string& path) {
  VANDRA_TRY_ASSIGN(UniqueFd fd, UniqueFd::open(path, O_RDONLY));
  if (::fsync(fd.get()) != 0 && errno != EINVAL) {
    return fail(Error::fromErrno("Cannot sync '" + path + "'"));
  }
  return {};
}

Result<void> renameNoReplace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    Error e = Error::fromErrno("Cannot rename '" + from + "' to '" + to + "'");
    if (e.sys_errno == EEXIST) {
      e.code = ErrorCode::AlreadyExists;
    }
    return fail(std::move(e));
  }
  return {};
}

Result<void> renameReplace(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return fail(Error::fromErrno("Cannot rename '" + from + "' to '" + to + "'"));
  }
  return {};
}

namespace {

const EVP_MD* mdFor(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::Sha1:
      return EVP_sha1();
    case DigestAlgorithm::Sha256:
      return EVP_sha256();
    case DigestAlgorithm::Sha512:
      return EVP_sha512();
  }
  return EVP_sha256();
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4U];
    out += kDigits[p[i] & 0xFU];
  }
  return out;
}

Result<std::string> finishDigest(EVP_MD_CTX* ctx) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, md.data(), &len) != 1) {
    return fail(ErrorCode::Internal, "Digest computation failed");
  }
  return hex(md.data(), len);
}

}  // namespace

Result<std::string> digestBytes(std::string_view bytes, DigestAlgorithm algorithm) {
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), mdFor(algorithm), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1) {
    return fail(ErrorCode::Internal, "Digest computation failed");
  }
  return finishDigest(ctx.get());
}

Result<std::string> digestFile(const std::string& path, DigestAlgorithm algorithm) {
  VANDRA_TRY_ASSIGN(UniqueFd fd, UniqueFd::open(path, O_RDONLY));
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), mdFor(algorithm), nullptr) != 1) {
    return fail(ErrorCode::Internal, "Digest computation failed");
  }
  std::vector<char> buf(1U << 20);
  for (;;) {
    VANDRA_TRY_ASSIGN(const size_t n, readSome(fd.get(), buf.data(), buf.size(), path));
    if (n == 0) {
      break;
    }
    if (EVP_DigestUpdate(ctx.get(), buf.data(), n) != 1) {
      return fail(ErrorCode::Internal, "Digest computation failed");
    }
  }
  return finishDigest(ctx.get());
}

Result<std::string> digestStream(const std::function<Result<size_t>(char*, size_t)>& read,
                                 DigestAlgorithm algorithm) {
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), mdFor(algorithm), nullptr) != 1) {
    return fail(ErrorCode::Internal, "Digest computation failed");
  }
  std::vector<char> buf(1U << 20);
  for (;;) {
    VANDRA_TRY_ASSIGN(const size_t n, read(buf.data(), buf.size()));
    if (n == 0) {
      break;
    }
    if (EVP_DigestUpdate(ctx.get(), buf.data(), n) != 1) {
      return fail(ErrorCode::Internal, "Digest computation failed");
    }
  }
  return finishDigest(ctx.get());
}

Result<void> checkMemberName(const std::string& name) {
  const bool bad_char = std::any_of(name.begin(), name.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return c == '/' || c == '\\' || u < 0x20 || u == 0x7F;
  });
  if (name.empty() || name == "." || name == ".." || bad_char || name.size() > 100) {
    return fail(ErrorCode::InvalidArgument,
                "Member name '" + name +
                    "' must be a plain file name of at most 100 bytes (no '/' or '\\')");
  }
  return {};
}

}  // namespace vandra::ovf::detail
