// openPackage / openPackageFromMemory: reads a folder or an OVA in one pass, streaming every
// member through the digests the manifest asks for, and collects every problem found
// (hostile tar members, digest mismatches, missing/extra files, signature and chain).
// It reads only; it never writes a file and never follows a member name out of the package.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <utility>

#include "digest.h"
#include "manifest.h"
#include "member_name.h"
#include "signature.h"
#include "tar_reader.h"
#include "vandra/common/unique_fd.h"
#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf {
namespace {

using detail::Digest;
using Digests = std::map<DigestAlgorithm, std::string>;

constexpr std::array<DigestAlgorithm, 3> kAllAlgorithms = {
    DigestAlgorithm::Sha1, DigestAlgorithm::Sha256, DigestAlgorithm::Sha512};
constexpr size_t kFileBlock = 1U << 20;

// Everything learnt while walking the members; turned into problems at the end.
class Walk {
 public:
  Walk(Package& pkg, const OpenOptions& options) : pkg_(pkg), options_(options) {}

  void problem(Error e) {
    if (options_.lax) {
      pkg_.warnings.push_back(e.describe());
    } else {
      pkg_.problems.push_back(std::move(e));
    }
  }
  void warn(std::string w) { pkg_.warnings.push_back(std::move(w)); }

  /// Called when the manifest bytes are known (may be before or after data members).
  void setManifest(std::string name, std::string bytes) {
    manifest_name_ = std::move(name);
    manifest_bytes_ = std::move(bytes);
    auto parsed = detail::parseManifestLenient(*manifest_bytes_);
    for (auto& e : parsed.errors) {
      e.message = manifest_name_ + ": " + e.message;
      problem(std::move(e));
    }
    for (const auto& entry : parsed.entries) {
      wanted_[entry.file].insert(entry.algorithm);
    }
    pkg_.manifest = std::move(parsed.entries);
  }
  bool haveManifest() const { return manifest_bytes_.has_value(); }

  /// Digests to compute for member @p name: those the manifest lists, or all of them while
  /// the manifest has not been seen yet (it may come later in a tar stream).
  std::vector<Digest> digestsFor(const std::string& name) {
    std::vector<Digest> out;
    if (!options_.verify_digests) {
      return out;
    }
    std::set<DigestAlgorithm> algs;
    if (!haveManifest()) {
      algs.insert(kAllAlgorithms.begin(), kAllAlgorithms.end());
    } else if (auto it = wanted_.find(name); it != wanted_.end()) {
      algs = it->second;
    }
    for (const auto a : algs) {
      if (auto d = Digest::create(a)) {
        out.push_back(std::move(*d));
      }
    }
    return out;
  }
  void recordDigests(const std::string& name, std::vector<Digest>& ds) {
    Digests& out = computed_[name];
    for (auto& d : ds) {
      out[d.algorithm()] = d.finishHex();
    }
  }

  void progress(uint64_t done, uint64_t total) const {
    if (options_.progress) {
      options_.progress(done, total);
    }
  }

  /// Checks collected at the end: manifest digests, missing and extra files, signature.
  /// @p check_extra: every member must be listed (OVA, or a folder given as such).
  void finish(bool check_extra, const std::optional<std::string>& cert_bytes) {
    const bool verify = options_.verify_digests;
    if (!pkg_.descriptor_name.empty() && verify) {
      std::vector<Digest> ds = digestsFor(pkg_.descriptor_name);
      for (auto& d : ds) {
        d.update(pkg_.descriptor.data(), pkg_.descriptor.size());
      }
      recordDigests(pkg_.descriptor_name, ds);
    }
    std::set<std::string> present;
    for (const auto& m : pkg_.members) {
      present.insert(m.name);
    }
    if (pkg_.manifest) {
      std::set<std::string> listed;
      for (const auto& entry : *pkg_.manifest) {
        listed.insert(entry.file);
        if (!present.contains(entry.file)) {
          problem(Error(ErrorCode::PackageMissingFile, "'" + entry.file + "' is listed in " +
                                                           manifest_name_ +
                                                           " but is not in the package"));
          continue;
        }
        if (!verify) {
          continue;
        }
        const auto it = computed_.find(entry.file);
        if (it == computed_.end() || !it->second.contains(entry.algorithm)) {
          continue;  // member could not be read; its read error is already a problem
        }
        const std::string& actual = it->second.at(entry.algorithm);
        if (actual != entry.hex_digest) {
          problem(Error(ErrorCode::ManifestMismatch,
                        std::string(toString(entry.algorithm)) + " of '" + entry.file + "' is " +
                            actual + ", " + manifest_name_ + " says " + entry.hex_digest));
        }
      }
      if (pkg_.manifest->empty()) {
        warn(manifest_name_ + " lists no files; digests are not checked");
      } else if (check_extra) {
        for (const auto& m : pkg_.members) {
          if (m.name != manifest_name_ && m.name != cert_name_ && !listed.contains(m.name)) {
            problem(Error(ErrorCode::PackageExtraFile,
                          "'" + m.name + "' is not listed in " + manifest_name_));
          }
        }
      }
    }
    if (cert_bytes) {
      if (!manifest_bytes_) {
        pkg_.signature.status = SignatureStatus::Invalid;
        problem(Error(ErrorCode::SignatureInvalid,
                      "Certificate '" + cert_name_ + "' without a manifest to sign"));
      } else {
        auto check = detail::verifySignature(*cert_bytes, *manifest_bytes_, manifest_name_,
                                             options_.trust_store, options_.extra_trust);
        pkg_.signature = std::move(check.info);
        for (auto& p : check.problems) {
          problem(std::move(p));
        }
      }
    }
  }

  std::string cert_name_;

 private:
  Package& pkg_;
  const OpenOptions& options_;
  std::string manifest_name_;
  std::optional<std::string> manifest_bytes_;
  std::map<std::string, std::set<DigestAlgorithm>> wanted_;
  std::map<std::string, Digests> computed_;
};

// ---------------------------------------------------------------------------------------
// OVA

std::string_view kindText(detail::TarEntryKind k) {
  switch (k) {
    case detail::TarEntryKind::Regular:
      return "file";
    case detail::TarEntryKind::Directory:
      return "directory";
    case detail::TarEntryKind::Symlink:
      return "symbolic link";
    case detail::TarEntryKind::Hardlink:
      return "hard link";
    case detail::TarEntryKind::Device:
      return "device file";
    case detail::TarEntryKind::Fifo:
      return "FIFO";
    case detail::TarEntryKind::Other:
      return "special file";
  }
  return "?";
}

Result<std::string> readSmallMember(detail::TarReader& tar, uint64_t size) {
  std::string bytes;
  bytes.reserve(static_cast<size_t>(size));
  VANDRA_TRY(tar.readData([&bytes](std::string_view block) -> Result<void> {
    bytes.append(block);
    return {};
  }));
  return bytes;
}

Result<Package> readOva(detail::TarReader tar, Package pkg, const OpenOptions& options) {
  Walk walk(pkg, options);
  std::set<std::string> names;
  std::optional<std::string> cert_bytes;
  bool have_manifest_member = false;
  size_t count = 0;
  size_t index = 0;  // position among regular members

  // Before the descriptor is read a broken archive is fatal (nothing can be read);
  // afterwards it is one more problem.
  auto broken = [&](Error e) -> std::optional<Unexpected> {
    if (pkg.descriptor_name.empty()) {
      return fail(std::move(e));
    }
    walk.problem(std::move(e));
    return std::nullopt;
  };

  for (;;) {
    auto next = tar.next();
    if (!next) {
      if (auto f = broken(std::move(next.error()))) {
        return *f;
      }
      break;
    }
    if (!next->has_value()) {
      break;
    }
    detail::TarEntry entry = std::move(**next);
    if (++count > kMaxPackageMembers) {
      if (auto f = broken(Error(
              ErrorCode::LimitExceeded,
              "More than " + std::to_string(kMaxPackageMembers) + " members in the archive"))) {
        return *f;
      }
      break;
    }
    // A declared size past the end of the archive is a lie: stop before trusting it.
    const uint64_t pos = tar.headerPosition();
    if (entry.kind == detail::TarEntryKind::Regular &&
        entry.size > tar.totalSize() - std::min(pos, tar.totalSize())) {
      if (auto f = broken(
              Error(ErrorCode::ArchiveInvalid, "Member '" + entry.name.substr(0, 200) +
                                                   "' declares " + std::to_string(entry.size) +
                                                   " bytes, beyond the end of the archive"))) {
        return *f;
      }
      break;
    }

    std::optional<Error> reject;
    if (!entry.name_readable) {
      reject = Error(ErrorCode::ArchiveForbiddenMember, "Member name cannot be decoded");
    } else if (entry.kind == detail::TarEntryKind::Directory) {
      walk.warn("Ignored directory entry '" + entry.name.substr(0, 200) + "'");
    } else if (entry.kind != detail::TarEntryKind::Regular) {
      reject = Error(
          ErrorCode::ArchiveForbiddenMember,
          "Member '" + entry.name.substr(0, 200) + "' is a " + std::string(kindText(entry.kind)));
    } else if (auto bad = detail::checkMemberName(entry.name)) {
      reject = std::move(*bad);
    } else if (entry.sparse) {
      reject =
          Error(ErrorCode::ArchiveForbiddenMember, "Member '" + entry.name + "' is a sparse file");
    } else if (names.contains(entry.name)) {
      reject =
          Error(ErrorCode::ArchiveForbiddenMember, "Member '" + entry.name + "' appears twice");
    }
    if (reject || entry.kind == detail::TarEntryKind::Directory) {
      if (reject) {
        walk.problem(std::move(*reject));
      }
      if (auto skipped = tar.skipData(); !skipped) {
        if (auto f = broken(std::move(skipped.error()))) {
          return *f;
        }
        break;
      }
      continue;
    }
    names.insert(entry.name);
    const std::string& name = entry.name;
    Result<void> read_ok;

    if (detail::endsWithNoCase(name, ".ovf") && pkg.descriptor_name.empty()) {
      if (index != 0) {
        walk.warn("Descriptor '" + name + "' is not the first member of the OVA");
      }
      if (entry.size > kMaxDescriptorBytes) {
        return fail(ErrorCode::LimitExceeded,
                    "Descriptor '" + name + "' is " + std::to_string(entry.size) +
                        " bytes, more than the limit of " + std::to_string(kMaxDescriptorBytes));
      }
      auto bytes = readSmallMember(tar, entry.size);
      if (!bytes) {
        return fail(std::move(bytes.error()));
      }
      pkg.descriptor = std::move(*bytes);
      pkg.descriptor_name = name;
    } else if (detail::endsWithNoCase(name, ".mf") && !have_manifest_member) {
      have_manifest_member = true;
      if (entry.size > kMaxManifestBytes) {
        walk.problem(Error(ErrorCode::LimitExceeded, "Manifest '" + name + "' is larger than " +
                                                         std::to_string(kMaxManifestBytes) +
                                                         " bytes"));
        read_ok = tar.skipData();
      } else if (auto bytes = readSmallMember(tar, entry.size)) {
        walk.setManifest(name, std::move(*bytes));
      } else {
        read_ok = fail(std::move(bytes.error()));
      }
    } else if (detail::endsWithNoCase(name, ".cert") && !cert_bytes && walk.cert_name_.empty()) {
      walk.cert_name_ = name;
      if (entry.size > kMaxCertificateBytes) {
        walk.problem(Error(ErrorCode::LimitExceeded, "Certificate '" + name + "' is larger than " +
                                                         std::to_string(kMaxCertificateBytes) +
                                                         " bytes"));
        read_ok = tar.skipData();
      } else if (auto bytes = readSmallMember(tar, entry.size)) {
        cert_bytes = std::move(*bytes);
      } else {
        read_ok = fail(std::move(bytes.error()));
      }
    } else {
      if (detail::endsWithNoCase(name, ".ovf")) {
        walk.problem(
            Error(ErrorCode::PackageExtraFile, "Second descriptor '" + name + "' in the OVA"));
      }
      std::vector<Digest> ds = walk.digestsFor(name);
      if (ds.empty() && !options.progress) {
        read_ok = tar.skipData();
      } else {
        auto n = tar.readData([&](std::string_view block) -> Result<void> {
          for (auto& d : ds) {
            d.update(block.data(), block.size());
          }
          walk.progress(tar.position(), tar.totalSize());
          return {};
        });
        if (n) {
          walk.recordDigests(name, ds);
        } else {
          read_ok = fail(std::move(n.error()));
        }
      }
    }
    if (!read_ok) {
      if (auto f = broken(std::move(read_ok.error()))) {
        return *f;
      }
      break;
    }
    pkg.members.push_back(PackageMember{name, entry.size});
    ++index;
  }

  if (pkg.descriptor_name.empty()) {
    return fail(ErrorCode::PackageMissingFile, "No .ovf descriptor in '" + pkg.path + "'");
  }
  // Descriptor first, the rest in archive order.
  std::stable_partition(pkg.members.begin(), pkg.members.end(),
                        [&](const PackageMember& m) { return m.name == pkg.descriptor_name; });
  walk.progress(tar.totalSize(), tar.totalSize());
  walk.finish(true, cert_bytes);
  return pkg;
}

// ---------------------------------------------------------------------------------------
// Folder

Result<std::string> readSmallFile(int dir_fd, const std::string& name, size_t limit) {
  const int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(Error::fromErrno("Cannot open '" + name + "'"));
  }
  UniqueFd file(fd);
  struct stat st {};
  if (fstat(file.get(), &st) != 0) {
    return fail(Error::fromErrno("Cannot stat '" + name + "'"));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorCode::ArchiveForbiddenMember, "'" + name + "' is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > limit) {
    return fail(ErrorCode::LimitExceeded, "'" + name + "' is " + std::to_string(st.st_size) +
                                              " bytes, more than the limit of " +
                                              std::to_string(limit));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(file.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Error::fromErrno("Cannot read '" + name + "'"));
    }
    if (n == 0) {
      out.resize(done);  // shrank while reading
      break;
    }
    done += static_cast<size_t>(n);
  }
  return out;
}

bool isRegularAt(int dir_fd, const std::string& name, uint64_t* size = nullptr) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, 0) != 0 || !S_ISREG(st.st_mode)) {
    return false;
  }
  if (size != nullptr) {
    *size = static_cast<uint64_t>(st.st_size);
  }
  return true;
}

// Top-level entries of a folder, sorted for a stable member order.
Result<std::vector<std::string>> listFolder(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    return fail(Error::fromErrno("Cannot list '" + dir + "'"));
  }
  std::vector<std::string> out;
  while (const dirent* e = ::readdir(d.get())) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") {
      out.push_back(n);
    }
    if (out.size() > kMaxPackageMembers) {
      return fail(ErrorCode::LimitExceeded,
                  "More than " + std::to_string(kMaxPackageMembers) + " entries in '" + dir + "'");
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<Package> readFolder(Package pkg, const std::string& dir, std::string descriptor_name,
                           bool whole_folder, const OpenOptions& options) {
  Walk walk(pkg, options);
  VANDRA_TRY_ASSIGN(UniqueFd dir_fd, UniqueFd::open(dir, O_RDONLY | O_DIRECTORY));
  VANDRA_TRY_ASSIGN(pkg.descriptor,
                    readSmallFile(dir_fd.get(), descriptor_name, kMaxDescriptorBytes));
  pkg.descriptor_name = descriptor_name;
  pkg.members.push_back(PackageMember{descriptor_name, pkg.descriptor.size()});

  const std::string base(detail::stem(descriptor_name));
  std::optional<std::string> cert_bytes;
  const std::string mf_name = base + ".mf";
  const std::string cert_name = base + ".cert";
  uint64_t size = 0;
  if (isRegularAt(dir_fd.get(), mf_name, &size)) {
    pkg.members.push_back(PackageMember{mf_name, size});
    if (auto bytes = readSmallFile(dir_fd.get(), mf_name, kMaxManifestBytes)) {
      walk.setManifest(mf_name, std::move(*bytes));
    } else {
      walk.problem(std::move(bytes.error()));
    }
  }
  if (isRegularAt(dir_fd.get(), cert_name, &size)) {
    walk.cert_name_ = cert_name;
    pkg.members.push_back(PackageMember{cert_name, size});
    if (auto bytes = readSmallFile(dir_fd.get(), cert_name, kMaxCertificateBytes)) {
      cert_bytes = std::move(*bytes);
    } else {
      walk.problem(std::move(bytes.error()));
    }
  }

  // Data members: what the manifest lists, plus (for a folder) every other plain file.
  std::vector<std::string> data;
  std::set<std::string> taken = {descriptor_name, mf_name, cert_name};
  if (pkg.manifest) {
    for (const auto& entry : *pkg.manifest) {
      if (taken.contains(entry.file)) {
        continue;
      }
      if (auto bad = detail::checkMemberName(entry.file)) {
        walk.problem(std::move(*bad));
        taken.insert(entry.file);
        continue;
      }
      if (isRegularAt(dir_fd.get(), entry.file)) {
        data.push_back(entry.file);
      }
      taken.insert(entry.file);
    }
  }
  if (whole_folder) {
    VANDRA_TRY_ASSIGN(auto names, listFolder(dir));
    for (const auto& n : names) {
      if (taken.contains(n)) {
        continue;
      }
      if (isRegularAt(dir_fd.get(), n)) {
        if (detail::endsWithNoCase(n, ".ovf")) {
          continue;  // openPackage already refused folders with several descriptors
        }
        data.push_back(n);
      } else {
        walk.warn("Ignored '" + n + "' in the package folder (not a plain file)");
      }
    }
  }

  uint64_t total = 0;
  for (const auto& n : data) {
    uint64_t s = 0;
    isRegularAt(dir_fd.get(), n, &s);
    total += s;
  }
  uint64_t done = 0;
  std::vector<char> buf(kFileBlock);
  for (const auto& n : data) {
    const int raw = ::openat(dir_fd.get(), n.c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0) {
      walk.problem(Error::fromErrno("Cannot open '" + n + "'"));
      continue;
    }
    UniqueFd fd(raw);
    std::vector<Digest> ds = walk.digestsFor(n);
    uint64_t member_size = 0;
    bool ok = true;
    if (ds.empty()) {
      struct stat st {};
      ok = fstat(fd.get(), &st) == 0;
      member_size = static_cast<uint64_t>(st.st_size);
      done += member_size;
    } else {
      for (;;) {
        const ssize_t got = ::read(fd.get(), buf.data(), buf.size());
        if (got < 0 && errno == EINTR) {
          continue;
        }
        if (got < 0) {
          walk.problem(Error::fromErrno("Cannot read '" + n + "'"));
          ok = false;
          break;
        }
        if (got == 0) {
          break;
        }
        for (auto& d : ds) {
          d.update(buf.data(), static_cast<size_t>(got));
        }
        member_size += static_cast<uint64_t>(got);
        done += static_cast<uint64_t>(got);
        walk.progress(done, total);
      }
    }
    if (ok) {
      walk.recordDigests(n, ds);
      pkg.members.push_back(PackageMember{n, member_size});
    }
  }
  walk.progress(total, total);
  walk.finish(whole_folder, cert_bytes);
  return pkg;
}

}  // namespace

Result<Package> openPackage(const std::string& path, const OpenOptions& options) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return fail(Error::fromErrno("Cannot open package '" + path + "'"));
  }
  Package pkg;
  pkg.path = path;
  if (S_ISDIR(st.st_mode)) {
    pkg.kind = PackageKind::Directory;
    VANDRA_TRY_ASSIGN(auto names, listFolder(path));
    std::vector<std::string> descriptors;
    VANDRA_TRY_ASSIGN(UniqueFd dir_fd, UniqueFd::open(path, O_RDONLY | O_DIRECTORY));
    for (const auto& n : names) {
      if (detail::endsWithNoCase(n, ".ovf") && isRegularAt(dir_fd.get(), n)) {
        descriptors.push_back(n);
      }
    }
    if (descriptors.empty()) {
      return fail(ErrorCode::NotFound, "No .ovf descriptor in folder '" + path + "'");
    }
    if (descriptors.size() > 1) {
      return fail(ErrorCode::InvalidArgument, "Folder '" + path + "' holds " +
                                                  std::to_string(descriptors.size()) +
                                                  " descriptors; name the .ovf to open");
    }
    return readFolder(std::move(pkg), path, descriptors.front(), true, options);
  }
  if (detail::endsWithNoCase(path, ".ovf")) {
    pkg.kind = PackageKind::Directory;
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    return readFolder(std::move(pkg), dir, name, false, options);
  }
  pkg.kind = PackageKind::Ova;
  VANDRA_TRY_ASSIGN(auto tar, detail::TarReader::openFile(path));
  return readOva(std::move(tar), std::move(pkg), options);
}

Result<Package> openPackageFromMemory(std::string_view bytes, const std::string& display_name,
                                      const OpenOptions& options) {
  Package pkg;
  pkg.kind = PackageKind::Ova;
  pkg.path = display_name;
  VANDRA_TRY_ASSIGN(auto tar, detail::TarReader::openMemory(bytes));
  return readOva(std::move(tar), std::move(pkg), options);
}

}  // namespace vandra::ovf
