// The NBD server handshake filter (nbd_flags.h): FLUSH and FUA hidden from the client in every
// NBD_INFO_EXPORT, nothing else changed, whatever the chunking; anything unrecognised passed
// on as it came.
#include "vandra/content/nbd_flags.h"

#include <gtest/gtest.h>

namespace vandra::content {
namespace {

void be(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

std::string reply(uint32_t option, uint32_t type, std::string_view data) {
  std::string s;
  be(s, 0x3e889045565a9ULL, 8);
  be(s, option, 4);
  be(s, type, 4);
  be(s, data.size(), 4);
  s.append(data);
  return s;
}

std::string infoExport(uint64_t size, uint16_t flags) {
  std::string d;
  be(d, 0, 2);
  be(d, size, 8);
  be(d, flags, 2);
  return d;
}

constexpr uint16_t kServerFlags = 0x0001 | 0x0004 | 0x0008 | 0x0020 | 0x0040 | 0x0100 | 0x0800;
constexpr uint16_t kClientSees = kServerFlags & ~(kNbdFlagSendFlush | kNbdFlagSendFua);

// What QEMU 7.2's server answers QEMU's client (STRUCTURED_REPLY, SET_META_CONTEXT, GO), then
// transmission-phase bytes that look like a reply with an export's flags.
std::string handshake(uint16_t flags, std::string_view transmission) {
  std::string s = "NBDMAGICIHAVEOPT";
  be(s, 0x0003, 2);
  s += reply(8, 1, "");                                                 // STRUCTURED_REPLY: ACK
  s += reply(10, 4, std::string("\0\0\0\1base:allocation", 19));        // META_CONTEXT
  s += reply(10, 1, "");                                                // ACK
  s += reply(7, 0x80000001, "GO needs a name");                         // an error, data skipped
  s += reply(7, 3, infoExport(1 << 30, flags));                         // INFO EXPORT
  s += reply(7, 3, std::string("\0\3\0\0\0\1\0\0\x10\0\2\0\0\0", 14));  // INFO BLOCK_SIZE
  s += reply(7, 1, "");                                                 // ACK: transmission
  s.append(transmission);
  return s;
}

std::string run(NbdServerFlagsFilter& f, std::string_view in, size_t chunk) {
  std::string out;
  for (size_t at = 0; at < in.size(); at += chunk) {
    EXPECT_TRUE(f.feed(in.substr(at, chunk), out));
  }
  EXPECT_TRUE(f.finish(out));
  return out;
}

const std::string kLookalike = reply(7, 3, infoExport(1 << 30, kServerFlags));

TEST(NbdServerFlagsFilter, ClearsFlushAndFuaInTheExportInfoWhateverTheChunks) {
  const std::string in = handshake(kServerFlags, kLookalike);
  const std::string want = handshake(kClientSees, kLookalike);
  ASSERT_NE(in, want);
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{20}, in.size()}) {
    auto counters = std::make_shared<NbdFlagCounters>();
    NbdServerFlagsFilter f(kNbdFlagSendFlush | kNbdFlagSendFua, counters);
    EXPECT_EQ(run(f, in, chunk), want) << "chunk " << chunk;
    EXPECT_TRUE(f.passing());
    EXPECT_EQ(f.why(), "");
    EXPECT_EQ(counters->exports_rewritten.load(), 1u);  // not the look-alike after GO's ACK
    EXPECT_EQ(counters->passed_through.load(), 0u);
  }
}

TEST(NbdServerFlagsFilter, AnExportWithoutThoseFlagsIsLeftAsItIs) {
  const uint16_t plain = 0x0001 | 0x0020;
  const std::string in = handshake(plain, "");
  auto counters = std::make_shared<NbdFlagCounters>();
  NbdServerFlagsFilter f(kNbdFlagSendFlush | kNbdFlagSendFua, counters);
  EXPECT_EQ(run(f, in, 5), in);
  EXPECT_EQ(counters->exports_rewritten.load(), 0u);
}

TEST(NbdServerFlagsFilter, AnOldStyleServerPassesUntouched) {
  std::string in = "NBDMAGIC";
  be(in, 0x00420281861253ULL, 8);
  be(in, 1 << 30, 8);
  be(in, kServerFlags, 4);
  in.append(124, '\0');
  auto counters = std::make_shared<NbdFlagCounters>();
  NbdServerFlagsFilter f(kNbdFlagSendFlush | kNbdFlagSendFua, counters);
  EXPECT_EQ(run(f, in, 3), in);
  EXPECT_TRUE(f.passing());
  EXPECT_NE(f.why(), "");
  EXPECT_EQ(counters->passed_through.load(), 1u);
}

TEST(NbdServerFlagsFilter, ExportNamesAnswerWithoutAReplyHeaderPassesUntouched) {
  // NBD_OPT_EXPORT_NAME: the server answers with size, flags and no header.
  std::string in = "NBDMAGICIHAVEOPT";
  be(in, 0x0003, 2);
  be(in, 1 << 30, 8);
  be(in, kServerFlags, 2);
  in += kLookalike;
  auto counters = std::make_shared<NbdFlagCounters>();
  NbdServerFlagsFilter f(kNbdFlagSendFlush | kNbdFlagSendFua, counters);
  EXPECT_EQ(run(f, in, 4), in);
  EXPECT_EQ(counters->exports_rewritten.load(), 0u);
  EXPECT_EQ(counters->passed_through.load(), 1u);
}

TEST(NbdServerFlagsFilter, InfosOfOtherSizesAreNotRewritten) {
  std::string odd = infoExport(1 << 30, kServerFlags) + "xx";  // 14 bytes: not an EXPORT info
  std::string in = "NBDMAGICIHAVEOPT";
  be(in, 0x0003, 2);
  in += reply(6, 3, odd);
  in += reply(6, 3, std::string("\0", 1));  // too short for an info type
  in += reply(6, 1, "");                    // INFO's ACK: still the handshake
  in += reply(7, 3, infoExport(4096, kServerFlags));
  auto counters = std::make_shared<NbdFlagCounters>();
  NbdServerFlagsFilter f(kNbdFlagSendFlush | kNbdFlagSendFua, counters);
  const std::string out = run(f, in, 1);
  ASSERT_EQ(out.size(), in.size());
  EXPECT_EQ(out.substr(0, out.size() - 2), in.substr(0, in.size() - 2));
  EXPECT_EQ(static_cast<uint8_t>(out[out.size() - 1]), kClientSees & 0xff);
  EXPECT_EQ(counters->exports_rewritten.load(), 1u);
  EXPECT_FALSE(f.passing());  // GO's ACK has not come
}

TEST(NbdServerFlagsFilter, AStreamThatEndsInsideAFieldGivesBackWhatCame) {
  const std::string in = handshake(kServerFlags, "");
  for (size_t cut : {size_t{5}, size_t{18 + 9}, in.size() - 3}) {
    NbdServerFlagsFilter f(kNbdFlagSendFlush | kNbdFlagSendFua, nullptr);
    const std::string out = run(f, in.substr(0, cut), 2);
    EXPECT_EQ(out.size(), cut);
  }
}

}  // namespace
}  // namespace vandra::content
