#include "vandra/testbed/guest_workload.h"

namespace vandra::testbed {
namespace {

std::string joinLines(const std::vector<std::string>& out) {
  std::string s;
  for (const auto& l : out) {
    s += (s.empty() ? "" : " | ") + l;
  }
  return s;
}

// "STARTED pid=..." or an error naming the program and what it printed.
Result<void> expectStarted(const GuestConnection::ExecResult& r, const std::string& what) {
  for (const auto& l : r.out) {
    if (l.rfind("STARTED ", 0) == 0 && r.exit_code == 0) {
      return {};
    }
  }
  return fail(ErrorCode::Internal, what + " did not start (exit " + std::to_string(r.exit_code) +
                                       "): " + joinLines(r.out));
}

// Losing a write on purpose is an option of the guest programs only, never of a real run.
std::string loseOption(uint64_t n) {
  return n == 0 ? "" : " -L " + std::to_string(n);
}

}  // namespace

std::string WorkloadReport::describe() const {
  std::string s;
  if (memory.ran) {
    s += "memory: " + memory.line;
  }
  if (disk.ran) {
    s += (s.empty() ? "" : "; ") + std::string("disk: ") + disk.line;
  }
  return s.empty() ? "no workload" : s;
}

std::string dirtierStartLine(const WorkloadOptions& o) {
  return "vguest-dirtier start" + loseOption(o.lose_page_write) + " " +
         std::to_string(o.dirty_wss_mib) + " " + std::to_string(o.dirty_rate_mbps);
}

std::string diskWriterStartLine(const WorkloadOptions& o) {
  return "vguest-diskwriter start" + loseOption(o.lose_block_write) + " " + o.disk_device + " " +
         std::to_string(o.disk_offset_mib) + " " + std::to_string(o.disk_len_mib) + " " +
         std::to_string(o.disk_rate_kibps);
}

Result<CheckResult> parseCheck(const std::vector<std::string>& out, int exit_code) {
  for (const auto& l : out) {
    const bool pass = l.rfind("PASS ", 0) == 0;
    const bool failed = l.rfind("FAIL ", 0) == 0;
    if ((pass && exit_code == 0) || (failed && exit_code == 1)) {
      return CheckResult{true, pass, l};
    }
  }
  return fail(ErrorCode::InvalidArgument, "No verdict from the checker (exit " +
                                              std::to_string(exit_code) + "): " + joinLines(out));
}

Result<GuestWorkload> GuestWorkload::start(GuestConnection& conn, const WorkloadOptions& o,
                                           std::chrono::milliseconds timeout) {
  if (o.memory) {
    VANDRA_TRY_ASSIGN(auto r, conn.exec(dirtierStartLine(o), timeout));
    VANDRA_TRY(expectStarted(r, "vguest-dirtier"));
  }
  if (o.disk) {
    VANDRA_TRY_ASSIGN(auto r, conn.exec(diskWriterStartLine(o), timeout));
    VANDRA_TRY(expectStarted(r, "vguest-diskwriter"));
  }
  return GuestWorkload(o);
}

Result<WorkloadReport> GuestWorkload::verify(GuestConnection& conn,
                                             std::chrono::milliseconds timeout) {
  WorkloadReport rep;
  if (options_.memory) {
    VANDRA_TRY_ASSIGN(auto r, conn.exec("vguest-dirtier check", timeout));
    VANDRA_TRY_ASSIGN(rep.memory, parseCheck(r.out, r.exit_code));
  }
  if (options_.disk) {
    VANDRA_TRY_ASSIGN(auto r, conn.exec("vguest-diskwriter check", timeout));
    VANDRA_TRY_ASSIGN(rep.disk, parseCheck(r.out, r.exit_code));
  }
  return rep;
}

Result<void> GuestWorkload::stop(GuestConnection& conn, std::chrono::milliseconds timeout) {
  for (const auto& [on, prog] : {std::pair{options_.memory, "vguest-dirtier"},
                                 std::pair{options_.disk, "vguest-diskwriter"}}) {
    if (!on) {
      continue;
    }
    VANDRA_TRY_ASSIGN(auto r, conn.exec(std::string(prog) + " stop", timeout));
    if (r.exit_code != 0) {
      return fail(ErrorCode::Internal, std::string(prog) + " stop: " + joinLines(r.out));
    }
  }
  return {};
}

}  // namespace vandra::testbed
