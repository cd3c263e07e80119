// importPackage: from a verified package to qcow2 disks and a vmspec.json in one folder.
// Everything is staged in a hidden folder inside the destination and removed at the end;
// on error every file this call created is removed, so the destination is left as it was.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/disk_image.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::ovf {
namespace {

namespace fs = std::filesystem;

// The qemu-img format a descriptor's disk format must turn out to be; "" = not checked.
std::string expectedQemuFormat(const std::string& ovf_format) {
  if (ovf_format.starts_with("vmdk")) {
    return "vmdk";
  }
  if (ovf_format == "qcow2" || ovf_format == "raw" || ovf_format == "vhdx") {
    return ovf_format;
  }
  if (ovf_format == "vhd") {
    return "vpc";
  }
  return "";
}

// File names built from ids that come from the descriptor: keep them plain.
std::string safeName(const std::string& s) {
  std::string out;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    out.push_back(ok ? c : '_');
  }
  if (out.empty() || out.front() == '.') {
    out.insert(out.begin(), '_');
  }
  return out.substr(0, 100);
}

Result<void> removeTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot remove '" + path + "': " + ec.message());
  }
  return {};
}

}  // namespace

std::string importedDiskName(const std::string& vs_id, const std::string& disk_id) {
  return safeName(vs_id) + "-" + safeName(disk_id) + ".qcow2";
}

Result<ImportResult> importPackage(const std::string& path, const std::string& dest_dir,
                                   const ImportOptions& options) {
  auto stage = [&](const std::string& what, double f) {
    if (options.progress) {
      options.progress(what, f);
    }
  };
  InspectOptions iopts = options.inspect;
  if (options.progress) {
    iopts.progress = [&](uint64_t done, uint64_t total) {
      stage("verify", total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total));
    };
  }
  VANDRA_TRY_ASSIGN(Inspection insp, inspectPackage(path, iopts));
  if (!options.inspect.lax) {
    VANDRA_TRY(requireSound(insp));
  }
  if (!options.virtual_system.empty()) {
    const bool known =
        std::any_of(insp.spec.virtual_systems.begin(), insp.spec.virtual_systems.end(),
                    [&](const auto& v) { return v.id == options.virtual_system; });
    if (!known) {
      return fail(ErrorCode::NotFound,
                  "No virtual system '" + options.virtual_system + "' in the package");
    }
  }

  // Destination: created if missing (and then removed again on error).
  std::error_code ec;
  const bool created_dest = !fs::exists(dest_dir, ec);
  if (created_dest && !fs::create_directories(dest_dir, ec)) {
    return fail(ErrorCode::Io, "Cannot create '" + dest_dir + "': " + ec.message());
  }
  std::vector<std::string> created;
  auto cleanup = defer([&] {
    for (const auto& f : created) {
      ::unlink(f.c_str());
    }
    if (created_dest) {
      fs::remove_all(dest_dir, ec);
    }
  });
  const std::string vmspec_path = dest_dir + "/vmspec.json";
  if (fs::exists(vmspec_path, ec)) {
    return fail(ErrorCode::AlreadyExists, "'" + dest_dir + "' already holds an imported VM");
  }

  std::string tmpl = dest_dir + "/.vandra-import-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return fail(Error::fromErrno("Cannot create a staging folder in '" + dest_dir + "'"));
  }
  const std::string staging = tmpl;
  auto drop_staging = defer([&] { (void)removeTree(staging); });
  const std::string extracted = staging + "/package";
  OpenOptions xopts;
  xopts.lax = options.inspect.lax;
  xopts.reassemble_chunks = true;
  stage("extract", 0.0);
  VANDRA_TRY(extractPackage(insp.package, extracted, xopts));
  stage("extract", 1.0);

  std::map<std::string, const FileSpec*> files_by_href;
  for (const auto& f : insp.spec.files) {
    files_by_href[f.href] = &f;
  }
  ImportResult result;
  result.spec = insp.spec;
  for (auto& vs : result.spec.virtual_systems) {
    if (!options.virtual_system.empty() && vs.id != options.virtual_system) {
      continue;
    }
    for (auto& disk : vs.disks) {
      if (disk.parent) {
        return fail(ErrorCode::Unsupported,
                    "Disk '" + disk.id + "' is a delta of '" + *disk.parent +
                        "'; importing delta disk chains is not supported yet");
      }
      const std::string out = dest_dir + "/" + importedDiskName(vs.id, disk.id);
      if (fs::exists(out, ec)) {
        return fail(ErrorCode::AlreadyExists, "'" + out + "' already exists");
      }
      const std::string label = "convert " + disk.id;
      if (!disk.file) {
        // A blank disk: the descriptor gives only its capacity.
        if (disk.capacity_bytes == 0) {
          return fail(ErrorCode::OvfValue, "Blank disk '" + disk.id + "' has no capacity");
        }
        created.push_back(out);
        VANDRA_TRY(runCapture(
            {"qemu-img", "create", "-q", "-f", "qcow2", out, std::to_string(disk.capacity_bytes)}));
      } else {
        std::string src = extracted + "/" + *disk.file;
        auto f = files_by_href.find(*disk.file);
        if (f != files_by_href.end() && f->second->compression == "gzip") {
          const std::string raw = staging + "/" + safeName(disk.id) + ".gunzipped";
          // A disk image never needs to be much larger than its capacity; anything beyond
          // that is a decompression bomb.
          const uint64_t bound = disk.capacity_bytes + disk.capacity_bytes / 8 + (64ULL << 20);
          stage("decompress " + disk.id, 0.0);
          VANDRA_TRY(gunzipFile(src, raw, bound));
          src = raw;
        }
        VANDRA_TRY_ASSIGN(const ImageInfo info, probeImage(src));
        const std::string want = expectedQemuFormat(disk.format);
        if (!want.empty() && info.format != want) {
          return fail(ErrorCode::DiskImageInvalid, "Disk '" + disk.id + "' claims to be " +
                                                       disk.format + " but '" + *disk.file +
                                                       "' is " + info.format);
        }
        created.push_back(out);
        VANDRA_TRY(convertImage(src, out, "qcow2", disk.capacity_bytes,
                                [&](double frac) { stage(label, frac); }));
        if (disk.capacity_bytes == 0) {
          disk.capacity_bytes = info.virtual_size;
        }
      }
      result.disks.push_back({vs.id, disk.id, out, disk.capacity_bytes});
      disk.file = fs::path(out).filename().string();
      disk.format = "qcow2";
      disk.format_uri.clear();
      disk.populated_bytes.reset();
    }
  }
  // The imported spec describes what is in dest_dir now: qcow2 files, no package files.
  result.spec.files.clear();
  {
    created.push_back(vmspec_path);
    std::ofstream js(vmspec_path, std::ios::trunc);
    js << toJson(result.spec).dump(2) << "\n";
    if (!js.good()) {
      return fail(ErrorCode::Io, "Cannot write '" + vmspec_path + "'");
    }
  }
  cleanup.dismiss();
  return result;
}

}  // namespace vandra::ovf
