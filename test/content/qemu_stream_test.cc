// QemuStreamScanner on built streams: which bytes are pages, at every split of the input, and
// where it stops looking.
#include "vandra/content/qemu_stream.h"

#include <gtest/gtest.h>

#include "test/content/stream_builder.h"

namespace vandra::content {
namespace {

using test::pageOf;
using test::StreamBuilder;

// The page payloads the scanner reports, reassembled, and the bytes it calls "not a page".
struct Split {
  std::vector<std::string> pages;
  std::string other;
};

Split scanInChunks(QemuStreamScanner& s, std::string_view stream, size_t chunk) {
  Split out;
  std::vector<StreamPiece> pieces;
  for (size_t at = 0; at < stream.size(); at += chunk) {
    const std::string_view part = stream.substr(at, chunk);
    pieces.clear();
    s.scan(part, pieces);
    size_t pos = 0;
    for (const auto& p : pieces) {
      const std::string_view b = part.substr(pos, p.length);
      pos += p.length;
      if (!p.page) {
        out.other.append(b);
        continue;
      }
      if (p.page_start) {
        out.pages.emplace_back();
      }
      EXPECT_FALSE(out.pages.empty()) << "page bytes before any page start";
      if (!out.pages.empty()) {
        out.pages.back().append(b);
      }
    }
    EXPECT_EQ(pos, part.size()) << "the pieces must cover the input";
  }
  return out;
}

std::string typicalStream() {
  return StreamBuilder()
      .header()
      .ramStart({{"pc.ram", 1 << 20}, {"/rom@etc/acpi/tables", 1 << 17}})
      .part()
      .page(0, "pc.ram", pageOf(1))
      .zero(4096, "")
      .page(8192, "", pageOf(2))
      .xbzrle(12288, "delta-bytes")
      .page(0, "/rom@etc/acpi/tables", pageOf(3))
      .eos()
      .be(0x08, 1)
      .be(3, 2)
      .be(4, 2)
      .be(1, 4)  // a command between sections (ping)
      .part(0x03)
      .page(16384, "pc.ram", pageOf(4))
      .eos()
      .devicesAndEof()
      .bytes();
}

TEST(QemuStreamScanner, FindsEveryPagePayloadAtEverySplitOfTheInput) {
  const std::string stream = typicalStream();
  for (const size_t chunk : {size_t{1}, size_t{3}, size_t{7}, size_t{4095}, size_t{4096},
                             size_t{4097}, size_t{65536}, stream.size()}) {
    QemuStreamScanner s;
    const Split got = scanInChunks(s, stream, chunk);
    ASSERT_EQ(got.pages.size(), 4u) << "chunk " << chunk;
    EXPECT_EQ(got.pages[0], pageOf(1));
    EXPECT_EQ(got.pages[1], pageOf(2));
    EXPECT_EQ(got.pages[2], pageOf(3));
    EXPECT_EQ(got.pages[3], pageOf(4));
    EXPECT_EQ(got.other.size() + 4 * kPageSize, stream.size());
    EXPECT_EQ(s.pages(), 4u);
    EXPECT_EQ(s.zeroPages(), 1u);
    EXPECT_EQ(s.xbzrlePages(), 1u);
    EXPECT_TRUE(s.passThrough()) << "after the device state nothing is parsed";
    EXPECT_EQ(s.why(), "") << "the end of the RAM is not a failure";
  }
}

TEST(QemuStreamScanner, AnUnknownSectionOrFlagStopsTheLookingNotTheBytes) {
  struct Case {
    const char* name;
    std::string stream;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"not QEMU", "GARBAGE-STREAM" + pageOf(9), "not a QEMU migration stream"},
      {"other iterative section",
       StreamBuilder()
           .header()
           .be(0x01, 1)
           .be(5, 4)
           .str8("block")
           .be(0, 4)
           .be(1, 4)
           .raw(pageOf(9))
           .bytes(),
       "iterative section 'block'"},
      {"unknown subsection",
       StreamBuilder()
           .raw("QEVM")
           .be(3, 4)
           .be(0x07, 1)
           .be(3, 4)
           .raw("pc1")
           .be(0x05, 1)
           .str8("configuration/new")
           .be(1, 4)
           .raw(pageOf(9))
           .bytes(),
       "configuration subsection 'configuration/new'"},
      {"unknown flags",
       StreamBuilder()
           .header()
           .ramStart({{"pc.ram", 8192}})
           .part()
           .be(0x80, 8)
           .raw(pageOf(9))
           .bytes(),
       "RAM record flags 0x80"},
      {"part of another section",
       StreamBuilder()
           .header()
           .ramStart({{"pc.ram", 8192}})
           .be(0x02, 1)
           .be(7, 4)
           .raw(pageOf(9))
           .bytes(),
       "section 7 is not RAM"},
      {"blocks larger than the size",
       StreamBuilder()
           .header()
           .be(0x01, 1)
           .be(2, 4)
           .str8("ram")
           .be(0, 4)
           .be(4, 4)
           .be(4096 | 0x04, 8)
           .str8("pc.ram")
           .be(8192, 8)
           .raw(pageOf(9))
           .bytes(),
       "RAM blocks add up to more"},
  };
  for (const auto& c : cases) {
    QemuStreamScanner s;
    const Split got = scanInChunks(s, c.stream, 5);
    EXPECT_TRUE(got.pages.empty()) << c.name;
    EXPECT_EQ(got.other, c.stream) << c.name;
    EXPECT_TRUE(s.passThrough()) << c.name;
    EXPECT_NE(s.why().find(c.why), std::string::npos) << c.name << ": " << s.why();
  }
}

TEST(QemuStreamScanner, APageCutByTheEndOfInputIsReportedAsFarAsItCame) {
  const std::string stream = StreamBuilder()
                                 .header({})
                                 .ramStart({{"pc.ram", 8192}})
                                 .part()
                                 .page(0, "pc.ram", pageOf(5))
                                 .bytes();
  QemuStreamScanner s;
  const Split got = scanInChunks(s, stream.substr(0, stream.size() - 100), 1000);
  ASSERT_EQ(got.pages.size(), 1u);
  EXPECT_EQ(got.pages[0], pageOf(5).substr(0, kPageSize - 100));
  EXPECT_FALSE(s.passThrough());
}

}  // namespace
}  // namespace vandra::content
