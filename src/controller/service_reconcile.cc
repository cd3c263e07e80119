// Reconciling with what the agents did on their own: agents keep running and moving VMs
// whatever happens to the controller (an operator may use an agent's API directly, also
// while no controller runs). A VM an agent lists at another site than the controller
// recorded, with no migration of the controller's under way, was moved without it: the move
// is recorded as an ended migration, with the source agent's own record of it when that agent
// still has one, so that the VM's history and the SLA's accounting stay whole.
#include "vandra/controller/service.h"

namespace vandra::controller {

void ControllerService::recordUnfollowedMove(const std::string& vm, const std::string& from,
                                             const std::string& to) {
  auto running = store_.migrations(vm, 1, true);
  if (!running || !running->empty()) {
    return;  // the controller's own move: follow() records its end
  }
  auto recorded = store_.migrations(vm, 100);
  if (!recorded) {
    return;
  }
  auto known = [&](const std::string& agent_id) {
    return std::any_of(recorded->begin(), recorded->end(),
                       [&](const Migration& m) { return m.agent_migration_id == agent_id; });
  };
  // The source agent's record: the newest ended, successful move of this VM to @p to that no
  // migration here names (one of the controller's own may have ended since we looked).
  std::optional<AgentMigration> rec;
  if (AgentLink* source = linkFor(from); source != nullptr) {
    if (auto list = source->migrations(); list) {
      for (const auto& r : *list) {
        if (r.vm == vm && r.role == "source" && r.ended && r.phase == MigrationPhase::Done &&
            (r.peer.empty() || r.peer == to)) {
          if (known(r.id)) {
            rec.reset();  // a later one in the list may still be new
            continue;
          }
          rec = r;
        }
      }
    }
  }
  Migration m;
  m.vm = vm;
  m.from_site = from;
  m.to_site = to;
  m.state = MigrationState::Done;
  m.reason = MoveReason::Operator;
  m.why = "moved without the controller (at the agents)";
  m.requested_by = "agent at " + from;
  m.epoch = leader().epoch;
  m.started_at_ms = now();
  m.finished_at_ms = m.started_at_ms;
  if (auto vm_rec = store_.vm(vm); vm_rec) {
    m.budget_ms = vm_rec->sla.downtime_budget_ms;  // unless the agent's record names one
  }
  if (rec) {
    m.agent_migration_id = rec->id;
    m.downtime_ms = rec->interruption_ms;
    if (rec->budget_ms) {
      m.budget_ms = rec->budget_ms;
    }
    m.report_json = rec->report_json;
  }
  if (m.downtime_ms && m.budget_ms) {
    m.within_budget = *m.downtime_ms <= static_cast<double>(*m.budget_ms);
  }
  if (!store_.addMigration(m)) {
    return;
  }
  std::string what = from + " -> " + to + ": moved without the controller";
  if (rec) {
    what += " (agent migration " + rec->id + ")";
  }
  if (m.downtime_ms) {
    what += ", interruption " + std::to_string(static_cast<int64_t>(*m.downtime_ms)) + " ms";
  }
  (void)store_.appendEvent({0, now(), m.within_budget == false ? "sla" : "migration", vm, what});
}

}  // namespace vandra::controller
