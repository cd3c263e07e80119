// editPackageSla: replaces or removes the SLA section of a package's descriptor in place.
// The package is opened (and verified) first; all new content is built before anything is
// replaced; OVAs are rewritten whole beside the original and renamed over it. It must not
// leave a package whose manifest or signature disagrees with its descriptor.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "fs_util.h"
#include "ova_writer.h"
#include "signer.h"
#include "vandra/common/scope_guard.h"
#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/writer.h"

namespace vandra::ovf {
namespace {

std::string stem(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

struct NewContent {
  std::string descriptor;
  std::string manifest;
  std::optional<std::string> cert;  // nullopt: no .cert in the result
};

// Replaces files of a folder package: each new file is written beside its target, then all
// are renamed; if a rename fails, the ones already done are put back from hard-link backups.
Result<void> replaceInFolder(
    const std::string& dir,
    const std::vector<std::pair<std::string, std::optional<std::string>>>& files) {
  struct Step {
    std::string target, staged, backup;
    bool had_original = false;
    bool remove = false;
  };
  std::vector<Step> steps;
  auto discard = defer([&] {
    for (const auto& s : steps) {
      if (!s.staged.empty()) {
        ::unlink(s.staged.c_str());
      }
      if (!s.backup.empty()) {
        ::unlink(s.backup.c_str());
      }
    }
  });
  for (const auto& [name, content] : files) {
    Step s;
    s.target = dir + "/" + name;
    s.had_original = detail::exists(s.target);
    s.remove = !content.has_value();
    if (s.remove && !s.had_original) {
      continue;
    }
    if (content) {
      s.staged = dir + "/." + name + ".vandra-new";
      ::unlink(s.staged.c_str());
      steps.push_back(s);
      VANDRA_TRY(detail::writeFile(s.staged, *content));
    } else {
      steps.push_back(s);
    }
    if (s.had_original) {
      steps.back().backup = dir + "/." + name + ".vandra-old";
      ::unlink(steps.back().backup.c_str());
      if (::link(s.target.c_str(), steps.back().backup.c_str()) != 0) {
        return fail(Error::fromErrno("Cannot back up '" + s.target + "'"));
      }
    }
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    const int rc =
        s.remove ? ::unlink(s.target.c_str()) : ::rename(s.staged.c_str(), s.target.c_str());
    if (rc != 0) {
      Error e = Error::fromErrno("Cannot replace '" + s.target + "'");
      for (size_t k = 0; k < i; ++k) {  // roll back what was already replaced
        if (!steps[k].backup.empty()) {
          ::rename(steps[k].backup.c_str(), steps[k].target.c_str());
        } else {
          ::unlink(steps[k].target.c_str());
        }
      }
      return fail(std::move(e));
    }
    steps[i].staged.clear();
  }
  (void)detail::syncPath(dir);
  return {};
}

}  // namespace

Result<std::vector<std::string>> editPackageSla(const std::string& path,
                                                const std::optional<Sla>& sla,
                                                const SlaEditOptions& options) {
  if (options.sign_key.empty() != options.sign_cert.empty()) {
    return fail(ErrorCode::InvalidArgument, "Signing needs both a key and a certificate");
  }
  if (sla) {
    VANDRA_TRY(validateSla(*sla));
  }
  OpenOptions open_opts;
  open_opts.lax = options.lax;
  open_opts.verify_digests = true;
  open_opts.trust_store = options.trust_store;
  VANDRA_TRY_ASSIGN(Package pkg, openPackage(path, open_opts));
  // Re-digesting a package that does not verify would bless whatever is in it.
  // Trust in the signer does not matter here: the signature is renewed or removed.
  for (const Error& e : pkg.problems) {
    const bool trust_only = e.code == ErrorCode::CertificateUntrusted ||
                            e.code == ErrorCode::CertificateSelfSigned ||
                            e.code == ErrorCode::CertificateExpired;
    if (!trust_only && !options.lax) {
      return fail(Error(e.code, "Package '" + path + "' has problems; not modified").withCause(e));
    }
  }
  VANDRA_TRY_ASSIGN(std::string descriptor, rewriteSla(pkg.descriptor, options.vs_id, sla));

  const std::string base = stem(pkg.descriptor_name);
  const std::string mf_name = base + ".mf";
  const std::string cert_name = base + ".cert";
  const bool had_cert =
      std::ranges::any_of(pkg.members, [&](const PackageMember& m) { return m.name == cert_name; });
  const bool is_dir_pkg = pkg.kind == PackageKind::Directory;
  const std::string dir =
      is_dir_pkg ? (detail::isDirectory(path) ? path : detail::parentDir(path)) : "";

  // Manifest: keep the digests of unchanged members (openPackage verified them), recompute the
  // descriptor's. Without a manifest, one is created over every member.
  std::vector<ManifestEntry> entries;
  if (pkg.manifest) {
    entries = *pkg.manifest;
    for (auto& e : entries) {
      if (e.file == pkg.descriptor_name) {
        VANDRA_TRY_ASSIGN(e.hex_digest, detail::digestBytes(descriptor, e.algorithm));
      }
    }
  } else {
    VANDRA_TRY_ASSIGN(std::string d, detail::digestBytes(descriptor, DigestAlgorithm::Sha256));
    entries.push_back({DigestAlgorithm::Sha256, pkg.descriptor_name, std::move(d)});
    for (const auto& m : pkg.members) {
      if (m.name == pkg.descriptor_name || m.name == mf_name || m.name == cert_name) {
        continue;
      }
      if (!is_dir_pkg) {
        continue;  // filled while the OVA is copied (below)
      }
      VANDRA_TRY_ASSIGN(std::string md,
                        detail::digestFile(dir + "/" + m.name, DigestAlgorithm::Sha256));
      entries.push_back({DigestAlgorithm::Sha256, m.name, std::move(md)});
    }
  }
  std::vector<std::string> warnings;
  auto makeCert = [&](const std::string& manifest) -> Result<std::optional<std::string>> {
    if (!options.sign_key.empty()) {
      VANDRA_TRY_ASSIGN(std::string c, detail::signManifest(mf_name, manifest, options.sign_key,
                                                            options.sign_cert));
      return std::optional<std::string>(std::move(c));
    }
    if (had_cert) {
      warnings.emplace_back("signature removed: package was modified");
    }
    return std::optional<std::string>();
  };

  if (is_dir_pkg) {
    const std::string manifest = detail::manifestText(entries);
    VANDRA_TRY_ASSIGN(auto cert, makeCert(manifest));
    VANDRA_TRY(replaceInFolder(
        dir, {{pkg.descriptor_name, descriptor}, {mf_name, manifest}, {cert_name, cert}}));
    return warnings;
  }

  // OVA. Without a manifest, the digests of carried members are needed before the manifest
  // is written (second member), so they are computed in a first pass over the tar.
  if (!pkg.manifest) {
    VANDRA_TRY(detail::forEachTarMember(path, [&](detail::TarMemberReader& m) -> Result<void> {
      if (m.name == pkg.descriptor_name || m.name == mf_name || m.name == cert_name) {
        return {};
      }
      VANDRA_TRY_ASSIGN(std::string d, detail::digestStream(m.read, DigestAlgorithm::Sha256));
      entries.push_back({DigestAlgorithm::Sha256, m.name, std::move(d)});
      return {};
    }));
  }
  const std::string manifest = detail::manifestText(entries);
  VANDRA_TRY_ASSIGN(auto cert, makeCert(manifest));

  VANDRA_TRY_ASSIGN(const std::string tmp_dir, detail::makeTempDirBeside(path));
  auto cleanup = defer([&] { detail::removeTree(tmp_dir); });
  const std::string new_ova = tmp_dir + "/package.ova";
  const bool large = std::ranges::any_of(
      pkg.members, [](const PackageMember& m) { return m.size > 077777777777ULL; });
  VANDRA_TRY_ASSIGN(auto out, detail::OvaStream::create(new_ova, large));
  VANDRA_TRY(out.addBytes(pkg.descriptor_name, descriptor));
  VANDRA_TRY(out.addBytes(mf_name, manifest));
  if (cert) {
    VANDRA_TRY(out.addBytes(cert_name, *cert));
  }
  VANDRA_TRY(detail::forEachTarMember(path, [&](detail::TarMemberReader& m) -> Result<void> {
    if (m.name == pkg.descriptor_name || m.name == mf_name || m.name == cert_name) {
      return {};
    }
    return out.addFrom(m);
  }));
  VANDRA_TRY(out.close());
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    ::chmod(new_ova.c_str(), st.st_mode & 07777);
  }
  VANDRA_TRY(detail::renameReplace(new_ova, path));
  (void)detail::syncPath(detail::parentDir(path));
  return warnings;
}

}  // namespace vandra::ovf
