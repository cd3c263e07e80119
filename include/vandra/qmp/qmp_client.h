// QmpClient: one connection to a QEMU monitor socket speaking QMP (greeting, qmp_capabilities,
// commands correlated by id with per-command timeouts, asynchronous events). It must not know
// what commands mean (that is the catalogue in src/qmp/qmp_commands) nor start QEMU.
//
//   client                               QEMU
//     |  connect(unix)                    |
//     |<---------- {"QMP": {version..}}   |  greeting (checked)
//     |  {"execute":"qmp_capabilities"} ->|
//     |<---------- {"return": {}}         |  command mode
//     |  {"execute":X,"id":"vq-N"}  ----->|
//     |<---- {"event":...}  (any time)    |  -> bounded event queue -> on_event callback
//     |<---- {"return"|"error", "id"}     |  -> wakes the execute() waiting on that id
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::qmp {

/// One asynchronous QMP event ({"event": NAME, "data": {...}, "timestamp": {...}}).
struct QmpEvent {
  std::string name;     // e.g. "STOP", "BLOCK_JOB_READY"
  nlohmann::json data;  // object; empty object when QEMU sent none
  int64_t seconds = 0;  // timestamp.seconds (-1 when QEMU could not read the clock)
  int64_t microseconds = 0;
};

/// What QEMU announced in its greeting.
struct QmpGreeting {
  int major = 0;
  int minor = 0;
  int micro = 0;
  std::string package;                    // e.g. "Debian 1:7.2+dfsg-7"
  std::vector<std::string> capabilities;  // e.g. "oob" (QmpClientOptions::enable_oob)
};

/// A command to send: name, arguments (a JSON object) and how long to wait for its reply.
/// Build it with makeCommand() to get the catalogue timeout for the name.
struct QmpCommand {
  std::string name;
  nlohmann::json args = nlohmann::json::object();
  std::chrono::milliseconds timeout{30000};
  /// Sent as `exec-oob`: run on QEMU's monitor thread at once, even while its main loop is
  /// blocked (a post-copy target whose devices wait for missing pages). QEMU allows it for a
  /// few commands only (migrate-recover, migrate-pause). Needs QmpClientOptions::enable_oob.
  bool out_of_band = false;
};

/// @p name with @p args and the timeout the catalogue gives that command: query-* 5 s,
/// blockdev-add/device_add 60 s, blockdev-mirror/blockdev-del/block-job-cancel 600 s,
/// everything else 30 s.
QmpCommand makeCommand(std::string name, nlohmann::json args = nlohmann::json::object());

struct QmpClientOptions {
  /// Called for every event, in arrival order, on the client's event thread (never on the
  /// caller's thread and never while a client lock is held). May be empty.
  std::function<void(const QmpEvent&)> on_event;
  /// Events waiting for on_event. When full, the oldest is dropped and droppedEvents() grows.
  size_t event_queue_capacity = 1024;
  /// A line longer than this (bytes, without the newline) breaks the connection
  /// (LimitExceeded). QEMU's largest replies (query-qmp-schema) are about 1 MiB.
  size_t max_line_bytes = 16 * 1024 * 1024;
  /// How long to wait for the socket to accept (QEMU may still be starting: the socket may
  /// not exist yet) plus the greeting and the capabilities reply.
  std::chrono::milliseconds connect_timeout{5000};
  /// Negotiate the `oob` capability when QEMU offers it (a monitor on a socket chardev does),
  /// so that QmpCommand::out_of_band works. In-band commands behave as without it.
  bool enable_oob = false;
};

/// A connected, negotiated QMP monitor. Thread model: one reader thread per client parses
/// every line and completes the waiting command; one event thread runs on_event. execute()
/// is synchronous and may be called from several threads at once (replies are matched by
/// id). The agent uses two clients per VM: one for commands, one only for events.
class QmpClient {
 public:
  virtual ~QmpClient() = default;

  /// Sends @p cmd and waits up to cmd.timeout for its reply.
  /// @return the "return" member of the reply (JSON object or value).
  /// Errors: QmpError (QEMU refused: message "<name>: <class>: <desc>"), Timeout (no reply in
  /// time; a late reply is discarded), QmpDisconnected (socket closed, before or during the
  /// wait), QmpProtocol / LimitExceeded (the peer sent garbage or an oversized line: the
  /// connection is then dead), Io, Unsupported (out_of_band on a client without oob). After a
  /// connection-level error every later call fails the same way. Thread: any; blocks the caller.
  [[nodiscard]] virtual Result<nlohmann::json> execute(const QmpCommand& cmd) = 0;

  /// The greeting QEMU sent on connect. Thread: any.
  virtual const QmpGreeting& greeting() const = 0;

  /// Waits up to @p timeout for the connection to end by itself (QEMU closed it, e.g. on
  /// exit), so that everything QEMU sent before has been read. True when it has ended.
  virtual bool waitDisconnected(std::chrono::milliseconds timeout) = 0;

  /// Events dropped because the queue was full (the consumer was slower than QEMU).
  virtual uint64_t droppedEvents() const = 0;

  /// Closes the connection and stops both threads; pending execute() calls fail with
  /// QmpDisconnected. Events already received are handed to on_event before it returns. Idempotent;
  /// the destructor calls it. Must not be called from on_event.
  virtual void close() = 0;
};
using QmpClientPtr = std::unique_ptr<QmpClient>;

/// Connects to the QMP unix socket at @p socket_path, checks the greeting and sends
/// qmp_capabilities. Retries a missing or refusing socket until options.connect_timeout.
/// Errors: InvalidArgument (path too long), Timeout, QmpProtocol (not a QMP greeting),
/// QmpError (capabilities refused), QmpDisconnected, Io.
[[nodiscard]] Result<QmpClientPtr> connectQmp(const std::string& socket_path,
                                              QmpClientOptions options);

}  // namespace vandra::qmp
