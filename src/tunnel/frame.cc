// Site tunnel frame codec. Must not do I/O, throw or allocate from a length it has not
// checked: the header is validated before any payload byte is buffered, and the buffer only
// ever holds bytes that were actually fed.
#include "vandra/tunnel/frame.h"

#include <algorithm>
#include <cstdio>

#include "vandra/tunnel/compress.h"
#include "wire.h"

namespace vandra::tunnel {
namespace {

Unexpected protocol(std::string what) {
  return fail(ErrorCode::TunnelProtocol, std::move(what));
}

std::string hex16(uint16_t v) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%04x", static_cast<unsigned>(v));
  return b;
}

std::string hex32(uint32_t v) {
  char b[12];
  std::snprintf(b, sizeof b, "0x%08x", static_cast<unsigned>(v));
  return b;
}

std::string versionRange() {
  return std::to_string(kMinProtocolVersion) + ".." + std::to_string(kProtocolVersion);
}

// Encoders share the decoders' rules; a violation there is the caller's bug.
template <class T>
Result<T> asCallerError(Result<T> r, std::string_view what) {
  if (!r) {
    return fail(ErrorCode::InvalidArgument,
                "Cannot encode " + std::string(what) + ": " + r.error().message);
  }
  return r;
}

Result<void> checkSite(std::string_view what, std::string_view site) {
  if (!wire::isSiteName(site)) {
    return protocol(std::string(what) + ": site name '" + wire::printable(site) +
                    "' is not [a-z0-9-]{1,64}");
  }
  return {};
}

Result<void> checkConnection(std::string_view what, uint16_t index, uint16_t count) {
  if (count == 0 || count > kMaxConnections) {
    return protocol(std::string(what) + ": connection count " + std::to_string(count) +
                    " is not 1.." + std::to_string(kMaxConnections));
  }
  if (index >= count) {
    return protocol(std::string(what) + ": connection index " + std::to_string(index) +
                    " is not below the count " + std::to_string(count));
  }
  return {};
}

Result<void> checkSession(std::string_view what, const SessionId& id) {
  for (const uint8_t b : id) {
    if (b != 0) {
      return {};
    }
  }
  return protocol(std::string(what) + ": session id is all zero");
}

Result<void> checkHello(const Hello& h) {
  if (h.min_version == 0 || h.min_version > h.max_version) {
    return protocol("HELLO: version range " + std::to_string(h.min_version) + ".." +
                    std::to_string(h.max_version) + " is empty or starts at 0");
  }
  VANDRA_TRY(checkConnection("HELLO", h.connection_index, h.connection_count));
  VANDRA_TRY(checkSession("HELLO", h.session_id));
  return checkSite("HELLO", h.site);
}

Result<void> checkHelloAck(const HelloAck& a) {
  if (a.version < kMinProtocolVersion || a.version > kProtocolVersion) {
    return fail(ErrorCode::TunnelVersion, "HELLO_ACK: version " + std::to_string(a.version) +
                                              " is not one we speak (" + versionRange() + ")");
  }
  VANDRA_TRY(checkConnection("HELLO_ACK", a.connection_index, a.connection_count));
  VANDRA_TRY(checkSession("HELLO_ACK", a.session_id));
  return checkSite("HELLO_ACK", a.site);
}

Result<void> checkOpen(const Open& o) {
  const auto k = static_cast<uint8_t>(o.kind);
  if (k < 1 || k > 4) {
    return protocol("OPEN: stream kind " + std::to_string(k) +
                    " is not control(1), migration(2), nbd(3) or ethernet(4)");
  }
  if (o.label.size() > kMaxOpenLabel) {
    return protocol("OPEN: label of " + std::to_string(o.label.size()) + " bytes exceeds " +
                    std::to_string(kMaxOpenLabel));
  }
  if (!wire::isCleanUtf8(o.label)) {
    return protocol("OPEN: label '" + wire::printable(o.label) +
                    "' is not UTF-8 without control characters");
  }
  return {};
}

Result<void> checkWindow(uint32_t increment) {
  if (increment == 0 || increment > kMaxWindow) {
    return protocol("WINDOW: credit increment " + std::to_string(increment) + " is not 1.." +
                    std::to_string(kMaxWindow));
  }
  return {};
}

Result<void> checkClose(const CloseReason& c) {
  if (c.reason.size() > kMaxCloseReason) {
    return protocol("CLOSE/GOAWAY: reason of " + std::to_string(c.reason.size()) +
                    " bytes exceeds " + std::to_string(kMaxCloseReason));
  }
  if (!wire::isCleanUtf8(c.reason)) {
    return protocol("CLOSE/GOAWAY: reason '" + wire::printable(c.reason) +
                    "' is not UTF-8 without control characters");
  }
  return {};
}

// The header rules, shared by the decoder (before buffering the payload) and validateFrame.
Result<void> checkHeader(uint8_t version, uint8_t command, uint16_t flags, uint32_t stream,
                         uint32_t length, uint8_t negotiated) {
  if (version < kMinProtocolVersion || version > kProtocolVersion) {
    return fail(ErrorCode::TunnelVersion, "Tunnel frame has protocol version " +
                                              std::to_string(version) + ", this agent speaks " +
                                              versionRange());
  }
  if (negotiated != 0 && version != negotiated) {
    return protocol("Tunnel frame has protocol version " + std::to_string(version) +
                    " but the connection negotiated " + std::to_string(negotiated));
  }
  if (command == 0) {
    return protocol("Tunnel frame has command 0, which is invalid");
  }
  if (command > kMaxCommand) {
    return protocol("Tunnel frame has unknown command " + std::to_string(command));
  }
  const auto cmd = static_cast<Command>(command);
  const std::string name(toString(cmd));
  if (cmd == Command::Window && version < 2) {
    return protocol("Tunnel WINDOW frame under protocol version " + std::to_string(version) +
                    " (flow control needs version 2)");
  }
  if ((flags & kFlagCompressed) != 0 && cmd == Command::Data && version < 3) {
    return protocol("Tunnel compressed DATA frame under protocol version " +
                    std::to_string(version) + " (compression needs version 3)");
  }
  if ((flags & ~allowedFlags(cmd)) != 0) {
    return protocol("Tunnel " + name + " frame has reserved flag bits " +
                    hex16(static_cast<uint16_t>(flags & ~allowedFlags(cmd))) + " set");
  }
  if (isConnectionCommand(cmd) && stream != 0) {
    return protocol("Tunnel " + name + " frame must use stream 0, not stream " +
                    std::to_string(stream));
  }
  if (!isConnectionCommand(cmd) && stream == 0) {
    return protocol("Tunnel " + name + " frame on stream 0 (it needs a stream id)");
  }
  if (length > maxPayload(cmd)) {
    return fail(ErrorCode::LimitExceeded, "Tunnel " + name + " frame announces a payload of " +
                                              std::to_string(length) + " bytes, the limit is " +
                                              std::to_string(maxPayload(cmd)));
  }
  return {};
}

// The typed payload rules for a frame whose header passed checkHeader.
Result<void> checkPayload(const Frame& f) {
  switch (f.command) {
    case Command::Hello: {
      VANDRA_TRY_ASSIGN(const Hello h, decodeHello(f.payload));
      if (f.version != h.min_version) {
        return protocol("Tunnel HELLO frame has version " + std::to_string(f.version) +
                        " but its payload's minimum version is " + std::to_string(h.min_version));
      }
      return {};
    }
    case Command::HelloAck: {
      VANDRA_TRY_ASSIGN(const HelloAck a, decodeHelloAck(f.payload));
      if (f.version != a.version) {
        return protocol("Tunnel HELLO_ACK frame has version " + std::to_string(f.version) +
                        " but its payload chooses version " + std::to_string(a.version));
      }
      return {};
    }
    case Command::Open:
      VANDRA_TRY(decodeOpen(f.payload));
      return {};
    case Command::Data:
      if ((f.flags & kFlagCompressed) != 0) {
        VANDRA_TRY(compressedChunkSize(f.payload));
      }
      return {};
    case Command::Window:
      VANDRA_TRY(decodeWindow(f.payload));
      return {};
    case Command::Close:
    case Command::GoAway:
      VANDRA_TRY(decodeClose(f.payload));
      return {};
    case Command::Ping:
    case Command::Pong:
      VANDRA_TRY(decodePing(f.payload));
      return {};
  }
  return protocol("Tunnel frame has unknown command");
}

}  // namespace

std::string_view toString(Command c) {
  switch (c) {
    case Command::Hello:
      return "HELLO";
    case Command::HelloAck:
      return "HELLO_ACK";
    case Command::Open:
      return "OPEN";
    case Command::Data:
      return "DATA";
    case Command::Window:
      return "WINDOW";
    case Command::Close:
      return "CLOSE";
    case Command::Ping:
      return "PING";
    case Command::Pong:
      return "PONG";
    case Command::GoAway:
      return "GOAWAY";
  }
  return "UNKNOWN";
}

uint16_t allowedFlags(Command c) {
  return c == Command::Data ? (kFlagEndStream | kFlagCompressed) : 0;
}

uint32_t maxPayload(Command c) {
  switch (c) {
    case Command::Hello:
      return static_cast<uint32_t>(6 + kSessionIdSize + 1 + kMaxSiteName);
    case Command::HelloAck:
      return static_cast<uint32_t>(5 + kSessionIdSize + 1 + kMaxSiteName);
    case Command::Open:
      return static_cast<uint32_t>(2 + kMaxOpenLabel);
    case Command::Data:
      return kMaxPayload;
    case Command::Window:
      return 4;
    case Command::Close:
    case Command::GoAway:
      return static_cast<uint32_t>(4 + kMaxCloseReason);
    case Command::Ping:
    case Command::Pong:
      return 8;
  }
  return 0;
}

bool isConnectionCommand(Command c) {
  switch (c) {
    case Command::Hello:
    case Command::HelloAck:
    case Command::Ping:
    case Command::Pong:
    case Command::GoAway:
      return true;
    case Command::Open:
    case Command::Data:
    case Command::Window:
    case Command::Close:
      return false;
  }
  return false;
}

std::string_view toString(WireError e) {
  switch (e) {
    case WireError::NoError:
      return "no_error";
    case WireError::ProtocolError:
      return "protocol_error";
    case WireError::VersionMismatch:
      return "version_mismatch";
    case WireError::FlowControl:
      return "flow_control";
    case WireError::StreamRefused:
      return "stream_refused";
    case WireError::Cancelled:
      return "cancelled";
    case WireError::Internal:
      return "internal";
    case WireError::Shutdown:
      return "shutdown";
  }
  return "unknown";
}

WireError wireErrorFor(ErrorCode code) {
  if (code == ErrorCode::TunnelProtocol || code == ErrorCode::LimitExceeded) {
    return WireError::ProtocolError;
  }
  if (code == ErrorCode::TunnelVersion) {
    return WireError::VersionMismatch;
  }
  return WireError::Internal;
}

std::string_view toString(StreamKind k) {
  switch (k) {
    case StreamKind::Control:
      return "control";
    case StreamKind::Migration:
      return "migration";
    case StreamKind::Nbd:
      return "nbd";
    case StreamKind::Ethernet:
      return "ethernet";
  }
  return "unknown";
}

void appendFrame(std::string& out, const Frame& f) {
  out.reserve(out.size() + kFrameHeaderSize + f.payload.size());
  wire::putU32(out, kFrameMagic);
  wire::putU8(out, f.version);
  wire::putU8(out, static_cast<uint8_t>(f.command));
  wire::putU16(out, f.flags);
  wire::putU32(out, f.stream_id);
  wire::putU32(out, static_cast<uint32_t>(f.payload.size()));
  out += f.payload;
}

std::string encodeFrame(const Frame& f) {
  std::string out;
  appendFrame(out, f);
  return out;
}

Result<void> validateFrame(const Frame& f, uint8_t negotiated) {
  if (f.payload.size() > kMaxPayload) {
    return fail(ErrorCode::LimitExceeded, "Tunnel frame payload of " +
                                              std::to_string(f.payload.size()) + " bytes exceeds " +
                                              std::to_string(kMaxPayload));
  }
  VANDRA_TRY(checkHeader(f.version, static_cast<uint8_t>(f.command), f.flags, f.stream_id,
                         static_cast<uint32_t>(f.payload.size()), negotiated));
  return checkPayload(f);
}

void FrameDecoder::feed(const char* data, size_t size) {
  if (error_ || size == 0) {
    return;  // a dead connection buffers nothing more
  }
  if (start_ > 0) {  // drop the frames already handed out
    buf_.erase(0, start_);
    start_ = 0;
  }
  buf_.append(data, size);
}

Result<std::optional<Frame>> FrameDecoder::next() {
  if (error_) {
    return fail(*error_);
  }
  const std::string_view avail = std::string_view(buf_).substr(start_);
  if (avail.size() < kFrameHeaderSize) {
    return std::optional<Frame>();
  }
  wire::Reader r(avail.substr(0, kFrameHeaderSize));
  const uint32_t magic = r.u32();
  const uint8_t version = r.u8();
  const uint8_t command = r.u8();
  const uint16_t flags = r.u16();
  const uint32_t stream = r.u32();
  const uint32_t length = r.u32();

  Result<void> ok = magic == kFrameMagic
                        ? checkHeader(version, command, flags, stream, length, negotiated_)
                        : protocol("Tunnel frame has bad magic " + hex32(magic) + " (want " +
                                   hex32(kFrameMagic) + " \"VNDT\")");
  if (!ok) {
    error_ = ok.error();
    buf_.clear();
    buf_.shrink_to_fit();
    start_ = 0;
    return fail(*error_);
  }
  // length <= maxPayload(command) <= kMaxPayload here: the wait below is bounded.
  if (avail.size() - kFrameHeaderSize < length) {
    return std::optional<Frame>();
  }
  Frame f;
  f.version = version;
  f.command = static_cast<Command>(command);
  f.flags = flags;
  f.stream_id = stream;
  f.payload.assign(avail.substr(kFrameHeaderSize, length));
  if (Result<void> p = checkPayload(f); !p) {
    error_ = p.error();
    buf_.clear();
    buf_.shrink_to_fit();
    start_ = 0;
    return fail(*error_);
  }
  start_ += kFrameHeaderSize + length;
  if (start_ == buf_.size()) {
    buf_.clear();
    start_ = 0;
  }
  return std::optional<Frame>(std::move(f));
}

Result<uint8_t> negotiateVersion(uint8_t ours_min, uint8_t ours_max, uint8_t theirs_min,
                                 uint8_t theirs_max) {
  if (ours_min == 0 || ours_min > ours_max) {
    return fail(ErrorCode::InvalidArgument, "Our tunnel version range " + std::to_string(ours_min) +
                                                ".." + std::to_string(ours_max) +
                                                " is empty or starts at 0");
  }
  if (theirs_min == 0 || theirs_min > theirs_max) {
    return protocol("The peer's tunnel version range " + std::to_string(theirs_min) + ".." +
                    std::to_string(theirs_max) + " is empty or starts at 0");
  }
  const uint8_t low = std::max(ours_min, theirs_min);
  const uint8_t high = std::min(ours_max, theirs_max);
  if (low > high) {
    return fail(ErrorCode::TunnelVersion,
                "No common tunnel protocol version: we speak " + std::to_string(ours_min) + ".." +
                    std::to_string(ours_max) + ", the peer " + std::to_string(theirs_min) + ".." +
                    std::to_string(theirs_max));
  }
  return high;
}

// ---- typed payloads ----------------------------------------------------------------------

Result<std::string> encodeHello(const Hello& h) {
  VANDRA_TRY(asCallerError(checkHello(h), "HELLO"));
  std::string out;
  wire::putU8(out, h.min_version);
  wire::putU8(out, h.max_version);
  wire::putU16(out, h.connection_index);
  wire::putU16(out, h.connection_count);
  wire::putBytes(out, h.session_id);
  wire::putU8(out, static_cast<uint8_t>(h.site.size()));
  out += h.site;
  return out;
}

Result<Hello> decodeHello(std::string_view payload) {
  wire::Reader r(payload);
  Hello h;
  h.min_version = r.u8();
  h.max_version = r.u8();
  h.connection_index = r.u16();
  h.connection_count = r.u16();
  r.bytes(h.session_id);
  const uint8_t site_len = r.u8();
  h.site = std::string(r.take(site_len));
  VANDRA_TRY(r.finish("HELLO"));
  VANDRA_TRY(checkHello(h));
  return h;
}

Result<std::string> encodeHelloAck(const HelloAck& a) {
  VANDRA_TRY(asCallerError(checkHelloAck(a), "HELLO_ACK"));
  std::string out;
  wire::putU8(out, a.version);
  wire::putU16(out, a.connection_index);
  wire::putU16(out, a.connection_count);
  wire::putBytes(out, a.session_id);
  wire::putU8(out, static_cast<uint8_t>(a.site.size()));
  out += a.site;
  return out;
}

Result<HelloAck> decodeHelloAck(std::string_view payload) {
  wire::Reader r(payload);
  HelloAck a;
  a.version = r.u8();
  a.connection_index = r.u16();
  a.connection_count = r.u16();
  r.bytes(a.session_id);
  const uint8_t site_len = r.u8();
  a.site = std::string(r.take(site_len));
  VANDRA_TRY(r.finish("HELLO_ACK"));
  VANDRA_TRY(checkHelloAck(a));
  return a;
}

Result<std::string> encodeOpen(const Open& o) {
  VANDRA_TRY(asCallerError(checkOpen(o), "OPEN"));
  std::string out;
  wire::putU8(out, static_cast<uint8_t>(o.kind));
  wire::putU8(out, static_cast<uint8_t>(o.label.size()));
  out += o.label;
  return out;
}

Result<Open> decodeOpen(std::string_view payload) {
  wire::Reader r(payload);
  Open o;
  o.kind = static_cast<StreamKind>(r.u8());
  const uint8_t label_len = r.u8();
  o.label = std::string(r.take(label_len));
  VANDRA_TRY(r.finish("OPEN"));
  VANDRA_TRY(checkOpen(o));
  return o;
}

Result<std::string> encodeWindow(uint32_t increment) {
  VANDRA_TRY(asCallerError(checkWindow(increment), "WINDOW"));
  std::string out;
  wire::putU32(out, increment);
  return out;
}

Result<uint32_t> decodeWindow(std::string_view payload) {
  wire::Reader r(payload);
  const uint32_t increment = r.u32();
  VANDRA_TRY(r.finish("WINDOW"));
  VANDRA_TRY(checkWindow(increment));
  return increment;
}

Result<std::string> encodeClose(const CloseReason& c) {
  VANDRA_TRY(asCallerError(checkClose(c), "CLOSE/GOAWAY"));
  std::string out;
  wire::putU16(out, static_cast<uint16_t>(c.code));
  wire::putU16(out, static_cast<uint16_t>(c.reason.size()));
  out += c.reason;
  return out;
}

Result<CloseReason> decodeClose(std::string_view payload) {
  wire::Reader r(payload);
  CloseReason c;
  c.code = static_cast<WireError>(r.u16());
  const uint16_t reason_len = r.u16();
  if (r.ok() && reason_len > kMaxCloseReason) {
    return protocol("CLOSE/GOAWAY: reason length " + std::to_string(reason_len) + " exceeds " +
                    std::to_string(kMaxCloseReason));
  }
  c.reason = std::string(r.take(reason_len));
  VANDRA_TRY(r.finish("CLOSE/GOAWAY"));
  VANDRA_TRY(checkClose(c));
  return c;
}

std::string encodePing(uint64_t token) {
  std::string out;
  wire::putU64(out, token);
  return out;
}

Result<uint64_t> decodePing(std::string_view payload) {
  wire::Reader r(payload);
  const uint64_t token = r.u64();
  VANDRA_TRY(r.finish("PING/PONG"));
  return token;
}

}  // namespace vandra::tunnel
