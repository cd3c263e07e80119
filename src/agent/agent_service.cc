#include "vandra/agent/agent_service.h"

#include <filesystem>

#include "vandra/ovf/vm_spec_json.h"

namespace vandra::agent {
namespace {

Resources requestOf(const ovf::VirtualSystemSpec& vs) {
  Resources r{vs.vcpus, vs.memory_mib, 0};
  for (const auto& d : vs.disks) {
    r.disk_bytes += d.capacity_bytes;
  }
  return r;
}

const ovf::VirtualSystemSpec* pick(const ovf::VmSpec& spec, const std::string& vs) {
  for (const auto& v : spec.virtual_systems) {
    if (vs.empty() || v.id == vs) {
      return &v;
    }
  }
  return nullptr;
}

} // namespace

nlohmann::json toJson(const Resources& r) {
  return {{"vcpus", r.vcpus}, {"memory_mib", r.memory_mib}, {"disk_bytes", r.disk_bytes}};
}

nlohmann::json toJson(const VmRecord& r) {
  auto spec = nlohmann::json::parse(r.spec_json, nullptr, false);
  return {{"id", r.id},
          {"state", toString(r.state)},
          {"pid", r.pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(r.pid)},
          {"resources", toJson(Resources{r.vcpus, r.memory_mib, r.disk_bytes})},
          {"spec", spec.is_discarded() ? nlohmann::json(nullptr) : spec}};
}

Result<std::unique_ptr<AgentService>> AgentService::open(const AgentConfig& config) {
  std::error_code ec;
  std::filesystem::create_directories(config.state_dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot create '" + config.state_dir + "': " + ec.message());
  }
  VANDRA_TRY_ASSIGN(auto registry, openSqliteRegistry(config.state_dir + "/registry.db"));
  VANDRA_TRY_ASSIGN(auto store, ImageStore::open(config.state_dir + "/images"));
  return std::unique_ptr<AgentService>(new AgentService(config, std::move(registry), std::move(store)));  // NOLINT: private constructor
}

Result<Resources> AgentService::inUse() {
  VANDRA_TRY_ASSIGN(const auto all, registry_->list());
  std::vector<Resources> rs;
  for (const auto& r : all) {
    rs.push_back({r.vcpus, r.memory_mib, r.disk_bytes});
  }
  return used(rs);
}

Result<VmRecord> AgentService::importVm(const ImportRequest& req) {
  if (!validVmId(req.id)) {
    return fail(ErrorCode::InvalidArgument, "VM id '" + req.id + "' must be 1..64 characters of A-Z a-z 0-9 - _ .");
  }
  VANDRA_TRY_ASSIGN(const auto existing, registry_->get(req.id));
  if (existing) {
    return fail(ErrorCode::AlreadyExists, "A VM named '" + req.id + "' already exists");
  }
  ovf::ImportOptions io;
  io.inspect.lax = req.lax;
  io.inspect.trust_store = config_.trust_store;
  // Capacity first, from the verified descriptor, so a VM that does not fit changes nothing.
  VANDRA_TRY_ASSIGN(const ovf::Inspection insp, ovf::inspectPackage(req.package, io.inspect));
  if (!req.lax) {
    VANDRA_TRY(ovf::requireSound(insp));
  }
  const ovf::VirtualSystemSpec* vs = pick(insp.spec, req.vs);
  if (vs == nullptr) {
    return fail(ErrorCode::NotFound, "No virtual system '" + req.vs + "' in '" + req.package + "'");
  }
  const Resources need = requestOf(*vs);
  VANDRA_TRY_ASSIGN(const Resources in_use, inUse());
  VANDRA_TRY(checkFits(config_.capacity, in_use, need));

  VANDRA_TRY_ASSIGN(const BaseImage base, store_.importBase(req.package, io));
  const ovf::VirtualSystemSpec* imported = pick(base.spec, vs->id);
  if (imported == nullptr) {
    return fail(ErrorCode::Internal, "Imported package lost virtual system '" + vs->id + "'");
  }
  ovf::VmSpec one = base.spec;
  one.virtual_systems = {*imported};
  VmRecord rec;
  rec.id = req.id;
  rec.state = VmState::Created;
  rec.spec_json = ovf::toJson(one).dump();
  rec.vcpus = vs->vcpus;
  rec.memory_mib = need.memory_mib;
  rec.disk_bytes = need.disk_bytes;
  VANDRA_TRY(registry_->insert(rec));
  auto disks = store_.createOverlays(req.id, base, vs->id);
  if (!disks) {
    Error e = disks.error();
    if (auto undo = registry_->remove(req.id); !undo) {
      e.secondary.push_back(undo.error());
    }
    return fail(std::move(e));
  }
  VANDRA_TRY_ASSIGN(auto got, registry_->get(req.id));
  return got.value_or(rec);
}

Result<std::vector<VmRecord>> AgentService::list() { return registry_->list(); }

Result<VmRecord> AgentService::get(const std::string& id) {
  VANDRA_TRY_ASSIGN(const auto r, registry_->get(id));
  if (!r) {
    return fail(ErrorCode::NotFound, "No VM named '" + id + "'");
  }
  return *r;
}

Result<void> AgentService::deleteVm(const std::string& id) {
  VANDRA_TRY_ASSIGN(VmRecord r, get(id));
  VANDRA_TRY_ASSIGN(const VmState next, transition(r.state, VmEvent::Delete));
  r.state = next;
  VANDRA_TRY_ASSIGN(r, registry_->update(r));  // Deleting is on disk before the disks go
  VANDRA_TRY(store_.removeVm(id));
  return registry_->remove(id);
}

Result<nlohmann::json> AgentService::host() {
  VANDRA_TRY_ASSIGN(const Resources in_use, inUse());
  return nlohmann::json{{"capacity", toJson(config_.capacity.total)},
                        {"reserved", toJson(config_.capacity.reserved)},
                        {"used", toJson(in_use)},
                        {"free", toJson(available(config_.capacity, in_use))}};
}

} // namespace vandra::agent
