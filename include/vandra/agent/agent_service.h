// What an agent does for its callers (API, CLI, later the orchestrator), independent of
// transport: import a package as a VM, list, show, delete, report capacity. Every state
// change is written to the registry before its side effect.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vandra/agent/capacity.h"
#include "vandra/agent/image_store.h"
#include "vandra/agent/vm_registry.h"

namespace vandra::agent {

struct AgentConfig {
  std::string state_dir;     // registry.db, images/
  HostCapacity capacity;
  std::string trust_store;   // CA file for package signatures ("" = system default)
};

struct ImportRequest {
  std::string id;            // new VM name
  std::string package;       // path of an .ova/.ovf on the agent's host
  std::string vs;            // virtual system id ("" = the first)
  bool lax = false;
};

class AgentService {
public:
  [[nodiscard]] static Result<std::unique_ptr<AgentService>> open(const AgentConfig& config);

  /// Verifies and imports, checks capacity, registers the VM (Created) and makes its disks.
  /// Errors: InvalidArgument (id), AlreadyExists, CapacityExceeded (nothing changed),
  /// package errors (ovf codes), Subprocess (qemu-img).
  [[nodiscard]] Result<VmRecord> importVm(const ImportRequest& request);
  [[nodiscard]] Result<std::vector<VmRecord>> list();
  /// Errors: NotFound.
  [[nodiscard]] Result<VmRecord> get(const std::string& id);
  /// Removes a VM that is not running (IllegalTransition otherwise) and its disks.
  [[nodiscard]] Result<void> deleteVm(const std::string& id);
  /// {"capacity":..., "used":..., "free":...}
  [[nodiscard]] Result<nlohmann::json> host();

private:
  AgentService(AgentConfig config, VmRegistryPtr registry, ImageStore store)
      : config_(std::move(config)), registry_(std::move(registry)), store_(std::move(store)) {}
  Result<Resources> inUse();

  AgentConfig config_;
  VmRegistryPtr registry_;
  ImageStore store_;
};

/// JSON form of a registry record for the API (spec included, parsed).
nlohmann::json toJson(const VmRecord& record);
nlohmann::json toJson(const Resources& r);

} // namespace vandra::agent
