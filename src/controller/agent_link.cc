#include "vandra/controller/agent_link.h"

#include <atomic>

#include "json_numbers.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::controller {
namespace {

using nlohmann::json;

Unexpected badAnswer(const std::string& what, const std::string& detail) {
  return fail(ErrorCode::Internal, "The agent's " + what + " is not as expected: " + detail);
}

// Percent-encoding is not needed: VM ids and migration ids are plain tokens (checked by the
// agent); anything else is refused here rather than sent.
Result<void> plainToken(const std::string& s, const char* what) {
  if (s.empty() || s.size() > 128 ||
      s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
          std::string::npos) {
    return fail(ErrorCode::InvalidArgument,
                std::string(what) + " '" + s.substr(0, 80) + "' is not a plain token");
  }
  return {};
}

class HttpAgentLink final : public AgentLink {
 public:
  explicit HttpAgentLink(AgentAccess access) : access_(std::move(access)) {}

  Result<AgentCapacity> capacity() override {
    VANDRA_TRY_ASSIGN(auto j, client().get("/v1/host", std::chrono::seconds(10)));
    return agentCapacityFromJson(j);
  }

  Result<std::vector<AgentVm>> vms() override {
    VANDRA_TRY_ASSIGN(auto j, client().get("/v1/vms", std::chrono::seconds(10)));
    const json* list = &j;
    if (j.is_object() && j.contains("vms")) {
      list = &j["vms"];
    }
    if (!list->is_array()) {
      return badAnswer("VM list", "not an array");
    }
    std::vector<AgentVm> out;
    for (const auto& v : *list) {
      VANDRA_TRY_ASSIGN(auto vm, agentVmFromJson(v));
      out.push_back(std::move(vm));
    }
    return out;
  }

  Result<void> startVm(const std::string& vm) override {
    VANDRA_TRY(plainToken(vm, "VM id"));
    VANDRA_TRY(
        client().post("/v1/vms/" + vm + "/start", json::object(), std::chrono::seconds(120)));
    return {};
  }

  Result<void> stopVm(const std::string& vm) override {
    VANDRA_TRY(plainToken(vm, "VM id"));
    VANDRA_TRY(client().post("/v1/vms/" + vm + "/stop", json::object(), std::chrono::seconds(120)));
    return {};
  }

  Result<std::string> migrate(const std::string& vm, const AgentMove& move) override {
    VANDRA_TRY(plainToken(vm, "VM id"));
    json body = {{"to", move.to}};
    if (!move.networks.empty()) {  // an agent that predates the field is asked as before
      body["networks"] = move.networks;
    }
    VANDRA_TRY_ASSIGN(auto j,
                      client().post("/v1/vms/" + vm + "/migrate", body, std::chrono::seconds(60)));
    if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) {
      return badAnswer("migration answer", "no id");
    }
    return j["id"].get<std::string>();
  }

  Result<AgentMigration> migration(const std::string& id, uint64_t wait_ms) override {
    VANDRA_TRY(plainToken(id, "Migration id"));
    VANDRA_TRY_ASSIGN(auto j,
                      client().get("/v1/migrations/" + id + "?wait_ms=" + std::to_string(wait_ms),
                                   std::chrono::seconds(wait_ms / 1000 + 30)));
    return agentMigrationFromJson(j);
  }

  Result<void> cancel(const std::string& id) override {
    VANDRA_TRY(plainToken(id, "Migration id"));
    VANDRA_TRY(client().post("/v1/migrations/" + id + "/cancel", json::object(),
                             std::chrono::seconds(30)));
    return {};
  }

  Result<std::vector<AgentMigration>> migrations() override {
    VANDRA_TRY_ASSIGN(auto j, client().get("/v1/migrations", std::chrono::seconds(10)));
    const json* list = &j;
    if (j.is_object() && j.contains("migrations")) {
      list = &j["migrations"];
    }
    if (!list->is_array()) {
      return badAnswer("migration list", "not an array");
    }
    std::vector<AgentMigration> out;
    for (const auto& m : *list) {
      VANDRA_TRY_ASSIGN(auto rec, agentMigrationFromJson(m));
      out.push_back(std::move(rec));
    }
    return out;
  }

  Result<bool> sendPackage(const std::string& path, const std::string& name, bool lax) override {
    VANDRA_TRY_ASSIGN(auto j, client().uploadPackage(path, name, {}, lax));
    return !j.value("reused", false);
  }

  Result<void> deletePackage(const std::string& name) override {
    VANDRA_TRY(plainToken(name, "Package name"));
    VANDRA_TRY(client().del("/v1/packages/" + name, std::chrono::seconds(30)));
    return {};
  }

  Result<AgentVm> importVm(const AgentImport& r) override {
    json body = {{"id", r.id}, {"upload", r.upload}, {"networks", r.networks}};
    if (!r.vs.empty()) {
      body["vs"] = r.vs;
    }
    if (r.lax) {
      body["lax"] = true;
    }
    // Verifying and converting the disks of a large package takes a while.
    VANDRA_TRY_ASSIGN(auto j, client().post("/v1/vms", body, std::chrono::seconds(1800)));
    return agentVmFromJson(j);
  }

  void setEpoch(int64_t epoch) override { epoch_.store(epoch); }

  // Short: it is read every refresh and must not hold the loop up.
  Result<std::vector<LinkMeasurement>> links() override {
    VANDRA_TRY_ASSIGN(auto j, client().get("/v1/links", std::chrono::seconds(5)));
    return linkMeasurementsFromJson(j);
  }

  Result<void> announceEpoch() override {
    VANDRA_TRY(client().post("/v1/fence", json::object(), std::chrono::seconds(10)));
    return {};
  }

 private:
  agent::AgentClient client() {
    agent::AgentEndpoint ep = access_.endpoint;
    ep.epoch = epoch_.load();
    return agent::AgentClient(std::move(ep));
  }

  AgentAccess access_;
  std::atomic<int64_t> epoch_{0};
};

}  // namespace

std::unique_ptr<AgentLink> makeHttpAgentLink(const AgentAccess& access) {
  return std::make_unique<HttpAgentLink>(access);
}

Result<AgentCapacity> agentCapacityFromJson(const json& j) {
  try {
    AgentCapacity c;
    const auto& cap = j.at("capacity");
    const auto& used = j.at("used");
    c.vcpus = internal::whole<uint32_t>(cap.at("vcpus"));
    c.memory_mib = internal::whole<uint64_t>(cap.at("memory_mib"));
    c.disk_gib = internal::whole<uint64_t>(cap.at("disk_bytes")) >> 30;
    c.used_vcpus = internal::whole<uint32_t>(used.at("vcpus"));
    c.used_memory_mib = internal::whole<uint64_t>(used.at("memory_mib"));
    c.used_disk_gib = (internal::whole<uint64_t>(used.at("disk_bytes")) + (1ull << 30) - 1) >> 30;
    return c;
  } catch (const std::exception& e) {
    return badAnswer("host answer", e.what());
  }
}

Result<AgentVm> agentVmFromJson(const json& j) {
  try {
    AgentVm v;
    v.id = j.at("id").get<std::string>();
    v.state = j.at("state").get<std::string>();
    const auto& r = j.at("resources");
    v.vcpus = internal::whole<uint32_t>(r.at("vcpus"));
    v.memory_mib = internal::whole<uint64_t>(r.at("memory_mib"));
    v.disk_bytes = internal::whole<uint64_t>(r.at("disk_bytes"));
    if (j.contains("spec") && j["spec"].is_object()) {
      auto spec = ovf::vmSpecFromJson(j["spec"]);
      if (spec) {
        v.spec = std::move(*spec);
      }
    }
    return v;
  } catch (const std::exception& e) {
    return badAnswer("VM", e.what());
  }
}

Result<AgentMigration> agentMigrationFromJson(const json& j) {
  try {
    AgentMigration m;
    m.id = j.at("id").get<std::string>();
    m.vm = j.value("vm", "");
    m.role = j.value("role", "");
    m.peer = j.value("peer", "");
    m.phase = migrationPhaseFromString(j.value("phase", "")).value_or(MigrationPhase::Invalid);
    m.ended = j.value("ended", false);
    m.error = j.value("error", "");
    if (j.contains("report") && j["report"].is_object()) {
      const auto& r = j["report"];
      if (r.contains("interruption_ms") && r["interruption_ms"].is_number()) {
        m.interruption_ms = r["interruption_ms"].get<double>();
      }
      if (r.contains("downtime_budget_ms") && r["downtime_budget_ms"].is_number()) {
        m.budget_ms = internal::whole<uint32_t>(r["downtime_budget_ms"]);
      }
    }
    m.report_json = j.dump();
    return m;
  } catch (const std::exception& e) {
    return badAnswer("migration record", e.what());
  }
}

}  // namespace vandra::controller

namespace vandra::controller {

Result<std::vector<LinkMeasurement>> linkMeasurementsFromJson(const json& j) {
  if (!j.is_object() || !j.contains("links") || !j["links"].is_array()) {
    return badAnswer("link list", "no array 'links'");
  }
  if (j["links"].size() > kMaxAgentLinks) {
    return badAnswer("link list", "more than " + std::to_string(kMaxAgentLinks) + " links");
  }
  auto number = [](const json& v, double hi, const char* what) -> Result<double> {
    if (!v.is_number() || !(v.get<double>() >= 0) || v.get<double>() > hi) {
      return badAnswer("link", std::string(what) + " is not a number in 0.." +
                                   std::to_string(static_cast<int64_t>(hi)));
    }
    return v.get<double>();
  };
  std::vector<LinkMeasurement> out;
  try {
    for (const auto& e : j["links"]) {
      LinkMeasurement m;
      m.peer = e.at("peer").get<std::string>();
      if (m.peer.empty() || m.peer.size() > 64 ||
          m.peer.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
        return badAnswer("link", "peer '" + m.peer.substr(0, 64) + "' is no site name");
      }
      m.connected = e.at("connected").get<bool>();
      m.measured_at_ms = internal::whole<int64_t>(e.at("measured_at_ms"));
      if (e.contains("rtt_ms")) {
        VANDRA_TRY_ASSIGN(auto v, number(e["rtt_ms"], kMaxLinkRttMs, "rtt_ms"));
        m.rtt_ms = v;
        m.rtt_at_ms = internal::whole<int64_t>(e.at("rtt_at_ms"));
      }
      if (e.contains("throughput_mbps")) {
        VANDRA_TRY_ASSIGN(auto v, number(e["throughput_mbps"], kMaxLinkMbps, "throughput_mbps"));
        m.throughput_mbps = v;
        auto how = throughputMethodFromString(e.at("throughput_method").get<std::string>());
        if (!how) {
          return badAnswer("link", "throughput_method is neither migration nor probe");
        }
        m.throughput_method = *how;
        m.throughput_at_ms = internal::whole<int64_t>(e.at("throughput_at_ms"));
      }
      if (m.rtt_at_ms < 0 || m.throughput_at_ms < 0 || m.measured_at_ms < 0) {
        return badAnswer("link", "a negative time");
      }
      out.push_back(std::move(m));
    }
  } catch (const std::exception& e) {
    return badAnswer("link", e.what());
  }
  return out;
}

}  // namespace vandra::controller
