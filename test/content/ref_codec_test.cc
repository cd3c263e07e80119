// RefEncoder and RefDecoder: a stream round-trips byte for byte with pages sent as
// references, and a hostile encoded stream is refused with what was wrong.
#include "vandra/content/ref_codec.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "test/content/stream_builder.h"

namespace vandra::content {
namespace {

namespace fs = std::filesystem;
using test::pageOf;
using test::StreamBuilder;

const std::string kDigest(64, 'a');
const std::string kOther(64, 'b');

// A raw image whose block i holds pageOf(i) for i in 0..blocks-1.
class RefCodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/vandra-refs-XXXXXX";
    dir_ = ::mkdtemp(t);
    image_path_ = (dir_ / "base.raw").string();
    std::ofstream f(image_path_, std::ios::binary);
    for (uint32_t i = 0; i < 16; ++i) {
      f << pageOf(i);
    }
    f.close();
    auto img = ImageBlocks::open(image_path_);
    ASSERT_TRUE(img) << img.error().describe();
    image_ = *img;
    auto idx = BlockIndex::build(image_);
    ASSERT_TRUE(idx) << idx.error().describe();
    set_ = std::make_shared<RefIndexSet>(std::vector<std::string>{kOther, kDigest});
    set_->publish(1, *idx);  // identity 0 has no index (yet): never referred to
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string encode(const std::string& stream, size_t chunk, RefCounters& c) {
    RefEncoder enc(set_, std::shared_ptr<RefCounters>(&c, [](RefCounters*) {}));
    std::string out;
    for (size_t at = 0; at < stream.size(); at += chunk) {
      EXPECT_TRUE(enc.feed(std::string_view(stream).substr(at, chunk), out));
    }
    EXPECT_TRUE(enc.finish(out));
    return out;
  }

  Result<std::string> decode(std::string_view encoded, size_t chunk,
                             std::map<std::string, std::shared_ptr<const BlockSource>> images) {
    RefDecoder dec(std::move(images), std::make_shared<RefCounters>());
    std::string out;
    for (size_t at = 0; at < encoded.size(); at += chunk) {
      VANDRA_TRY(dec.feed(encoded.substr(at, chunk), out));
    }
    VANDRA_TRY(dec.finish(out));
    return out;
  }
  std::map<std::string, std::shared_ptr<const BlockSource>> both() {
    return {{kDigest, image_}, {kOther, image_}};
  }
  // The encoded stream's header for identities {kOther, kDigest}.
  std::string header() {
    return StreamBuilder().raw("VCR1").be(2, 1).str8(kOther).str8(kDigest).bytes();
  }
  std::string ref(uint8_t id, uint64_t offset, const std::string& page) {
    unsigned char h[32];
    unsigned int n = 0;
    EVP_Digest(page.data(), page.size(), h, &n, EVP_sha256(), nullptr);
    return StreamBuilder()
        .be(kRecordRef, 1)
        .be(id, 1)
        .be(offset, 8)
        .raw(std::string_view(reinterpret_cast<const char*>(h), 32))
        .bytes();
  }

  fs::path dir_;
  std::string image_path_;
  std::shared_ptr<const ImageBlocks> image_;
  std::shared_ptr<RefIndexSet> set_;
};

TEST_F(RefCodecTest, PagesTheTargetHoldsGoAsReferencesAndTheStreamComesBackWhole) {
  const std::string stream = StreamBuilder()
                                 .header()
                                 .ramStart({{"pc.ram", 1 << 20}})
                                 .part()
                                 .page(0, "pc.ram", pageOf(3))  // in the image
                                 .page(4096, "", pageOf(100))   // not
                                 .zero(8192, "")
                                 .page(12288, "", pageOf(15))  // in the image
                                 .page(16384, "", pageOf(3))   // again
                                 .eos()
                                 .devicesAndEof()
                                 .raw(pageOf(4))  // after the RAM: never looked at
                                 .bytes();
  for (const size_t chunk : {size_t{1}, size_t{13}, size_t{4096}, size_t{100000}}) {
    RefCounters c;
    const std::string enc = encode(stream, chunk, c);
    EXPECT_EQ(c.pages.load(), 4u);
    EXPECT_EQ(c.refs.load(), 3u) << "chunk " << chunk;
    EXPECT_EQ(c.plain_bytes.load(), stream.size());
    EXPECT_EQ(c.encoded_bytes.load(), enc.size());
    if (chunk >= 4096) {  // each feed ends its literal record: tiny feeds cost 5 bytes each
      EXPECT_LT(enc.size(), stream.size() - 3 * 4096 + 3 * 50 + 200) << "chunk " << chunk;
    }
    for (const size_t dchunk : {size_t{1}, size_t{7}, size_t{65536}}) {
      auto dec = decode(enc, dchunk, both());
      ASSERT_TRUE(dec) << dec.error().describe();
      EXPECT_TRUE(*dec == stream) << "chunks " << chunk << "/" << dchunk;
    }
  }
}

TEST_F(RefCodecTest, AStreamThatIsNotEncodedPassesAsItIs) {
  const std::string stream = StreamBuilder()
                                 .header()
                                 .ramStart({{"pc.ram", 8192}})
                                 .part()
                                 .page(0, "pc.ram", pageOf(3))
                                 .bytes();
  auto dec = decode(stream, 5, {});
  ASSERT_TRUE(dec) << dec.error().describe();
  EXPECT_EQ(*dec, stream);
  auto tiny = decode("QE", 1, {});
  ASSERT_TRUE(tiny);
  EXPECT_EQ(*tiny, "QE");
}

TEST_F(RefCodecTest, AHostileStreamIsRefusedAndSaysWhy) {
  struct Case {
    const char* name;
    std::string encoded;
    const char* why;
  };
  std::string wrong = pageOf(3);
  wrong[10] ^= 1;
  const std::vector<Case> cases = {
      {"neither magic", "XXXX" + std::string(100, 'x'), "neither QEMU's magic"},
      {"no identities", StreamBuilder().raw("VCR1").be(0, 1).bytes(), "0 images named"},
      {"too many identities", StreamBuilder().raw("VCR1").be(17, 1).bytes(), "17 images named"},
      {"empty name", StreamBuilder().raw("VCR1").be(1, 1).be(0, 1).bytes(),
       "an image name of 0 bytes"},
      {"image not prepared",
       StreamBuilder().raw("VCR1").be(1, 1).str8(std::string(64, 'c')).bytes(),
       "is not one this site prepared"},
      {"unknown record", header() + StreamBuilder().be(9, 1).bytes(), "record type 9"},
      {"empty literal", header() + StreamBuilder().be(1, 1).be(0, 4).bytes(),
       "a literal of 0 bytes"},
      {"huge literal", header() + StreamBuilder().be(1, 1).be(kMaxLiteral + 1, 4).bytes(),
       "a literal of 1048577 bytes"},
      {"identity out of range", header() + ref(2, 0, pageOf(0)), "names image 2 of 2"},
      {"offset inside a block", header() + ref(1, 100, pageOf(0)), "offset 100 cannot be read"},
      {"offset past the end", header() + ref(1, 16 * 4096, pageOf(0)),
       "offset 65536 cannot be read"},
      {"wrong hash", header() + ref(1, 3 * 4096, wrong), "does not have the SHA-256"},
      {"cut inside a literal",
       header() + StreamBuilder().be(1, 1).be(100, 4).raw("only a few").bytes(),
       "ended inside a record"},
      {"cut inside a reference", header() + ref(1, 0, pageOf(0)).substr(0, 20),
       "ended inside a record"},
  };
  for (const auto& c : cases) {
    for (const size_t chunk : {size_t{1}, size_t{4096}}) {
      auto dec = decode(c.encoded, chunk, both());
      ASSERT_FALSE(dec) << c.name;
      EXPECT_EQ(dec.error().code, ErrorCode::TunnelProtocol) << c.name;
      EXPECT_NE(dec.error().message.find(c.why), std::string::npos)
          << c.name << ": " << dec.error().message;
    }
  }
  // The right hash of the same block is taken: the refusal above was the hash's.
  auto ok = decode(header() + ref(1, 3 * 4096, pageOf(3)), 1, both());
  ASSERT_TRUE(ok) << ok.error().describe();
  EXPECT_EQ(*ok, pageOf(3));
}

TEST_F(RefCodecTest, ACopyThatChangedAfterTheSourceLookedIsRefusedNeverUsed) {
  const std::string stream = StreamBuilder()
                                 .header()
                                 .ramStart({{"pc.ram", 8192}})
                                 .part()
                                 .page(0, "pc.ram", pageOf(6))
                                 .eos()
                                 .bytes();
  RefCounters c;
  const std::string enc = encode(stream, 4096, c);
  ASSERT_EQ(c.refs.load(), 1u);
  // The target's copy of block 6 differs from the source's by one byte.
  {
    std::fstream f(image_path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(6 * 4096 + 123);
    const char was = static_cast<char>(f.get());
    f.seekp(6 * 4096 + 123);
    f.put(static_cast<char>(was ^ 0x01));
  }
  auto dec = decode(enc, 4096, both());
  ASSERT_FALSE(dec);
  EXPECT_NE(dec.error().message.find("the copies differ"), std::string::npos)
      << dec.error().message;
}

}  // namespace
}  // namespace vandra::content
