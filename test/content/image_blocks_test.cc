// ImageBlocks and BlockIndex on real images made with qemu-img and qemu-io: a qcow2 chain
// read block by block equals its flattened copy, and the index finds blocks by content.
#include "vandra/content/image_blocks.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "test/content/stream_builder.h"
#include "vandra/common/subprocess.h"

namespace vandra::content {
namespace {

namespace fs = std::filesystem;

struct Dir {
  Dir() {
    char t[] = "/tmp/vandra-content-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

void run(const std::vector<std::string>& argv) {
  auto r = runCapture(argv);
  ASSERT_TRUE(r) << r.error().describe();
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

// base.qcow2 (cluster 64 KiB): patterns and written zeros; top.qcow2 (cluster 4 KiB) over it:
// one write straddling the base's clusters and an explicit zero range.
void makeChain(const fs::path& d) {
  const std::string base = (d / "base.qcow2").string();
  const std::string top = (d / "top.qcow2").string();
  run({"qemu-img", "create", "-q", "-f", "qcow2", base, "8M"});
  run({"qemu-io", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x00 2M 64k", "-c",
       "write -P 0x5a 3M 12k", base});
  run({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", base, "-F",
       "qcow2", top});
  run({"qemu-io", "-c", "write -P 0x22 512k 640k", "-c", "write -z 3M 4k", "-c",
       "write -P 0x33 7M 4k", top});
}

TEST(ImageBlocks, AChainReadBlockByBlockEqualsItsFlattenedCopy) {
  Dir d;
  makeChain(d.path);
  run({"qemu-img", "convert", "-O", "raw", (d.path / "top.qcow2").string(),
       (d.path / "flat.raw").string()});
  const std::string flat = slurp(d.path / "flat.raw");
  auto img = ImageBlocks::open((d.path / "top.qcow2").string());
  ASSERT_TRUE(img) << img.error().describe();
  ASSERT_EQ((*img)->virtualSize(), flat.size());
  char block[kPageSize];
  for (uint64_t off = 0; off < flat.size(); off += kPageSize) {
    ASSERT_TRUE((*img)->read(off, block)) << off;
    ASSERT_EQ(std::string_view(block, kPageSize), std::string_view(flat).substr(off, kPageSize))
        << "offset " << off;
  }
  EXPECT_FALSE((*img)->read(100, block)) << "an offset inside a block";
  EXPECT_FALSE((*img)->read(flat.size(), block)) << "past the end";
}

TEST(BlockIndex, FindsEveryNonZeroBlockByItsBytesAndNothingElse) {
  Dir d;
  makeChain(d.path);
  auto img = ImageBlocks::open((d.path / "top.qcow2").string());
  ASSERT_TRUE(img) << img.error().describe();
  auto idx = BlockIndex::build(*img);
  ASSERT_TRUE(idx) << idx.error().describe();
  // One entry per non-zero block: 0x11 where 0x22 did not overwrite it (128), 0x22 (160),
  // 0x5a but the block zeroed over (2), 0x33 (1); written zeros are left out.
  EXPECT_EQ((*idx)->blocks(), (512u / 4) + (640u / 4) + 2 + 1);
  EXPECT_FALSE((*idx)->truncated());
  for (const char fill : {'\x11', '\x22', '\x5a', '\x33'}) {
    const std::string page(kPageSize, fill);
    const auto off = (*idx)->find(page.data());
    ASSERT_TRUE(off) << int(fill);
    char block[kPageSize];
    ASSERT_TRUE((*img)->read(*off, block));
    EXPECT_EQ(std::string_view(block, kPageSize), page);
  }
  EXPECT_FALSE((*idx)->find(std::string(kPageSize, '\x44').data()));
  EXPECT_FALSE((*idx)->find(test::pageOf(7).data()));
  std::string almost(kPageSize, '\x11');
  almost[4095] = '\x12';
  EXPECT_FALSE((*idx)->find(almost.data())) << "a block that differs in its last byte";

  auto small = BlockIndex::build(*img, 10);
  ASSERT_TRUE(small);
  EXPECT_EQ((*small)->blocks(), 10u);
  EXPECT_TRUE((*small)->truncated());
}

TEST(ImageBlocks, RefusesWhatItCannotRead) {
  Dir d;
  EXPECT_EQ(ImageBlocks::open((d.path / "none.qcow2").string()).error().code, ErrorCode::NotFound);
  std::ofstream((d.path / "junk.qcow2").string()) << "QFI\xfb not really";
  EXPECT_FALSE(ImageBlocks::open((d.path / "junk.qcow2").string()));
  // A compressed cluster has no offset of its own: mapped, never read or indexed.
  run({"qemu-img", "create", "-q", "-f", "raw", (d.path / "src.raw").string(), "1M"});
  run({"qemu-io", "-f", "raw", "-c", "write -P 0x61 0 64k", (d.path / "src.raw").string()});
  run({"qemu-img", "convert", "-c", "-O", "qcow2", (d.path / "src.raw").string(),
       (d.path / "c.qcow2").string()});
  auto img = ImageBlocks::open((d.path / "c.qcow2").string());
  ASSERT_TRUE(img) << img.error().describe();
  char block[kPageSize];
  auto r = (*img)->read(0, block);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::Unsupported);
  auto idx = BlockIndex::build(*img);
  ASSERT_TRUE(idx);
  EXPECT_EQ((*idx)->blocks(), 0u);
}

}  // namespace
}  // namespace vandra::content
