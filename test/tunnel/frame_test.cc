// Tests for src/tunnel/frame: every command round-trips, every malformed header or payload is
// refused with the right code and a message naming what was wrong, the decoder copes with any
// chunking, and a hostile peer can neither crash it nor make it buffer beyond one frame.
#include "vandra/tunnel/frame.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace vandra::tunnel {
namespace {

SessionId session() {
  SessionId s{};
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = static_cast<uint8_t>(0xA0 + i);
  }
  return s;
}

Hello sampleHello() {
  Hello h;
  h.min_version = 1;
  h.max_version = 2;
  h.connection_index = 2;
  h.connection_count = 4;
  h.session_id = session();
  h.site = "zurich-1";
  return h;
}

HelloAck sampleAck() {
  HelloAck a;
  a.version = 2;
  a.connection_index = 2;
  a.connection_count = 4;
  a.session_id = session();
  a.site = "geneva-2";
  return a;
}

// A raw header, for frames the encoder would never produce.
std::string header(uint32_t magic, uint8_t version, uint8_t command, uint16_t flags,
                   uint32_t stream, uint32_t length) {
  std::string h;
  for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>(magic >> s));
  h.push_back(static_cast<char>(version));
  h.push_back(static_cast<char>(command));
  h.push_back(static_cast<char>(flags >> 8));
  h.push_back(static_cast<char>(flags));
  for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>(stream >> s));
  for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>(length >> s));
  return h;
}

std::string header(uint8_t version, Command c, uint16_t flags, uint32_t stream, uint32_t length) {
  return header(kFrameMagic, version, static_cast<uint8_t>(c), flags, stream, length);
}

// One frame of every command, valid under version 2.
std::vector<Frame> everyCommand() {
  std::vector<Frame> v;
  v.push_back({1, Command::Hello, 0, 0, *encodeHello(sampleHello())});
  v.push_back({2, Command::HelloAck, 0, 0, *encodeHelloAck(sampleAck())});
  v.push_back({2, Command::Open, 0, 1, *encodeOpen({StreamKind::Control, "control"})});
  v.push_back({2, Command::Open, 0, 3, *encodeOpen({StreamKind::Migration, "m-42"})});
  v.push_back({2, Command::Open, 0, 5, *encodeOpen({StreamKind::Nbd, "m-42/disk-0 \xc3\xa9"})});
  v.push_back({2, Command::Open, 0, 7, *encodeOpen({StreamKind::Ethernet, ""})});
  v.push_back({2, Command::Data, 0, 3, "some migration bytes\0\xff"});
  v.push_back({2, Command::Data, kFlagEndStream, 3, ""});
  v.push_back({2, Command::Window, 0, 3, *encodeWindow(65536)});
  v.push_back({2, Command::Close, 0, 3, *encodeClose({WireError::Cancelled, "aborted"})});
  v.push_back({2, Command::Ping, 0, 0, encodePing(0x0123456789ABCDEFull)});
  v.push_back({2, Command::Pong, 0, 0, encodePing(0x0123456789ABCDEFull)});
  v.push_back({2, Command::GoAway, 0, 0, *encodeClose({WireError::Shutdown, "agent stopping"})});
  return v;
}

std::string concat(const std::vector<Frame>& frames) {
  std::string out;
  for (const auto& f : frames) {
    appendFrame(out, f);
  }
  return out;
}

// Decodes everything in @p bytes; stops at the first error.
Result<std::vector<Frame>> decodeAll(FrameDecoder& d, std::string_view bytes) {
  d.feed(bytes);
  std::vector<Frame> out;
  for (;;) {
    VANDRA_TRY_ASSIGN(auto f, d.next());
    if (!f) {
      return out;
    }
    out.push_back(std::move(*f));
  }
}

// The error the decoder reports for @p bytes (fed at once), or Ok.
Error decodeError(std::string_view bytes, uint8_t negotiated = 0) {
  FrameDecoder d;
  d.setVersion(negotiated);
  auto r = decodeAll(d, bytes);
  return r ? Error(ErrorCode::Ok, "decoded " + std::to_string(r->size()) + " frames") : r.error();
}

#define EXPECT_FRAME_ERROR(bytes, want_code, want_text)                     \
  do {                                                                      \
    const Error e_ = decodeError(bytes);                                    \
    EXPECT_EQ(e_.code, want_code) << e_.message;                            \
    EXPECT_NE(e_.message.find(want_text), std::string::npos) << e_.message; \
  } while (false)

// ---- round trips ---------------------------------------------------------------------------

TEST(FrameTest, HeaderLayoutIsBigEndian) {
  const Frame f{2, Command::Data, kFlagEndStream, 0x01020304, "xy"};
  const std::string want("VNDT\x02\x04\x00\x01\x01\x02\x03\x04\x00\x00\x00\x02xy", 18);
  EXPECT_EQ(encodeFrame(f), want);
}

TEST(FrameTest, EveryCommandRoundTrips) {
  for (const Frame& f : everyCommand()) {
    SCOPED_TRACE(std::string(toString(f.command)));
    ASSERT_TRUE(validateFrame(f)) << validateFrame(f).error().message;
    FrameDecoder d;
    auto got = decodeAll(d, encodeFrame(f));
    ASSERT_TRUE(got) << got.error().message;
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ((*got)[0], f);
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(FrameTest, TypedPayloadsRoundTrip) {
  EXPECT_EQ(*decodeHello(*encodeHello(sampleHello())), sampleHello());
  EXPECT_EQ(*decodeHelloAck(*encodeHelloAck(sampleAck())), sampleAck());
  for (auto k :
       {StreamKind::Control, StreamKind::Migration, StreamKind::Nbd, StreamKind::Ethernet}) {
    const Open o{k, std::string(kMaxOpenLabel, 'l')};
    EXPECT_EQ(*decodeOpen(*encodeOpen(o)), o);
  }
  for (uint32_t inc : {1u, 65536u, kMaxWindow}) {
    EXPECT_EQ(*decodeWindow(*encodeWindow(inc)), inc);
  }
  const CloseReason c{WireError::FlowControl, std::string(kMaxCloseReason, 'r')};
  EXPECT_EQ(*decodeClose(*encodeClose(c)), c);
  const CloseReason future{static_cast<WireError>(999), "a code from a newer peer"};
  EXPECT_EQ(*decodeClose(*encodeClose(future)), future);
  EXPECT_EQ(toString(future.code), "unknown");
  for (uint64_t t : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}}) {
    EXPECT_EQ(*decodePing(encodePing(t)), t);
  }
}

TEST(FrameTest, LargestDataFrameRoundTrips) {
  const Frame f{2, Command::Data, 0, 9, std::string(kMaxPayload, 'd')};
  FrameDecoder d;
  auto got = decodeAll(d, encodeFrame(f));
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0], f);
}

TEST(FrameTest, Version1FramesAreAccepted) {
  const Frame data{1, Command::Data, 0, 1, "v1 bytes"};
  const Frame ping{1, Command::Ping, 0, 0, encodePing(7)};
  FrameDecoder d;
  d.setVersion(1);
  auto got = decodeAll(d, encodeFrame(data) + encodeFrame(ping));
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0], data);
  EXPECT_EQ((*got)[1], ping);
}

// ---- chunking --------------------------------------------------------------------------------

TEST(FrameDecoderTest, SeveralFramesInOneBuffer) {
  const auto frames = everyCommand();
  FrameDecoder d;
  auto got = decodeAll(d, concat(frames));
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(*got, frames);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameDecoderTest, OneByteAtATime) {
  const auto frames = everyCommand();
  const std::string bytes = concat(frames);
  FrameDecoder d;
  std::vector<Frame> got;
  for (const char c : bytes) {
    d.feed(&c, 1);
    for (;;) {
      auto f = d.next();
      ASSERT_TRUE(f) << f.error().message;
      if (!*f) {
        break;
      }
      got.push_back(std::move(**f));
    }
  }
  EXPECT_EQ(got, frames);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameDecoderTest, SplitAtEveryByteBoundary) {
  const auto frames = everyCommand();
  const std::string bytes = concat(frames);
  for (size_t cut = 0; cut <= bytes.size(); ++cut) {
    FrameDecoder d;
    auto first = decodeAll(d, std::string_view(bytes).substr(0, cut));
    ASSERT_TRUE(first) << "cut " << cut << ": " << first.error().message;
    auto second = decodeAll(d, std::string_view(bytes).substr(cut));
    ASSERT_TRUE(second) << "cut " << cut << ": " << second.error().message;
    first->insert(first->end(), second->begin(), second->end());
    ASSERT_EQ(*first, frames) << "cut " << cut;
  }
}

TEST(FrameDecoderTest, TruncatedPayloadNeedsMoreBytes) {
  const std::string bytes = encodeFrame({2, Command::Data, 0, 1, "0123456789"});
  FrameDecoder d;
  d.feed(bytes.substr(0, kFrameHeaderSize + 4));
  auto f = d.next();
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_FALSE(*f);
  EXPECT_EQ(d.buffered(), kFrameHeaderSize + 4);
  d.feed(bytes.substr(kFrameHeaderSize + 4));
  f = d.next();
  ASSERT_TRUE(f && *f);
  EXPECT_EQ((*f)->payload, "0123456789");
}

// ---- malformed headers -------------------------------------------------------------------------

TEST(FrameDecoderTest, BadMagic) {
  EXPECT_FRAME_ERROR(header(0x564E4455, 2, 4, 0, 1, 0), ErrorCode::TunnelProtocol,
                     "bad magic 0x564e4455");
  EXPECT_FRAME_ERROR("GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode::TunnelProtocol, "bad magic");
}

TEST(FrameDecoderTest, UnknownVersion) {
  EXPECT_FRAME_ERROR(header(0, Command::Data, 0, 1, 0), ErrorCode::TunnelVersion,
                     "protocol version 0, this agent speaks 1..6");
  EXPECT_FRAME_ERROR(header(static_cast<uint8_t>(kProtocolVersion + 1), Command::Data, 0, 1, 0),
                     ErrorCode::TunnelVersion,
                     "protocol version " + std::to_string(kProtocolVersion + 1));
  EXPECT_FRAME_ERROR(header(255, Command::Hello, 0, 0, 0), ErrorCode::TunnelVersion,
                     "protocol version 255");
}

TEST(FrameDecoderTest, VersionOtherThanNegotiated) {
  const Error e = decodeError(encodeFrame({1, Command::Data, 0, 1, "x"}), 2);
  EXPECT_EQ(e.code, ErrorCode::TunnelProtocol);
  EXPECT_NE(e.message.find("version 1 but the connection negotiated 2"), std::string::npos)
      << e.message;
}

TEST(FrameDecoderTest, CommandZeroAndUnknownCommands) {
  EXPECT_FRAME_ERROR(header(kFrameMagic, 2, 0, 0, 1, 0), ErrorCode::TunnelProtocol,
                     "command 0, which is invalid");
  EXPECT_FRAME_ERROR(header(kFrameMagic, 2, 10, 0, 1, 0), ErrorCode::TunnelProtocol,
                     "unknown command 10");
  EXPECT_FRAME_ERROR(header(kFrameMagic, 2, 255, 0, 0, 0), ErrorCode::TunnelProtocol,
                     "unknown command 255");
}

TEST(FrameDecoderTest, ReservedFlagBits) {
  EXPECT_FRAME_ERROR(header(3, Command::Data, 0x0004, 1, 0), ErrorCode::TunnelProtocol,
                     "DATA frame has reserved flag bits 0x0004 set");
  // COMPRESSED is version 3's, and DATA's only.
  EXPECT_FRAME_ERROR(header(2, Command::Data, kFlagCompressed, 1, 0), ErrorCode::TunnelProtocol,
                     "compressed DATA frame under protocol version 2");
  EXPECT_FRAME_ERROR(header(3, Command::Window, kFlagCompressed, 1, 4) + std::string(4, '\1'),
                     ErrorCode::TunnelProtocol, "WINDOW frame has reserved flag bits 0x0002");
  EXPECT_FRAME_ERROR(header(2, Command::Data, 0x8001, 1, 0), ErrorCode::TunnelProtocol,
                     "reserved flag bits 0x8000");
  // END_STREAM means something only on DATA.
  EXPECT_FRAME_ERROR(header(2, Command::Ping, kFlagEndStream, 0, 8) + std::string(8, '\0'),
                     ErrorCode::TunnelProtocol, "PING frame has reserved flag bits 0x0001");
}

TEST(FrameDecoderTest, StreamZeroWhereAStreamIsNeeded) {
  for (Command c : {Command::Open, Command::Data, Command::Window, Command::Close}) {
    SCOPED_TRACE(std::string(toString(c)));
    EXPECT_FRAME_ERROR(header(2, c, 0, 0, 0), ErrorCode::TunnelProtocol,
                       std::string(toString(c)) + " frame on stream 0");
  }
}

TEST(FrameDecoderTest, ConnectionCommandsOnAStream) {
  for (Command c :
       {Command::Hello, Command::HelloAck, Command::Ping, Command::Pong, Command::GoAway}) {
    SCOPED_TRACE(std::string(toString(c)));
    EXPECT_FRAME_ERROR(header(2, c, 0, 7, 0), ErrorCode::TunnelProtocol,
                       std::string(toString(c)) + " frame must use stream 0, not stream 7");
  }
}

TEST(FrameDecoderTest, OversizedLengthIsRefusedFromTheHeaderAlone) {
  struct Case {
    Command c;
    uint32_t stream;
    uint32_t length;
  };
  for (const Case& k :
       {Case{Command::Data, 1, kMaxPayload + 1}, Case{Command::Data, 1, ~0u},
        Case{Command::Hello, 0, 88}, Case{Command::HelloAck, 0, 87}, Case{Command::Open, 1, 67},
        Case{Command::Window, 1, 5}, Case{Command::Close, 1, 261}, Case{Command::Ping, 0, 9},
        Case{Command::Pong, 0, 1u << 30}, Case{Command::GoAway, 0, 261}}) {
    SCOPED_TRACE(std::string(toString(k.c)) + " " + std::to_string(k.length));
    FrameDecoder d;
    d.feed(header(2, k.c, 0, k.stream, k.length));  // not one payload byte
    auto r = d.next();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::LimitExceeded);
    EXPECT_NE(r.error().message.find("announces a payload of " + std::to_string(k.length)),
              std::string::npos)
        << r.error().message;
    EXPECT_EQ(d.buffered(), 0u);
  }
  // The bound itself is fine: the decoder waits for the payload.
  FrameDecoder d;
  d.feed(header(2, Command::Data, 0, 1, kMaxPayload));
  auto r = d.next();
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
}

TEST(FrameDecoderTest, WindowUnderVersion1) {
  EXPECT_FRAME_ERROR(header(1, Command::Window, 0, 3, 4) + std::string("\0\0\1\0", 4),
                     ErrorCode::TunnelProtocol,
                     "WINDOW frame under protocol version 1 (flow control needs version 2)");
  Frame f{1, Command::Window, 0, 3, *encodeWindow(256)};
  EXPECT_EQ(validateFrame(f).error().code, ErrorCode::TunnelProtocol);
}

// ---- malformed payloads ---------------------------------------------------------------------

TEST(FrameDecoderTest, PayloadTooShortForItsCommand) {
  struct Case {
    Command c;
    uint32_t stream;
    std::string payload;
  };
  const std::string hello = *encodeHello(sampleHello());
  const std::string ack = *encodeHelloAck(sampleAck());
  for (const Case& k :
       {Case{Command::Ping, 0, "1234"}, Case{Command::Pong, 0, ""}, Case{Command::Window, 1, "12"},
        Case{Command::Hello, 0, hello.substr(0, 10)},
        Case{Command::Hello, 0, hello.substr(0, hello.size() - 1)},
        Case{Command::HelloAck, 0, ack.substr(0, ack.size() - 3)},
        Case{Command::Open, 1,
             std::string("\x02\x05"
                         "ab",
                         4)},
        Case{Command::Close, 1,
             std::string("\x00\x01\x00\x09"
                         "short",
                         9)},
        Case{Command::GoAway, 0, std::string("\x00", 1)}}) {
    SCOPED_TRACE(std::string(toString(k.c)));
    const uint8_t version = k.c == Command::Hello ? 1 : 2;
    EXPECT_FRAME_ERROR(
        header(version, k.c, 0, k.stream, static_cast<uint32_t>(k.payload.size())) + k.payload,
        ErrorCode::TunnelProtocol, "is too short for its fields");
  }
}

TEST(FrameDecoderTest, TrailingBytesInTypedPayloads) {
  struct Case {
    Command c;
    uint32_t stream;
    std::string payload;
  };
  for (const Case& k : {Case{Command::Open, 1, *encodeOpen({StreamKind::Nbd, "d"}) + "x"},
                        Case{Command::Close, 1, *encodeClose({WireError::NoError, ""}) + "x"},
                        Case{Command::Hello, 0, *encodeHello(sampleHello()) + "x"},
                        Case{Command::HelloAck, 0, *encodeHelloAck(sampleAck()) + "x"}}) {
    SCOPED_TRACE(std::string(toString(k.c)));
    const uint8_t version = k.c == Command::Hello ? 1 : 2;
    EXPECT_FRAME_ERROR(
        header(version, k.c, 0, k.stream, static_cast<uint32_t>(k.payload.size())) + k.payload,
        ErrorCode::TunnelProtocol, "1 trailing byte(s) after its last field");
  }
}

TEST(FrameDecoderTest, HelloWithBadSiteName) {
  for (const std::string& site :
       std::vector<std::string>{"Zurich", "zurich_1", "", std::string(65, 'a'), "z\xc3\xbcrich"}) {
    Hello h = sampleHello();
    h.site = site;
    // Build the payload by hand: the encoder refuses it.
    std::string p = encodeHello(sampleHello())->substr(0, 22);
    p.push_back(static_cast<char>(site.size()));
    p += site;
    SCOPED_TRACE(site);
    const auto bytes = header(1, Command::Hello, 0, 0, static_cast<uint32_t>(p.size())) + p;
    if (site.size() > kMaxSiteName) {
      EXPECT_FRAME_ERROR(bytes, ErrorCode::LimitExceeded, "HELLO frame announces a payload");
    } else {
      EXPECT_FRAME_ERROR(bytes, ErrorCode::TunnelProtocol, "is not [a-z0-9-]{1,64}");
    }
    EXPECT_EQ(encodeHello(h).error().code, ErrorCode::InvalidArgument);
  }
}

TEST(FrameDecoderTest, HelloFieldRules) {
  auto refused = [](Hello h, const std::string& text) {
    const auto enc = encodeHello(h);
    ASSERT_FALSE(enc);
    EXPECT_EQ(enc.error().code, ErrorCode::InvalidArgument);
    EXPECT_NE(enc.error().message.find(text), std::string::npos) << enc.error().message;
  };
  Hello h = sampleHello();
  h.min_version = 0;
  refused(h, "version range 0..2");
  h = sampleHello();
  h.min_version = 3;
  refused(h, "version range 3..2");
  h = sampleHello();
  h.connection_count = 0;
  refused(h, "connection count 0");
  h.connection_count = kMaxConnections + 1;
  refused(h, "connection count 65");
  h = sampleHello();
  h.connection_index = 4;
  refused(h, "connection index 4 is not below the count 4");
  h = sampleHello();
  h.session_id = {};
  refused(h, "session id is all zero");
}

TEST(FrameDecoderTest, HelloHeaderVersionMustBeItsMinimum) {
  const Frame f{2, Command::Hello, 0, 0, *encodeHello(sampleHello())};  // min is 1
  EXPECT_FRAME_ERROR(encodeFrame(f), ErrorCode::TunnelProtocol,
                     "HELLO frame has version 2 but its payload's minimum version is 1");
  HelloAck a = sampleAck();
  a.version = 1;
  const Frame g{2, Command::HelloAck, 0, 0, *encodeHelloAck(a)};
  EXPECT_FRAME_ERROR(encodeFrame(g), ErrorCode::TunnelProtocol,
                     "HELLO_ACK frame has version 2 but its payload chooses version 1");
}

TEST(FrameDecoderTest, OpenWindowCloseFieldRules) {
  auto bytes = [](Command c, uint32_t stream, std::string p) {
    return header(2, c, 0, stream, static_cast<uint32_t>(p.size())) + p;
  };
  EXPECT_FRAME_ERROR(bytes(Command::Open, 1, std::string("\x00\x00", 2)), ErrorCode::TunnelProtocol,
                     "stream kind 0 is not control(1)");
  EXPECT_FRAME_ERROR(bytes(Command::Open, 1, std::string("\x05\x00", 2)), ErrorCode::TunnelProtocol,
                     "stream kind 5");
  EXPECT_FRAME_ERROR(bytes(Command::Open, 1, std::string("\x01\x02\xc3\x28", 4)),
                     ErrorCode::TunnelProtocol, "label '\\xc3(' is not UTF-8");
  EXPECT_FRAME_ERROR(bytes(Command::Open, 1,
                           std::string("\x01\x02"
                                       "a\n",
                                       4)),
                     ErrorCode::TunnelProtocol, "without control characters");
  EXPECT_FRAME_ERROR(bytes(Command::Window, 1, std::string(4, '\0')), ErrorCode::TunnelProtocol,
                     "credit increment 0 is not 1..2147483647");
  EXPECT_FRAME_ERROR(bytes(Command::Window, 1, std::string("\x80\x00\x00\x00", 4)),
                     ErrorCode::TunnelProtocol, "credit increment 2147483648");
  std::string close("\x00\x01\x01\x01", 4);  // reason length 257
  close += std::string(256, 'r');
  EXPECT_FRAME_ERROR(bytes(Command::Close, 1, close), ErrorCode::TunnelProtocol,
                     "reason length 257 exceeds 256");
  EXPECT_FRAME_ERROR(bytes(Command::GoAway, 0, std::string("\x00\x01\x00\x01\x00", 5)),
                     ErrorCode::TunnelProtocol, "reason '\\x00' is not UTF-8 without control");
}

TEST(FrameTest, EncodersRefuseWhatThePeerWouldRefuse) {
  EXPECT_EQ(encodeOpen({StreamKind::Nbd, std::string(65, 'x')}).error().code,
            ErrorCode::InvalidArgument);
  EXPECT_EQ(encodeOpen({static_cast<StreamKind>(9), "x"}).error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(encodeWindow(0).error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(encodeWindow(kMaxWindow + 1).error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(encodeClose({WireError::NoError, std::string(257, 'x')}).error().code,
            ErrorCode::InvalidArgument);
  HelloAck a = sampleAck();
  a.version = kProtocolVersion + 1;  // a version this build does not speak
  EXPECT_EQ(encodeHelloAck(a).error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(validateFrame({2, Command::Data, 0, 1, std::string(kMaxPayload + 1, 'x')}).error().code,
            ErrorCode::LimitExceeded);
}

// ---- stickiness and hostile peers -------------------------------------------------------------

TEST(FrameDecoderTest, ErrorsAreSticky) {
  FrameDecoder d;
  d.feed(header(kFrameMagic, 2, 0, 0, 1, 0));
  auto r = d.next();
  ASSERT_FALSE(r);
  EXPECT_TRUE(d.failed());
  EXPECT_EQ(d.buffered(), 0u);
  // A perfectly good frame afterwards changes nothing: the connection is dead.
  d.feed(encodeFrame({2, Command::Ping, 0, 0, encodePing(1)}));
  EXPECT_EQ(d.buffered(), 0u);
  for (int i = 0; i < 3; ++i) {
    auto again = d.next();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ErrorCode::TunnelProtocol);
    EXPECT_EQ(again.error().message, r.error().message);
  }
}

TEST(FrameDecoderTest, HostilePeerRandomGarbage) {
  std::mt19937_64 rng(20240611);
  size_t errors = 0;
  for (int round = 0; round < 2000; ++round) {
    FrameDecoder d;
    std::string stream;
    // Often start with a valid prefix so the garbage lands mid-protocol.
    if (round % 2 == 0) {
      stream = concat(everyCommand());
    }
    const size_t garbage = rng() % 600;
    for (size_t i = 0; i < garbage; ++i) {
      stream.push_back(static_cast<char>(rng()));
    }
    // Sometimes a plausible header with a huge or random length.
    if (round % 3 == 0) {
      stream += header(2, Command::Data, 0, 1, static_cast<uint32_t>(rng()));
    }
    size_t pos = 0;
    std::optional<Error> first_error;
    while (pos < stream.size()) {
      const size_t chunk = std::min<size_t>(1 + rng() % 97, stream.size() - pos);
      d.feed(stream.data() + pos, chunk);
      pos += chunk;
      ASSERT_LE(d.buffered(), kMaxFrameSize + 97);
      for (;;) {
        auto f = d.next();
        if (!f) {
          if (first_error) {
            ASSERT_EQ(f.error().message, first_error->message);  // sticky, same error
          }
          first_error = f.error();
          ASSERT_TRUE(d.failed());
          ASSERT_EQ(d.buffered(), 0u);
          break;
        }
        if (!*f) {
          break;
        }
        ASSERT_LE((*f)->payload.size(), maxPayload((*f)->command));
        ASSERT_TRUE(validateFrame(**f));
      }
    }
    errors += first_error ? 1u : 0u;
  }
  EXPECT_GT(errors, 1000u);  // garbage almost always breaks the protocol
}

TEST(FrameDecoderTest, HostilePeerSlowMaximalFrameStaysBounded) {
  // A peer announces the largest DATA payload and trickles it: the buffer grows only with the
  // bytes actually received and never beyond one frame.
  FrameDecoder d;
  d.feed(header(2, Command::Data, 0, 1, kMaxPayload));
  const std::string chunk(4093, 'p');
  size_t sent = 0;
  while (sent < kMaxPayload) {
    const size_t n = std::min(chunk.size(), kMaxPayload - sent);
    d.feed(chunk.data(), n);
    sent += n;
    ASSERT_EQ(d.buffered(), kFrameHeaderSize + sent);
    auto f = d.next();
    ASSERT_TRUE(f);
    if (sent < kMaxPayload) {
      ASSERT_FALSE(*f);
    } else {
      ASSERT_TRUE(*f);
      EXPECT_EQ((*f)->payload.size(), kMaxPayload);
    }
  }
  EXPECT_EQ(d.buffered(), 0u);
}

// ---- version negotiation ------------------------------------------------------------------------

TEST(FrameDecoderTest, CompressedDataMustBeOneZstdFrameOfBoundedSize) {
  // Not zstd at all, and a zstd frame that is empty: refused from the payload alone.
  EXPECT_FRAME_ERROR(header(3, Command::Data, kFlagCompressed, 1, 5) + "hello",
                     ErrorCode::TunnelProtocol, "not a zstd frame");
  const Error e = decodeError(encodeFrame({3, Command::Data, kFlagCompressed, 1, ""}), 3);
  EXPECT_EQ(e.code, ErrorCode::TunnelProtocol);
  EXPECT_NE(e.message.find("too short"), std::string::npos) << e.message;
}

TEST(NegotiateVersionTest, HighestCommonVersion) {
  EXPECT_EQ(*negotiateVersion(1, 2, 1, 2), 2);
  EXPECT_EQ(*negotiateVersion(1, 2, 1, 1), 1);  // an old peer
  EXPECT_EQ(*negotiateVersion(1, 2, 2, 7), 2);  // a newer peer
  EXPECT_EQ(*negotiateVersion(1, 1, 1, 2), 1);
}

TEST(NegotiateVersionTest, NoCommonVersionNamesBothRanges) {
  auto r = negotiateVersion(2, 2, 1, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::TunnelVersion);
  EXPECT_NE(r.error().message.find("we speak 2..2, the peer 1..1"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(negotiateVersion(1, 2, 3, 4).error().code, ErrorCode::TunnelVersion);
  EXPECT_EQ(kindOf(ErrorCode::TunnelVersion), ErrorKind::Conflict);
  EXPECT_EQ(kindOf(ErrorCode::TunnelProtocol), ErrorKind::BadInput);
  EXPECT_EQ(toString(ErrorCode::TunnelProtocol), "tunnel_protocol");
}

TEST(NegotiateVersionTest, EmptyRanges) {
  EXPECT_EQ(negotiateVersion(2, 1, 1, 2).error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(negotiateVersion(0, 2, 1, 2).error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(negotiateVersion(1, 2, 2, 1).error().code, ErrorCode::TunnelProtocol);
  EXPECT_EQ(negotiateVersion(1, 2, 0, 0).error().code, ErrorCode::TunnelProtocol);
}

TEST(FrameTest, WireErrorForDecoderErrors) {
  EXPECT_EQ(wireErrorFor(ErrorCode::TunnelProtocol), WireError::ProtocolError);
  EXPECT_EQ(wireErrorFor(ErrorCode::LimitExceeded), WireError::ProtocolError);
  EXPECT_EQ(wireErrorFor(ErrorCode::TunnelVersion), WireError::VersionMismatch);
  EXPECT_EQ(wireErrorFor(ErrorCode::Io), WireError::Internal);
}

}  // namespace
}  // namespace vandra::tunnel
