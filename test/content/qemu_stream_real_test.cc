// The content-reference path on a real QEMU 7.2 stream: the test guest boots (TCG), stops,
// its RAM is dumped with pmemsave (standing for a disk image the target holds) and migrated
// into a file. The scanner must find exactly the pages QEMU says it sent; encoded against
// the dump, most pages go as references and the decoder gives back QEMU's stream byte for
// byte; a dump that differs in one byte is refused, never used.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <random>

#include "test/migration/migration_harness.h"
#include "vandra/common/subprocess.h"
#include "vandra/content/ref_codec.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::content {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kRamMib = 128;

struct Capture {
  std::string stream;
  std::string dump_path;
  uint64_t normal = 0;     // QEMU's count of whole pages sent
  uint64_t duplicate = 0;  // and of zero pages
};

Result<json> qmpRun(qmp::QmpClient& c, const std::string& name, json args = json::object()) {
  return c.execute({name, std::move(args), std::chrono::seconds(60)});
}

// Boots the guest until its kernel runs init, stops it, dumps its RAM, migrates it to a file.
std::string capture(const fs::path& guest, const fs::path& dir, Capture& out) {
  const std::string qmp_sock = (dir / "qmp.sock").string();
  const std::string console = (dir / "console.log").string();
  auto qemu = Subprocess::start({"qemu-system-x86_64",
                                 "-accel",
                                 "tcg",
                                 "-machine",
                                 "q35",
                                 "-m",
                                 std::to_string(kRamMib),
                                 "-nodefaults",
                                 "-display",
                                 "none",
                                 "-kernel",
                                 (guest / "vmlinuz").string(),
                                 "-initrd",
                                 (guest / "initrd.img").string(),
                                 "-append",
                                 "console=ttyS0",
                                 "-serial",
                                 "file:" + console,
                                 "-qmp",
                                 "unix:" + qmp_sock + ",server=on,wait=off"},
                                {});
  if (!qemu) {
    return qemu.error().describe();
  }
  auto client = qmp::connectQmp(qmp_sock, {});
  if (!client) {
    return client.error().describe();
  }
  // The kernel has handed over to init: its code, data and the unpacked initramfs are in RAM.
  const auto until = Clock::now() + std::chrono::seconds(120);
  for (;;) {
    std::ifstream f(console);
    const std::string log{std::istreambuf_iterator<char>(f), {}};
    if (log.find("Run /init") != std::string::npos) {
      break;
    }
    if (Clock::now() > until) {
      return "the guest did not reach init in 120 s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling the console
  }
  auto& c = **client;
  for (const auto& [name, args] : std::vector<std::pair<std::string, json>>{
           {"stop", json::object()},
           {"pmemsave", {{"val", 0}, {"size", kRamMib << 20}, {"filename", out.dump_path}}},
           {"migrate", {{"uri", "exec:cat > " + (dir / "stream.bin").string()}}}}) {
    if (auto r = qmpRun(c, name, args); !r) {
      return name + ": " + r.error().describe();
    }
  }
  for (;;) {
    auto q = qmpRun(c, "query-migrate");
    if (!q) {
      return q.error().describe();
    }
    const std::string st = q->value("status", "");
    if (st == "completed") {
      out.normal = (*q)["ram"].value("normal", uint64_t{0});
      out.duplicate = (*q)["ram"].value("duplicate", uint64_t{0});
      break;
    }
    if (st == "failed" || Clock::now() > until) {
      return "the migration to a file ended '" + st + "'";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling QEMU's status
  }
  std::ifstream f(dir / "stream.bin", std::ios::binary);
  out.stream.assign(std::istreambuf_iterator<char>(f), {});
  return {};
}

class RealStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (const std::string why = migtest::missingPrerequisites(); !why.empty()) {
      skip_ = why;
      return;
    }
    std::string why;
    const fs::path guest = migtest::findGuest(why);
    if (guest.empty()) {
      skip_ = why;
      return;
    }
    dir_ = new migtest::TempDir();
    cap_ = new Capture();
    cap_->dump_path = (dir_->path / "ram.raw").string();
    error_ = capture(guest, dir_->path, *cap_);
  }
  static void TearDownTestSuite() {
    delete cap_;
    delete dir_;
  }
  void SetUp() override {
    if (!skip_.empty()) {
      GTEST_SKIP() << skip_;
    }
    ASSERT_EQ(error_, "");
  }

  static inline std::string skip_;
  static inline std::string error_;
  static inline migtest::TempDir* dir_ = nullptr;
  static inline Capture* cap_ = nullptr;
};

TEST_F(RealStreamTest, TheScannerFindsExactlyThePagesQemuSent) {
  std::mt19937 rng(7);
  QemuStreamScanner s;
  std::vector<StreamPiece> pieces;
  uint64_t page_bytes = 0;
  for (size_t at = 0; at < cap_->stream.size();) {
    const size_t n = std::min<size_t>(cap_->stream.size() - at, 1 + rng() % 70000);
    pieces.clear();
    s.scan(std::string_view(cap_->stream).substr(at, n), pieces);
    for (const auto& p : pieces) {
      page_bytes += p.page ? p.length : 0;
    }
    at += n;
  }
  EXPECT_GT(cap_->normal, 1000u) << "the guest's RAM should hold more than firmware";
  EXPECT_EQ(s.pages(), cap_->normal);
  EXPECT_EQ(s.zeroPages(), cap_->duplicate);
  EXPECT_EQ(page_bytes, s.pages() * kPageSize);
  EXPECT_TRUE(s.passThrough());
  EXPECT_EQ(s.why(), "") << "the scanner should reach the device state, not give up";
}

TEST_F(RealStreamTest, PagesHeldByTheOtherSiteGoAsReferencesAndComeBackByteForByte) {
  auto img = ImageBlocks::open(cap_->dump_path);
  ASSERT_TRUE(img) << img.error().describe();
  auto idx = BlockIndex::build(*img);
  ASSERT_TRUE(idx) << idx.error().describe();
  const std::string digest(64, 'd');
  auto set = std::make_shared<RefIndexSet>(std::vector<std::string>{digest});
  set->publish(0, *idx);
  auto counters = std::make_shared<RefCounters>();
  RefEncoder enc(set, counters);
  std::string encoded;
  constexpr size_t kChunk = 256 * 1024;  // what the tunnel's pump reads at most
  for (size_t at = 0; at < cap_->stream.size(); at += kChunk) {
    ASSERT_TRUE(enc.feed(std::string_view(cap_->stream).substr(at, kChunk), encoded));
  }
  ASSERT_TRUE(enc.finish(encoded));
  EXPECT_EQ(counters->pages.load(), cap_->normal);
  // Most of the stopped guest's pages are in its own dump (the ROMs and the RAM under the
  // legacy VGA/BIOS window are not at their RAM offset there).
  EXPECT_GT(counters->refs.load(), cap_->normal * 9 / 10)
      << counters->refs.load() << " of " << cap_->normal;
  EXPECT_LT(encoded.size(), cap_->stream.size() / 5);

  RefDecoder dec({{digest, *img}}, std::make_shared<RefCounters>());
  std::string plain;
  for (size_t at = 0; at < encoded.size(); at += kChunk) {
    auto r = dec.feed(std::string_view(encoded).substr(at, kChunk), plain);
    ASSERT_TRUE(r) << r.error().describe();
  }
  ASSERT_TRUE(dec.finish(plain));
  ASSERT_EQ(plain.size(), cap_->stream.size());
  EXPECT_TRUE(plain == cap_->stream) << "the decoded stream differs from QEMU's";

  // The target's copy differs in one byte of a referenced block: refused, never used.
  const std::string bad = (dir_->path / "ram-bad.raw").string();
  fs::copy_file(cap_->dump_path, bad, fs::copy_options::overwrite_existing);
  // The first reference record after the header names the block to spoil.
  size_t pos = 4 + 1 + 1 + 64;
  uint64_t offset = 0;
  while (pos < encoded.size()) {  // walk the records to the first reference
    if (encoded[pos] == static_cast<char>(kRecordLiteral)) {
      uint32_t n = 0;
      for (size_t i = 1; i <= 4; ++i) {
        n = n << 8 | static_cast<uint8_t>(encoded[pos + i]);
      }
      pos += 5 + n;
      continue;
    }
    for (size_t i = 2; i < 10; ++i) {
      offset = offset << 8 | static_cast<uint8_t>(encoded[pos + i]);
    }
    break;
  }
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset + 77));
    const char was = static_cast<char>(f.get());
    f.seekp(static_cast<std::streamoff>(offset + 77));
    f.put(static_cast<char>(was ^ 0x40));
  }
  auto bad_img = ImageBlocks::open(bad);
  ASSERT_TRUE(bad_img);
  RefDecoder refuse({{digest, *bad_img}}, std::make_shared<RefCounters>());
  std::string out;
  Result<void> r;
  for (size_t at = 0; at < encoded.size() && r; at += kChunk) {
    r = refuse.feed(std::string_view(encoded).substr(at, kChunk), out);
  }
  ASSERT_FALSE(r) << "a spoiled block must be refused";
  EXPECT_NE(r.error().message.find("the copies differ"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace vandra::content
