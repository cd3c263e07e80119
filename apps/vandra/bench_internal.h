// What the systems of `vandra bench migrate` share: a run's row, the workload, the data
// check and the measurements every system gets alike (bench_migrate.cc has the rules).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bench_migrate.h"
#include "vandra/agent/agent_client.h"
#include "vandra/common/result.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/testbed.h"

namespace vandra::cli::bench {

inline constexpr const char* kGuestIp = "10.10.0.10";

struct MigrateRun {
  std::string system;
  std::string profile;
  std::string result = "ok";
  double total_s = 0;  // first action at either site (target QEMU start included) -> guest runs
  uint64_t downtime_ms = 0;
  double client_max_gap_ms = 0;
  double client_max_gap_end_s = 0;  // when that gap ended, seconds after the migration began
  uint64_t tcp_bytes_lost = 0;
  uint64_t wan_bytes = 0;
  uint64_t tcp_retransmitted = 0;  // segments dc's namespace sent again meanwhile
  double cpu_s = 0;                // the migration machinery only (MachineryCpu)
  std::string congestion;          // the testbed's TCP congestion control (all systems)
  int connections = 0;             // TCP connections over the WAN: tunnel's, or QEMU's (RAM + NBD)
  nlohmann::json detail = nlohmann::json::object();
};

nlohmann::json toJson(const MigrateRun& r);

/// CPU seconds of the migration machinery: every thread of every process in the two site
/// namespaces (the agents, QEMU, their helpers) except QEMU's vCPU threads ("CPU n/TCG",
/// the guest's own work). The WAN emulator (root namespace), the client and this command are
/// left out, for every system alike. Sampled every 100 ms from /proc (a thread that ends
/// loses at most its last 100 ms); sample() once more before killing a process.
class MachineryCpu {
 public:
  explicit MachineryCpu(const testbed::TestbedInfo& tb);
  ~MachineryCpu();
  MachineryCpu(const MachineryCpu&) = delete;
  MachineryCpu& operator=(const MachineryCpu&) = delete;
  void sample();
  /// Stops sampling (after one last sample); the CPU seconds since construction.
  double stop();

 private:
  struct Seen {
    uint64_t first = 0;
    uint64_t last = 0;
  };
  std::vector<uint64_t> netns_inodes_;
  std::mutex mu_;
  std::map<std::tuple<pid_t, pid_t, uint64_t>, Seen> threads_;  // pid, tid, start time
  bool first_pass_ = true;
  std::atomic<bool> stop_{false};
  std::thread sampler_;
};

uint64_t wanBytes(const testbed::TestbedInfo& tb);
uint64_t retransmittedSegments(const testbed::TestbedInfo& tb);

/// The guest at dc answers; its workload started: a disk pattern and a dirtier.
Result<testbed::GuestConnection> startWorkload(const testbed::TestbedInfo& tb,
                                               const BenchMigrateOptions& o);
/// After the run: the session's account, and the guest's data checked where it runs now.
/// A lost TCP byte or a failed check fails the run.
void finish(MigrateRun& r, testbed::SessionProbe& probe, testbed::GuestConnection& conn,
            const BenchMigrateOptions& o, std::chrono::duration<double> probe_to_begin);

/// One move of VM @p id by vandra from the site of @p src to @p to, the guest's workload
/// running and the client's session watched throughout (a row named @p system).
Result<MigrateRun> moveVandra(const testbed::TestbedInfo& tb, agent::AgentClient& src,
                              const std::string& to, const std::string& id,
                              testbed::GuestConnection& conn, const BenchMigrateOptions& o,
                              const std::string& system);

/// A fresh work folder under the temporary directory, named after @p prefix.
Result<std::string> makeWorkDir(const std::string& prefix);
/// The bench's testbed in @p work: the agents of dc and cloud-eu on @p profile, no controller,
/// every namespace on TCP congestion control @p congestion.
testbed::TestbedOptions benchTestbed(const std::string& work, const std::string& profile,
                                     const std::string& congestion);
/// An operator's client of @p site's agent.
agent::AgentClient agentClient(const testbed::SiteInfo& site);

/// The inode of a network namespace file (/run/netns/NAME, /proc/PID/ns/net); 0 if none.
uint64_t netnsInode(const std::string& path);
/// The entries of @p dir whose names start with a digit (/proc's processes, a task list).
std::vector<std::string> numericEntries(const std::string& dir);

/// The QEMU baselines (bench_qemu.cc): "qemu" (@p tuned false) or "qemu-tuned".
Result<MigrateRun> runQemu(const testbed::TestbedInfo& tb, const std::string& ova,
                           const std::string& work, const BenchMigrateOptions& o, int n,
                           bool tuned);

}  // namespace vandra::cli::bench
