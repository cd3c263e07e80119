// The site tunnel transport: N TCP connections between two sites' agents, each wrapped in
// mutual TLS 1.3 and speaking the frame protocol of frame.h, carrying multiplexed byte
// streams (control messages, QEMU's migration stream, NBD, Ethernet). docs/tunnel/protocol.md
// ("Transport") has the rules; this is the structure:
//
//   site A (Tunnel::connect)                                site B (TunnelListener)
//   ┌──────────────────────────────┐                       ┌──────────────────────────────┐
//   │ Tunnel ── Core               │   conn 0 (control)    │ accept thread                │
//   │   ├─ Connection 0 ── io thr ─┼── TCP+TLS 1.3 ────────┼─> handshake thread per conn  │
//   │   ├─ Connection 1 ── io thr ─┼── TCP+TLS 1.3 ────────┼─>  (TLS, HELLO/HELLO_ACK)    │
//   │   ├─ ...                     │   (bulk streams       │   grouped by session id;     │
//   │   ├─ Connection N-1 ─ io thr ┼── round-robin) ───────┼─> all N there: a Tunnel,    │
//   │   ├─ dispatcher thread       │                       │   handed to on_tunnel        │
//   │   │   (on_stream callbacks)  │                       │ Tunnel ── Core (same shape)  │
//   │   └─ token bucket (DATA cap) │                       │                              │
//   │ Stream handles ─> StreamState (on one Connection: window, receive buffer)            │
//   └──────────────────────────────┘                       └──────────────────────────────┘
//
// Threading model:
//  - Each connection has ONE I/O thread, the only thread that touches its SSL object and
//    socket (OpenSSL objects must not be used from two threads at once). It polls the
//    non-blocking socket and an eventfd, reads and decodes frames (FrameDecoder), applies
//    them to the connection's streams, and writes queued frames (control frames first).
//  - Application threads never do socket I/O: Stream::write() waits (condition variables)
//    for the peer's window credit, the bandwidth cap and room in the connection's bounded
//    send queue, appends encoded frames and wakes the I/O thread. Stream::read() waits for
//    the stream's receive buffer, which the I/O thread fills.
//  - One mutex per connection guards its stream table, its streams' windows and buffers and
//    its send queues. Each tunnel has a dispatcher thread that calls the stream handlers
//    (so a handler may block without stalling any connection's I/O).
//  - A failure on any connection (protocol violation, TLS or socket error, idle timeout,
//    GOAWAY from the peer) fails the whole tunnel: every connection sends GOAWAY and closes,
//    every stream fails, and error() says why.
//
// Trust and naming: each side presents its site certificate; the peer's certificate must
// chain to a CA in the CA bundle file AND carry the expected peer site name as a
// subjectAltName DNS entry (exactly; no wildcards, the CN is not consulted). Both are checked
// inside the TLS handshake, so an untrusted peer is refused before it can send a frame.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/tunnel/compress.h"
#include "vandra/tunnel/frame.h"

namespace vandra::tunnel {

namespace detail {
struct StreamState;
struct Core;
class ListenerImpl;
}  // namespace detail

using Deadline = std::chrono::steady_clock::time_point;

/// One multiplexed byte stream of a tunnel, bound to one of its TCP connections. A handle:
/// move-only; destroying it closes the stream (CLOSE `cancelled`, or `no_error` when both
/// directions had ended). One thread may read while another writes; close() may be called
/// from any thread and wakes both.
class Stream {
 public:
  Stream() = default;
  /// Internal: streams come from Tunnel::openStream and stream handlers.
  explicit Stream(std::shared_ptr<detail::StreamState> s) : s_(std::move(s)) {}
  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  bool valid() const { return s_ != nullptr; }
  StreamKind kind() const;
  const std::string& label() const;
  uint32_t id() const;          // per connection (odd: opened by the connecting side)
  uint16_t connection() const;  // index of the TCP connection it is bound to

  /// Sends all of @p data as DATA frames; blocks while the peer's window (version 2), the
  /// tunnel's bandwidth cap or the connection's send queue hold it back. Errors: Io (the
  /// stream or tunnel is closed, reset by the peer: the message says why), Timeout.
  [[nodiscard]] Result<void> write(std::string_view data, std::optional<Deadline> deadline = {});
  /// Sends @p message as exactly one DATA frame (the receiver's readMessage() returns it
  /// whole): control messages and Ethernet frames. Errors as write(); LimitExceeded when
  /// @p message is longer than kMaxPayload.
  [[nodiscard]] Result<void> writeMessage(std::string_view message,
                                          std::optional<Deadline> deadline = {});
  /// Up to @p n received bytes; 0 once the peer ended the stream (END_STREAM, or CLOSE
  /// no_error) and everything before was read. Blocks until something arrives. Errors: Io
  /// (reset by the peer, tunnel down, closed locally), Timeout (@p deadline passed).
  [[nodiscard]] Result<size_t> read(char* buf, size_t n, std::optional<Deadline> deadline = {});
  /// The next DATA frame's bytes (what is left of it if read() took part); nullopt at the
  /// end. Empty DATA frames are skipped. Errors as read().
  [[nodiscard]] Result<std::optional<std::string>> readMessage(
      std::optional<Deadline> deadline = {});
  /// Half-close: END_STREAM; reading goes on. Idempotent.
  [[nodiscard]] Result<void> closeWrite();
  /// Ends the stream both ways (CLOSE with @p code; anything other than no_error is a reset
  /// the peer's reader sees as an error). Wakes blocked readers and writers. Idempotent.
  void close(WireError code = WireError::NoError, std::string_view reason = {});

 private:
  std::shared_ptr<detail::StreamState> s_;
};

/// Called for each stream the peer opens, on the tunnel's dispatcher thread (it may block,
/// but later streams wait for it). Keep (move) the stream to use it; dropping it closes it.
using StreamHandler = std::function<void(StreamKind kind, const std::string& label, Stream stream)>;

/// Whether this host's TCP offers congestion control @p name (set on a probe socket).
/// Errors: InvalidArgument naming the algorithms it has.
[[nodiscard]] Result<void> checkCongestionControl(const std::string& name);

/// Whether this end compresses what it sends on bulk streams (migration, NBD) when the
/// connection speaks version 3 (compress.h, ADR 0026). Each end decides for what it sends; a
/// reader takes compressed and plain DATA alike.
enum class Compression : uint8_t { Off = 0, Auto = 1 };
std::string_view toString(Compression c);
/// "auto" or "off". Errors: InvalidArgument naming the choices.
[[nodiscard]] Result<Compression> parseCompression(std::string_view name);

/// Settings both ends of a tunnel have.
struct TunnelSettings {
  std::string local_site;  // our site name [a-z0-9-]{1,64}; our certificate must carry it
  std::string cert_path;   // our site certificate (PEM, may include the chain), role Both
  std::string key_path;
  std::string ca_bundle_path;  // PEM file of the CAs of the peer sites we trust
  /// Optional PEM file of those CAs' CRLs: a revoked peer certificate is refused in the
  /// handshake (and, once given, a peer whose CA has no CRL there too).
  std::string crl_path;
  /// DATA payload bytes per second this tunnel may send (token bucket over all its
  /// streams and connections); 0: no cap.
  uint64_t bandwidth_bytes_per_s = 0;
  /// TCP congestion control of this end's connections ("" = the host's default). "auto"
  /// (src/tunnel/congestion.h, ADR 0018): cubic, and bbr for a connection that loses
  /// segments without a queue. cubic by measurement on wan (with bbr the one connection
  /// re-sent up to 70 MB a migration); on lossy (0.5 % loss) cubic collapsed.
  std::string congestion_control = "auto";
  /// Receive buffer per stream: the most we grant the peer (version 2). At least
  /// kInitialStreamWindow. Version-1 peers get the fixed kVersion1StreamWindow instead.
  uint32_t receive_window = 4 * 1024 * 1024;
  /// Compression of the bulk streams this end opens (auto: zstd, the level adapted per
  /// stream; content that does not compress is sent as it is).
  Compression compression = Compression::Auto;
  /// Streams the peer may have open at once on this tunnel; more are refused (CLOSE
  /// stream_refused).
  uint32_t max_streams = 256;
  std::chrono::milliseconds handshake_timeout{10000};  // TCP connect + TLS + HELLO, per connection
  std::chrono::milliseconds ping_interval{5000};       // PING on every connection; 0: never
  std::chrono::milliseconds idle_timeout{30000};       // nothing received that long: dead; 0: never
  std::chrono::milliseconds close_timeout{2000};       // flushing queued frames and GOAWAY on close
  /// Testing: the highest protocol version this end offers/accepts (1 acts as a version-1 peer).
  uint8_t max_version = kProtocolVersion;
  /// Handler for the streams the peer opens that no addStreamHandler() route takes.
  StreamHandler on_stream;
  /// How much of receive_window a stream grants: false, all of it; true, what the reader
  /// takes in a few round trips at its recent peak (stream.cc, windowTarget), so that bytes
  /// queued behind a slow reader stay few.
  bool window_follows_reader = false;
};

struct TunnelOptions : TunnelSettings {
  std::string peer_site;  // the site we expect; its certificate must name it
  std::string host;       // the peer agent's tunnel address (IP or name)
  uint16_t port = 0;
  uint16_t connections = 4;  // TCP connections: 1..kMaxConnections
  std::string netns;         // dial from this network namespace (/run/netns/<name>); "": ours
};

/// Counters of one stream kind (DATA payload bytes; streams opened by either side).
struct KindCounters {
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t streams = 0;
  /// The streams' own bytes: before compression (sent), as read after decompression.
  uint64_t plain_bytes_sent = 0;
  uint64_t plain_bytes_received = 0;
};

struct TunnelStats {
  /// TLS bytes written to / read from all the tunnel's TCP connections, handshakes
  /// included: what crossed the WAN (without TCP/IP headers).
  uint64_t wire_bytes_sent = 0;
  uint64_t wire_bytes_received = 0;
  /// Frame bytes (headers + payloads) before TLS.
  uint64_t frame_bytes_sent = 0;
  uint64_t frame_bytes_received = 0;
  std::array<KindCounters, 5> by_kind{};  // index: the StreamKind value (0 unused)
  const KindCounters& of(StreamKind k) const { return by_kind[static_cast<size_t>(k)]; }
  uint64_t pings_sent = 0;
  uint64_t pongs_received = 0;
  /// The newest PING/PONG round trip alone (rtt() smooths them); -1 before the first PONG.
  /// A prober that knows when the link was quiet takes only the samples it trusts.
  int64_t last_rtt_us = -1;
  /// What this end's compressors did (summed over the streams; level: the newest).
  CompressionCounters compression;
};

class Tunnel {
 public:
  /// Dials @p options.connections TLS connections to the peer (in parallel), does
  /// HELLO/HELLO_ACK on each with one fresh session id, and returns the tunnel once all are
  /// up. Errors: InvalidArgument (options), CertificateUntrusted / CertificateExpired (either
  /// side refused the other's certificate; the message says which and why: unknown CA,
  /// wrong name, expired), TunnelVersion, TunnelProtocol, Io, Timeout.
  [[nodiscard]] static Result<std::unique_ptr<Tunnel>> connect(const TunnelOptions& options);

  /// Closes (as close()) and waits for the tunnel's threads. Must not run on a thread of
  /// this tunnel (a stream handler).
  ~Tunnel();
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  /// Opens a stream. Control streams go on connection 0; the others round-robin over
  /// connections 1..N-1 (all on 0 when N is 1). Does not wait for the peer. Errors: Io (the
  /// tunnel is down), InvalidArgument (label), LimitExceeded (stream ids exhausted).
  [[nodiscard]] Result<Stream> openStream(StreamKind kind, std::string_view label);

  /// Routes streams the peer opens of @p kind whose label is @p label_prefix or lies below it
  /// ("m-42" takes "m-42" and "m-42/disk0", not "m-420"; "" takes every label) to @p handler;
  /// the longest matching prefix wins. Returns an id for removeStreamHandler. Streams no
  /// route or on_stream takes are refused (stream_refused).
  uint64_t addStreamHandler(StreamKind kind, std::string label_prefix, StreamHandler handler);
  /// Removes a route; waits while the dispatcher runs its handler (unless called from it).
  void removeStreamHandler(uint64_t id);

  /// GOAWAY `shutdown` with @p reason on every connection after flushing what is queued (at
  /// most close_timeout), then closes them; every stream fails. Idempotent.
  void close(std::string_view reason = "tunnel closed");
  /// False once the tunnel failed or was closed.
  bool alive() const;
  /// Why the tunnel is down (nullopt while alive).
  std::optional<Error> error() const;
  /// Waits until the tunnel is down; false if @p deadline passed first.
  bool waitDown(Deadline deadline) const;

  uint8_t version() const;
  const SessionId& sessionId() const;
  const std::string& peerSite() const;
  size_t connectionCount() const;
  /// Smoothed round-trip time from PING/PONG over all connections; nullopt before the first
  /// PONG. Includes the time the PING waited behind queued frames of its connection.
  std::optional<std::chrono::microseconds> rtt() const;
  /// The smallest PING/PONG round trip seen: the path without its queues; nullopt before the
  /// first PONG.
  std::optional<std::chrono::microseconds> minRtt() const;
  TunnelStats stats() const;
  /// Changes the tunnel's send cap (TunnelSettings::bandwidth_bytes_per_s; 0: none) from now
  /// on, also for writes waiting on the old one: e.g. the accepting side's cap for this peer,
  /// known only once the peer is authenticated.
  void setBandwidth(uint64_t bytes_per_s);
  uint64_t bandwidth() const;

  /// Internal: tunnels are made by connect() and TunnelListener.
  explicit Tunnel(std::shared_ptr<detail::Core> core);

 private:
  std::shared_ptr<detail::Core> core_;
};

/// Where a TunnelListener is: bound and accepting, or retrying its bind in the background
/// (its address is not on this host, e.g. the WAN device is down or gone): GET /v1/peers.
struct ListenerStatus {
  enum class State : uint8_t { Listening = 1, Retrying = 2 };
  State state = State::Retrying;
  std::string address;   // "HOST:PORT" as configured
  uint16_t port = 0;     // the bound port; 0 while retrying
  int64_t since_us = 0;  // wall clock (us since the epoch): when it bound, or first failed to
  /// The last bind failure (while retrying; kept once listening for the record).
  std::optional<Error> last_error;
  uint64_t attempts = 0;  // bind attempts so far
};
std::string_view toString(ListenerStatus::State s);

struct ListenerOptions : TunnelSettings {
  /// Peer sites that may connect; a peer's certificate must name one of them (and its HELLO
  /// the same one). Any CA in ca_bundle_path may vouch for any of these names.
  std::vector<std::string> peer_sites;
  std::string bind_host = "0.0.0.0";  // an IPv4 or IPv6 literal
  uint16_t port = 0;                  // 0: any free port (see TunnelListener::port())
  std::string netns;                  // listen inside this network namespace; "": ours
  /// Connections in TLS/HELLO or waiting for the rest of their session; more are closed at
  /// once.
  size_t max_pending = 64;
  /// Every tunnel whose N connections are all up. Runs on a listener thread (two tunnels
  /// completing at once: two threads at once); must return promptly (the listener waits for
  /// it when it is destroyed): register stream handlers, keep the tunnel and return. Streams
  /// the peer opens are delivered only after it returns.
  std::function<void(std::unique_ptr<Tunnel>)> on_tunnel;
  /// Optional: each connection refused (certificate, protocol, version, timeout), with why.
  /// Called from any listener thread, possibly concurrently.
  std::function<void(const Error&)> on_refused;
  /// When the address cannot be bound (not on this host yet), listen() still succeeds and
  /// the listener retries in the background, every 100 ms doubling up to bind_retry_max,
  /// until it binds or is destroyed (which does not wait for the next try). Off: listen()
  /// fails with the bind's error.
  bool retry_bind = false;
  std::chrono::milliseconds bind_retry_max{4000};
  /// Optional: each change of status().state (and the first one, from listen()), on the
  /// calling or a listener thread; must return promptly.
  std::function<void(const ListenerStatus&)> on_status;
};

/// Accepts tunnel connections on one TCP port and groups them by session id into tunnels.
class TunnelListener {
 public:
  /// Binds and starts accepting (or, with retry_bind, keeps trying to bind in the
  /// background). Errors: InvalidArgument (options, certificate/key/CA files, the address
  /// is no IP literal), Io (bind/listen, unless retry_bind), NotFound (netns).
  [[nodiscard]] static Result<std::unique_ptr<TunnelListener>> listen(
      const ListenerOptions& options);
  /// Stops accepting, drops connections not yet part of a tunnel and waits for the
  /// listener's threads. Tunnels already handed out are the receiver's.
  ~TunnelListener();
  TunnelListener(const TunnelListener&) = delete;
  TunnelListener& operator=(const TunnelListener&) = delete;

  /// The bound port; 0 while a retry_bind listener has not bound yet.
  uint16_t port() const;
  ListenerStatus status() const;
  /// Connections refused so far, and the last reason.
  uint64_t refusedCount() const;
  std::optional<Error> lastRefusal() const;
  /// Tunnels handed to on_tunnel so far.
  uint64_t tunnelCount() const;

  explicit TunnelListener(std::unique_ptr<detail::ListenerImpl> impl);

 private:
  std::unique_ptr<detail::ListenerImpl> impl_;
};

}  // namespace vandra::tunnel
