// Private parts of the site tunnel transport (tunnel.h): the TLS helpers shared by the
// dialing and the listening side, and the state behind Tunnel and Stream handles.
//
// Locking: Connection::mu guards the connection's stream table, its streams' windows,
// buffers and flags, and its send queues. Lock order: Connection::mu, then Core::disp_mu or
// Core::state_mu; Core::bw_mu and Core::routes_mu are never held with another lock. Only the
// connection's I/O thread touches its SSL object and socket.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "congestion.h"
#include "vandra/common/unique_fd.h"
#include "vandra/tunnel/compress.h"
#include "vandra/tunnel/tunnel.h"

namespace vandra::tunnel::detail {

using Clock = std::chrono::steady_clock;

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// ---- TLS and handshake helpers (tls_conn.cc) ---------------------------------------------

/// The SSL_CTX of one end: configureMutualTls, our certificate must name our site, TLS 1.3
/// partial writes, no session tickets; the listener also requires the client's certificate
/// to name one of @p peer_names (the dialer sets the one expected name per connection).
[[nodiscard]] Result<SslCtxPtr> makeContext(const TunnelSettings& s, bool server,
                                            const std::vector<std::string>& peer_names);

/// What the certificate check saw (filled by the verify callback during the handshake).
struct HandshakeInfo {
  int verify_error = 0;  // X509_V_OK
  int depth = -1;
  std::string subject;  // of the certificate that failed (or of the peer's)
};

/// An SSL object on @p fd (non-blocking) for a client (expects @p peer_name) or a server.
[[nodiscard]] Result<SslPtr> newSsl(SSL_CTX* ctx, int fd, bool server, const std::string& peer_name,
                                    HandshakeInfo* info);

/// Runs the TLS handshake until done, @p deadline or @p stop_fd readable. @p who names the
/// peer in errors ("site 'cloud' at 10.0.0.2:7443", "127.0.0.1:51234").
[[nodiscard]] Result<void> tlsHandshake(SSL* ssl, int fd, bool server, Clock::time_point deadline,
                                        int stop_fd, const HandshakeInfo& info,
                                        const std::string& who, const std::string& expected);

/// Writes all of @p bytes (handshake phase: blocking with a deadline).
[[nodiscard]] Result<void> tlsWriteAll(SSL* ssl, int fd, std::string_view bytes,
                                       Clock::time_point deadline, int stop_fd,
                                       const std::string& who);

/// Waits until @p fd is ready for @p events. Errors: Timeout, Io (stopped, poll failed).
[[nodiscard]] Result<void> waitFd(int fd, short events, Clock::time_point deadline, int stop_fd,
                                  const std::string& who);

/// Reads until @p decoder yields a frame (handshake phase). Decoder errors come back as they
/// are (TunnelProtocol, TunnelVersion, LimitExceeded); a TLS alert from the peer is
/// classified (the peer refused our certificate, and why).
[[nodiscard]] Result<Frame> tlsReadFrame(SSL* ssl, int fd, FrameDecoder& decoder,
                                         Clock::time_point deadline, int stop_fd,
                                         const std::string& who);

/// The error for a failed SSL call @p ret (after SSL_get_error), clears OpenSSL's queue.
Error sslError(SSL* ssl, int ret, const std::string& what);

/// Frames built by the transport (all valid by construction).
std::string encodeControlFrame(uint8_t version, Command c, uint32_t stream, std::string payload);
std::string encodeDataFrame(uint8_t version, uint32_t stream, uint16_t flags,
                            std::string_view payload);
/// A CLOSE/GOAWAY reason the peer accepts: non-printable bytes become '?', at most 256 bytes.
std::string cleanReason(std::string_view reason);

/// Blocks SIGPIPE on the calling thread (OpenSSL writes with write(2); a pending
/// thread-directed SIGPIPE is discarded when the thread ends).
void blockSigpipe();

/// A TCP+TLS connection that finished HELLO/HELLO_ACK.
struct Established {
  UniqueFd fd;
  SslPtr ssl;
  FrameDecoder decoder;  // may hold bytes read after the HELLO / HELLO_ACK
  uint8_t version = 0;
  uint16_t index = 0;
  std::string peer_address;
};

// ---- tunnel state (core.cc, connection.cc, stream.cc, tunnel.cc) ----------------------------

constexpr size_t kChunk = 64 * 1024;             // DATA payload per frame from write()
constexpr size_t kSendQueueLimit = 1024 * 1024;  // queued DATA bytes per connection
constexpr uint32_t kLastStreamId = 0xFFFFFFF0u;

/// A stream route's label matches: "" matches every label, "m-42" matches "m-42" and
/// "m-42/disk0" but not "m-420", "m-42/" matches everything below it.
bool labelMatches(std::string_view prefix, std::string_view label);

struct Core;
struct Connection;
struct StreamState;

// Stream-table and send-queue helpers (core.cc); the caller holds Connection::mu.
size_t kindIndex(StreamKind k);
std::string streamName(const StreamState& s);
std::string closeFrame(uint8_t version, uint32_t stream, WireError code, std::string_view reason);
std::string windowFrame(uint8_t version, uint32_t stream, uint32_t increment);
void pushCtrl(Connection& c, std::string frame);
void pushData(Connection& c, std::string frame);
/// The credit beyond the protocol's initial window that our receive buffer allows.
void grantInitial(Connection& c, StreamState& s);
std::shared_ptr<StreamState> newStream(Connection& c, bool local, uint32_t id, StreamKind kind,
                                       std::string label);
/// Why a write on @p s cannot go on (error, closed, tunnel down); nullopt: it can.
std::optional<Error> writeBlocker(const StreamState& s, const Connection& c);

/// A received DATA payload: stream bytes, or one compressed chunk (kFlagCompressed).
struct RxChunk {
  std::string data;
  bool compressed = false;
};

struct StreamState {
  std::shared_ptr<Core> core;  // keeps the connection alive while a handle exists
  Connection* conn = nullptr;
  uint32_t id = 0;
  StreamKind kind = StreamKind::Control;
  std::string label;
  bool local = false;  // opened by us

  // Guarded by conn->mu.
  std::condition_variable cv;
  int64_t send_window = 0;   // version 2: DATA bytes we may still send
  uint32_t recv_credit = 0;  // version 2: DATA bytes the peer may still send
  // Right-sizing the receive window (stream.cc, windowTarget): bytes the reader took, the
  // current span's start and the rates of the last spans (bytes per second).
  uint64_t consumed = 0;
  uint64_t consumed_at_mark = 0;
  std::chrono::steady_clock::time_point mark{};
  std::array<double, 16> span_rates{};
  size_t next_span = 0;
  std::deque<RxChunk> rx;  // received DATA payloads, in order
  size_t rx_off = 0;       // bytes of rx.front() already read (never part of a compressed one)
  size_t rx_bytes = 0;     // their payload bytes (what the window counts)
  bool v1_full = false;    // version 1: buffer at kVersion1StreamWindow, connection paused
  bool end_sent = false;
  bool end_received = false;
  bool close_sent = false;
  bool close_received = false;
  bool in_table = false;
  std::optional<Error> error;  // reset by the peer, closed locally, tunnel down

  std::mutex write_mu;  // one writer at a time, so that messages do not interleave
  /// Compresses what write() sends (bulk kinds on a version-3 connection with compression
  /// on); guarded by write_mu, as is `published` (its counters already added to the core's).
  std::unique_ptr<ChunkCompressor> compressor;
  CompressionCounters published;

  /// The reading thread's alone: a decompressed chunk and how much of it was read.
  std::string plain;
  size_t plain_off = 0;
};

/// Ends @p s both ways locally (Stream::close): CLOSE with @p code unless one was sent.
void closeStreamState(StreamState& s, WireError code, std::string_view reason);

struct Connection {
  Core* core = nullptr;
  uint16_t index = 0;
  uint8_t version = 0;
  bool initiator = false;  // we dialed: our streams are odd
  UniqueFd fd;
  SslPtr ssl;
  FrameDecoder decoder;
  UniqueFd wake;  // eventfd: the I/O thread's doorbell
  std::string peer_address;
  std::thread io;

  std::mutex mu;
  std::condition_variable space_cv;  // data_bytes went below the limit
  std::deque<std::string> ctrl_q;    // sent first: OPEN, WINDOW, PING, PONG, resets
  std::deque<std::string> data_q;    // DATA, END_STREAM, graceful CLOSE, in order
  size_t ctrl_bytes = 0;
  size_t data_bytes = 0;
  std::unordered_map<uint32_t, std::shared_ptr<StreamState>> streams;
  uint32_t next_local_id = 1;
  uint32_t last_peer_id = 0;
  size_t v1_full_streams = 0;
  bool dead = false;      // the tunnel is down: nothing new is queued
  bool graceful = false;  // flush what is queued before the GOAWAY
  std::string goaway;     // the encoded GOAWAY to send once dead

  std::atomic<uint64_t> wire_tx{0};
  std::atomic<uint64_t> wire_rx{0};

  // I/O thread only.
  uint64_t ping_token = 0;
  std::optional<Clock::time_point> ping_sent;

  void ring();  // wakes the I/O thread
  void run();   // the I/O thread
};

struct Core : std::enable_shared_from_this<Core> {
  TunnelSettings settings;
  std::string peer_site;
  SessionId session{};
  uint8_t version = 0;
  bool initiator = false;
  std::vector<std::unique_ptr<Connection>> conns;
  std::unique_ptr<CongestionWatch> cc_watch;  // congestion control "auto" (congestion.h)
  std::atomic<uint32_t> round_robin{0};

  // Tunnel state.
  mutable std::mutex state_mu;
  mutable std::condition_variable state_cv;
  std::optional<Error> error;  // set once: why the tunnel is down
  std::atomic<bool> down{false};
  bool joined = false;

  // Stream handlers and the dispatcher.
  struct Route {
    uint64_t id;
    StreamKind kind;
    std::string prefix;
    StreamHandler handler;
  };
  std::mutex routes_mu;
  std::condition_variable routes_cv;
  std::vector<Route> routes;
  uint64_t next_route = 1;
  uint64_t running_route = 0;  // the route whose handler the dispatcher runs now
  std::mutex disp_mu;
  std::condition_variable disp_cv;
  std::deque<std::shared_ptr<StreamState>> pending;
  bool disp_go = false;
  bool disp_stop = false;
  std::thread disp;

  // Bandwidth cap (token bucket over DATA payload bytes; tokens may go negative: debt).
  std::mutex bw_mu;
  std::condition_variable bw_cv;
  std::atomic<uint64_t> bandwidth{0};  // bytes/s, 0: no cap; settings' value, or setBandwidth()'s
  double tokens = 0;
  Clock::time_point bw_last{};

  // Counters.
  std::atomic<uint64_t> frame_tx{0};
  std::atomic<uint64_t> frame_rx{0};
  std::atomic<uint64_t> pings{0};
  std::atomic<uint64_t> pongs{0};
  std::array<std::atomic<uint64_t>, 5> kind_tx{};
  std::array<std::atomic<uint64_t>, 5> kind_rx{};
  std::array<std::atomic<uint64_t>, 5> plain_tx{};  // stream bytes before compression
  std::array<std::atomic<uint64_t>, 5> plain_rx{};  // stream bytes after decompression
  // The compressors of this tunnel's streams, summed (CompressionCounters).
  std::atomic<uint64_t> comp_plain{0};
  std::atomic<uint64_t> comp_bytes{0};
  std::atomic<uint64_t> comp_plain_compressed{0};
  std::atomic<uint64_t> comp_chunks{0};
  std::atomic<uint64_t> comp_chunks_plain{0};
  std::atomic<uint64_t> comp_ns{0};
  std::atomic<int> comp_level{0};
  std::atomic<int> comp_top_level{0};
  std::atomic<uint64_t> comp_quick_tries{0};
  std::array<std::atomic<uint64_t>, 5> kind_streams{};
  std::atomic<int64_t> rtt_us{-1};
  std::atomic<int64_t> last_rtt_us{-1};  // the newest sample, unsmoothed
  std::atomic<int64_t> min_rtt_us{-1};   // the smallest: the path without queues
  std::atomic<uint32_t> peer_streams{0};

  /// Builds the connections from established TLS connections (sorted by index) and starts
  /// their I/O threads and the (gated) dispatcher.
  [[nodiscard]] Result<void> start(std::vector<Established> established);
  /// Lets the dispatcher deliver streams (after on_tunnel returned).
  void startDispatch();
  /// Takes the tunnel down (first call wins): every stream fails with @p why, every
  /// connection sends GOAWAY(@p code, @p reason) and closes; @p graceful flushes queued
  /// frames first.
  void takeDown(Error why, WireError code, std::string_view reason, bool graceful);
  /// takeDown() if needed, then waits for every thread and drops the stream tables.
  void shutdown(std::string_view reason);
  /// Waits for @p n DATA bytes of the bandwidth cap.
  [[nodiscard]] Result<void> takeTokens(size_t n, std::optional<Deadline> deadline);
  void rttSample(int64_t us);
  void dispatchLoop();
  Error downError() const;
};

}  // namespace vandra::tunnel::detail
