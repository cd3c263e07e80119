#include "vandra/common/migration_phase.h"

namespace vandra {

std::string_view toString(MigrationPhase p) {
  switch (p) {
    case MigrationPhase::Invalid:
      return "invalid";
    case MigrationPhase::Preflight:
      return "preflight";
    case MigrationPhase::PrepareTarget:
      return "prepare_target";
    case MigrationPhase::MirrorDisks:
      return "mirror_disks";
    case MigrationPhase::PrecopyRam:
      return "precopy_ram";
    case MigrationPhase::Switchover:
      return "switchover";
    case MigrationPhase::Confirm:
      return "confirm";
    case MigrationPhase::Done:
      return "done";
    case MigrationPhase::RollingBack:
      return "rolling_back";
    case MigrationPhase::RolledBack:
      return "rolled_back";
    case MigrationPhase::Failed:
      return "failed";
  }
  return "invalid";
}

std::optional<MigrationPhase> migrationPhaseFromString(std::string_view s) {
  for (MigrationPhase p : kAllPhases) {
    if (toString(p) == s) {
      return p;
    }
  }
  return std::nullopt;
}

}  // namespace vandra
