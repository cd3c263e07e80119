// Packages uploaded to the controller, and imports through it:
//
//   PUT /v1/packages/NAME ──► streamed to <state>/packages/.NAME.part (bounded) ──► verified
//       (digests, descriptor, signature) ──► kept as NAME
//   POST /v1/vms {id, package, site?, network_map?} ──► leader? ──► the package's VM (size,
//       SLA, networks) ──► placeNew (the cheapest site that keeps the SLA, has room and a
//       network for each NIC; or the named site, refused with the clause)
//       ──► chosen host's agent: package sent (unless it has it), imported with the networks
//           mapped, the upload removed again ──► VM recorded (home: that site) ──► started?
#include <algorithm>

#include "vandra/controller/inventory_json.h"
#include "vandra/controller/service.h"
#include "vandra/ovf/inspect.h"

namespace vandra::controller {

namespace {

Result<const agent::UploadStore*> uploadsOn(const agent::UploadStore* store) {
  if (store == nullptr) {
    return fail(ErrorCode::Unsupported,
                "This controller keeps no packages (start it with --state-dir)");
  }
  return store;
}

PackageVm packageVmOf(const ovf::VirtualSystemSpec& vs) {
  PackageVm p;
  p.vs = vs.id;
  p.name = vs.name;
  p.vcpus = vs.vcpus;
  p.memory_mib = vs.memory_mib;
  uint64_t bytes = 0;
  for (const auto& d : vs.disks) {
    bytes += d.capacity_bytes;
  }
  p.disk_gib = std::max<uint64_t>((bytes + (1ull << 30) - 1) >> 30, 1);
  for (const auto& nic : vs.nics) {
    if (!nic.network.empty()) {
      p.networks.push_back(nic.network);
    }
  }
  p.sla = vs.sla;
  return p;
}

}  // namespace

Result<agent::UploadInfo> ControllerService::commitPackage(agent::UploadWriter& writer, bool lax) {
  return writer.commit([&](const std::string& path) -> Result<void> {
    ovf::InspectOptions o;
    o.lax = lax;
    o.trust_store = options_.trust_store;
    VANDRA_TRY_ASSIGN(const ovf::Inspection insp, ovf::inspectPackage(path, o));
    if (!lax) {
      VANDRA_TRY(ovf::requireSound(insp));
    }
    if (insp.spec.virtual_systems.empty()) {
      return fail(ErrorCode::InvalidArgument, "The package describes no virtual system");
    }
    return {};
  });
}

Result<PackageInfo> ControllerService::package(const std::string& name) {
  VANDRA_TRY_ASSIGN(const auto* store, uploadsOn(packages()));
  PackageInfo info;
  VANDRA_TRY_ASSIGN(info.upload, store->get(name));
  // Verified when it was received: only the descriptor is read again, not every byte.
  ovf::InspectOptions o;
  o.lax = true;
  o.trust_store = options_.trust_store;
  o.verify_digests = false;
  VANDRA_TRY_ASSIGN(const ovf::Inspection insp, ovf::inspectPackage(store->dir() + "/" + name, o));
  info.signature = std::string(ovf::toString(insp.package.signature.status));
  for (const auto& vs : insp.spec.virtual_systems) {
    info.vms.push_back(packageVmOf(vs));
  }
  return info;
}

Result<void> ControllerService::deletePackage(const std::string& name) {
  VANDRA_TRY_ASSIGN(const auto* store, uploadsOn(packages()));
  std::unique_lock one_import(import_mu_, std::try_to_lock);
  if (!one_import.owns_lock()) {
    return fail(ErrorCode::Busy, "An import is running; try again when it ends");
  }
  return store->remove(name);
}

Result<NewVm> ControllerService::newVmOf(const std::string& package_name, const std::string& vs,
                                         const std::string& id) {
  VANDRA_TRY_ASSIGN(const PackageInfo info, package(package_name));
  const auto it = std::find_if(info.vms.begin(), info.vms.end(),
                               [&](const PackageVm& v) { return vs.empty() || v.vs == vs; });
  if (it == info.vms.end()) {
    return fail(ErrorCode::NotFound,
                "No virtual system '" + vs + "' in package '" + package_name + "'");
  }
  NewVm vm;
  vm.name = id.empty() ? it->vs : id;
  vm.vcpus = it->vcpus;
  vm.memory_mib = it->memory_mib;
  vm.disk_gib = it->disk_gib;
  vm.sla = it->sla.value_or(ovf::Sla{});
  vm.networks = it->networks;
  return vm;
}

Result<ImportedVm> ControllerService::importVm(const ImportVmRequest& r, const Caller& who) {
  VANDRA_TRY(requireLeader());
  VANDRA_TRY(checkName(r.id, "VM"));
  VANDRA_TRY_ASSIGN(const auto* store, uploadsOn(packages()));
  std::lock_guard one_import(import_mu_);
  if (auto known = store_.vm(r.id); known) {
    return fail(ErrorCode::AlreadyExists,
                "A VM named '" + r.id + "' exists (at " + known->site + ")");
  } else if (known.error().code != ErrorCode::NotFound) {
    return fail(known.error());
  }
  VANDRA_TRY_ASSIGN(NewVm vm, newVmOf(r.package, r.vs, r.id));
  vm.network_map = r.network_map;
  VANDRA_TRY_ASSIGN(const NewVmPlacement placed, placeNew(vm, r.site));
  AgentLink* link = linkFor(placed.site, placed.host);
  if (link == nullptr) {
    return fail(ErrorCode::NotFound, "No agent for host " + placed.host + " at " + placed.site);
  }

  VANDRA_TRY_ASSIGN(const bool sent,
                    link->sendPackage(store->dir() + "/" + r.package, r.package, r.lax));
  AgentImport ai;
  ai.id = r.id;
  ai.upload = r.package;
  ai.vs = r.vs;
  ai.networks = placed.networks;
  ai.lax = r.lax;
  auto imported = link->importVm(ai);
  if (sent) {
    // The agent keeps the disks as base images: the package file itself is not needed there.
    if (auto d = link->deletePackage(r.package); !d) {
      (void)store_.appendEvent(
          {0, now(), "vm", r.id,
           "upload " + r.package + " left at " + placed.host + ": " + d.error().describe()});
    }
  }
  if (!imported) {
    noteAgentError(imported.error());
    return fail(std::move(imported).error());
  }

  Vm v;
  v.name = r.id;
  v.site = placed.site;
  v.host = placed.host;
  v.home_site = placed.site;
  v.state = vmStateFromString(imported->state);
  v.vcpus = imported->vcpus;
  v.memory_mib = imported->memory_mib;
  v.disk_gib = std::max<uint64_t>((imported->disk_bytes + (1ull << 30) - 1) >> 30, vm.disk_gib);
  v.sla = vm.sla;
  for (const auto& net : vm.networks) {
    v.networks.push_back(placed.networks.at(net));
  }
  v.placed_at_ms = now();
  VANDRA_TRY(store_.putVm(v));
  std::string nets;
  for (const auto& [from, to] : placed.networks) {
    nets += (nets.empty() ? "" : ", ") + from + (from == to ? "" : " -> " + to);
  }
  (void)store_.appendEvent({0, now(), "vm", r.id,
                            "imported from " + r.package + " at " + placed.host + " (" +
                                (r.site.empty() ? "placed" : "site named by " + who.who) +
                                (nets.empty() ? "" : "; networks " + nets) + ")"});
  if (r.start) {
    if (auto s = link->startVm(r.id); !s) {
      noteAgentError(s.error());
      return fail(s.error().code, "VM " + r.id + " was imported at " + placed.site +
                                      " but did not start: " + s.error().message);
    }
    v.state = VmState::Running;
    VANDRA_TRY(store_.putVm(v));
  }
  return ImportedVm{std::move(v), placed};
}

}  // namespace vandra::controller
