// An operator's word on a source migration that cannot settle because its target site cannot
// be reached (docs/migration/orchestrator.md, "Resolving by hand"). The source never resumes
// a guest paused for a switchover without the target's word, so without that word only an
// operator who knows the other side's fate can end it:
//
//   source waits (switchover/confirm, settler asking the peer: report.waiting)
//      |  POST /v1/migrations/{id}/resolve {"action", "reason"}   (who: the client certificate)
//      v  checkResolvable: a source, in switchover/confirm, waiting for the peer; else 409
//   resume-source  (switchover only: the target never started the guest)
//      store: rolling_back (operator_resume) -> cancel QEMU's migration / cont, announce
//      store: rolled_back (or failed, with the leftovers)
//   abandon-source (the target runs the guest)
//      store: report.resolution first -> quit the source QEMU, release its overlays
//      store: done (operator_abandon), or failed (lost) when the release failed
//   either way: report.resolution {action, reason, who, at_us, result}, event
//   `migration-resolved` in the agent's event log.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "vandra/agent/agent_service.h"
#include "vandra/orchestrator/migration_store.h"

namespace vandra::orchestrator {

enum class ResolveAction : uint8_t {
  ResumeSource = 1,   // the target never ran the guest: run the paused copy here again
  AbandonSource = 2,  // the target runs the guest: let the source's copy go
};
std::string_view toString(ResolveAction a);  // "resume-source", "abandon-source"
std::optional<ResolveAction> resolveActionFromString(std::string_view s);

struct Resolution {
  ResolveAction action = ResolveAction::ResumeSource;
  std::string reason;  // the operator's words: 1..500 characters
  std::string who;     // the client certificate's name ("" when unknown)
};

/// Whether @p action may end @p record now; @p waiting: the settler holds it (it has asked
/// the peer and got no word). Errors: IllegalTransition saying why (a target's record, ended,
/// not in switchover/confirm, not waiting for the peer, resume after the target started).
[[nodiscard]] Result<void> checkResolvable(const MigrationRecord& record, ResolveAction action,
                                           bool waiting);

/// Applies @p how to @p record (checkResolvable passed): see the diagram. Returns the final
/// record (rolled_back, done or failed). Errors: the store's.
[[nodiscard]] Result<MigrationRecord> resolveSourceMigration(agent::AgentService& agent,
                                                             MigrationStore& store,
                                                             MigrationRecord record,
                                                             const Resolution& how);

/// Notes in @p record's report what a source waits for (report.waiting: `for`, `since_us`:
/// when it entered its phase, else the first note; `last_try_us`, `tries`), from its last
/// settle try, or @p fallback (the dial's error when no try could be made).
void noteWaiting(MigrationRecord& record, const std::string& fallback, int64_t now_us);

/// Adds `waiting_for` and `waiting_since` (RFC 3339, UTC) / `waiting_since_us` to a record's
/// JSON while it has not ended and its report says it waits.
void addWaitingFields(nlohmann::json& out, const MigrationRecord& record);

}  // namespace vandra::orchestrator
