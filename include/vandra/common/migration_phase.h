// The phases of one live migration, shared by everything that names them: the orchestrator's
// transition table (vandra/orchestrator/migration_phase.h), its records and API, and the
// tunnel's control messages (abort and progress carry the sender's phase by these names).
// The diagram and the legal transitions are in the orchestrator's header.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace vandra {

/// Persisted: values are stable, 0 is never valid.
enum class MigrationPhase : uint8_t {
  Invalid = 0,
  Preflight = 1,      // capacity, CPU/machine, networks, SLA checked; nothing changed yet
  PrepareTarget = 2,  // target disks, QEMU -incoming, NBD exports being made
  MirrorDisks = 3,    // blockdev-mirror to the target's exports until READY
  PrecopyRam = 4,     // RAM pre-copy until QEMU pauses the source before switchover
  Switchover = 5,     // source paused, mirrors completed, last pages, target starting
  Confirm = 6,        // target runs the guest; source QEMU stopped and its disks released
  Done = 7,           // terminal: the VM lives at the target
  RollingBack = 8,    // undoing: source resumed, target artefacts removed
  RolledBack = 9,     // terminal: the VM runs on the source as before
  Failed = 10,        // terminal: rollback could not finish; an operator must look
};
inline constexpr MigrationPhase kAllPhases[] = {
    MigrationPhase::Preflight,  MigrationPhase::PrepareTarget, MigrationPhase::MirrorDisks,
    MigrationPhase::PrecopyRam, MigrationPhase::Switchover,    MigrationPhase::Confirm,
    MigrationPhase::Done,       MigrationPhase::RollingBack,   MigrationPhase::RolledBack,
    MigrationPhase::Failed};

/// "preflight", "prepare_target", "mirror_disks", "precopy_ram", "switchover", "confirm",
/// "done", "rolling_back", "rolled_back", "failed"; "invalid" for anything else.
std::string_view toString(MigrationPhase p);
/// The phase named @p s (toString's names), or nullopt.
std::optional<MigrationPhase> migrationPhaseFromString(std::string_view s);

}  // namespace vandra
