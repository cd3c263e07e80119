// Site tunnel frames: the versioned binary framing that the two sites' agents speak over
// each mutual-TLS TCP connection of the tunnel. Pure: encoders and an incremental decoder, no
// sockets, no TLS, no threads, no exceptions. docs/tunnel/protocol.md is the specification.
//
//   site A agent                                                  site B agent
//     |  TCP + mutual TLS 1.3, connection i of n (A initiates)               |
//     |-- HELLO     v=min     stream 0 {min, max, i, n, session, site} ----->|
//     |<- HELLO_ACK v=chosen  stream 0 {version, i, n, session, site} -------|
//     |-- OPEN      stream s {kind, label} --------------------------------->|  s odd: opened by A
//     |-- DATA      stream s {bytes} (within the credit B granted) --------->|
//     |-- DATA      flags=COMPRESSED stream s {one zstd frame} (version 3) -->|
//     |<- WINDOW    stream s {+credit}  (version 2 only) --------------------|
//     |-- PING      stream 0 {token} --------------------------------------->|
//     |<- PONG      stream 0 {the same token} -------------------------------|
//     |-- CLOSE     stream s {code, reason} -------------------------------->|
//     |-- GOAWAY    stream 0 {code, reason}, then A closes the connection -->|
//
// Every frame is a 16-byte big-endian header followed by `length` payload bytes:
//
//    0               4       5       6               8              12              16
//   +---------------+-------+-------+---------------+---------------+---------------+
//   | magic "VNDT"  |version|command|     flags     |   stream id   |payload length |
//   +---------------+-------+-------+---------------+---------------+---------------+
//
// The decoder checks the whole header (magic, version, command, flags, stream id and the
// length against that command's bound) as soon as the 16 header bytes are there, before
// any payload byte is buffered, and checks the typed payload once the frame is complete.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "vandra/common/result.h"

namespace vandra::tunnel {

inline constexpr uint32_t kFrameMagic = 0x564E4454;  // "VNDT"
inline constexpr size_t kFrameHeaderSize = 16;

/// The version this build speaks by preference, and the oldest it still accepts. Version 1
/// has no WINDOW frames (no per-stream flow control); version 2 no compressed DATA; version 4
/// frames as 3 and says the agent reads content references on migration streams
/// (content/ref_codec.h): a source encodes its migration stream only for such a peer;
/// version 5 frames as 3 and says the agent takes post-copy (control.h, recover): a source
/// switches a VM that allows it to post-copy only towards such a peer; version 6 frames as 3
/// and says the agent flushes the disks it receives itself before it starts the guest (it hides
/// FLUSH from the source's mirrors): a source plans two round trips fewer in the pause.
inline constexpr uint8_t kProtocolVersion = 6;
inline constexpr uint8_t kMinProtocolVersion = 1;

/// The largest payload of any frame (DATA); the other commands have smaller bounds, see
/// maxPayload(). A whole frame is therefore at most kMaxFrameSize bytes.
inline constexpr uint32_t kMaxPayload = 256 * 1024;
inline constexpr size_t kMaxFrameSize = kFrameHeaderSize + kMaxPayload;

/// Bounds of the typed payloads' fields.
inline constexpr size_t kMaxSiteName = 64;       // HELLO/HELLO_ACK site, [a-z0-9-]{1,64}
inline constexpr size_t kMaxOpenLabel = 64;      // OPEN label, UTF-8, no control characters
inline constexpr size_t kMaxCloseReason = 256;   // CLOSE/GOAWAY reason, UTF-8
inline constexpr uint16_t kMaxConnections = 64;  // HELLO connection count
inline constexpr size_t kSessionIdSize = 16;

/// Flow control (version 2). Each side may send this many DATA payload bytes on a new stream
/// before it needs credit; WINDOW adds credit. The credit a receiver grants must never make
/// the sender's window exceed kMaxWindow (a WINDOW increment is 1..kMaxWindow).
inline constexpr uint32_t kInitialStreamWindow = 1024 * 1024;
inline constexpr uint32_t kMaxWindow = 0x7FFFFFFF;
/// Version 1 has no WINDOW: the receiver buffers up to this many bytes per stream and then
/// stops reading the connection (TCP back-pressure stalls every stream on it).
inline constexpr uint32_t kVersion1StreamWindow = 4 * 1024 * 1024;

enum class Command : uint8_t {
  // 0 is invalid
  Hello = 1,     // stream 0: first frame of the initiator on every TCP connection
  HelloAck = 2,  // stream 0: the responder's answer; fixes the connection's version
  Open = 3,      // stream != 0: opens a stream (kind + label)
  Data = 4,      // stream != 0: stream bytes (flag kFlagEndStream: the last of them)
  Window = 5,    // stream != 0: flow-control credit for that stream (version 2 only)
  Close = 6,     // stream != 0: the sender is done with the stream (code + reason)
  Ping = 7,      // stream 0: liveness/RTT probe carrying a token
  Pong = 8,      // stream 0: the answer, echoing the PING's token
  GoAway = 9,    // stream 0: the sender closes the connection (code + reason)
};
inline constexpr uint8_t kMaxCommand = 9;
std::string_view toString(Command c);

/// DATA only: the sender sends no more DATA on this stream (a half-close; CLOSE ends it).
inline constexpr uint16_t kFlagEndStream = 0x0001;
/// DATA only, version 3: the payload is one whole zstd frame declaring its content size
/// (1..kMaxPlainChunk, compress.h); the stream's bytes are what it decompresses to.
inline constexpr uint16_t kFlagCompressed = 0x0002;
/// The flag bits @p c may carry; every other bit is reserved and must be 0.
uint16_t allowedFlags(Command c);
/// The largest payload @p c may carry (checked from the header, before buffering).
uint32_t maxPayload(Command c);
/// Whether @p c travels on stream 0 (the connection) rather than on a stream.
bool isConnectionCommand(Command c);

/// One frame. `payload` is the raw payload; the typed encode/decode functions below build
/// and read it for every command but DATA.
struct Frame {
  uint8_t version = kProtocolVersion;
  Command command = Command::Data;
  uint16_t flags = 0;
  uint32_t stream_id = 0;
  std::string payload;

  bool operator==(const Frame&) const = default;
};

/// Error codes carried by CLOSE and GOAWAY (u16 on the wire). Values a newer peer may add
/// are kept as they are (an unnamed enumerator value), not refused.
enum class WireError : uint16_t {
  NoError = 0,          // normal close / shutdown
  ProtocolError = 1,    // the peer broke the protocol (TunnelProtocol, LimitExceeded)
  VersionMismatch = 2,  // no common version (TunnelVersion)
  FlowControl = 3,      // DATA beyond the granted credit, credit overflow
  StreamRefused = 4,    // the receiver will not accept this stream (kind, label, too many)
  Cancelled = 5,        // the stream's user gave up (e.g. a migration aborted)
  Internal = 6,         // the sender failed on its own
  Shutdown = 7,         // GOAWAY: the agent is stopping
};
std::string_view toString(WireError e);
/// The code to send in GOAWAY when the decoder or a payload decoder failed with @p code.
WireError wireErrorFor(ErrorCode code);

/// Writes the 16-byte header and the payload. Precondition: validateFrame(f) succeeds (the
/// encoder does not check; a frame that breaks a rule is refused by the peer).
std::string encodeFrame(const Frame& f);
void appendFrame(std::string& out, const Frame& f);

/// Every rule the decoder applies to a frame: the header rules and the command's typed
/// payload. @p negotiated is the connection's version once HELLO/HELLO_ACK are done, 0 before.
/// Errors as FrameDecoder::next().
[[nodiscard]] Result<void> validateFrame(const Frame& f, uint8_t negotiated = 0);

/// Incremental decoder for one direction of one TCP connection.
///
/// Usage: feed() what the socket read, then call next() until it returns nullopt (it needs
/// more bytes) or an error. Used this way the decoder buffers at most one incomplete frame
/// (<= kMaxFrameSize bytes) plus the last chunk fed. Each returned frame has passed
/// validateFrame(), so the typed decoders below succeed on it.
///
/// Errors are sticky: after the first one the connection is dead; next() keeps returning
/// it and feed() drops its input. Codes: TunnelProtocol (bad magic, command 0 or unknown,
/// reserved flag bits, wrong stream id for the command, WINDOW under version 1, a version
/// other than the negotiated one, a malformed typed payload), TunnelVersion (a version
/// outside kMinProtocolVersion..kProtocolVersion), LimitExceeded (a length above the
/// command's bound, detected from the header alone).
class FrameDecoder {
 public:
  FrameDecoder() = default;

  /// After negotiation: every later frame must carry exactly @p version.
  void setVersion(uint8_t version) { negotiated_ = version; }
  uint8_t version() const { return negotiated_; }

  void feed(const char* data, size_t size);
  void feed(std::string_view bytes) { feed(bytes.data(), bytes.size()); }

  /// The next complete frame; nullopt when more bytes are needed.
  [[nodiscard]] Result<std::optional<Frame>> next();

  bool failed() const { return error_.has_value(); }
  /// Bytes fed but not yet returned as frames.
  size_t buffered() const { return buf_.size() - start_; }

 private:
  std::string buf_;
  size_t start_ = 0;  // first byte of the next frame in buf_
  uint8_t negotiated_ = 0;
  std::optional<Error> error_;
};

/// Highest version both ranges contain. Errors: InvalidArgument (our range is empty or
/// outside 1..255), TunnelProtocol (theirs is empty or starts at 0), TunnelVersion (the
/// ranges do not overlap; the message names both).
[[nodiscard]] Result<uint8_t> negotiateVersion(uint8_t ours_min, uint8_t ours_max,
                                               uint8_t theirs_min, uint8_t theirs_max);

// ---- typed payloads ----------------------------------------------------------------------
// encodeX() refuses values the peer would refuse (InvalidArgument); decodeX() refuses
// malformed payloads (TunnelProtocol), including payloads shorter than the command's fixed
// part and trailing bytes after the last field. Layouts are in docs/tunnel/protocol.md.

using SessionId = std::array<uint8_t, kSessionIdSize>;

/// HELLO (stream 0; the frame's header carries min_version, so any peer that speaks that
/// version can read it). The layout is the same in every version.
struct Hello {
  uint8_t min_version = kMinProtocolVersion;
  uint8_t max_version = kProtocolVersion;
  uint16_t connection_index = 0;  // 0..connection_count-1
  uint16_t connection_count = 1;  // 1..kMaxConnections
  SessionId session_id{};         // random per tunnel; the same on all its connections; not all 0
  std::string site;               // [a-z0-9-]{1,64}

  bool operator==(const Hello&) const = default;
};
[[nodiscard]] Result<std::string> encodeHello(const Hello& h);
[[nodiscard]] Result<Hello> decodeHello(std::string_view payload);

/// HELLO_ACK (stream 0; the header carries `version`, the negotiated one). Echoes the
/// connection index/count and session id of the HELLO it answers.
struct HelloAck {
  uint8_t version = kProtocolVersion;
  uint16_t connection_index = 0;
  uint16_t connection_count = 1;
  SessionId session_id{};
  std::string site;  // the responder's site name

  bool operator==(const HelloAck&) const = default;
};
[[nodiscard]] Result<std::string> encodeHelloAck(const HelloAck& a);
[[nodiscard]] Result<HelloAck> decodeHelloAck(std::string_view payload);

enum class StreamKind : uint8_t { Control = 1, Migration = 2, Nbd = 3, Ethernet = 4 };
std::string_view toString(StreamKind k);

/// OPEN: the stream's kind and a label naming what it carries, e.g. "<migration id>/<disk id>".
struct Open {
  StreamKind kind = StreamKind::Control;
  std::string label;  // UTF-8, 0..64 bytes, no control characters

  bool operator==(const Open&) const = default;
};
[[nodiscard]] Result<std::string> encodeOpen(const Open& o);
[[nodiscard]] Result<Open> decodeOpen(std::string_view payload);

/// WINDOW: credit increment, 1..kMaxWindow.
[[nodiscard]] Result<std::string> encodeWindow(uint32_t increment);
[[nodiscard]] Result<uint32_t> decodeWindow(std::string_view payload);

/// CLOSE and GOAWAY: why.
struct CloseReason {
  WireError code = WireError::NoError;
  std::string reason;  // UTF-8, 0..256 bytes

  bool operator==(const CloseReason&) const = default;
};
[[nodiscard]] Result<std::string> encodeClose(const CloseReason& c);
[[nodiscard]] Result<CloseReason> decodeClose(std::string_view payload);

/// PING and PONG: an opaque token the PONG echoes.
std::string encodePing(uint64_t token);
[[nodiscard]] Result<uint64_t> decodePing(std::string_view payload);

}  // namespace vandra::tunnel
