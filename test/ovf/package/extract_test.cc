// extractPackage and gunzipFile: members copied into an empty folder, chunk series joined,
// nothing written outside the folder, nothing left behind on error.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>

#include "package_test_util.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

size_t entries(const std::string& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

std::string gzip(const std::string& data) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

TEST(Extract, OvaMembersAndChunksReassembled) {
  TempDir tmp;
  const std::string c0(3000, 'a');
  const std::string c1(3000, 'b');
  const std::string c2 = "tail";
  const std::string gz = gzip("compressed disk");
  const std::string ova = tmp.write("p.ova", testing::makeTar({{"vm.ovf", testing::kDescriptor},
                                                               {"disk.vmdk.000000000", c0},
                                                               {"disk.vmdk.000000001", c1},
                                                               {"disk.vmdk.000000002", c2},
                                                               {"disk2.vmdk.gz", gz}}));
  auto pkg = openPackage(ova, {});
  ASSERT_TRUE(pkg) << pkg.error().describe();
  const std::string out = tmp.file("out");
  uint64_t last = 0;
  OpenOptions o;
  o.progress = [&last](uint64_t done, uint64_t) { last = done; };
  auto r = extractPackage(*pkg, out, o);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(testing::readAll(out + "/vm.ovf"), testing::kDescriptor);
  EXPECT_EQ(testing::readAll(out + "/disk.vmdk"), c0 + c1 + c2);
  EXPECT_FALSE(fs::exists(out + "/disk.vmdk.000000000"));
  EXPECT_EQ(testing::readAll(out + "/disk2.vmdk.gz"), gz);  // left compressed
  EXPECT_EQ(entries(out), 3U);
  EXPECT_EQ(last, testing::kDescriptor.size() + c0.size() + c1.size() + c2.size() + gz.size());

  // Chunks kept as they are when asked.
  o.reassemble_chunks = false;
  ASSERT_TRUE(extractPackage(*pkg, tmp.file("raw"), o));
  EXPECT_EQ(testing::readAll(tmp.file("raw") + "/disk.vmdk.000000001"), c1);

  // gunzip helper
  auto n = gunzipFile(out + "/disk2.vmdk.gz", out + "/disk2.vmdk", 1U << 20);
  ASSERT_TRUE(n) << n.error().describe();
  EXPECT_EQ(*n, 15U);
  EXPECT_EQ(testing::readAll(out + "/disk2.vmdk"), "compressed disk");
}

TEST(Extract, ChunkGapFailsAndLeavesNothing) {
  TempDir tmp;
  const std::string ova = tmp.write("p.ova", testing::makeTar({{"vm.ovf", testing::kDescriptor},
                                                               {"d.vmdk.000000000", "a"},
                                                               {"d.vmdk.000000002", "c"}}));
  auto pkg = openPackage(ova, {});
  ASSERT_TRUE(pkg);
  auto r = extractPackage(*pkg, tmp.file("out"), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::PackageMissingFile);
  EXPECT_FALSE(fs::exists(tmp.file("out")));  // created by us, removed again
}

TEST(Extract, HostileMembersNeverWrittenOutside) {
  TempDir tmp;
  const std::string ova = tmp.write("p.ova", testing::makeTar({{"vm.ovf", testing::kDescriptor},
                                                               {"../escape", "evil"},
                                                               {"/tmp/vandra-abs-escape", "evil"},
                                                               {"lnk", "", AE_IFLNK, "/tmp"}}));
  auto pkg = openPackage(ova, {});
  ASSERT_TRUE(pkg);
  // Parent folder missing: refused (only the last level is created).
  EXPECT_FALSE(extractPackage(*pkg, tmp.file("missing/in"), {}));
  EXPECT_FALSE(fs::exists(tmp.file("missing")));
  const std::string out = tmp.file("out");
  fs::create_directory(out);
  auto r = extractPackage(*pkg, out, {});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(entries(out), 1U);
  EXPECT_FALSE(fs::exists(tmp.file("escape")));
  EXPECT_FALSE(fs::exists("/tmp/vandra-abs-escape"));
}

TEST(Extract, TamperedMemberListRefused) {
  TempDir tmp;
  const std::string ova = tmp.write("p.ova", testing::makeTar({{"vm.ovf", testing::kDescriptor}}));
  auto pkg = openPackage(ova, {});
  ASSERT_TRUE(pkg);
  pkg->members.push_back(PackageMember{"../escape", 1});
  auto r = extractPackage(*pkg, tmp.file("out"), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::ArchiveForbiddenMember);
  EXPECT_FALSE(fs::exists(tmp.file("out")));
  EXPECT_FALSE(fs::exists(tmp.file("escape")));
}

TEST(Extract, ArchiveChangedAfterOpenCleansUp) {
  TempDir tmp;
  const std::string ova =
      tmp.write("p.ova", testing::makeTar({{"vm.ovf", testing::kDescriptor}, {"disk", "12345"}}));
  auto pkg = openPackage(ova, {});
  ASSERT_TRUE(pkg);
  tmp.write("p.ova", testing::makeTar({{"vm.ovf", testing::kDescriptor}, {"disk", "1234"}}));
  const std::string out = tmp.file("out");
  fs::create_directory(out);  // existing, empty: must stay, and stay empty
  auto r = extractPackage(*pkg, out, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::ArchiveInvalid);
  ASSERT_TRUE(fs::exists(out));
  EXPECT_EQ(entries(out), 0U);
}

TEST(Extract, NonEmptyDestinationRefused) {
  TempDir tmp;
  const std::string ova = tmp.write("p.ova", testing::makeTar({{"vm.ovf", testing::kDescriptor}}));
  auto pkg = openPackage(ova, {});
  ASSERT_TRUE(pkg);
  fs::create_directory(tmp.file("out"));
  tmp.write("out/keep", "mine");
  auto r = extractPackage(*pkg, tmp.file("out"), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(testing::readAll(tmp.file("out/keep")), "mine");
  EXPECT_EQ(entries(tmp.file("out")), 1U);
}

TEST(Extract, SymlinkDestinationNotFollowed) {
  TempDir tmp;
  const std::string ova = tmp.write("p.ova", testing::makeTar({{"vm.ovf", testing::kDescriptor}}));
  auto pkg = openPackage(ova, {});
  ASSERT_TRUE(pkg);
  fs::create_directory(tmp.file("real"));
  fs::create_directory_symlink(tmp.file("real"), tmp.file("link"));
  auto r = extractPackage(*pkg, tmp.file("link"), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(entries(tmp.file("real")), 0U);
}

TEST(Extract, FolderPackage) {
  TempDir tmp;
  fs::create_directory(tmp.file("src"));
  tmp.write("src/vm.ovf", testing::kDescriptor);
  tmp.write("src/disk.vmdk", "disk");
  tmp.write("src/vm.mf", "SHA256(vm.ovf)= " + testing::sha256(testing::kDescriptor) +
                             "\nSHA256(disk.vmdk)= " + testing::sha256("disk") + "\n");
  auto pkg = openPackage(tmp.file("src/vm.ovf"), {});
  ASSERT_TRUE(pkg);
  ASSERT_TRUE(pkg->problems.empty());
  auto r = extractPackage(*pkg, tmp.file("out"), {});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(testing::readAll(tmp.file("out/disk.vmdk")), "disk");
  EXPECT_EQ(entries(tmp.file("out")), 3U);
}

TEST(Gunzip, CorruptAndBomb) {
  TempDir tmp;
  const std::string bad = tmp.write("bad.gz", "not gzip at all");
  auto r = gunzipFile(bad, tmp.file("bad.out"), 1U << 20);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::DiskImageInvalid);
  EXPECT_FALSE(fs::exists(tmp.file("bad.out")));

  const std::string full = gzip(std::string(1U << 20, '\0'));
  const std::string truncated = tmp.write("t.gz", full.substr(0, full.size() / 2));
  r = gunzipFile(truncated, tmp.file("t.out"), 4U << 20);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::DiskImageInvalid);
  EXPECT_FALSE(fs::exists(tmp.file("t.out")));

  const std::string bomb = tmp.write("bomb.gz", gzip(std::string(8U << 20, '\0')));
  r = gunzipFile(bomb, tmp.file("bomb.out"), 1U << 20);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::LimitExceeded);
  EXPECT_FALSE(fs::exists(tmp.file("bomb.out")));

  // Two concatenated gzip members inflate to both parts.
  const std::string two = tmp.write("two.gz", gzip("first ") + gzip("second"));
  auto n = gunzipFile(two, tmp.file("two.out"), 100);
  ASSERT_TRUE(n) << n.error().describe();
  EXPECT_EQ(testing::readAll(tmp.file("two.out")), "first second");
}

}  // namespace
}  // namespace vandra::ovf
