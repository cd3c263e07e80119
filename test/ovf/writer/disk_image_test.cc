// disk_image tests: probing by content, conversion of every supported source format to
// qcow2 and streamOptimized VMDK, progress reporting, capacity check, refusal of images that
// read other files, and cleanup of the destination on error.
#include "vandra/ovf/disk_image.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "writer_test_util.h"

namespace vandra::ovf {
namespace {

using testing::TempDir;

constexpr uint64_t kSize = 4U << 20;

struct SourceCase {
  std::string qemu_format;           // -O for qemu-img convert
  std::vector<std::string> options;  // -o values
  std::string expect_format;
  std::string expect_subformat;
};

class ConvertFrom : public ::testing::TestWithParam<SourceCase> {};

TEST_P(ConvertFrom, ToQcow2AndStreamVmdk) {
  const auto& c = GetParam();
  TempDir dir;
  const std::string raw = dir / "src.raw";
  testing::makeRawImage(raw, kSize);
  // A misleading name: the format must come from the content.
  const std::string src = dir / "source.img";
  std::vector<std::string> argv = {"qemu-img", "convert", "-f", "raw", "-O", c.qemu_format};
  for (const auto& o : c.options) {
    argv.push_back("-o");
    argv.push_back(o);
  }
  argv.push_back(raw);
  argv.push_back(src);
  testing::run(argv);

  auto info = probeImage(src);
  ASSERT_TRUE(info.has_value()) << info.error().describe();
  EXPECT_EQ(info->format, c.expect_format);
  EXPECT_EQ(info->subformat, c.expect_subformat);
  EXPECT_EQ(info->virtual_size, kSize);
  EXPECT_TRUE(info->external_file.empty());

  for (const std::string target : {"qcow2", "vmdk-stream"}) {
    const std::string dst = dir / ("out." + target);
    std::vector<double> seen;
    auto r = convertImage(src, dst, target, kSize, [&](double f) { seen.push_back(f); });
    ASSERT_TRUE(r.has_value()) << r.error().describe();
    auto out = probeImage(dst);
    ASSERT_TRUE(out.has_value()) << out.error().describe();
    EXPECT_EQ(out->format, target == "qcow2" ? "qcow2" : "vmdk");
    if (target == "vmdk-stream") {
      EXPECT_EQ(out->subformat, "streamOptimized");
    }
    EXPECT_EQ(out->virtual_size, kSize);
    ASSERT_FALSE(seen.empty());
    EXPECT_DOUBLE_EQ(seen.back(), 1.0);
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_GE(seen.front(), 0.0);
    // Content survives: compare with the raw original.
    auto cmp = runCapture({"qemu-img", "compare", "-f", "raw", "-F", out->format, raw, dst});
    EXPECT_TRUE(cmp.has_value()) << cmp.error().describe();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ConvertFrom,
    ::testing::Values(SourceCase{"raw", {}, "raw", ""}, SourceCase{"qcow2", {}, "qcow2", ""},
                      SourceCase{
                          "vmdk", {"subformat=monolithicSparse"}, "vmdk", "monolithicSparse"},
                      SourceCase{"vmdk", {"subformat=streamOptimized"}, "vmdk", "streamOptimized"},
                      SourceCase{"vpc", {"force_size=on"}, "vpc", ""},
                      SourceCase{"vhdx", {}, "vhdx", ""}),
    [](const auto& param_info) {
      return param_info.param.qemu_format + (param_info.param.expect_subformat.empty()
                                                 ? ""
                                                 : "_" + param_info.param.expect_subformat);
    });

TEST(DiskImage, CapacityMismatchNamesBothSizesAndLeavesNoDestination) {
  TempDir dir;
  testing::makeRawImage(dir / "a.raw", kSize);
  const std::string dst = dir / "out.vmdk";
  auto r = convertImage(dir / "a.raw", dst, "vmdk-stream", 2 * kSize, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::DiskImageInvalid);
  EXPECT_NE(r.error().message.find(std::to_string(kSize)), std::string::npos);
  EXPECT_NE(r.error().message.find(std::to_string(2 * kSize)), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dst));
}

TEST(DiskImage, RefusesImagesThatReadOtherFiles) {
  TempDir dir;
  testing::run({"qemu-img", "create", "-f", "qcow2", dir / "base.qcow2", "1M"});
  testing::run({"qemu-img", "create", "-f", "qcow2", "-b", dir / "base.qcow2", "-F", "qcow2",
                dir / "overlay.qcow2"});
  auto info = probeImage(dir / "overlay.qcow2");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->external_file, dir / "base.qcow2");
  auto r = convertImage(dir / "overlay.qcow2", dir / "out.qcow2", "qcow2", 0, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::DiskImageInvalid);
  EXPECT_FALSE(std::filesystem::exists(dir / "out.qcow2"));

  // A VMDK descriptor whose extent is another file.
  testing::run({"qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat",
                dir / "flat.vmdk", "1M"});
  info = probeImage(dir / "flat.vmdk");
  ASSERT_TRUE(info.has_value());
  EXPECT_FALSE(info->external_file.empty());
  r = convertImage(dir / "flat.vmdk", dir / "out2.qcow2", "qcow2", 0, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::DiskImageInvalid);
}

TEST(DiskImage, ErrorsForMissingFilesAndUnknownTargets) {
  TempDir dir;
  auto info = probeImage(dir / "missing.img");
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::NotFound);
  testing::makeRawImage(dir / "a.raw", kSize);
  auto r = convertImage(dir / "a.raw", dir / "b", "vdi", 0, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir / "b"));
}

}  // namespace
}  // namespace vandra::ovf
