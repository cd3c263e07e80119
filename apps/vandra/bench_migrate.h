// `vandra bench migrate`: vandra's live migration side by side with plain QEMU's and with the
// best QEMU alone can do, over the same emulated link (bench_migrate.cc has the rules).
#pragma once

#include <string>
#include <vector>

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
  int max_total_s = 600;       // any system: not done by then is a failed run
  /// Which systems run, in this order in the first run (then rotating): vandra, qemu,
  /// qemu-tuned.
  std::vector<std::string> systems = {"qemu", "qemu-tuned", "vandra"};
  /// TCP congestion control of the whole testbed (every system); "": defaultCongestion().
  std::string congestion;
  int multifd_channels = 2;  // qemu-tuned's multifd channels
  /// vandra's tunnel only, for experiments (e.g. "auto"); "": the testbed's, like the others.
  std::string tunnel_congestion;
  /// vandra's tunnel only, for experiments: the receive window per stream (MiB); 0: vandrad's.
  int tunnel_window_mib = 0;
  /// vandra's tunnel only, for experiments: "fixed" or "follow" (vandrad --tunnel-window); "":
  /// vandrad's default.
  std::string tunnel_window;
  /// What the guest's disk and page cache hold: "random" (a pseudo-random disk pattern of
  /// disk_data_mib, the worst case) or "real" (the real files guest/build.sh --real-files-mib
  /// put on the data disk, read into the page cache first).
  std::string content = "random";
  /// "real": where the file system ends on the data disk (content.json's fs_mib; the disk
  /// writer works after it). Set by benchMigrate.
  int content_fs_mib = 0;
  /// Return trips (issue 17): vandra moves the guest back this many seconds after its move
  /// out, its workload running meanwhile; the way back is a row of its own ("vandra-back").
  /// Negative: no move back.
  int return_after_s = -1;
  /// System "vandra-seeded": the guest exported at dc (vandra vm export), the OVA seeded at
  /// cloud-eu (vandra vm seed), then moved after it ran this long, its workload writing.
  int seed_age_s = 10;
};

/// The congestion control the bench uses on @p profile unless told otherwise (by
/// measurement: docs/adr/0018-congestion-control-per-link.md).
std::string defaultCongestion(const std::string& profile);

/// Exit 0 when every run of every system succeeded.
int benchMigrate(const BenchMigrateOptions& options);

}  // namespace vandra::cli
