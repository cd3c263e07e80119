// A small real OVF package for import tests: one VM (1 vCPU, 256 MiB, a 1 MiB disk) whose NICs
// sit on the given OVF networks, with the given SLA, written by vandra's own exporter.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "vandra/common/subprocess.h"
#include "vandra/ovf/writer.h"

namespace vandra::controller::testing {

inline Result<std::string> makeTestPackage(const std::filesystem::path& dir,
                                           const std::string& name,
                                           const std::vector<std::string>& networks,
                                           const ovf::Sla& sla) {
  std::filesystem::create_directories(dir);
  const std::string disk = (dir / (name + ".raw")).string();
  VANDRA_TRY(runCapture({"qemu-img", "create", "-q", "-f", "raw", disk, "1M"}));
  ovf::VmSpec spec;
  ovf::VirtualSystemSpec vs;
  vs.id = name;
  vs.name = name;
  vs.vcpus = 1;
  vs.memory_mib = 256;
  vs.os = {.cim_id = 101, .family = "linux", .description = "other26xLinux64Guest"};
  vs.controllers.push_back({"scsi0", ovf::ControllerKind::Scsi, "lsilogic"});
  ovf::DiskSpec d;
  d.id = "disk1";
  d.capacity_bytes = 1ULL << 20;
  d.controller = "scsi0";
  d.format = "vmdk-stream";
  vs.disks.push_back(d);
  for (const auto& n : networks) {
    vs.nics.push_back({.network = n, .model = "e1000", .mac = std::nullopt, .connected = true});
    bool known = false;
    for (const auto& have : spec.networks) {
      known = known || have.name == n;
    }
    if (!known) {
      spec.networks.push_back({n, "The " + n + " network"});
    }
  }
  vs.sla = sla;
  spec.virtual_systems.push_back(vs);
  ovf::ExportOptions eo;
  eo.disk_images["disk1"] = disk;
  const std::string out = (dir / (name + ".ova")).string();
  VANDRA_TRY(ovf::exportPackage(spec, out, eo));
  return out;
}

}  // namespace vandra::controller::testing
