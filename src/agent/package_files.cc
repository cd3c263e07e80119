#include "vandra/agent/package_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;

bool endsWithOva(std::string_view s) {
  if (s.size() < 4) {
    return false;
  }
  std::string tail(s.substr(s.size() - 4));
  for (char& c : tail) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return tail == ".ova";
}

bool hasDotDot(const std::string& path) {
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) {
      end = path.size();
    }
    if (path.compare(start, end - start, "..") == 0 && end - start == 2) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

// @p canonical lies strictly inside folder @p dir (both canonical).
bool inside(const std::string& canonical, const std::string& dir) {
  const std::string prefix = dir.back() == '/' ? dir : dir + "/";
  return canonical.size() > prefix.size() && canonical.compare(0, prefix.size(), prefix) == 0;
}

std::string joinFolders(const std::vector<std::string>& dirs) {
  std::string out;
  for (const auto& d : dirs) {
    out += (out.empty() ? "" : ", ") + d;
  }
  return out.empty() ? "none" : out;
}

std::optional<std::string> realPath(const std::string& p) {
  std::unique_ptr<char, decltype(&std::free)> r(::realpath(p.c_str(), nullptr), &std::free);
  if (!r) {
    return std::nullopt;
  }
  return std::string(r.get());
}

std::string hex(const unsigned char* md, unsigned int len) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(digits[md[i] >> 4]);
    out.push_back(digits[md[i] & 15]);
  }
  return out;
}

// The digest recorded beside upload @p name (".<name>.sha256": "<hex> <size>"), trusted only
// while the file still has the size it had when it was received.
std::optional<std::string> recordedSha256(const std::string& dir, const std::string& name,
                                          uint64_t size) {
  std::ifstream in(dir + "/." + name + ".sha256");
  std::string digest;
  uint64_t recorded_size = 0;
  if (!(in >> digest >> recorded_size) || recorded_size != size || digest.size() != 64) {
    return std::nullopt;
  }
  return digest;
}

}  // namespace

Result<FileDigest> sha256File(const std::string& path) {
  VANDRA_TRY_ASSIGN(const UniqueFd fd, UniqueFd::open(path, O_RDONLY));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return fail(ErrorCode::Internal, "OpenSSL: cannot start a SHA-256 digest");
  }
  std::vector<char> buf(1U << 20);
  FileDigest out;
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return fail(Error::fromErrno("Cannot read '" + path + "'"));
    }
    if (n == 0) {
      break;
    }
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
    out.size += static_cast<uint64_t>(n);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  out.sha256 = hex(md, len);
  return out;
}

bool validUploadName(std::string_view name) {
  if (name.empty() || name.size() > kMaxUploadNameBytes || name.front() == '.' ||
      !name.ends_with(".ova") || name.size() == 4) {
    return false;
  }
  for (const char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::string OpenedPackage::readPath() const {
  return "/proc/self/fd/" + std::to_string(fd.get());
}

Result<OpenedPackage> openImportPackage(const std::string& path,
                                        const std::vector<std::string>& import_dirs) {
  if (path.empty() || path.front() != '/') {
    return fail(ErrorCode::InvalidArgument,
                "Package path '" + path + "' must be an absolute path on the agent's host");
  }
  std::vector<std::string> dirs;  // the folders as they are now (canonical; missing ones left out)
  for (const auto& d : import_dirs) {
    if (auto c = realPath(d)) {
      dirs.push_back(*c);
    }
  }
  auto forbidden = [&](const std::string& why) {
    return fail(ErrorCode::Forbidden, "Package path '" + path + "' " + why +
                                          "; the agent imports only from its import folders (" +
                                          joinFolders(dirs) + ")");
  };
  if (hasDotDot(path)) {
    return forbidden("has a '..' component");
  }
  const auto canonical = realPath(path);
  if (!canonical) {
    // Say "not found" only inside the folders: elsewhere, whether a file exists is not the
    // caller's business.
    const std::string lexical = fs::path(path).lexically_normal().string();
    for (const auto& d : dirs) {
      if (inside(lexical, d) || inside(path, d)) {
        return fail(ErrorCode::NotFound, "No package '" + path + "' in the import folder " + d);
      }
    }
    return forbidden("is outside the import folders");
  }
  auto within = [&](const std::string& p) {
    for (const auto& d : dirs) {
      if (inside(p, d)) {
        return true;
      }
    }
    return false;
  };
  if (!within(*canonical)) {
    return forbidden(*canonical == path ? "is outside the import folders"
                                        : "resolves to '" + *canonical + "', outside them");
  }
  if (!endsWithOva(*canonical)) {
    return fail(ErrorCode::InvalidArgument,
                "Package '" + path + "' is not a .ova file: the agent imports single-file OVAs");
  }
  // O_NOFOLLOW: a symlink put in place since realpath() is refused; O_NONBLOCK: a FIFO does
  // not hang the open (fstat refuses it next).
  const int fd = ::open(canonical->c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP) {
      return forbidden("changed into a symlink while it was opened");
    }
    return fail(Error::fromErrno("Cannot open package '" + *canonical + "'"));
  }
  OpenedPackage out{*canonical, UniqueFd(fd), 0};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return fail(Error::fromErrno("Cannot stat package '" + *canonical + "'"));
  }
  if (!S_ISREG(st.st_mode)) {
    return forbidden("is not a regular file");
  }
  // A folder on the way swapped for a symlink between realpath() and open(): where the open
  // file really is decides.
  char where[PATH_MAX + 1] = {};
  const ssize_t n = ::readlink(out.readPath().c_str(), where, PATH_MAX);
  if (n <= 0 || !within(std::string(where, static_cast<size_t>(n)))) {
    return forbidden("moved outside the import folders while it was opened");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) {
    (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  }
  out.size = static_cast<uint64_t>(st.st_size);
  return out;
}

// ---- uploads ----

UploadWriter::UploadWriter(UploadWriter&& o) noexcept
    : dir_(std::move(o.dir_)),
      name_(std::move(o.name_)),
      part_(std::move(o.part_)),
      fd_(std::move(o.fd_)),
      written_(o.written_),
      max_bytes_(o.max_bytes_),
      reserve_bytes_(o.reserve_bytes_),
      digest_(std::exchange(o.digest_, nullptr)),
      done_(std::exchange(o.done_, true)) {}

UploadWriter::~UploadWriter() {
  discard();
}

void UploadWriter::discard() {
  if (!done_) {
    fd_ = UniqueFd();
    (void)::unlink(part_.c_str());
    done_ = true;
  }
  if (digest_ != nullptr) {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(digest_));
    digest_ = nullptr;
  }
}

Result<void> UploadWriter::write(const char* data, size_t n) {
  if (done_) {
    return fail(ErrorCode::Internal, "Upload '" + name_ + "' is closed");
  }
  if (written_ + n > max_bytes_) {
    return fail(ErrorCode::LimitExceeded, "Upload '" + name_ + "' is larger than the agent's " +
                                              std::to_string(max_bytes_ >> 20) +
                                              " MiB bound (--max-upload-mib)");
  }
  // Free space is looked at every 16 MiB: others may be filling the file system too.
  constexpr uint64_t kCheckEvery = 16ULL << 20;
  if ((written_ + n) / kCheckEvery != written_ / kCheckEvery) {
    struct statvfs v {};
    if (::fstatvfs(fd_.get(), &v) == 0 &&
        static_cast<uint64_t>(v.f_bavail) * v.f_frsize < reserve_bytes_ + n) {
      return fail(ErrorCode::CapacityExceeded,
                  "The agent's upload folder is out of space while receiving '" + name_ + "'");
    }
  }
  VANDRA_TRY(writeAll(fd_.get(), data, n, "upload '" + part_ + "'"));
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(digest_), data, n);
  written_ += n;
  return {};
}

Result<UploadInfo> UploadWriter::commit(
    const std::function<Result<void>(const std::string& path)>& verify) {
  if (done_) {
    return fail(ErrorCode::Internal, "Upload '" + name_ + "' is closed");
  }
  if (::fsync(fd_.get()) != 0) {
    return fail(Error::fromErrno("Cannot write upload '" + part_ + "'"));
  }
  VANDRA_TRY(fd_.close());
  if (verify) {
    VANDRA_TRY(verify(part_));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(digest_), md, &len);
  UploadInfo info{name_, written_, hex(md, len)};
  const std::string final_path = dir_ + "/" + name_;
  // link(2) never replaces: a file of that name that appeared meanwhile wins.
  if (::link(part_.c_str(), final_path.c_str()) != 0) {
    if (errno == EEXIST) {
      return fail(ErrorCode::AlreadyExists, "An upload named '" + name_ + "' already exists");
    }
    return fail(Error::fromErrno("Cannot move upload '" + part_ + "' into place"));
  }
  (void)::unlink(part_.c_str());
  done_ = true;
  std::ofstream(dir_ + "/." + name_ + ".sha256") << *info.sha256 << " " << info.size << "\n";
  return info;
}

Result<UploadStore> UploadStore::open(const std::string& dir, uint64_t max_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot create the upload folder '" + dir + "': " + ec.message());
  }
  (void)::chmod(dir.c_str(), 0700);
  // Partial files of uploads a crash interrupted: nobody finishes them.
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.starts_with(".") && n.ends_with(".part")) {
      fs::remove(e.path(), ec);
    }
  }
  // Canonical: import requests are compared with it after realpath().
  const fs::path canonical = fs::canonical(dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot resolve the upload folder '" + dir + "': " + ec.message());
  }
  return UploadStore(canonical.string(), max_bytes);
}

uint64_t UploadStore::available() const {
  struct statvfs v {};
  if (::statvfs(dir_.c_str(), &v) != 0) {
    return 0;
  }
  const uint64_t free_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  return free_bytes > kReserveBytes ? free_bytes - kReserveBytes : 0;
}

Result<UploadWriter> UploadStore::begin(const std::string& name,
                                        std::optional<uint64_t> declared_size) const {
  if (!validUploadName(name)) {
    return fail(ErrorCode::InvalidArgument,
                "Bad upload name '" + name.substr(0, 200) +
                    "': 1..128 characters of A-Z a-z 0-9 . _ -, ending in .ova, not starting "
                    "with '.'");
  }
  struct stat st {};
  if (::lstat((dir_ + "/" + name).c_str(), &st) == 0) {
    return fail(ErrorCode::AlreadyExists, "An upload named '" + name + "' already exists");
  }
  if (declared_size && *declared_size > max_bytes_) {
    return fail(ErrorCode::LimitExceeded,
                "Upload '" + name + "' (" + std::to_string(*declared_size) +
                    " bytes) is larger than the agent's " + std::to_string(max_bytes_ >> 20) +
                    " MiB bound (--max-upload-mib)");
  }
  if (declared_size && *declared_size > available()) {
    return fail(ErrorCode::CapacityExceeded,
                "Upload '" + name + "' (" + std::to_string(*declared_size) +
                    " bytes) does not fit in the agent's free space (" +
                    std::to_string(available()) + " bytes)");
  }
  UploadWriter w;
  w.dir_ = dir_;
  w.name_ = name;
  w.part_ = dir_ + "/." + name + ".part";
  w.max_bytes_ = max_bytes_;
  w.reserve_bytes_ = kReserveBytes;
  const int fd =
      ::open(w.part_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    w.done_ = true;  // not ours: never remove another upload's partial file
    if (errno == EEXIST) {
      return fail(ErrorCode::AlreadyExists, "An upload of '" + name + "' is in progress");
    }
    return fail(Error::fromErrno("Cannot create '" + w.part_ + "'"));
  }
  w.fd_ = UniqueFd(fd);
  w.digest_ = EVP_MD_CTX_new();
  if (w.digest_ == nullptr ||
      EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(w.digest_), EVP_sha256(), nullptr) != 1) {
    return fail(ErrorCode::Internal, "Cannot set up SHA-256");
  }
  return w;
}

Result<UploadInfo> UploadStore::get(const std::string& name) const {
  if (!validUploadName(name)) {
    return fail(ErrorCode::InvalidArgument, "Bad upload name '" + name.substr(0, 200) + "'");
  }
  struct stat st {};
  const std::string path = dir_ + "/" + name;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return fail(ErrorCode::NotFound, "No upload named '" + name + "'");
    }
    return fail(Error::fromErrno("Cannot stat '" + path + "'"));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  return UploadInfo{name, size, recordedSha256(dir_, name, size)};
}

Result<std::vector<UploadInfo>> UploadStore::list() const {
  std::vector<UploadInfo> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string n = e.path().filename().string();
    if (!validUploadName(n) || !e.is_regular_file(ec)) {
      continue;
    }
    if (auto info = get(n)) {
      out.push_back(std::move(*info));
    }
  }
  if (ec) {
    return fail(ErrorCode::Io, "Cannot list the upload folder '" + dir_ + "': " + ec.message());
  }
  std::sort(out.begin(), out.end(),
            [](const UploadInfo& a, const UploadInfo& b) { return a.name < b.name; });
  return out;
}

Result<UploadInfo> UploadStore::adopt(const std::string& name, const std::string& path) const {
  if (!validUploadName(name)) {
    return fail(ErrorCode::InvalidArgument, "Bad upload name '" + name.substr(0, 200) + "'");
  }
  VANDRA_TRY_ASSIGN(const FileDigest d, sha256File(path));
  UploadInfo info{name, d.size, d.sha256};
  const std::string final_path = dir_ + "/" + name;
  if (::link(path.c_str(), final_path.c_str()) != 0) {
    if (errno == EEXIST) {
      return fail(ErrorCode::AlreadyExists, "An upload named '" + name + "' already exists");
    }
    return fail(Error::fromErrno("Cannot move '" + path + "' into the upload folder"));
  }
  (void)::unlink(path.c_str());
  std::ofstream(dir_ + "/." + name + ".sha256") << *info.sha256 << " " << info.size << "\n";
  return info;
}

Result<void> UploadStore::remove(const std::string& name) const {
  VANDRA_TRY(get(name));
  const std::string path = dir_ + "/" + name;
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) {
      return fail(ErrorCode::NotFound, "No upload named '" + name + "'");
    }
    return fail(Error::fromErrno("Cannot remove '" + path + "'"));
  }
  (void)::unlink((dir_ + "/." + name + ".sha256").c_str());
  return {};
}

}  // namespace vandra::agent
