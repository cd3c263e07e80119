// `vandra bench migrate`: vandra's live migration side by side with plain QEMU's over the
// same emulated link (bench_migrate.cc has the comparison's rules).
#pragma once

#include <string>

namespace vandra::cli {

struct BenchMigrateOptions {
  std::string
      guest_dir;  // guest/build.sh output (the benchmark guest: --memory-mib 1024 --disk-mib 1024)
  std::string profile = "wan";
  int runs = 1;
  bool json = false;
  int disk_data_mib = 200;     // written to the data disk before the migration
  int wss_mib = 64;            // the dirtier's working set
  int dirty_mbps = 50;         // and its rate
  int tunnel_connections = 1;  // the agents' --tunnel-connections
  int max_total_s = 600;       // either system: not done by then is a failed run
};

/// Exit 0 when every run of both systems succeeded.
int benchMigrate(const BenchMigrateOptions& options);

}  // namespace vandra::cli
