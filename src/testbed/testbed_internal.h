// Private to src/testbed: the state file and process handling that testbed.cc (up, down,
// status, restartAgent) builds on; implemented in resources.cc.
//
//   up:   record(resource) -> state file (fsync, rename) -> create it -> ... -> complete
//   down: load state file -> undo every resource, last first -> remove the file
//   process resources: found again by pid + start time + a marker in their command line
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/testbed/testbed.h"
#include "vandra/testbed/wan_emulator.h"

namespace vandra::testbed::internal {

inline constexpr std::chrono::seconds kReadyTimeout{15};  // an ASan emulator on a loaded host
inline constexpr std::chrono::seconds kStopTimeout{3};

struct Resource {
  std::string kind;         // netns | link | process | file | dir | tree (a folder removed whole)
  std::string name;         // netns / device name, process role, file path
  pid_t pid = -1;           // process: -1 until started
  uint64_t start_time = 0;  // process: /proc/<pid>/stat field 22
  std::string marker;       // process: text its command line must contain
  std::vector<std::string> argv;  // process: how it was started (restartAgent starts it again)
};

struct State {
  std::string id;
  std::string profile;
  std::vector<std::string> sites;  // names, in knownSites() order
  std::string congestion;          // the namespaces' TCP congestion control
  bool complete = false;
  std::vector<Resource> resources;
};

/// Reads a small file whole (state file, /proc entries, a log): at most @p limit bytes.
/// Errors: NotFound, Io.
Result<std::string> readSmall(const std::string& path, size_t limit = 1U << 20);
/// /proc/<pid>/cmdline with its NULs as spaces; "" when the process is gone.
std::string cmdlineOf(pid_t pid);

/// The state file of @p state_dir; nullopt when there is none. InvalidArgument when unusable.
Result<std::optional<State>> loadState(const std::string& state_dir);
/// Written beside and renamed over, with fsync, so a crash leaves the old or the new file.
Result<void> saveState(const std::string& state_dir, const State& s);

struct ProcStat {
  char state = '?';
  uint64_t start_time = 0;
};
std::optional<ProcStat> readProcStat(pid_t pid);
uint64_t startTimeOf(pid_t pid);
/// Starts @p argv in a new session, detached from our terminal and signal mask, stdout and
/// stderr to @p log_path; @p extra_fd (>= 0) is passed on as fd 3.
Result<pid_t> spawnDetached(const std::vector<std::string>& argv, const std::string& log_path,
                            int extra_fd);
int pidfdOpen(pid_t pid);
int pidfdSendSignal(int pidfd, int sig);
void reapIfChild(pid_t pid);
bool waitExit(int pidfd, std::chrono::milliseconds timeout);

enum class Presence { Gone, Ours, NotOurs };
/// Whether the recorded process still exists (and is the one recorded).
Presence presence(const Resource& r);
/// SIGTERM, then SIGKILL after kStopTimeout, through a pidfd; a process not ours is left.
Result<void> stopProcess(const Resource& r);
/// Ends every process inside network namespace @p netns.
Result<void> killNamespaceProcesses(const std::string& netns);
/// Waits for "ready\n" on @p fd. Errors: Timeout, Subprocess (closed without ready).
Result<void> waitReady(int fd, const std::string& log_path);

// ---- building (testbed.cc, links.cc, controller.cc) --------------------------------------

/// Appends resources to the state file: each is recorded before it is created.
class Builder {
 public:
  Builder(std::string dir, State& s) : dir_(std::move(dir)), s_(s) {}
  /// Records @p r in the state file; call before creating it.
  Result<Resource*> record(Resource r);
  Result<void> save();

 private:
  std::string dir_;
  State& s_;
};

/// "10.10.0.1" of "10.10.0.1/24".
std::string hostOf(const std::string& cidr);
/// `ip ARGS`, `ip -n NETNS ARGS`. Errors: Subprocess with ip's message.
Result<void> ip(std::initializer_list<std::string> args);
Result<void> ipIn(const std::string& netns, std::initializer_list<std::string> args);
bool netnsExists(const std::string& name);
/// A companion program: @p given, else $@p env_var, else next to the running program (or in
/// its build-tree folder build/apps/<name>/<name>). Errors: NotFound.
Result<std::string> findProgram(const std::string& given, const char* env_var,
                                const std::string& name);
/// Records log file and process (role @p role, found again by @p marker), then starts it.
Result<pid_t> startRecorded(Builder& b, const std::string& role,
                            const std::vector<std::string>& argv, const std::string& marker,
                            const std::string& log_path, int extra_fd);
/// The last @p n bytes of file @p path ("" when unreadable): for error messages.
std::string tailOf(const std::string& path, size_t n = 400);

/// Names, addresses and paths of a testbed with @p s's id, profile and sites (no pids).
TestbedInfo makeInfo(const State& s, const std::string& dir);
/// The specs of @p names; InvalidArgument for an unknown name, a repeated one or no dc.
Result<std::vector<const SiteSpec*>> selectSites(const std::vector<std::string>& names);

/// links.cc: one vandra-wanem per pair of sites, its TUNs moved into the two sites.
Result<void> makeLinks(Builder& b, const TestbedOptions& o, const Profile& profile,
                       const std::string& wanem, const State& state, TestbedInfo& info);
/// The process role of the emulator between @p a and @p b ("wanem-dc-cloud-eu").
std::string wanemRole(const std::string& a, const std::string& b);

/// The networks site @p name's bridge serves (its agent's --network, the site file's
/// networks): the test guest's and the demo's everywhere; at dc also "VM Network", what a
/// datacenter that came from VMware calls its LAN (VMware's default port group).
inline std::vector<std::string> siteNetworks(const std::string& name) {
  std::vector<std::string> out = {"vandra-test", "lan"};
  if (name == "dc") {
    out.push_back("VM Network");
  }
  return out;
}

/// controller.cc: CA, certificates, site file, vandra-controller started and answering.
Result<void> startController(Builder& b, const TestbedOptions& o, const std::string& program,
                             TestbedInfo& info);
/// The controller's port from its port file ("" when none was written).
std::string controllerEndpoint(const TestbedInfo& info);
/// "https://ENDPOINT/" when the controller serves the console (its users file exists), else "".
std::string consoleUrl(const TestbedInfo& info);

}  // namespace vandra::testbed::internal
