// exportPackage: converts the spec's disk images to streamOptimized VMDK, writes descriptor,
// SHA256 manifest, optional signature, then an OVA (descriptor first) or a folder. Everything
// is built in a temporary directory beside the target and renamed into place at the end: on
// error nothing is left at the target or beside it. It never overwrites an existing target.
#include <sys/stat.h>

#include <algorithm>

#include "fs_util.h"
#include "ova_writer.h"
#include "signer.h"
#include "vandra/common/scope_guard.h"
#include "vandra/ovf/disk_image.h"
#include "vandra/ovf/writer.h"

namespace vandra::ovf {
namespace {

constexpr std::string_view kStreamUri =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

void report(const ExportOptions& o, const std::string& stage, double f) {
  if (o.progress) {
    o.progress(stage, f);
  }
}

}  // namespace

Result<void> exportPackage(const VmSpec& spec, const std::string& out_path,
                           const ExportOptions& options) {
  if (spec.virtual_systems.empty()) {
    return fail(ErrorCode::InvalidArgument, "Field 'virtual_systems' is empty");
  }
  if (options.sign_key.empty() != options.sign_cert.empty()) {
    return fail(ErrorCode::InvalidArgument, "Signing needs both a key and a certificate");
  }
  const auto& first = spec.virtual_systems.front();
  const std::string name =
      !options.name.empty() ? options.name : (!first.name.empty() ? first.name : first.id);
  VANDRA_TRY(detail::checkMemberName(name + ".cert"));
  if (detail::exists(out_path)) {
    return fail(ErrorCode::AlreadyExists, "'" + out_path + "' already exists");
  }
  for (const auto& image : options.disk_images) {
    const std::string& disk_id = image.first;  // a plain name: clang 14 cannot capture bindings
    const bool known = std::ranges::any_of(spec.virtual_systems, [&](const VirtualSystemSpec& vs) {
      return std::ranges::any_of(vs.disks, [&](const DiskSpec& d) { return d.id == disk_id; });
    });
    if (!known) {
      return fail(ErrorCode::InvalidArgument,
                  "Disk image given for '" + disk_id + "', which is not a disk of the spec");
    }
  }

  VANDRA_TRY_ASSIGN(const std::string tmp, detail::makeTempDirBeside(out_path));
  auto cleanup = defer([&] { detail::removeTree(tmp); });

  // Disk files are rebuilt from what is written here; other files of the input spec
  // (ISO images and the like) are not carried, so drives referring to them are refused.
  VmSpec out = spec;
  out.files.clear();
  out.warnings.clear();
  int n = 0;
  for (auto& vs : out.virtual_systems) {
    for (const auto& m : vs.media) {
      if (m.file) {
        return fail(ErrorCode::Unsupported, "Virtual system '" + vs.id +
                                                "' has a drive with image '" + *m.file +
                                                "'; exporting media images is not supported");
      }
    }
    for (auto& d : vs.disks) {
      auto it = options.disk_images.find(d.id);
      if (it == options.disk_images.end()) {
        if (d.file) {
          return fail(ErrorCode::InvalidArgument, "Disk '" + d.id + "' refers to file '" + *d.file +
                                                      "' but no image was given");
        }
        continue;  // a blank disk: capacity only
      }
      ++n;
      const std::string href = name + "-disk" + std::to_string(n) + ".vmdk";
      VANDRA_TRY(detail::checkMemberName(href));
      const std::string stage = "convert " + d.id;
      report(options, stage, 0.0);
      VANDRA_TRY_ASSIGN(const ImageInfo src, probeImage(it->second));
      VANDRA_TRY(convertImage(
          it->second, tmp + "/" + href, "vmdk-stream", d.capacity_bytes,
          [&](double f) { report(options, stage, f); }, options.backing_within));
      VANDRA_TRY_ASSIGN(const uint64_t size, detail::fileSize(tmp + "/" + href));
      const std::string file_id = "file" + std::to_string(n);
      out.files.push_back(FileSpec{file_id, href, size, "", std::nullopt});
      d.file = href;
      d.format = "vmdk-stream";
      d.format_uri = std::string(kStreamUri);
      // Allocated bytes of the source: what the disk occupies once deployed.
      d.populated_bytes = std::min(src.actual_size, d.capacity_bytes);
    }
  }

  report(options, "write descriptor", 0.0);
  VANDRA_TRY_ASSIGN(const std::string descriptor, writeDescriptor(out, options.version));
  const std::string ovf_name = name + ".ovf";
  const std::string mf_name = name + ".mf";
  const std::string cert_name = name + ".cert";
  VANDRA_TRY(detail::writeFile(tmp + "/" + ovf_name, descriptor));
  report(options, "write descriptor", 1.0);

  report(options, "manifest", 0.0);
  std::vector<ManifestEntry> entries;
  VANDRA_TRY_ASSIGN(std::string ovf_digest,
                    detail::digestBytes(descriptor, DigestAlgorithm::Sha256));
  entries.push_back({DigestAlgorithm::Sha256, ovf_name, std::move(ovf_digest)});
  for (size_t i = 0; i < out.files.size(); ++i) {
    VANDRA_TRY_ASSIGN(std::string d,
                      detail::digestFile(tmp + "/" + out.files[i].href, DigestAlgorithm::Sha256));
    entries.push_back({DigestAlgorithm::Sha256, out.files[i].href, std::move(d)});
    report(options, "manifest", static_cast<double>(i + 1) / static_cast<double>(out.files.size()));
  }
  const std::string manifest = detail::manifestText(entries);
  VANDRA_TRY(detail::writeFile(tmp + "/" + mf_name, manifest));
  report(options, "manifest", 1.0);

  const bool signed_pkg = !options.sign_key.empty();
  if (signed_pkg) {
    report(options, "sign", 0.0);
    VANDRA_TRY_ASSIGN(const std::string cert,
                      detail::signManifest(mf_name, manifest, options.sign_key, options.sign_cert));
    VANDRA_TRY(detail::writeFile(tmp + "/" + cert_name, cert));
    report(options, "sign", 1.0);
  }

  if (options.ova) {
    // Descriptor first (DSP0243 requires it for streaming import), then manifest,
    // certificate, and the files in References order.
    std::vector<detail::OvaMember> members;
    members.push_back({ovf_name, tmp + "/" + ovf_name, std::nullopt});
    members.push_back({mf_name, tmp + "/" + mf_name, std::nullopt});
    if (signed_pkg) {
      members.push_back({cert_name, tmp + "/" + cert_name, std::nullopt});
    }
    for (const auto& f : out.files) {
      members.push_back({f.href, tmp + "/" + f.href, std::nullopt});
    }
    const std::string ova_tmp = tmp + "/.package.ova";
    report(options, "write ova", 0.0);
    VANDRA_TRY(detail::writeOva(ova_tmp, members, [&](uint64_t done, uint64_t total) {
      report(options, "write ova",
             total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total));
    }));
    ::chmod(ova_tmp.c_str(), 0644);
    VANDRA_TRY(detail::renameNoReplace(ova_tmp, out_path));
  } else {
    ::chmod(tmp.c_str(), 0755);  // mkdtemp made it private
    VANDRA_TRY(detail::syncPath(tmp));
    VANDRA_TRY(detail::renameNoReplace(tmp, out_path));
    cleanup.dismiss();
  }
  (void)detail::syncPath(detail::parentDir(out_path));
  report(options, options.ova ? "write ova" : "write folder", 1.0);
  return {};
}

}  // namespace vandra::ovf
