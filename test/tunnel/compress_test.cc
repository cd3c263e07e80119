// Tests for src/tunnel/compress: compressed DATA payloads round-trip; the reader refuses every
// payload that is not exactly one zstd frame declaring 1..kMaxPlainChunk bytes, or whose
// content does not match; the writer sends incompressible content as it is (and stops trying
// for a while), and moves its level with where the time goes.
#include "vandra/tunnel/compress.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <cstring>
#include <random>

namespace vandra::tunnel {
namespace {

// Text-like content: words from a small vocabulary, as logs and source files are.
std::string textLike(size_t n, uint32_t seed = 1) {
  static const char* kWords[] = {"migration ", "vandra ", "tunnel ", "stream ", "page ",
                                 "block ",     "disk ",   "qemu ",   "\n",      "0x7f3a "};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < n) {
    s += kWords[rng() % 10];
  }
  s.resize(n);
  return s;
}

std::string randomBytes(size_t n, uint32_t seed = 2) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  return s;
}

// A zstd frame made outside the writer, for payloads the writer would never send.
std::string zstdFrame(std::string_view plain, bool declare_size = true) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, declare_size ? 1 : 0);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  size_t n = 0;
  if (declare_size) {
    n = ZSTD_compress2(c, out.data(), out.size(), plain.data(), plain.size());
  } else {
    // A streamed frame: the size is not known when the header is written.
    ZSTD_inBuffer in{plain.data(), plain.size(), 0};
    ZSTD_outBuffer o{out.data(), out.size(), 0};
    ZSTD_compressStream2(c, &o, &in, ZSTD_e_flush);
    in = {nullptr, 0, 0};
    ZSTD_compressStream2(c, &o, &in, ZSTD_e_end);
    n = o.pos;
  }
  ZSTD_freeCCtx(c);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

void expectRefused(std::string_view payload, const std::string& text) {
  auto r = decompressChunk(payload);
  ASSERT_FALSE(r) << "accepted: " << text;
  EXPECT_EQ(r.error().code, ErrorCode::TunnelProtocol);
  EXPECT_NE(r.error().message.find(text), std::string::npos) << r.error().message;
}

TEST(CompressTest, TextCompressesAndComesBackTheSame) {
  ChunkCompressor z;
  const std::string plain = textLike(kCompressPiece);
  auto packed = z.encode(plain);
  ASSERT_TRUE(packed);
  EXPECT_LT(packed->size(), plain.size() / 3);
  EXPECT_EQ(*compressedChunkSize(*packed), plain.size());
  auto back = decompressChunk(*packed);
  ASSERT_TRUE(back) << back.error().describe();
  EXPECT_EQ(*back, plain);
  const auto& c = z.counters();
  EXPECT_EQ(c.plain_bytes, plain.size());
  EXPECT_EQ(c.compressed_plain, plain.size());
  EXPECT_EQ(c.compressed_bytes, packed->size());
  EXPECT_EQ(c.chunks_compressed, 1U);
  EXPECT_EQ(c.level, 1);
}

TEST(CompressTest, IncompressibleContentGoesAsItIsAndCompressibleContentAfterItDoesNot) {
  ChunkCompressor z;
  for (int i = 0; i < 20; ++i) {
    EXPECT_FALSE(z.encode(randomBytes(kCompressPiece, static_cast<uint32_t>(i))));
  }
  EXPECT_EQ(z.counters().chunks_compressed, 0U);
  EXPECT_EQ(z.counters().chunks_plain, 20U);
  // Content that compresses is compressed at once after it: every piece is tried.
  EXPECT_TRUE(z.encode(textLike(4096)));
  EXPECT_EQ(z.counters().chunks_compressed, 1U);
  // A piece that shrinks a little (under 1/16) is not worth a compressed frame.
  std::string almost = randomBytes(64 * 1024, 99);
  std::fill(almost.begin(), almost.begin() + 2048, 'z');
  EXPECT_FALSE(z.encode(almost));
}

TEST(CompressTest, LevelRisesWhileTheLinkWaitsAndFallsWhileCompressingTakesTheTime) {
  CompressionPolicy p;
  p.decide_every = 256 * 1024;
  p.min_level = 1;
  p.max_level = 4;
  ChunkCompressor z(p);
  const std::string plain = textLike(64 * 1024);
  // The writer waits a second for the link after every piece: the level climbs to the top.
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(z.encode(plain));
    z.waited(std::chrono::seconds(1));
  }
  EXPECT_EQ(z.counters().level, 4);
  // It never waits: compressing is the bottleneck; the level goes back down.
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(z.encode(plain));
  }
  EXPECT_EQ(z.counters().level, 1);
}

TEST(CompressTest, AfterAMissTheNextPieceIsTriedAtTheQuickLevel) {
  CompressionPolicy p;
  p.min_level = 9;
  p.max_level = 9;
  p.start_level = 9;
  ChunkCompressor z(p);
  const std::string noise = randomBytes(128 * 1024, 7);
  const std::string text = textLike(128 * 1024);
  // The first piece has no history: the level itself. Pseudo-random content after a miss is
  // tried at the quick level only, however high the level is.
  EXPECT_FALSE(z.encode(noise));
  EXPECT_EQ(z.counters().quick_tries, 0U);
  EXPECT_FALSE(z.encode(noise));
  EXPECT_FALSE(z.encode(noise));
  EXPECT_EQ(z.counters().quick_tries, 2U);
  // Compressible content after a miss still goes compressed (at the quick level), and the
  // piece after it at the level again.
  auto quick = z.encode(text);
  ASSERT_TRUE(quick);
  EXPECT_EQ(z.counters().quick_tries, 3U);
  auto full = z.encode(text);
  ASSERT_TRUE(full);
  EXPECT_EQ(z.counters().quick_tries, 3U);
  EXPECT_LE(full->size(), quick->size());
  EXPECT_EQ(*decompressChunk(*quick), text);
  EXPECT_EQ(*decompressChunk(*full), text);
  // Off: every piece at the level.
  p.quick_miss_level = 0;
  ChunkCompressor always(p);
  EXPECT_FALSE(always.encode(noise));
  EXPECT_FALSE(always.encode(noise));
  EXPECT_EQ(always.counters().quick_tries, 0U);
}

TEST(CompressTest, NothingEmptyOrOversizedIsEncoded) {
  ChunkCompressor z;
  EXPECT_FALSE(z.encode(""));
  EXPECT_FALSE(z.encode(std::string(kMaxPlainChunk + 1, 'a')));
  auto max = z.encode(std::string(kMaxPlainChunk, 'a'));
  ASSERT_TRUE(max);
  EXPECT_EQ(decompressChunk(*max)->size(), kMaxPlainChunk);
}

// ---- a hostile peer's payloads -----------------------------------------------------------

TEST(CompressTest, PayloadsThatAreNotOneBoundedZstdFrameAreRefused) {
  const std::string plain = textLike(10000);
  const std::string good = zstdFrame(plain);
  ASSERT_TRUE(decompressChunk(good));
  expectRefused("", "too short");
  expectRefused("abc", "too short");
  expectRefused("not zstd at all", "no zstd magic");
  // A skippable frame (magic 0x184D2A5?) carries no content.
  expectRefused(std::string("\x50\x2a\x4d\x18\x04\0\0\0abcd", 12), "no zstd magic");
  expectRefused(good.substr(0, 5), "malformed");
  expectRefused(good.substr(0, good.size() - 3), "truncated or malformed");
  expectRefused(good + "x", "1 bytes follow the zstd frame");
  expectRefused(good + good, "follow the zstd frame");
  expectRefused(zstdFrame(plain, false), "does not declare its content size");
  expectRefused(zstdFrame(""), "declares 0 bytes");
  // More than a reader may hold for one frame: refused before anything is allocated.
  expectRefused(zstdFrame(std::string(kMaxPlainChunk + 1, 'a')), "declares 262145 bytes");
}

TEST(CompressTest, CorruptContentIsRefusedNotDelivered) {
  const std::string plain = textLike(50000);
  const std::string good = zstdFrame(plain);
  size_t refused = 0;
  // Flip one byte at a time past the frame header: every change is caught (the content
  // checksum at worst); none yields other bytes.
  for (size_t i = 12; i < good.size(); i += 7) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5A);
    auto r = decompressChunk(bad);
    if (r) {
      EXPECT_EQ(*r, plain) << "byte " << i << " changed the content unnoticed";
    } else {
      EXPECT_EQ(r.error().code, ErrorCode::TunnelProtocol);
      ++refused;
    }
  }
  EXPECT_GT(refused, 0U);
}

}  // namespace
}  // namespace vandra::tunnel
