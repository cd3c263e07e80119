// inspectPackage: the package layer (tar, manifest, signature) and the descriptor reader
// joined, plus the checks that need both: every File of References present (whole or as
// chunks) with the size it declares, and members that nothing refers to.
#include "vandra/ovf/inspect.h"

#include <algorithm>
#include <map>
#include <set>

namespace vandra::ovf {
namespace {

bool isExternal(const std::string& href) {
  const auto colon = href.find(':');
  if (colon == std::string::npos) {
    return false;
  }
  std::string scheme = href.substr(0, colon);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return scheme == "http" || scheme == "https" || scheme == "ftp" || scheme == "file";
}

// Chunk member names: NAME.000000000, NAME.000000001, ... (ovftool's chunked layout).
std::string chunkName(const std::string& href, size_t index) {
  std::string n = std::to_string(index);
  return href + "." + std::string(9 - std::min<size_t>(9, n.size()), '0') + n;
}

}  // namespace

Result<Inspection> inspectPackage(const std::string& path, const InspectOptions& options) {
  OpenOptions open;
  open.lax = options.lax;
  open.verify_digests = options.verify_digests;
  open.trust_store = options.trust_store;
  open.extra_trust = options.extra_trust;
  open.progress = options.progress;
  VANDRA_TRY_ASSIGN(Package pkg, openPackage(path, open));

  ReadOptions read;
  read.lax = options.lax;
  read.configuration = options.configuration;
  VANDRA_TRY_ASSIGN(DescriptorReadResult desc, readDescriptor(pkg.descriptor, read));

  Inspection out;
  out.problems = std::move(pkg.problems);
  pkg.problems.clear();
  for (auto& p : desc.problems) {
    out.problems.push_back(std::move(p));
  }
  out.spec = std::move(desc.spec);

  std::map<std::string, uint64_t> members;
  for (const auto& m : pkg.members) {
    members[m.name] = m.size;
  }
  std::set<std::string> referenced = {pkg.descriptor_name};
  std::vector<Error> cross;
  for (const auto& f : out.spec.files) {
    if (isExternal(f.href)) {
      continue;  // the reader already warned; vandra never fetches
    }
    uint64_t stored = 0;
    bool present = false;
    if (auto it = members.find(f.href); it != members.end()) {
      present = true;
      stored = it->second;
      referenced.insert(f.href);
    } else if (members.count(chunkName(f.href, 0)) != 0) {
      present = true;
      for (size_t i = 0; i < 1000000; ++i) {
        auto c = members.find(chunkName(f.href, i));
        if (c == members.end()) {
          break;
        }
        stored += c->second;
        referenced.insert(c->first);
      }
    }
    const bool in_manifest =
        pkg.manifest && std::any_of(pkg.manifest->begin(), pkg.manifest->end(),
                                    [&](const ManifestEntry& e) { return e.file == f.href; });
    if (!present && in_manifest) {
      continue;  // the package layer already reported it missing
    }
    if (!present) {
      cross.emplace_back(ErrorCode::PackageMissingFile,
                         "File '" + f.id + "' ('" + f.href + "') is not in the package");
      continue;
    }
    if (f.size && *f.size != stored) {
      cross.emplace_back(ErrorCode::OvfValue, "File '" + f.href + "' is " + std::to_string(stored) +
                                                  " bytes but the descriptor says " +
                                                  std::to_string(*f.size));
    }
  }
  // Manifest and certificate belong to the package, not to References.
  for (const auto& m : pkg.members) {
    const bool meta = m.name.ends_with(".mf") || m.name.ends_with(".cert");
    if (!meta && referenced.count(m.name) == 0) {
      pkg.warnings.push_back("Package member '" + m.name +
                             "' is not referenced by the descriptor; it is ignored");
    }
  }
  for (auto& e : cross) {
    if (options.lax) {
      out.spec.warnings.push_back(e.describe());
    } else {
      out.problems.push_back(std::move(e));
    }
  }
  for (const auto& w : pkg.warnings) {
    out.spec.warnings.push_back(w);
  }
  out.package = std::move(pkg);
  return out;
}

Result<void> requireSound(const Inspection& inspection) {
  if (inspection.problems.empty()) {
    return {};
  }
  Error e = inspection.problems.front();
  if (inspection.problems.size() > 1) {
    e.message += " (and " + std::to_string(inspection.problems.size() - 1) +
                 " more problems; 'vandra ovf validate' lists them all)";
  }
  return fail(std::move(e));
}

}  // namespace vandra::ovf
