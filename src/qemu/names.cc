#include "vandra/qemu/names.h"

#include <set>

namespace vandra::qemu {

bool isSafeQemuId(std::string_view id) {
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (id.empty() || id.size() > 24 || !letter(id[0])) {
    return false;
  }
  for (char c : id) {
    if (!letter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

Result<std::vector<DiskNames>> diskNames(const std::vector<ovf::DiskSpec>& disks) {
  std::vector<DiskNames> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < disks.size(); ++i) {
    const std::string stem = isSafeQemuId(disks[i].id) ? disks[i].id : "d" + std::to_string(i);
    if (!seen.insert(stem).second) {
      return fail(ErrorCode::InvalidArgument, "Disk '" + disks[i].id +
                                                  "' maps to QEMU node name '" + stem +
                                                  "' that another disk already uses");
    }
    out.push_back({disks[i].id, "file-" + stem, "fmt-" + stem, "disk-" + stem, "top-" + stem});
  }
  return out;
}

DiskNames mediumNames(std::string_view safe_id) {
  const std::string id(safe_id);
  return {id, "file-" + id, "fmt-" + id, id, "top-" + id};
}

RunFiles runFiles(const std::string& run_dir) {
  return {run_dir + "/qmp.sock", run_dir + "/events.sock", run_dir + "/serial.log"};
}

}  // namespace vandra::qemu
