// The blocks a disk mirror sent: the NBD client stream scanner, and the source's index and the
// target's cache numbering the same blocks from the same bytes.
#include "vandra/content/sent_blocks.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <thread>

#include "test/content/stream_builder.h"

namespace vandra::content {
namespace {

using test::pageOf;
using test::StreamBuilder;

constexpr uint16_t kWrite = 1;

StreamBuilder& option(StreamBuilder& b, uint32_t opt, std::string_view data) {
  return b.raw("IHAVEOPT").be(opt, 4).be(data.size(), 4).raw(data);
}

StreamBuilder& request(StreamBuilder& b, uint16_t type, uint64_t offset, uint32_t length,
                       std::string_view data = {}) {
  return b.be(0x25609513, 4).be(0, 2).be(type, 2).be(7, 8).be(offset, 8).be(length, 4).raw(data);
}

// Client flags, STRUCTURED_REPLY, SET_META_CONTEXT and GO, then requests: an aligned 12 KiB
// write, a write starting mid-block, a flush, write-zeroes, a short write, a read.
std::string clientStream() {
  StreamBuilder b;
  b.be(3, 4);
  option(b, 8, "");
  option(b, 10, std::string(40, 'm'));
  option(b, 7, std::string(10, 'g'));
  request(b, kWrite, 65536, 12288, pageOf(1) + pageOf(2) + pageOf(3));
  // 2 KiB into a block, 8 KiB: only the one whole aligned block (pageOf(4)) counts.
  request(b, kWrite, 4096 * 20 + 2048, 8192,
          std::string(2048, 'x') + pageOf(4) + std::string(2048, 'y'));
  request(b, 3, 0, 0);
  request(b, 6, 0, 1 << 20);  // write-zeroes carries no data
  request(b, kWrite, 4096 * 40, 1000, std::string(1000, 'z'));
  request(b, 0, 0, 4096);
  request(b, kWrite, 4096 * 50, 4096, pageOf(5));
  return b.bytes();
}

TEST(NbdWriteScanner, ReportsEveryWholeAlignedBlockOfWriteDataAtEverySplit) {
  const std::string s = clientStream();
  for (const size_t chunk : {size_t{1}, size_t{5}, size_t{4096}, s.size()}) {
    NbdWriteScanner scan;
    std::vector<std::pair<uint64_t, std::string>> got;
    for (size_t at = 0; at < s.size(); at += chunk) {
      scan.scan(std::string_view(s).substr(at, chunk),
                [&](uint64_t off, std::string_view b) { got.emplace_back(off, std::string(b)); });
    }
    ASSERT_EQ(got.size(), 5u) << "chunk " << chunk;
    EXPECT_EQ(got[0], std::make_pair(uint64_t{65536}, pageOf(1)));
    EXPECT_EQ(got[1], std::make_pair(uint64_t{65536 + 4096}, pageOf(2)));
    EXPECT_EQ(got[2], std::make_pair(uint64_t{65536 + 8192}, pageOf(3)));
    EXPECT_EQ(got[3], std::make_pair(uint64_t{4096 * 21}, pageOf(4)));
    EXPECT_EQ(got[4], std::make_pair(uint64_t{4096 * 50}, pageOf(5)));
    EXPECT_FALSE(scan.passThrough()) << scan.why();
    EXPECT_EQ(scan.writes(), 4u);
    EXPECT_EQ(scan.flushes(), 1u);  // the FLUSH; no WRITE had FUA
  }
}

TEST(NbdWriteScanner, GivesUpOnWhatItDoesNotKnow) {
  for (const std::string& s : {StreamBuilder().be(3, 4).raw("GARBAGE!").raw(pageOf(1)).bytes(),
                               StreamBuilder().be(3, 4).raw("IHAVEOPX").be(7, 4).be(0, 4).bytes(),
                               [] {
                                 StreamBuilder b;
                                 b.be(3, 4);
                                 return request(b, 99, 0, 0).raw(pageOf(1)).bytes();
                               }(),
                               [] {
                                 StreamBuilder b;
                                 b.be(3, 4);
                                 return request(b, kWrite, 0, 64u << 20).raw(pageOf(1)).bytes();
                               }()}) {
    NbdWriteScanner scan;
    size_t blocks = 0;
    scan.scan(s, [&](uint64_t, std::string_view) { ++blocks; });
    EXPECT_EQ(blocks, 0u);
    EXPECT_TRUE(scan.passThrough());
    EXPECT_FALSE(scan.why().empty());
  }
}

TEST(SentBlocks, BothEndsNumberTheSameBlocksAndTheCacheGivesThemBack) {
  char t[] = "/tmp/vandra-sent-XXXXXX";
  const std::string dir = ::mkdtemp(t);
  auto index = std::make_shared<SentBlockIndex>();
  auto cache = SentBlockCache::create(dir, "nbd:0:1");
  ASSERT_TRUE(cache) << cache.error().describe();
  auto up = tapIntoIndex(index);
  auto down = tapIntoCache(*cache);
  const std::string s = clientStream();
  std::string a;
  std::string b;
  for (size_t at = 0; at < s.size(); at += 777) {
    ASSERT_TRUE(up->feed(std::string_view(s).substr(at, 777), a));
  }
  // A reference may come before its block: a reader waits for the NBD stream.
  std::string early(kPageSize, '\0');
  Result<void> early_read;
  std::thread reader([&] { early_read = (*cache)->read(4 * kPageSize, early.data()); });
  for (size_t at = 0; at < s.size(); at += 1000) {
    ASSERT_TRUE(down->feed(std::string_view(s).substr(at, 1000), b));
  }
  reader.join();
  EXPECT_EQ(a, s) << "the taps pass the bytes as they are";
  EXPECT_EQ(b, s);
  ASSERT_TRUE(early_read) << early_read.error().describe();
  EXPECT_EQ(early, pageOf(5));
  EXPECT_EQ(index->blocks(), 5u);
  EXPECT_EQ((*cache)->blocks(), 5u);
  for (uint32_t i = 1; i <= 5; ++i) {
    const auto off = index->find(pageOf(i).data());
    ASSERT_TRUE(off) << i;
    std::string got(kPageSize, '\0');
    ASSERT_TRUE((*cache)->read(*off, got.data()));
    EXPECT_EQ(got, pageOf(i)) << i;
  }
  EXPECT_FALSE(index->find(pageOf(6).data()));
  // Past the end of the stream: refused at once, not after the wait.
  ASSERT_TRUE(down->finish(b));
  std::string none(kPageSize, '\0');
  const auto t0 = std::chrono::steady_clock::now();
  auto r = (*cache)->read(9 * kPageSize, none.data());
  EXPECT_FALSE(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_FALSE((*cache)->read(100, none.data()));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vandra::content
