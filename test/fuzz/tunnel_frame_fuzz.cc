// libFuzzer target: feeds bytes to a FrameDecoder in chunks whose sizes come from the input,
// and checks what hostile input must never break: the chunking does not change the outcome,
// the buffer stays within one frame plus a chunk, every frame returned passes validateFrame,
// re-encodes to exactly the bytes it came from, and its typed payload decodes and re-encodes
// to the same bytes. An error is sticky. Must not touch the file system or the network.
//
// Input: byte 0 selects the negotiated version (0..2; 3 means 0), bytes 1..3 are chunk sizes
// used in turn (n -> n + 1 bytes; 255 -> everything left), the rest is the byte stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/tunnel/frame.h"

namespace {

using namespace vandra::tunnel;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

void checkTypedPayload(const Frame& f) {
  switch (f.command) {
    case Command::Hello: {
      auto h = decodeHello(f.payload);
      check(h && h->min_version == f.version);
      auto again = encodeHello(*h);
      check(again && *again == f.payload);
      break;
    }
    case Command::HelloAck: {
      auto a = decodeHelloAck(f.payload);
      check(a && a->version == f.version);
      auto again = encodeHelloAck(*a);
      check(again && *again == f.payload);
      break;
    }
    case Command::Open: {
      auto o = decodeOpen(f.payload);
      check(o.has_value());
      auto again = encodeOpen(*o);
      check(again && *again == f.payload);
      break;
    }
    case Command::Data:
      check(f.payload.size() <= kMaxPayload);
      break;
    case Command::Window: {
      auto w = decodeWindow(f.payload);
      check(w.has_value() && f.version >= 2);
      auto again = encodeWindow(*w);
      check(again && *again == f.payload);
      break;
    }
    case Command::Close:
    case Command::GoAway: {
      auto c = decodeClose(f.payload);
      check(c.has_value());
      auto again = encodeClose(*c);
      check(again && *again == f.payload);
      break;
    }
    case Command::Ping:
    case Command::Pong: {
      auto t = decodePing(f.payload);
      check(t.has_value() && encodePing(*t) == f.payload);
      break;
    }
  }
}

struct Outcome {
  std::vector<Frame> frames;
  std::optional<vandra::Error> error;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) {
    return 0;
  }
  const auto version = static_cast<uint8_t>(data[0] % 4 == 3 ? 0 : data[0] % 4);
  const uint8_t pattern[3] = {data[1], data[2], data[3]};
  const std::string_view stream(reinterpret_cast<const char*>(data + 4), size - 4);

  // Chunked, draining next() after every chunk as the transport does.
  Outcome chunked;
  FrameDecoder d;
  d.setVersion(version);
  size_t pos = 0;
  size_t consumed = 0;  // stream bytes returned as frames
  for (size_t i = 0; pos < stream.size(); ++i) {
    const uint8_t p = pattern[i % 3];
    const size_t want = p == 255 ? stream.size() - pos : size_t{p} + 1;
    const size_t n = want < stream.size() - pos ? want : stream.size() - pos;
    d.feed(stream.data() + pos, n);
    pos += n;
    check(d.buffered() <= kMaxFrameSize + n);
    while (!chunked.error) {
      auto f = d.next();
      if (!f) {
        check(d.failed() && d.buffered() == 0);
        chunked.error = f.error();
        break;
      }
      if (!*f) {
        break;
      }
      const Frame& frame = **f;
      check(validateFrame(frame, version).has_value());
      check(frame.payload.size() <= maxPayload(frame.command));
      const std::string bytes = encodeFrame(frame);
      check(stream.substr(consumed, bytes.size()) == bytes);
      consumed += bytes.size();
      checkTypedPayload(frame);
      chunked.frames.push_back(std::move(**f));
    }
    if (chunked.error) {
      // Sticky: more input and more calls change nothing.
      d.feed(stream.data(), stream.size());
      check(d.buffered() == 0);
      auto again = d.next();
      check(!again && again.error().code == chunked.error->code &&
            again.error().message == chunked.error->message);
      break;
    }
  }

  // The same stream in one piece gives the same frames and the same error.
  Outcome whole;
  FrameDecoder w;
  w.setVersion(version);
  w.feed(stream);
  for (;;) {
    auto f = w.next();
    if (!f) {
      whole.error = f.error();
      break;
    }
    if (!*f) {
      break;
    }
    whole.frames.push_back(std::move(**f));
  }
  check(whole.frames == chunked.frames);
  check(whole.error.has_value() == chunked.error.has_value());
  if (whole.error) {
    check(whole.error->code == chunked.error->code &&
          whole.error->message == chunked.error->message);
  }
  return 0;
}
