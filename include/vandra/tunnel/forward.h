// What the agents carry through a site tunnel (tunnel.h): local unix-socket connections
// (QEMU's migration stream, NBD) and a TAP device's Ethernet frames.
//
//   source site                          tunnel                          target site
//   QEMU migrate unix:mig.sock ─> [Listen forwarder] ══ stream ══> [Connect forwarder] ─> QEMU -incoming unix:in.sock
//   QEMU nbd client nbd.sock   ─> [Listen forwarder] ══ stream ══> [Connect forwarder] ─> QEMU NBD server socket
//   br0 ── tap ─> [TapBridge] ══ ethernet stream (one frame per DATA) ══> [TapBridge] ─> tap ── br0
//
// Each forwarded connection has two pump threads (one per direction). End of file on one
// side becomes END_STREAM (half-close) and shutdown(SHUT_WR) on the other; an error or reset
// on one side closes the other side at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

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
[[nodiscard]] Result<std::unique_ptr<UnixForwarder>> forwardUnixSocket(Tunnel& tunnel, ForwardMode mode,
                                                                      StreamKind kind, const std::string& label,
                                                                      const std::string& socket_path);

/// Ethernet frames larger than this are dropped (and counted), both ways.
inline constexpr size_t kMaxEthernetFrame = 64 * 1024;

/// A TAP device carried over an Ethernet stream, one frame per DATA frame.
class TapBridge {
public:
  /// Creates TAP device @p name (IFF_TAP | IFF_NO_PI, not persistent: it disappears with the
  /// bridge) inside network namespace @p netns ("" = ours). The caller attaches it to a bridge
  /// and sets it up. Errors: InvalidArgument (name), NotFound (netns), Io (no /dev/net/tun, not
  /// root, name taken).
  [[nodiscard]] static Result<std::unique_ptr<TapBridge>> create(const std::string& name, const std::string& netns);
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
  };
  Counters counters() const;

  TapBridge(std::string name, UniqueFd fd, UniqueFd stop_fd);

private:
  void tapToStream();
  void streamToTap();

  std::string name_;
  UniqueFd fd_;
  UniqueFd stop_fd_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<std::thread> up_;
  std::unique_ptr<std::thread> down_;
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> received_{0};
  std::atomic<uint64_t> dropped_{0};
};

/// TapBridge::create + attach.
[[nodiscard]] Result<std::unique_ptr<TapBridge>> bridgeTap(const std::string& tap_name, const std::string& netns,
                                                         Stream stream);

} // namespace vandra::tunnel
