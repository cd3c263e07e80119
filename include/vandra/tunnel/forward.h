// What the agents carry through a site tunnel (tunnel.h): local unix-socket connections
// (QEMU's migration stream, NBD) and a TAP device's Ethernet frames.
//
//   source site                          tunnel                          target site
//   QEMU migrate unix:mig.sock ─> [Listen forwarder] ══ stream ══> [Connect forwarder] ─> QEMU
//   -incoming unix:in.sock QEMU nbd client nbd.sock   ─> [Listen forwarder] ══ stream ══> [Connect
//   forwarder] ─> QEMU NBD server socket br0 ── tap ─> [TapBridge] ══ ethernet stream (one frame
//   per DATA) ══> [TapBridge] ─> tap ── br0
//
// Each forwarded connection has two pump threads (one per direction). End of file on one
// side becomes END_STREAM (half-close) and shutdown(SHUT_WR) on the other; an error or reset
// on one side closes the other side at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vandra/common/ethernet.h"
#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"
#include "vandra/tunnel/tunnel.h"

namespace vandra::tunnel {

enum class ForwardMode : uint8_t {
  /// Accept connections on a unix socket we create; open a stream for each.
  Listen,
  /// For each stream the peer opens (of the kind, with the label or one below it, as
  /// Tunnel::addStreamHandler), connect to an existing unix socket.
  Connect,
};

class UnixForwarderImpl;

/// Rewrites one direction of a forwarded connection's bytes on their way through (the
/// migration stream's content references, content/ref_codec.h). One per connection and
/// direction, used by that direction's pump thread only.
class ByteTransform {
 public:
  virtual ~ByteTransform() = default;
  /// Takes the next bytes @p in and appends what they become to @p out (possibly nothing
  /// yet). An error ends the connection both ways (the stream is reset, the local socket
  /// shut): the message says why, and the forwarder keeps it (lastError()).
  [[nodiscard]] virtual Result<void> feed(std::string_view in, std::string& out) = 0;
  /// The input ended: appends what is left. Errors: input that ended inside a unit.
  [[nodiscard]] virtual Result<void> finish(std::string& out) = 0;
};
/// Makes the transform of one forwarded connection, given its tunnel stream (its connection
/// and id are the same at both ends of the tunnel).
using TransformFactory = std::function<std::unique_ptr<ByteTransform>(const Stream& stream)>;

struct ForwardOptions {
  /// Made for each forwarded connection (nullptr from it: the bytes pass as they are).
  TransformFactory to_stream;    // local socket -> tunnel stream
  TransformFactory from_stream;  // tunnel stream -> local socket
};

/// A running forwarder. Destroying it stops accepting, resets every forwarded connection,
/// removes the socket file it created (Listen) or its stream route (Connect), and waits for
/// its threads. It must be destroyed before its Tunnel.
class UnixForwarder {
 public:
  explicit UnixForwarder(std::unique_ptr<UnixForwarderImpl> impl);
  ~UnixForwarder();
  UnixForwarder(const UnixForwarder&) = delete;
  UnixForwarder& operator=(const UnixForwarder&) = delete;

  const std::string& socketPath() const;
  /// Why a connection of this forwarder last ended in error ("" if none has): a
  /// ByteTransform's refusal, or the peer's reset of its stream (with the peer's reason).
  std::string lastError() const;
  /// Connections forwarded so far, and those still open.
  uint64_t forwarded() const;
  size_t active() const;

 private:
  std::unique_ptr<UnixForwarderImpl> impl_;
};

/// Listen: binds @p socket_path (a stale socket file there is replaced; any other file is an
/// error) and opens a @p kind stream labelled @p label per accepted connection.
/// Connect: routes the peer's @p kind streams labelled @p label or below it ("m-42" takes
/// "m-42/disk0") to a new connection to @p socket_path each (a stream is reset when the
/// connect fails).
/// Errors: InvalidArgument (path too long, label), AlreadyExists (a non-socket file at the
/// path), Io.
[[nodiscard]] Result<std::unique_ptr<UnixForwarder>> forwardUnixSocket(
    Tunnel& tunnel, ForwardMode mode, StreamKind kind, const std::string& label,
    const std::string& socket_path, ForwardOptions options = {});

/// Ethernet frames larger than this are dropped (and counted), both ways.
inline constexpr size_t kMaxEthernetFrame = 64 * 1024;
/// Bounds of the frames held for one address (TapBridge::hold): more are dropped, as a full
/// queue of a switch port would; and of the addresses held or reflected at once.
inline constexpr size_t kMaxHeldFrames = 2048;
inline constexpr size_t kMaxHeldBytes = 4 << 20;
inline constexpr size_t kMaxHeldAddresses = 64;

/// A TAP device carried over an Ethernet stream, one frame per DATA frame.
class TapBridge {
 public:
  /// Creates TAP device @p name (IFF_TAP | IFF_NO_PI, not persistent: it disappears with the
  /// bridge) inside network namespace @p netns ("" = ours). The caller attaches it to a bridge
  /// and sets it up. Errors: InvalidArgument (name), NotFound (netns), Io (no /dev/net/tun, not
  /// root, name taken).
  [[nodiscard]] static Result<std::unique_ptr<TapBridge>> create(const std::string& name,
                                                                 const std::string& netns);
  /// Stops both pumps, closes the stream (cancelled) and the TAP device.
  ~TapBridge();
  TapBridge(const TapBridge&) = delete;
  TapBridge& operator=(const TapBridge&) = delete;

  /// Starts carrying frames between the device and @p stream (an Ethernet stream). Once.
  /// Errors: InvalidArgument (not an Ethernet stream, already attached).
  [[nodiscard]] Result<void> attach(Stream stream);

  const std::string& name() const { return name_; }
  struct Counters {
    uint64_t frames_sent = 0;      // TAP -> stream
    uint64_t frames_received = 0;  // stream -> TAP
    uint64_t dropped = 0;          // oversized, or the device refused them
    uint64_t held = 0;             // stream -> queue of a held address (hold)
    uint64_t held_dropped = 0;     // held, then discarded: over the bounds, too old, drop()
    uint64_t reflected = 0;        // stream -> back into the stream (reflect)
  };
  Counters counters() const;

  // Frames for a guest in the middle of its switchover. Between the source's pause and the
  // target's start, the guest's frames must wait where the guest will run:
  // - at the target, frames from the stream for the guest are held and released to the
  //   guest the moment it runs (this site's bridge still points the guest's address back at
  //   the peer and would discard them);
  // - at the source, frames from the stream for the guest (sent by clients at the target's
  //   site) are reflected back into the stream, to be held there.
  //
  //   peer ══ stream ══> [TapBridge] ─ dst held? ──── yes ─> queue ─ release() ─> tap ── br0 ──
  //   guest
  //                           │      └ reflected? ── yes ─> back into the stream (to the peer)
  //                           └ otherwise ──────────────────────────────────────> tap ── br0

  /// From now on, frames from the stream whose destination is @p mac are queued (at most
  /// kMaxHeldFrames / kMaxHeldBytes) instead of written to the device, until release(),
  /// drop(), or @p lifetime has passed (then they are discarded and frames flow again).
  /// Holding an address already held keeps its queue and sets the new lifetime (an address
  /// reflected is held from now on). Errors: InvalidArgument (MAC), LimitExceeded
  /// (kMaxHeldAddresses held or reflected already).
  [[nodiscard]] Result<void> hold(const std::string& mac, std::chrono::milliseconds lifetime);
  /// From now on, frames from the stream whose destination is @p mac go back into the stream,
  /// until unreflect() or @p lifetime has passed. Errors as hold().
  [[nodiscard]] Result<void> reflect(const std::string& mac, std::chrono::milliseconds lifetime);
  /// Ends reflect(); how many frames were sent back.
  uint64_t unreflect(const std::string& mac);
  struct Released {
    uint64_t delivered = 0;  // written to the device, in the order they came
    uint64_t discarded = 0;  // older than max_age, or the device refused them
  };
  /// Writes the frames held for @p mac that are younger than @p max_age to the device, in
  /// order, and stops holding it: later frames pass at once. Not held: {0, 0}.
  Released release(const std::string& mac, std::chrono::milliseconds max_age);
  /// Discards the frames held for @p mac and stops holding it; how many were discarded.
  uint64_t drop(const std::string& mac);

  TapBridge(std::string name, UniqueFd fd, UniqueFd stop_fd);

 private:
  void tapToStream();
  void streamToTap();
  // Takes @p frame when its destination is held (queued) or reflected (sent back); false:
  // write it to the device.
  bool divert(std::string& frame);
  Result<void> addRule(const std::string& mac, bool reflect, std::chrono::milliseconds lifetime);
  struct Rule;
  // Ends the rule of that kind for @p mac, calling @p last on it first, under the lock
  // (frames for it that arrive meanwhile wait). False: no such rule.
  bool endRule(const std::string& mac, bool reflect, const std::function<void(Rule&)>& last);

  struct Rule {
    bool reflect = false;  // else hold
    std::chrono::steady_clock::time_point expires;
    std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> frames;  // held
    size_t bytes = 0;
    uint64_t reflected = 0;
  };

  std::string name_;
  UniqueFd fd_;
  UniqueFd stop_fd_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<std::thread> up_;
  std::unique_ptr<std::thread> down_;
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> received_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> held_{0};
  std::atomic<uint64_t> held_dropped_{0};
  std::atomic<uint64_t> reflected_{0};
  std::mutex write_mu_;  // both pumps write to the stream (reflect)
  std::mutex rules_mu_;
  std::atomic<bool> diverting_{false};  // rules_ is not empty (no lock on the common path)
  std::map<MacAddress, Rule> rules_;
};

/// TapBridge::create + attach.
[[nodiscard]] Result<std::unique_ptr<TapBridge>> bridgeTap(const std::string& tap_name,
                                                           const std::string& netns, Stream stream);

}  // namespace vandra::tunnel
