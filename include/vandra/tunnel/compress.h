// Compression of the tunnel's bulk streams (QEMU's migration stream, NBD): protocol version 3,
// docs/tunnel/protocol.md ("Compressed DATA"), ADR 0026. Pure: no sockets, no threads.
//
//   writer (Stream::write)                                     reader (Stream::read)
//   plain bytes ─> pieces of at most kCompressPiece
//     └─ ChunkCompressor::encode(piece)
//          ├─ pays (compressed <= 15/16 of the piece) ─> DATA flags=COMPRESSED ─> decompressChunk
//          │                                            {one whole zstd frame,   (content size
//          │                                             content size declared}   declared, 1..
//          └─ does not pay ─────────────────────────────> DATA {the plain bytes}   kMaxPlainChunk)
//
// Each compressed DATA frame is one complete zstd frame that declares its content size, so a
// reader needs no state between frames and never holds more than kMaxPlainChunk plain bytes
// for one frame: a peer cannot make it allocate more by what it sends. The writer's level
// follows where the time goes: when the writer waits for the link (a full send queue, the
// bandwidth cap) more than it compresses, a higher level costs nothing and sends less; when
// compressing takes the time (a fast link, or a CPU the guest keeps busy), a lower one.
// Waiting for the peer's window is not the link's: its reader is behind, and on a host whose
// cores are all busy a higher level would take CPU from it too. Every piece is
// tried: zstd's fast levels give up on content that does not compress (encrypted,
// pseudo-random) at several GB/s, so skipping it would save little and miss compressible
// content after it; after a piece that did not pay, the next is tried at a fast level.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "vandra/common/result.h"

namespace vandra::tunnel {

/// The most plain bytes one compressed DATA frame may declare (and the reader allocate).
inline constexpr size_t kMaxPlainChunk = 256 * 1024;
/// What the writer compresses at once (a piece of Stream::write's input).
inline constexpr size_t kCompressPiece = 128 * 1024;

/// The plain size a compressed DATA payload declares, after checking it is exactly one zstd
/// frame (magic, frame header, no bytes after it) declaring 1..kMaxPlainChunk bytes. Cheap: the
/// frame decoder applies it to every compressed frame before it is buffered. Errors:
/// TunnelProtocol naming what is wrong.
[[nodiscard]] Result<size_t> compressedChunkSize(std::string_view payload);

/// The plain bytes of a compressed DATA payload: compressedChunkSize() and then exactly the
/// declared number of bytes, or TunnelProtocol (corrupt data, a checksum or size mismatch).
[[nodiscard]] Result<std::string> decompressChunk(std::string_view payload);

/// How a writer compresses (TunnelSettings::compression "auto" uses the defaults).
struct CompressionPolicy {
  int min_level = 1;
  int max_level = 9;
  int start_level = 1;
  /// After a piece that did not pay, the next is tried at most at this level: zstd's fast
  /// levels give up on incompressible content sooner (the bench guest's dirtied pages: 850
  /// MB/s at level 1, 440 at 3, under 200 from 5 on), and a run of such pieces would
  /// otherwise be searched at the level the link allows. 0: always the level.
  int quick_miss_level = 1;
  /// Plain bytes between two level decisions.
  size_t decide_every = 8 * 1024 * 1024;
};

/// What a writer did so far (also summed per tunnel in TunnelStats).
struct CompressionCounters {
  uint64_t plain_bytes = 0;       // offered to encode()
  uint64_t compressed_bytes = 0;  // sent compressed (the frames' payloads)
  uint64_t compressed_plain = 0;  // of plain_bytes: those that went compressed
  uint64_t chunks_compressed = 0;
  uint64_t chunks_plain = 0;  // sent as they were: compressing did not pay
  uint64_t compress_ns = 0;   // wall time in the compressor
  /// Pieces tried at CompressionPolicy::quick_miss_level instead of the level, after a miss.
  uint64_t quick_tries = 0;
  int level = 0;      // the level now (0: nothing compressed yet)
  int top_level = 0;  // the highest level a piece was tried at
};

/// One writer's compressor (a zstd context and the level). Not thread-safe:
/// one per stream, used under the stream's write lock.
class ChunkCompressor {
 public:
  explicit ChunkCompressor(CompressionPolicy policy = {});
  ~ChunkCompressor();
  ChunkCompressor(const ChunkCompressor&) = delete;
  ChunkCompressor& operator=(const ChunkCompressor&) = delete;

  /// The compressed frame payload for @p plain (1..kMaxPlainChunk bytes) when compressing pays
  /// (at most 15/16 of the plain size); nullopt: send @p plain as it is.
  std::optional<std::string> encode(std::string_view plain);
  /// The writer waited @p d for the link (a full send queue, the bandwidth cap; not the
  /// peer's window, which waits for the peer's reader) after the last encode(): how the
  /// level is chosen.
  void waited(std::chrono::nanoseconds d);
  const CompressionCounters& counters() const { return counters_; }

 private:
  void decide();

  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  CompressionPolicy policy_;
  CompressionCounters counters_;
  int level_;
  bool missed_ = false;  // the last piece did not pay
  // The level decision's window.
  uint64_t window_plain_ = 0;
  uint64_t window_compress_ns_ = 0;
  uint64_t window_wait_ns_ = 0;
};

}  // namespace vandra::tunnel
