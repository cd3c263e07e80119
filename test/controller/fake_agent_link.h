// An agent for the controller's unit tests: a scripted capacity, VM list and migrations that
// the test ends when it wants (migration() waits for that like the real long poll does).
// The real link is tested against real agents in test/controller/controller_testbed_test.cc.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "vandra/agent/agent_service.h"
#include "vandra/controller/agent_link.h"
#include "vandra/ovf/inspect.h"

namespace vandra::controller::testing {

struct FakeAgentState {
  std::mutex mu;
  std::condition_variable cv;
  AgentCapacity capacity{8, 16384, 500, 0, 0, 0};
  std::vector<AgentVm> vms;
  std::map<std::string, AgentMigration> migrations;
  std::vector<std::string> calls;  // "migrate web1 cloud", "start web1", ...
  int64_t epoch = 0;
  int64_t announced = 0;  // the last epoch announced (POST /v1/fence)
  bool down = false;      // every call fails with Io
  /// GET /v1/links; nullopt: the agent does not know the route (an older agent).
  std::optional<std::vector<LinkMeasurement>> links;
  int links_calls = 0;
  int next_id = 1;
  std::map<std::string, ovf::VmSpec> packages;  // uploads the agent holds, as read
  std::optional<Error> import_error;            // the next import fails with it

  void addVm(const std::string& id, const std::string& state, uint32_t vcpus, uint64_t mem,
             const ovf::Sla& sla, std::vector<std::string> networks = {}) {
    std::lock_guard lock(mu);
    AgentVm v;
    v.id = id;
    v.state = state;
    v.vcpus = vcpus;
    v.memory_mib = mem;
    v.disk_bytes = 1ull << 30;
    ovf::VmSpec spec;
    ovf::VirtualSystemSpec vs;
    vs.id = id;
    vs.vcpus = vcpus;
    vs.memory_mib = mem;
    vs.sla = sla;
    for (auto& n : networks) {
      vs.nics.push_back({n, "virtio", std::nullopt, true});
    }
    spec.virtual_systems.push_back(vs);
    v.spec = spec;
    vms.push_back(v);
    capacity.used_vcpus += vcpus;
    capacity.used_memory_mib += mem;
  }
  void removeVm(const std::string& id) {
    std::lock_guard lock(mu);
    std::erase_if(vms, [&](const AgentVm& v) { return v.id == id; });
  }
  void endMigration(const std::string& id, MigrationPhase phase, std::optional<double> ms,
                    std::string error = "") {
    std::lock_guard lock(mu);
    auto& m = migrations.at(id);
    m.phase = phase;
    m.ended = true;
    m.interruption_ms = ms;
    m.error = std::move(error);
    cv.notify_all();
  }
};

class FakeAgentLink final : public AgentLink {
 public:
  explicit FakeAgentLink(std::shared_ptr<FakeAgentState> s) : s_(std::move(s)) {}

  Result<AgentCapacity> capacity() override {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    return s_->capacity;
  }
  Result<std::vector<AgentVm>> vms() override {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    return s_->vms;
  }
  Result<void> startVm(const std::string& vm) override { return record("start " + vm); }
  Result<void> stopVm(const std::string& vm) override { return record("stop " + vm); }
  // Recorded as "migrate VM TO epoch N", then " networks FROM=TO ..." when it renames any.
  Result<std::string> migrate(const std::string& vm, const AgentMove& move) override {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    std::string nets;
    for (const auto& [from, to] : move.networks) {
      nets += (nets.empty() ? " networks " : " ") + from + "=" + to;
    }
    s_->calls.push_back("migrate " + vm + " " + move.to + " epoch " + std::to_string(s_->epoch) +
                        nets);
    AgentMigration m;
    m.id = "m" + std::to_string(s_->next_id++);
    m.vm = vm;
    m.role = "source";
    m.peer = move.to;
    m.phase = MigrationPhase::PrecopyRam;
    m.report_json = R"({"fake": true})";
    s_->migrations[m.id] = m;
    return m.id;
  }
  Result<AgentMigration> migration(const std::string& id, uint64_t wait_ms) override {
    std::unique_lock lock(s_->mu);
    VANDRA_TRY(up());
    auto it = s_->migrations.find(id);
    if (it == s_->migrations.end()) {
      return fail(ErrorCode::NotFound, "no migration " + id);
    }
    s_->cv.wait_for(lock, std::chrono::milliseconds(wait_ms),
                    [&] { return s_->migrations.at(id).ended || s_->down; });
    return s_->migrations.at(id);
  }
  // As the real agent: refused once past the copy phases, else rolled back at once.
  Result<void> cancel(const std::string& id) override {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    s_->calls.push_back("cancel " + id);
    auto it = s_->migrations.find(id);
    if (it == s_->migrations.end()) {
      return fail(ErrorCode::NotFound, "no migration " + id);
    }
    AgentMigration& m = it->second;
    if (m.ended || m.phase == MigrationPhase::Switchover || m.phase == MigrationPhase::Confirm) {
      return fail(ErrorCode::IllegalTransition, "too late to cancel " + id);
    }
    m.phase = MigrationPhase::RolledBack;
    m.ended = true;
    m.error = "the operator cancelled it";
    s_->cv.notify_all();
    return {};
  }
  Result<std::vector<AgentMigration>> migrations() override {
    std::lock_guard lock(s_->mu);
    std::vector<AgentMigration> out;
    for (auto& [id, m] : s_->migrations) {
      out.push_back(m);
    }
    return out;
  }
  // The package is read for real (its descriptor), and the import maps its networks with the
  // agent's own function: what the controller hands over is checked, not just recorded.
  Result<bool> sendPackage(const std::string& path, const std::string& name, bool lax) override {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    s_->calls.push_back("upload " + name);
    if (s_->packages.contains(name)) {
      return false;
    }
    ovf::InspectOptions o;
    o.lax = lax;
    VANDRA_TRY_ASSIGN(auto insp, ovf::inspectPackage(path, o));
    s_->packages[name] = insp.spec;
    return true;
  }
  Result<void> deletePackage(const std::string& name) override {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    s_->calls.push_back("delete upload " + name);
    if (s_->packages.erase(name) == 0) {
      return fail(ErrorCode::NotFound, "no upload " + name);
    }
    return {};
  }
  Result<AgentVm> importVm(const AgentImport& r) override {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    std::string nets;
    for (const auto& [from, to] : r.networks) {
      nets += " " + from + "=" + to;
    }
    s_->calls.push_back("import " + r.id + " " + r.upload + nets);
    if (s_->import_error) {
      Error e = *s_->import_error;
      s_->import_error.reset();
      return fail(std::move(e));
    }
    auto it = s_->packages.find(r.upload);
    if (it == s_->packages.end()) {
      return fail(ErrorCode::NotFound, "no upload " + r.upload);
    }
    ovf::VmSpec spec = it->second;
    spec.virtual_systems.resize(1);
    VANDRA_TRY(agent::mapNetworks(spec, r.networks));
    const auto& vs = spec.virtual_systems.front();
    AgentVm v;
    v.id = r.id;
    v.state = "created";
    v.vcpus = vs.vcpus;
    v.memory_mib = vs.memory_mib;
    for (const auto& d : vs.disks) {
      v.disk_bytes += d.capacity_bytes;
    }
    v.spec = spec;
    s_->vms.push_back(v);
    s_->capacity.used_vcpus += v.vcpus;
    s_->capacity.used_memory_mib += v.memory_mib;
    return v;
  }
  void setEpoch(int64_t epoch) override {
    std::lock_guard lock(s_->mu);
    s_->epoch = epoch;
  }
  Result<std::vector<LinkMeasurement>> links() override {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    ++s_->links_calls;
    if (!s_->links) {
      return fail(ErrorCode::NotFound, "no route /v1/links");
    }
    return *s_->links;
  }
  Result<void> announceEpoch() override {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    s_->announced = s_->epoch;
    return {};
  }

 private:
  Result<void> up() const {
    if (s_->down) {
      return fail(ErrorCode::Io, "fake agent down");
    }
    return {};
  }
  Result<void> record(const std::string& call) {
    std::lock_guard lock(s_->mu);
    VANDRA_TRY(up());
    s_->calls.push_back(call);
    return {};
  }
  std::shared_ptr<FakeAgentState> s_;
};

}  // namespace vandra::controller::testing
