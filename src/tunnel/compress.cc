// Compressed DATA payloads (compress.h): the checks a reader applies, and the writer's
// adaptive compressor.
#include "vandra/tunnel/compress.h"

#include <zstd.h>

#include <algorithm>

namespace vandra::tunnel {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kZstdMagic = 0xFD2FB528;  // little-endian on the wire

Error protocol(const std::string& what) {
  return Error(ErrorCode::TunnelProtocol, "Tunnel compressed DATA: " + what);
}

struct DctxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// One decompression context per reading thread, reused (making one costs more than a chunk).
ZSTD_DCtx* threadDctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DctxFree> d(ZSTD_createDCtx());
  return d.get();
}

}  // namespace

Result<size_t> compressedChunkSize(std::string_view payload) {
  if (payload.size() < 4) {
    return fail(protocol("payload of " + std::to_string(payload.size()) +
                         " bytes is too short for a zstd frame"));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(payload.data());
  const uint32_t magic = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
  if (magic != kZstdMagic) {
    return fail(protocol("payload is not a zstd frame (no zstd magic number)"));
  }
  const unsigned long long declared = ZSTD_getFrameContentSize(payload.data(), payload.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) {
    return fail(protocol("the zstd frame header is malformed"));
  }
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN) {
    return fail(protocol("the zstd frame does not declare its content size"));
  }
  if (declared == 0 || declared > kMaxPlainChunk) {
    return fail(protocol("the zstd frame declares " + std::to_string(declared) + " bytes; 1.." +
                         std::to_string(kMaxPlainChunk) + " are allowed"));
  }
  const size_t frame = ZSTD_findFrameCompressedSize(payload.data(), payload.size());
  if (ZSTD_isError(frame) != 0) {
    return fail(protocol(std::string("the zstd frame is truncated or malformed (") +
                         ZSTD_getErrorName(frame) + ")"));
  }
  if (frame != payload.size()) {
    return fail(protocol(std::to_string(payload.size() - frame) +
                         " bytes follow the zstd frame (one frame per DATA)"));
  }
  return static_cast<size_t>(declared);
}

Result<std::string> decompressChunk(std::string_view payload) {
  VANDRA_TRY_ASSIGN(const size_t size, compressedChunkSize(payload));
  ZSTD_DCtx* d = threadDctx();
  if (d == nullptr) {
    return fail(ErrorCode::Internal, "Tunnel: no memory for a zstd decompression context");
  }
  std::string out(size, '\0');
  const size_t n = ZSTD_decompressDCtx(d, out.data(), out.size(), payload.data(), payload.size());
  if (ZSTD_isError(n) != 0) {
    return fail(
        protocol(std::string("the zstd frame does not decompress (") + ZSTD_getErrorName(n) + ")"));
  }
  if (n != size) {
    return fail(protocol("the zstd frame declares " + std::to_string(size) + " bytes but holds " +
                         std::to_string(n)));
  }
  return out;
}

struct ChunkCompressor::Ctx {
  ZSTD_CCtx* c = nullptr;
  ~Ctx() { ZSTD_freeCCtx(c); }
};

ChunkCompressor::ChunkCompressor(CompressionPolicy policy)
    : ctx_(std::make_unique<Ctx>()),
      policy_(policy),
      level_(std::clamp(policy.start_level, policy.min_level, policy.max_level)) {}

ChunkCompressor::~ChunkCompressor() = default;

std::optional<std::string> ChunkCompressor::encode(std::string_view plain) {
  if (plain.empty() || plain.size() > kMaxPlainChunk) {
    return std::nullopt;
  }
  counters_.plain_bytes += plain.size();
  window_plain_ += plain.size();
  if (window_plain_ >= policy_.decide_every) {
    decide();
  }
  if (ctx_->c == nullptr) {
    ctx_->c = ZSTD_createCCtx();
    if (ctx_->c == nullptr) {
      ++counters_.chunks_plain;
      return std::nullopt;  // no memory: the bytes go as they are
    }
  }
  int level = level_;
  if (missed_ && policy_.quick_miss_level > 0 && level > policy_.quick_miss_level) {
    level = policy_.quick_miss_level;
    ++counters_.quick_tries;
  }
  ZSTD_CCtx_reset(ctx_->c, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(ctx_->c, ZSTD_c_compressionLevel, level);
  // The content checksum catches a bug on either side (TLS already guards the wire).
  ZSTD_CCtx_setParameter(ctx_->c, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(ctx_->c, ZSTD_c_contentSizeFlag, 1);
  // Pays only when at most 15/16 of the plain size: a smaller buffer makes zstd give up.
  std::string out(plain.size() - plain.size() / 16, '\0');
  const auto t0 = Clock::now();
  const size_t n = ZSTD_compress2(ctx_->c, out.data(), out.size(), plain.data(), plain.size());
  const auto ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  counters_.compress_ns += ns;
  window_compress_ns_ += ns;
  counters_.level = level_;
  counters_.top_level = std::max(counters_.top_level, level);
  missed_ = ZSTD_isError(n) != 0 || n == 0;
  if (missed_) {
    ++counters_.chunks_plain;
    return std::nullopt;
  }
  out.resize(n);
  ++counters_.chunks_compressed;
  counters_.compressed_bytes += n;
  counters_.compressed_plain += plain.size();
  return out;
}

void ChunkCompressor::waited(std::chrono::nanoseconds d) {
  if (d.count() > 0) {
    window_wait_ns_ += static_cast<uint64_t>(d.count());
  }
}

// Where did the window's time go? Waiting for the link much more than compressing: a higher
// level sends less at no cost. Compressing much more than waiting: a lower level.
void ChunkCompressor::decide() {
  if (window_compress_ns_ > 0) {
    if (window_wait_ns_ > 2 * window_compress_ns_ && level_ < policy_.max_level) {
      ++level_;
    } else if (2 * window_wait_ns_ < window_compress_ns_ && level_ > policy_.min_level) {
      --level_;
    }
  }
  window_plain_ = 0;
  window_compress_ns_ = 0;
  window_wait_ns_ = 0;
}

}  // namespace vandra::tunnel
