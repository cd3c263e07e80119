// GoogleMock fake of MigrationHost (orchestrator/migration_host.h): what the migration
// protocol asks of one site's agent, so tests can make any of it fail without QEMU or root.
#pragma once

#include <gmock/gmock.h>

#include "vandra/orchestrator/migration_host.h"

namespace vandra::orchestrator::testing {

class MockMigrationHost : public MigrationHost {
 public:
  MOCK_METHOD(Result<HostVm>, vm, (const std::string& vm_id), (override));
  MOCK_METHOD((Result<std::map<std::string, std::string>>), diskBases, (const std::string& vm_id),
              (override));
  MOCK_METHOD(Result<migration::SwitchoverResult>, migrateOut,
              (const agent::OutgoingRequest& request, migration::SourceMigration& state),
              (override));
  MOCK_METHOD(Result<void>, releaseMigrated,
              (const std::string& vm_id, const std::string& migration_id), (override));
  MOCK_METHOD(Result<void>, resumeAfterFailedSwitchover, (const std::string& vm_id), (override));
  MOCK_METHOD(Result<void>, cancelStrayMigration, (const std::string& vm_id), (override));
  MOCK_METHOD(Result<migration::MigrationProgress>, postcopyProgress, (const std::string& vm_id),
              (override));
  MOCK_METHOD(Result<void>, pausePostcopyOut, (const std::string& vm_id), (override));
  MOCK_METHOD(Result<void>, resumePostcopyOut,
              (const std::string& vm_id, const std::string& migration_socket,
               std::chrono::steady_clock::time_point deadline),
              (override));
  MOCK_METHOD(Result<agent::Resources>, freeCapacity, (), (override));
  MOCK_METHOD(Result<void>, checkFits, (const agent::Resources& request), (override));
  MOCK_METHOD(bool, hasBase, (const std::string& digest), (override));
  MOCK_METHOD(std::optional<std::string>, basePath, (const std::string& digest), (override));
  MOCK_METHOD(Result<void>, prepareIncoming, (const agent::IncomingRequest& request), (override));
  MOCK_METHOD(Result<uint64_t>, finishIncoming,
              (const std::string& vm_id, bool resume,
               std::chrono::steady_clock::time_point deadline),
              (override));
  MOCK_METHOD(Result<void>, abortIncoming, (const std::string& vm_id), (override));
  MOCK_METHOD(Result<void>, recoverPostcopyIn,
              (const std::string& vm_id, const std::string& migration_socket,
               std::chrono::steady_clock::time_point deadline),
              (override));
};

}  // namespace vandra::orchestrator::testing
