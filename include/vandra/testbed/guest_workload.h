// The test guest's checkable workload: what a live migration must carry without losing a
// write. In the guest (guest/programs, guest/README.md):
//   vguest-dirtier    rewrites a memory working set page by page (round robin, at a rate);
//   vguest-diskwriter rewrites a region of the data disk block by block with O_DIRECT.
// Every page or block carries its index, a generation and a checksum, so after the move
// verify() finds any page or block that is one write behind, including writes made during
// pre-copy and just before the pause.
//
//   host                                guest (over vguest-seqd, port 7000)
//   start()  -- EXEC vguest-dirtier start ... -->  resident dirtier  (STARTED pid=..)
//            -- EXEC vguest-diskwriter start ..->  resident writer   (STARTED pid=..)
//   ... migration: both keep writing through pre-copy, the pause and on the target ...
//   verify() -- EXEC vguest-dirtier check  ----->  stop, verify all pages: PASS | FAIL page=..
//            -- EXEC vguest-diskwriter check --->  stop, fsync, O_DIRECT read back: PASS | FAIL
//   stop()   -- EXEC vguest-X stop ------------->  exits
//
// A FAIL is a result (WorkloadReport::pass() false), not an error: errors are for the
// transport and for a guest that does not answer as the protocol says.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/testbed/guest_client.h"

namespace vandra::testbed {

struct WorkloadOptions {
  bool memory = true;  // run the dirtier
  int dirty_wss_mib = 16;
  int dirty_rate_mbps = 8;  // 0 = as fast as the guest can
  bool disk = true;         // run the disk writer
  std::string disk_device = "/dev/vdb";
  // The last 8 MiB of the default 64 MiB data disk: callers keep their vguest-diskpat
  // patterns out of [disk_offset_mib, disk_offset_mib + disk_len_mib).
  int disk_offset_mib = 56;
  int disk_len_mib = 8;
  int disk_rate_kibps = 512;  // 0 = as fast as the disk takes them
  // Test only: this 1-based write is counted but not stored (0 = none), to show that the
  // checkers catch one lost write.
  uint64_t lose_page_write = 0;
  uint64_t lose_block_write = 0;
};

/// One checker's verdict: its PASS/FAIL line as the guest printed it.
struct CheckResult {
  bool ran = false;  // false: that part of the workload was not started
  bool pass = false;
  std::string line;  // "PASS pages=N ..." or "FAIL page=I want_gen=G got_gen=H ..."
};

struct WorkloadReport {
  CheckResult memory;
  CheckResult disk;
  /// Every part that ran passed.
  bool pass() const { return (!memory.ran || memory.pass) && (!disk.ran || disk.pass); }
  /// "memory: PASS ...; disk: FAIL block=..." (the parts that ran).
  std::string describe() const;
};

/// The EXEC lines (program and arguments) that start the two parts.
std::string dirtierStartLine(const WorkloadOptions& o);
std::string diskWriterStartLine(const WorkloadOptions& o);

/// Reads a checker's output (lines without "OUT ") and exit code: PASS with 0, FAIL with 1,
/// anything else is an error (InvalidArgument with the output).
Result<CheckResult> parseCheck(const std::vector<std::string>& out, int exit_code);

class GuestWorkload {
 public:
  /// Starts the parts @p o asks for; returns once both write (after their initial fill).
  [[nodiscard]] static Result<GuestWorkload> start(
      GuestConnection& conn, const WorkloadOptions& o,
      std::chrono::milliseconds timeout = std::chrono::seconds(120));

  /// Stops the writes and verifies every page and block. Callable more than once (the
  /// verdict does not change once the writes stopped).
  [[nodiscard]] Result<WorkloadReport> verify(
      GuestConnection& conn, std::chrono::milliseconds timeout = std::chrono::seconds(180));

  /// Ends the resident programs (best effort is the caller's choice: errors are returned).
  [[nodiscard]] Result<void> stop(GuestConnection& conn,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(30));

  /// The handle of a workload start() already started with @p o (on any connection to the
  /// same guest): what verify() and stop() need is the options.
  static GuestWorkload attach(WorkloadOptions o) { return GuestWorkload(std::move(o)); }

  const WorkloadOptions& options() const { return options_; }

 private:
  explicit GuestWorkload(WorkloadOptions o) : options_(std::move(o)) {}
  WorkloadOptions options_;
};

}  // namespace vandra::testbed
