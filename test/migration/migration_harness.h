// Test harness for the migration engine against real QEMU 7.2 (TCG): the test guest
// (guest/) booted from its own disk by the command line builder's argv, two QEMUs (source
// and `-incoming defer` destination) whose NICs are taps on one bridge inside a network
// namespace the harness creates, their QMP monitors (commands + events), and a client of
// the guest's vguest-seqd service. Everything is removed when the objects go.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "vandra/common/subprocess.h"
#include "vandra/common/unique_fd.h"
#include "vandra/migration/qemu_migration.h"
#include "vandra/ovf/vm_spec.h"
#include "vandra/qmp/qmp_client.h"
#include "vandra/tunnel/forward.h"

namespace vandra::migtest {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

inline constexpr const char* kGuestIp = "10.10.0.10";
inline constexpr int kGuestPort = 7000;

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};
Outcome run(const std::vector<std::string>& argv);
bool onPath(const std::string& prog);
std::string slurp(const fs::path& p);

/// A short folder under /tmp (unix socket paths must stay under 108 bytes), removed with
/// everything in it.
struct TempDir {
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  fs::path path;
};

/// What a real-QEMU migration test needs; empty when all is there, else why it must skip.
std::string missingPrerequisites();

/// The built test guest folder (VANDRA_GUEST_DIR, the build tree's test/guest/guest-out, or
/// built now by guest/build.sh into this test's build folder). Empty path + @p why when none.
fs::path findGuest(std::string& why);

/// A network namespace with bridge vmbr0 (10.10.0.1/24) and taps enslaved to it.
class BridgeNetns {
 public:
  explicit BridgeNetns(std::string name);
  BridgeNetns(const BridgeNetns&) = delete;
  BridgeNetns& operator=(const BridgeNetns&) = delete;
  ~BridgeNetns();
  /// Empty on success; @p cannot is set when namespaces cannot be made here (skip).
  std::string create(const std::vector<std::string>& taps, bool& cannot);
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::vector<std::string> taps_;
  bool created_ = false;
};

/// One QEMU process with both monitors; events go to `events`.
struct QemuVm {
  std::string label;  // "source", "target-1", ...
  fs::path dir;       // its own folder (sockets, serial log, disks)
  std::optional<Subprocess> process;
  std::unique_ptr<migration::EventWaiter> events;
  qmp::QmpClientPtr qmp;         // commands
  qmp::QmpClientPtr qmp_events;  // events only
  fs::path serial_log;
  std::string stderr_text;  // QEMU's stderr, once it has ended (kill()/quit())

  QemuVm() = default;
  QemuVm(QemuVm&&) = default;
  QemuVm& operator=(QemuVm&&) = default;
  ~QemuVm();

  /// SIGKILL and reap; the monitors are closed first. Idempotent.
  void kill();
  /// `quit` over QMP and reap (SIGKILL after @p grace).
  bool quit(std::chrono::seconds grace = std::chrono::seconds(30));
  pid_t pid() const { return process ? process->pid() : -1; }
  /// query-status "status".
  std::string status();
};

struct VmConfig {
  std::string label;
  fs::path dir;
  std::string netns;
  std::string tap;
  std::string mac;
  std::map<std::string, std::string> disks;  // disk id -> image
  bool incoming = false;                     // -incoming defer
  bool start_paused = false;                 // -S: with incoming, stays paused after it
};

/// Builds the argv with vandra::qemu::buildCommandLine for @p spec and starts it inside the
/// namespace; connects both monitors. Empty string on success.
std::string startVm(const ovf::VirtualSystemSpec& spec, const VmConfig& cfg, QemuVm& vm);

/// Polls the serial log for the guest's READY line (deadline), or until QEMU ended.
bool waitGuestReady(const QemuVm& vm, std::chrono::seconds timeout, std::string& serial);

/// A TCP connection to vguest-seqd made inside the namespace.
class GuestConn {
 public:
  static std::optional<GuestConn> open(const std::string& netns, std::string& error);
  bool send(std::string_view s);
  std::optional<std::string> line();
  /// Command-mode request: reply lines up to the first not starting with "OUT ".
  std::vector<std::string> command(const std::string& cmd);

 private:
  bool fill();
  UniqueFd fd_;
  std::string buf_;
};

/// A unix-socket relay that holds every chunk for a fixed one-way delay in each direction
/// (round trip = 2 x delay), to give NBD and the migration stream a WAN's latency. No rate
/// limit, no loss. Stops (closing every relayed connection) when destroyed. Optionally each
/// direction of each connection goes through a byte transform, as the agents' forwarders do
/// (tunnel::ForwardOptions): made per connection, nullptr passes the bytes as they are.
class DelayProxy {
 public:
  struct Transforms {
    std::function<std::unique_ptr<tunnel::ByteTransform>()> to_target;    // client -> target
    std::function<std::unique_ptr<tunnel::ByteTransform>()> from_target;  // target -> client
  };
  DelayProxy(fs::path listen_path, fs::path target_path, std::chrono::microseconds one_way,
             Transforms transforms = {});
  DelayProxy(const DelayProxy&) = delete;
  DelayProxy& operator=(const DelayProxy&) = delete;
  ~DelayProxy();
  /// Listens on listen_path. Empty string on success.
  std::string start();
  /// From now on relays nothing more, not even what a read under way returns or an end of
  /// stream, and closes nothing: a link that stalls rather than breaks. Until destroyed.
  void stall();

 private:
  struct Direction;
  void acceptLoop();
  void relay(int from, int to, std::unique_ptr<tunnel::ByteTransform> transform);

  fs::path listen_path_;
  fs::path target_path_;
  std::chrono::microseconds delay_;
  Transforms transforms_;
  UniqueFd listen_;
  UniqueFd wake_;  // eventfd: stop
  std::mutex mu_;
  bool stop_ = false;
  bool stalled_ = false;
  std::condition_variable stall_cv_;  // with mu_: a stalled relay waits for the stop
  std::vector<int> fds_;              // relayed connections, shut down on stop
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

std::string joined(const std::vector<std::string>& lines);
/// The "OUT <prefix>..." line of an EXEC reply without "OUT ".
std::string outLine(const std::vector<std::string>& lines, const std::string& prefix);

}  // namespace vandra::migtest
