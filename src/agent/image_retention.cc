// Return trips (image_store.h, ADR 0027): the disks as they stood at a migration's switchover,
// kept at both of its sites under one key; the sweep that removes them when nothing stands
// on them any more.
#include <fcntl.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "kept_images.h"
#include "vandra/agent/image_store.h"
#include "vandra/common/subprocess.h"
#include "vandra/common/unique_fd.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using detail::kKeptFile;
using detail::readKept;

std::string stagingDir(const std::string& root, const std::string& vm_id) {
  return root + "/base/.arrival-" + vm_id;
}

Result<void> writeFile(const fs::path& path, const std::string& text) {
  return detail::writeSmallFile(path, text);
}

// One file of a backing chain, as qemu-img names it.
struct ChainFile {
  std::string filename;
  std::string format;
};

// The files @p image stands on (its backing chain, itself excluded), as qemu-img sees them.
std::vector<ChainFile> backingChain(const std::string& image) {
  auto info = runCapture({"qemu-img", "info", "--backing-chain", "--output=json", "-U", image});
  std::vector<ChainFile> out;
  if (!info) {
    return out;
  }
  const auto j = json::parse(*info, nullptr, false);
  if (!j.is_array()) {
    return out;
  }
  for (size_t i = 1; i < j.size(); ++i) {
    if (j[i].is_object() && j[i].contains("filename") && j[i]["filename"].is_string()) {
      out.push_back({j[i]["filename"].get<std::string>(), j[i].value("format", "")});
    }
  }
  return out;
}

// The kept folder's key when @p file lies in one (base/<key>/ with retained.json), else "".
std::string keptKeyOf(const std::string& base_prefix, const std::string& file) {
  if (file.rfind(base_prefix, 0) != 0) {
    return "";
  }
  const std::string key = fs::path(file.substr(base_prefix.size())).begin()->string();
  return fs::exists(fs::path(base_prefix) / key / kKeptFile) ? key : "";
}

// Folds into a departing disk what it stands on in kept images, so that a VM's chain does not
// grow two layers a trip (ADR 0027): the disk is rebased onto the first file below them (an
// imported package's base: its data is not copied) or, with none, made standalone. qemu-img
// rebase's safe mode copies every cluster in which the old and new chains differ, so the
// content stays the same. The disk is closed and not yet visible to a move back.
Result<void> flattenKept(const std::string& base_prefix, const std::string& disk) {
  const auto chain = backingChain(disk);
  size_t below = 0;
  while (below < chain.size() && !keptKeyOf(base_prefix, chain[below].filename).empty()) {
    ++below;
  }
  if (below == 0) {
    return {};  // on a package's base or on nothing: nothing kept to fold in
  }
  std::vector<std::string> argv{"qemu-img", "rebase", "-q", "-f", "qcow2"};
  if (below < chain.size()) {
    argv.insert(argv.end(), {"-b", chain[below].filename, "-F", chain[below].format});
  } else {
    argv.insert(argv.end(), {"-b", ""});
  }
  argv.push_back(disk);
  VANDRA_TRY(runCapture(argv));
  return {};
}

}  // namespace

namespace detail {

std::optional<json> readKept(const fs::path& dir) {
  std::ifstream in(dir / kKeptFile, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (text.size() > 64 * 1024) {
    return std::nullopt;
  }
  auto j = json::parse(text, nullptr, false);
  return j.is_object() ? std::optional<json>(j) : std::nullopt;
}

Result<void> writeSmallFile(const fs::path& path, const std::string& text) {
  return replaceFile(path.string(), text, 0644);
}

}  // namespace detail

Result<std::vector<ImageStore::ArrivalDisk>> ImageStore::stageArrival(
    const std::string& vm_id, const std::string& migration_id,
    const std::vector<std::pair<std::string, uint64_t>>& disks) {
  discardArrival(vm_id);
  const std::string staging = stagingDir(root_, vm_id);
  const std::string final_dir = root_ + "/base/" + arrivalKey(migration_id);
  std::error_code ec;
  fs::create_directories(staging, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot make '" + staging + "': " + ec.message());
  }
  std::vector<ArrivalDisk> out;
  for (const auto& [id, capacity] : disks) {
    const std::string disk = root_ + "/vms/" + vm_id + "/" + id + ".qcow2";
    // A second name for the file QEMU receives the copy into: once frozen, the base.
    if (::link(disk.c_str(), (staging + "/" + id + ".qcow2").c_str()) != 0) {
      discardArrival(vm_id);
      return fail(Error::fromErrno("Cannot link '" + disk + "' into '" + staging + "'"));
    }
    ArrivalDisk a{id, capacity, root_ + "/vms/" + vm_id + "/" + id + ".next.qcow2"};
    // Its backing file is where the arrival image will be once committed (-u: it is not
    // there yet, and QEMU opens the overlay without it: blockdev-snapshot mode existing).
    auto made = runCapture({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b",
                            final_dir + "/" + id + ".qcow2", a.overlay, std::to_string(capacity)});
    if (!made) {
      discardArrival(vm_id);
      return fail(made.error());
    }
    out.push_back(std::move(a));
  }
  return out;
}

Result<void> ImageStore::commitArrival(const std::string& vm_id, const std::string& migration_id,
                                       const std::vector<std::string>& disk_ids,
                                       const std::string& spec_json) {
  const std::string staging = stagingDir(root_, vm_id);
  const std::string key = arrivalKey(migration_id);
  const fs::path final_dir = fs::path(root_) / "base" / key;
  std::error_code ec;
  const std::set<std::string> taken(disk_ids.begin(), disk_ids.end());
  // Disks QEMU did not take: their second name and overlay go; the VM writes on as before.
  for (auto it = fs::directory_iterator(staging, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string id = it->path().stem().string();
    if (taken.count(id) == 0) {
      fs::remove(it->path(), ec);
      fs::remove(root_ + "/vms/" + vm_id + "/" + id + ".next.qcow2", ec);
    }
  }
  if (taken.empty()) {
    discardArrival(vm_id);
    return {};
  }
  fs::remove_all(final_dir, ec);  // an earlier attempt of the same migration
  fs::rename(staging, final_dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot keep the arrival images of '" + vm_id + "' as '" +
                                   final_dir.string() + "': " + ec.message());
  }
  for (const auto& id : disk_ids) {
    const std::string vm_dir = root_ + "/vms/" + vm_id + "/";
    fs::rename(vm_dir + id + ".next.qcow2", vm_dir + id + ".qcow2", ec);
    if (ec) {
      return fail(ErrorCode::Io, "Cannot put the overlay of disk '" + id + "' of '" + vm_id +
                                     "' in place: " + ec.message());
    }
  }
  VANDRA_TRY(writeFile(final_dir / "vmspec.json", spec_json));
  return writeFile(final_dir / kKeptFile, json{{"kind", "arrival"},
                                               {"vm", vm_id},
                                               {"migration_id", migration_id},
                                               {"at", static_cast<int64_t>(::time(nullptr))}}
                                              .dump());
}

void ImageStore::discardArrival(const std::string& vm_id) {
  std::error_code ec;
  const std::string staging = stagingDir(root_, vm_id);
  for (auto it = fs::directory_iterator(staging, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::error_code rec;
    fs::remove(root_ + "/vms/" + vm_id + "/" + it->path().stem().string() + ".next.qcow2", rec);
  }
  fs::remove_all(staging, ec);
}

Result<void> ImageStore::retainDeparted(const std::string& vm_id, const std::string& migration_id,
                                        const std::string& spec_json, int64_t expires_unix) {
  const fs::path vm_dir = fs::path(root_) / "vms" / vm_id;
  const fs::path final_dir = fs::path(root_) / "base" / arrivalKey(migration_id);
  const fs::path staging = fs::path(root_) / "base" / (".departed-" + vm_id);
  std::error_code ec;
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot make '" + staging.string() + "': " + ec.message());
  }
  // The disks keep their backing files (absolute paths into base/): moving them is enough.
  std::vector<fs::path> moved;
  for (auto it = fs::directory_iterator(vm_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->path().extension() == ".qcow2") {
      moved.push_back(staging / it->path().filename());
    }
  }
  auto putBack = [&] {
    for (const auto& m : moved) {
      std::error_code bec;
      fs::rename(m, vm_dir / m.filename(), bec);
    }
    std::error_code rec;
    fs::remove_all(staging, rec);
  };
  for (const auto& m : moved) {
    std::error_code mec;
    fs::rename(vm_dir / m.filename(), m, mec);
    if (mec) {
      putBack();
      return fail(ErrorCode::Io,
                  "Cannot keep '" + (vm_dir / m.filename()).string() + "': " + mec.message());
    }
  }
  for (const auto& m : moved) {
    // A failed rebase leaves the disk on its old chain: back where it was, unchanged, for the
    // caller to remove as if not kept.
    if (auto flat = flattenKept(root_ + "/base/", m.string()); !flat) {
      putBack();
      return fail(flat.error());
    }
  }
  VANDRA_TRY(writeFile(staging / "vmspec.json", spec_json));
  VANDRA_TRY(writeFile(staging / kKeptFile, json{{"kind", "departed"},
                                                 {"vm", vm_id},
                                                 {"migration_id", migration_id},
                                                 {"at", static_cast<int64_t>(::time(nullptr))},
                                                 {"expires", expires_unix}}
                                                .dump()));
  fs::remove_all(final_dir, ec);
  fs::rename(staging, final_dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot keep the disks of '" + vm_id + "': " + ec.message());
  }
  return removeVm(vm_id);
}

std::vector<std::string> ImageStore::sweepRetained(int64_t now_unix) {
  const std::lock_guard hold(*retention_mu_);
  std::vector<std::string> removed;
  std::error_code ec;
  // Kept folders, and whether each may go once nothing stands on it.
  std::map<std::string, bool> kept;  // key -> removable when unused
  // A VM's departed disks serve only its next move back here: those of a VM that is here
  // again, and all but the newest of a VM that left more than once, are superseded.
  std::map<std::string, std::pair<int64_t, std::string>> newest_departed;  // vm -> (at, key)
  std::vector<std::pair<std::string, std::string>> departed;               // (key, vm)
  for (auto it = fs::directory_iterator(root_ + "/base", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') {
      continue;
    }
    if (auto k = readKept(it->path())) {
      const std::string kind = k->value("kind", "");
      const bool arrival = kind == "arrival";
      const int64_t expires = k->value("expires", int64_t{0});
      kept[name] = arrival || (expires > 0 && expires <= now_unix);
      const std::string vm = k->value("vm", "");
      if (kind == "departed" && !vm.empty()) {
        departed.emplace_back(name, vm);
        const std::pair<int64_t, std::string> at{k->value("at", int64_t{0}), name};
        auto [n, fresh] = newest_departed.try_emplace(vm, at);
        if (!fresh && n->second < at) {
          n->second = at;
        }
      }
    }
  }
  for (const auto& [key, vm] : departed) {
    std::error_code vec;
    if (fs::exists(fs::path(root_) / "vms" / vm, vec) || newest_departed[vm].second != key) {
      kept[key] = true;
    }
  }
  // What stands on what: every VM disk's chain, and the chains of kept images that stay.
  std::set<std::string> used;
  const std::string base_prefix = root_ + "/base/";
  auto mark = [&](const std::string& image) {
    for (const auto& c : backingChain(image)) {
      if (c.filename.rfind(base_prefix, 0) == 0) {
        used.insert(fs::path(c.filename.substr(base_prefix.size())).begin()->string());
      }
    }
  };
  for (auto vm = fs::directory_iterator(root_ + "/vms", ec); !ec && vm != fs::directory_iterator();
       vm.increment(ec)) {
    std::error_code dec;
    for (auto d = fs::directory_iterator(vm->path(), dec); !dec && d != fs::directory_iterator();
         d.increment(dec)) {
      if (d->path().extension() == ".qcow2") {
        mark(d->path().string());
      }
    }
  }
  for (const auto& [key, removable] : kept) {
    if (!removable) {
      std::error_code dec;
      for (auto d = fs::directory_iterator(base_prefix + key, dec);
           !dec && d != fs::directory_iterator(); d.increment(dec)) {
        if (d->path().extension() == ".qcow2") {
          mark(d->path().string());
        }
      }
    }
  }
  for (const auto& [key, removable] : kept) {
    if (removable && used.count(key) == 0) {
      std::error_code rec;
      fs::remove_all(base_prefix + key, rec);
      if (!rec) {
        removed.push_back(key);
      }
    }
  }
  return removed;
}

}  // namespace vandra::agent
