// extractPackage: copies the members of an opened package into an empty folder, reassembles
// chunk series (NAME.000000000, ...) and leaves gzip members compressed. Every file is
// created with openat(O_EXCL|O_NOFOLLOW) on a flat, checked name relative to the folder, so
// nothing is written outside it; on any error everything it created is removed again.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "member_name.h"
#include "tar_reader.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/unique_fd.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf {
namespace {

constexpr size_t kBlock = 1U << 20;
constexpr size_t kChunkDigits = 9;  // ovftool: NAME.000000000

// The destination folder and the files created in it, removed unless commit() is called.
class Destination {
 public:
  Destination() = default;
  Destination(const Destination&) = delete;
  Destination& operator=(const Destination&) = delete;
  ~Destination() {
    if (committed_) {
      return;
    }
    for (const auto& f : created_) {
      ::unlinkat(dir_.get(), f.c_str(), 0);
    }
    dir_ = UniqueFd();  // close before rmdir
    if (made_dir_) {
      ::rmdir(path_.c_str());
    }
  }

  Result<void> open(const std::string& path) {
    path_ = path;
    if (::mkdir(path.c_str(), 0755) == 0) {
      made_dir_ = true;
    } else if (errno != EEXIST) {
      return fail(Error::fromErrno("Cannot create '" + path + "'"));
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      return fail(Error::fromErrno("Cannot open folder '" + path + "'"));
    }
    dir_ = UniqueFd(fd);
    if (!made_dir_) {
      const int dup_fd = ::dup(fd);
      std::unique_ptr<DIR, int (*)(DIR*)> d(dup_fd >= 0 ? ::fdopendir(dup_fd) : nullptr,
                                            ::closedir);
      if (!d) {
        return fail(Error::fromErrno("Cannot list '" + path + "'"));
      }
      while (const dirent* e = ::readdir(d.get())) {
        const std::string_view n = e->d_name;
        if (n != "." && n != "..") {
          return fail(ErrorCode::AlreadyExists, "Extraction folder '" + path + "' is not empty");
        }
      }
    }
    return {};
  }

  /// Creates @p name (must not exist; never through a symlink).
  Result<UniqueFd> create(const std::string& name) {
    if (auto bad = detail::checkMemberName(name)) {
      return fail(std::move(*bad));
    }
    const int fd = ::openat(dir_.get(), name.c_str(),
                            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
      Error e = Error::fromErrno("Cannot create '" + name + "' in '" + path_ + "'");
      if (e.sys_errno == EEXIST) {
        e.code = ErrorCode::AlreadyExists;
      }
      return fail(std::move(e));
    }
    created_.push_back(name);
    return UniqueFd(fd);
  }

  Result<UniqueFd> openForRead(const std::string& name) const {
    const int fd = ::openat(dir_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      return fail(Error::fromErrno("Cannot open '" + name + "'"));
    }
    return UniqueFd(fd);
  }

  Result<void> remove(const std::string& name) {
    if (::unlinkat(dir_.get(), name.c_str(), 0) != 0) {
      return fail(Error::fromErrno("Cannot remove '" + name + "'"));
    }
    created_.erase(std::remove(created_.begin(), created_.end(), name), created_.end());
    return {};
  }

  void commit() { committed_ = true; }

 private:
  std::string path_;
  UniqueFd dir_;
  bool made_dir_ = false;
  bool committed_ = false;
  std::vector<std::string> created_;
};

// Copies a source stream into a new member file, reporting progress.
class Copier {
 public:
  Copier(Destination& dest, const OpenOptions& options, uint64_t total)
      : dest_(dest), options_(options), total_(total) {}

  Result<UniqueFd> create(const std::string& name) { return dest_.create(name); }
  Result<void> write(int fd, std::string_view block, const std::string& name) {
    VANDRA_TRY(writeAll(fd, block.data(), block.size(), name));
    done_ += block.size();
    if (options_.progress) {
      options_.progress(done_, total_);
    }
    return {};
  }

 private:
  Destination& dest_;
  const OpenOptions& options_;
  uint64_t total_;
  uint64_t done_ = 0;
};

Result<void> extractOva(const Package& pkg, Copier& copier) {
  std::map<std::string, uint64_t> wanted;
  for (const auto& m : pkg.members) {
    wanted.emplace(m.name, m.size);
  }
  VANDRA_TRY_ASSIGN(auto tar, detail::TarReader::openFile(pkg.path));
  for (;;) {
    VANDRA_TRY_ASSIGN(auto entry, tar.next());
    if (!entry) {
      break;
    }
    const auto it = wanted.find(entry->name);
    if (entry->kind != detail::TarEntryKind::Regular || it == wanted.end()) {
      VANDRA_TRY(tar.skipData());
      continue;
    }
    if (entry->size != it->second) {
      return fail(ErrorCode::ArchiveInvalid,
                  "'" + entry->name + "' changed size since the package was opened");
    }
    VANDRA_TRY_ASSIGN(UniqueFd out, copier.create(entry->name));
    const std::string& name = entry->name;
    VANDRA_TRY_ASSIGN(const uint64_t n, tar.readData([&](std::string_view block) -> Result<void> {
      return copier.write(out.get(), block, name);
    }));
    if (n != it->second) {
      return fail(ErrorCode::ArchiveInvalid, "'" + name + "' is truncated");
    }
    VANDRA_TRY(out.close());
    wanted.erase(it);
  }
  if (!wanted.empty()) {
    return fail(ErrorCode::PackageMissingFile,
                "'" + wanted.begin()->first + "' is no longer in '" + pkg.path + "'");
  }
  return {};
}

Result<void> extractFolder(const Package& pkg, Copier& copier) {
  struct stat st {};
  std::string dir = pkg.path;
  if (::stat(pkg.path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
    const size_t slash = pkg.path.rfind('/');
    dir = slash == std::string::npos ? "." : pkg.path.substr(0, slash + 1);
  }
  VANDRA_TRY_ASSIGN(UniqueFd src_dir, UniqueFd::open(dir, O_RDONLY | O_DIRECTORY));
  std::vector<char> buf(kBlock);
  for (const auto& m : pkg.members) {
    if (auto bad = detail::checkMemberName(m.name)) {
      return fail(std::move(*bad));
    }
    const int raw = ::openat(src_dir.get(), m.name.c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0) {
      return fail(Error::fromErrno("Cannot open '" + m.name + "'"));
    }
    UniqueFd in(raw);
    VANDRA_TRY_ASSIGN(UniqueFd out, copier.create(m.name));
    for (;;) {
      const ssize_t got = ::read(in.get(), buf.data(), buf.size());
      if (got < 0 && errno == EINTR) {
        continue;
      }
      if (got < 0) {
        return fail(Error::fromErrno("Cannot read '" + m.name + "'"));
      }
      if (got == 0) {
        break;
      }
      VANDRA_TRY(
          copier.write(out.get(), std::string_view(buf.data(), static_cast<size_t>(got)), m.name));
    }
    VANDRA_TRY(out.close());
  }
  return {};
}

// NAME.000000000 -> (NAME, 0); other names -> nullopt.
std::optional<std::pair<std::string, uint64_t>> chunkOf(const std::string& name) {
  if (name.size() < kChunkDigits + 2 || name[name.size() - kChunkDigits - 1] != '.') {
    return std::nullopt;
  }
  uint64_t index = 0;
  for (size_t i = name.size() - kChunkDigits; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') {
      return std::nullopt;
    }
    index = index * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  return std::make_pair(name.substr(0, name.size() - kChunkDigits - 1), index);
}

Result<void> reassemble(const Package& pkg, Destination& dest) {
  std::map<std::string, std::map<uint64_t, std::string>> series;
  std::set<std::string> names;
  for (const auto& m : pkg.members) {
    names.insert(m.name);
    if (auto c = chunkOf(m.name)) {
      series[c->first][c->second] = m.name;
    }
  }
  std::vector<char> buf(kBlock);
  for (const auto& [base, chunks] : series) {
    if (!chunks.contains(0)) {
      continue;  // not a chunk series (e.g. a file that merely ends in digits)
    }
    if (names.contains(base)) {
      return fail(ErrorCode::AlreadyExists,
                  "Both '" + base + "' and its chunks are in the package");
    }
    uint64_t expect = 0;
    for (const auto& [index, name] : chunks) {
      if (index != expect++) {
        return fail(ErrorCode::PackageMissingFile,
                    "Chunk " + std::to_string(expect - 1) + " of '" + base + "' is missing");
      }
    }
    VANDRA_TRY_ASSIGN(UniqueFd out, dest.create(base));
    for (const auto& [index, name] : chunks) {
      VANDRA_TRY_ASSIGN(UniqueFd in, dest.openForRead(name));
      for (;;) {
        const ssize_t got = ::read(in.get(), buf.data(), buf.size());
        if (got < 0 && errno == EINTR) {
          continue;
        }
        if (got < 0) {
          return fail(Error::fromErrno("Cannot read '" + name + "'"));
        }
        if (got == 0) {
          break;
        }
        VANDRA_TRY(writeAll(out.get(), buf.data(), static_cast<size_t>(got), base));
      }
    }
    VANDRA_TRY(out.close());
    for (const auto& [index, name] : chunks) {
      VANDRA_TRY(dest.remove(name));
    }
  }
  return {};
}

}  // namespace

Result<void> extractPackage(const Package& pkg, const std::string& dest_dir,
                            const OpenOptions& options) {
  if (dest_dir.empty()) {
    return fail(ErrorCode::InvalidArgument, "No extraction folder given");
  }
  // Refuse up front a package whose member list was tampered with after openPackage.
  uint64_t total = 0;
  for (const auto& m : pkg.members) {
    if (auto bad = detail::checkMemberName(m.name)) {
      return fail(std::move(*bad));
    }
    total += m.size;
  }
  Destination dest;
  VANDRA_TRY(dest.open(dest_dir));
  Copier copier(dest, options, total);
  if (pkg.kind == PackageKind::Ova) {
    VANDRA_TRY(extractOva(pkg, copier));
  } else {
    VANDRA_TRY(extractFolder(pkg, copier));
  }
  if (options.reassemble_chunks) {
    VANDRA_TRY(reassemble(pkg, dest));
  }
  dest.commit();
  return {};
}

}  // namespace vandra::ovf
