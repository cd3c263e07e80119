// `vandra bench soak`: one guest moved back and forth between dc and cloud-eu many times by
// vandra, its verifying workload running throughout (bench_soak.cc has the rules).
#pragma once

#include <string>

namespace vandra::cli {

struct BenchSoakOptions {
  std::string guest_dir;  // guest/build.sh output
  std::string profile = "lan";
  int migrations = 100;
  bool json = false;
  int disk_data_mib = 16;  // the disk pattern checked after every move
  int wss_mib = 16;        // the dirtier's working set
  int dirty_mbps = 10;     // and its rate
  int max_total_s = 300;   // one move not done by then: a failed move
  int between_s = 1;       // the guest runs this long at each site before it moves on
};

/// Exit 0 when every move succeeded, every check passed and neither agent grew (memory, file
/// descriptors, threads, QEMU processes, files kept, disk chains).
int benchSoak(const BenchSoakOptions& options);

}  // namespace vandra::cli
