// What the controller asks of a site's agent, as typed calls. The real link speaks the agent
// API (agent/http_api.h, orchestrator/migration_api.h) over mutual TLS and sends the
// controller's leadership epoch with every request (header X-Vandra-Epoch): an agent that has
// seen a higher epoch refuses (StaleEpoch), so a deposed leader cannot act. Unit tests use a
// fake beside it (test/controller).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vandra/agent/agent_client.h"
#include "vandra/common/link_measurement.h"
#include "vandra/common/migration_phase.h"
#include "vandra/common/result.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::controller {

/// The header that carries the controller's epoch to agents.
inline constexpr const char* kEpochHeader = "X-Vandra-Epoch";

struct AgentCapacity {
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;
  uint32_t used_vcpus = 0;
  uint64_t used_memory_mib = 0;
  uint64_t used_disk_gib = 0;
};

struct AgentVm {
  std::string id;
  std::string state;  // the agent's name: "created", "running", "stopped", ...
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_bytes = 0;
  std::optional<ovf::VmSpec> spec;
};

struct AgentMigration {
  std::string id;
  std::string vm;
  std::string role;  // "source" or "target"
  std::string peer;
  MigrationPhase phase = MigrationPhase::Invalid;
  bool ended = false;
  std::string error;
  std::optional<double> interruption_ms;
  std::optional<uint32_t> budget_ms;
  std::string report_json;  // the whole record as the agent sent it
};

/// An import at the agent: upload @p upload (sent with sendPackage()) becomes VM @p id, the
/// NICs' OVF networks renamed to the site's by @p networks.
struct AgentImport {
  std::string id;
  std::string upload;
  std::string vs;  // virtual system ("" = the first)
  std::map<std::string, std::string> networks;
  bool lax = false;
};

/// A live move asked of the source's agent: to peer site `to`, the NICs' networks renamed by
/// `networks` (the source's name -> the target's; only those that differ) at the target.
struct AgentMove {
  std::string to;
  std::map<std::string, std::string> networks;
};

class AgentLink {
 public:
  virtual ~AgentLink() = default;
  [[nodiscard]] virtual Result<AgentCapacity> capacity() = 0;
  [[nodiscard]] virtual Result<std::vector<AgentVm>> vms() = 0;
  [[nodiscard]] virtual Result<void> startVm(const std::string& vm) = 0;
  [[nodiscard]] virtual Result<void> stopVm(const std::string& vm) = 0;
  /// Starts a live migration of @p vm (POST /v1/vms/{id}/migrate); returns the agent's id.
  [[nodiscard]] virtual Result<std::string> migrate(const std::string& vm,
                                                    const AgentMove& move) = 0;
  /// The migration record, waiting up to @p wait_ms for it to end.
  [[nodiscard]] virtual Result<AgentMigration> migration(const std::string& id,
                                                         uint64_t wait_ms) = 0;
  [[nodiscard]] virtual Result<std::vector<AgentMigration>> migrations() = 0;
  /// Asks the agent to cancel its migration @p id (POST /v1/migrations/{id}/cancel): it rolls
  /// back unless past the switchover. Errors: the agent's (IllegalTransition: too late).
  [[nodiscard]] virtual Result<void> cancel(const std::string& id) {
    return fail(ErrorCode::Unsupported, "This agent link cannot cancel " + id);
  }
  /// Gives the agent the package file @p path as upload @p name, unless it holds that content
  /// under that name already. Returns whether it was sent (false: the agent had it).
  [[nodiscard]] virtual Result<bool> sendPackage(const std::string& path, const std::string& name,
                                                 bool lax) = 0;
  [[nodiscard]] virtual Result<void> deletePackage(const std::string& name) = 0;
  /// Imports an upload as a new VM (created, not started).
  [[nodiscard]] virtual Result<AgentVm> importVm(const AgentImport& request) = 0;
  /// Sets the epoch sent with every later request.
  virtual void setEpoch(int64_t epoch) = 0;
  /// Announces the epoch to the agent (POST /v1/fence): from then on it refuses older ones.
  [[nodiscard]] virtual Result<void> announceEpoch() = 0;
  /// What the agent measured of its links to the peer sites (GET /v1/links; a few seconds at
  /// most). Errors: the agent's, Unsupported (a link that cannot ask).
  [[nodiscard]] virtual Result<std::vector<LinkMeasurement>> links() {
    return fail(ErrorCode::Unsupported, "This agent link does not read links");
  }
};

/// The agent of each site (one per host; the testbed runs one host per site).
struct AgentAccess {
  std::string site;
  std::string host;  // host name (defaults to "<site>-h1")
  agent::AgentEndpoint endpoint;
};

/// A link over the agent API. Thread-safe (each call makes its own connection).
std::unique_ptr<AgentLink> makeHttpAgentLink(const AgentAccess& access);

/// Reads an agent's JSON answers (exposed for tests and the fuzz target).
[[nodiscard]] Result<AgentVm> agentVmFromJson(const nlohmann::json& j);
[[nodiscard]] Result<AgentMigration> agentMigrationFromJson(const nlohmann::json& j);
[[nodiscard]] Result<AgentCapacity> agentCapacityFromJson(const nlohmann::json& j);
/// GET /v1/links's answer: at most kMaxAgentLinks entries, names checked, numbers in range
/// (an entry with a value out of range is refused whole).
[[nodiscard]] Result<std::vector<LinkMeasurement>> linkMeasurementsFromJson(
    const nlohmann::json& j);
inline constexpr size_t kMaxAgentLinks = 256;

}  // namespace vandra::controller
