// FakeQmpServer: a scripted QMP peer for tests (libvirt's qemumonitortestutils). Listens on a
// unix socket in its own /tmp/vq-XXXXXX directory, sends a greeting, then follows a script of
// expected commands, canned replies, events and raw bytes. An unexpected command is recorded
// as a failure (the test asserts failures().empty()); it never aborts the test process.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"

namespace vandra::testing {

class FakeQmpServer {
 public:
  struct Options {
    /// The greeting line's "QMP" object; default: QEMU 7.2.0 with capabilities ["oob"].
    std::optional<nlohmann::json> greeting;
    /// Send no greeting at all (to test a silent peer).
    bool silent = false;
    /// Expect qmp_capabilities first and answer {} (the normal handshake).
    bool handshake = true;
  };

  /// Creates the temp dir and listening socket. Errors: Io.
  [[nodiscard]] static Result<std::unique_ptr<FakeQmpServer>> create(Options options);
  [[nodiscard]] static Result<std::unique_ptr<FakeQmpServer>> create() { return create(Options{}); }
  /// Use create(); public only so create() can use make_unique.
  FakeQmpServer() = default;
  ~FakeQmpServer();
  FakeQmpServer(const FakeQmpServer&) = delete;
  FakeQmpServer& operator=(const FakeQmpServer&) = delete;

  const std::string& socketPath() const { return socket_path_; }

  // Script (build before start()). Commands are numbered from 0 after the handshake.
  /// The next command must be @p name (and, when given, have exactly @p args).
  FakeQmpServer& expect(std::string name, std::optional<nlohmann::json> args = std::nullopt);
  /// The same for a command sent out of band (`exec-oob`).
  FakeQmpServer& expectOob(std::string name, std::optional<nlohmann::json> args = std::nullopt);
  /// {"return": ret} with the id of command @p index (default: the oldest unanswered).
  FakeQmpServer& reply(nlohmann::json ret, std::optional<size_t> index = std::nullopt);
  /// {"error": {"class", "desc"}} with the id of command @p index.
  FakeQmpServer& replyError(std::string cls, std::string desc,
                            std::optional<size_t> index = std::nullopt);
  /// {"event": name, "data": data, "timestamp": {...}}.
  FakeQmpServer& event(std::string name, nlohmann::json data = nlohmann::json::object());
  /// Writes @p bytes verbatim (garbage, oversized lines, partial lines).
  FakeQmpServer& raw(std::string bytes);
  /// Blocks the script until release(@p name).
  FakeQmpServer& gate(std::string name);
  /// Closes the connection (the script ends here).
  FakeQmpServer& hangUp();

  /// Accepts one client on a server thread and runs the script.
  void start();
  /// Opens a gate.
  void release(const std::string& name);
  /// Waits until @p n scripted commands (after the handshake) have arrived.
  bool waitForCommands(size_t n, std::chrono::milliseconds timeout);
  /// Waits until every step of the script has run.
  bool waitScriptDone(std::chrono::milliseconds timeout);
  /// Stops the server thread (after the client closed, or now) and returns every failure,
  /// including steps never reached and commands after the end of the script.
  std::vector<std::string> finish();
  /// The arguments the client's qmp_capabilities carried ({} when none).
  nlohmann::json handshakeArguments();

 private:
  enum class StepKind : uint8_t { Expect, Reply, ReplyError, Event, Raw, Gate, HangUp };
  struct Step {
    StepKind kind = StepKind::Raw;
    std::string name;                    // command, event, gate; error class for ReplyError
    std::string text;                    // error desc; raw bytes
    std::optional<nlohmann::json> json;  // expected args; return value; event data
    std::optional<size_t> index;         // command a reply answers
    bool oob = false;                    // Expect: sent as exec-oob
  };
  void run();
  bool runScript(int conn);
  std::optional<std::string> readLine(int conn);  // nullopt on EOF or stop
  bool writeAll(int conn, const std::string& bytes);
  void addFailure(std::string f);

  Options options_;
  std::string dir_;
  std::string socket_path_;
  UniqueFd listen_;
  UniqueFd wake_;
  std::vector<Step> steps_;
  std::thread thread_;
  std::string inbuf_;
  std::vector<nlohmann::json> ids_;  // id of each scripted command (null when absent)
  std::vector<bool> answered_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> failures_;
  std::set<std::string> released_;
  size_t received_ = 0;
  nlohmann::json handshake_args_ = nlohmann::json::object();
  bool script_done_ = false;
  bool stopped_ = false;
};

}  // namespace vandra::testing
