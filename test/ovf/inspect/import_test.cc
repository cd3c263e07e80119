// importPackage and inspectPackage against packages made for each case: exported by the
// writer, or assembled by hand where a package must lie (wrong format claim, wrong capacity,
// gzip and chunked members). Real qemu-img; every failure must leave the destination as it
// was.
#include <gtest/gtest.h>

#include <filesystem>

#include "../writer/writer_test_util.h"
#include "vandra/ovf/disk_image.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/ovf/writer.h"

namespace vandra::ovf {
namespace {

namespace fs = std::filesystem;
using testing::listDir;
using testing::makeRawImage;
using testing::run;
using testing::slurp;
using testing::spit;
using testing::TempDir;

constexpr uint64_t kDiskBytes = 8ULL << 20;

VmSpec oneDiskSpec(const std::optional<std::string>& href, uint64_t capacity,
                   std::string format = "vmdk-stream") {
  VmSpec spec;
  VirtualSystemSpec vs;
  vs.id = "vm1";
  vs.name = "vm1";
  vs.vcpus = 1;
  vs.memory_mib = 64;
  vs.controllers.push_back({"scsi0", ControllerKind::Scsi, "lsilogic"});
  DiskSpec d;
  d.id = "disk1";
  d.capacity_bytes = capacity;
  d.format = std::move(format);
  d.controller = "scsi0";
  d.file = href;
  vs.disks.push_back(d);
  spec.virtual_systems.push_back(vs);
  if (href) {
    spec.files.push_back({.id = "file1",
                          .href = *href,
                          .size = std::nullopt,
                          .compression = "",
                          .chunk_size = std::nullopt});
  }
  return spec;
}

// A folder package without manifest: descriptor plus the given members, written by hand.
void writeFolder(const std::string& dir, const VmSpec& spec) {
  fs::create_directories(dir);
  auto xml = writeDescriptor(spec, WriteVersion::V1_0);
  ASSERT_TRUE(xml) << xml.error().describe();
  spit(dir + "/vm1.ovf", *xml);
}

class ImportTest : public ::testing::Test {
 protected:
  TempDir tmp_;
  std::string dest() const { return tmp_ / "dest"; }
};

TEST_F(ImportTest, ExportedOvaImportsToIdenticalQcow2) {
  const std::string raw = tmp_ / "src.raw";
  makeRawImage(raw, kDiskBytes);
  ExportOptions eo;
  eo.disk_images["disk1"] = raw;
  ASSERT_TRUE(exportPackage(oneDiskSpec(std::nullopt, kDiskBytes), tmp_ / "vm1.ova", eo));

  std::vector<std::string> stages;
  ImportOptions io;
  io.progress = [&](const std::string& s, double) {
    if (stages.empty() || stages.back() != s) {
      stages.push_back(s);
    }
  };
  auto r = importPackage(tmp_ / "vm1.ova", dest(), io);
  ASSERT_TRUE(r) << r.error().describe();
  ASSERT_EQ(r->disks.size(), 1U);
  EXPECT_EQ(r->disks[0].capacity_bytes, kDiskBytes);
  run({"qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, r->disks[0].path});
  auto info = probeImage(r->disks[0].path);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->format, "qcow2");
  // vmspec.json describes what is in the folder now.
  auto j = nlohmann::json::parse(slurp(dest() + "/vmspec.json"));
  auto spec = vmSpecFromJson(j);
  ASSERT_TRUE(spec) << spec.error().describe();
  EXPECT_EQ(spec->virtual_systems[0].disks[0].format, "qcow2");
  EXPECT_EQ(spec->virtual_systems[0].disks[0].file, "vm1-disk1.qcow2");
  EXPECT_EQ(listDir(dest()), (std::set<std::string>{"vm1-disk1.qcow2", "vmspec.json"}));
  EXPECT_NE(std::find(stages.begin(), stages.end(), "convert disk1"), stages.end());
}

TEST_F(ImportTest, TamperedPackageIsRefusedAndNothingIsCreated) {
  const std::string raw = tmp_ / "src.raw";
  makeRawImage(raw, kDiskBytes);
  ExportOptions eo;
  eo.ova = false;
  eo.disk_images["disk1"] = raw;
  ASSERT_TRUE(exportPackage(oneDiskSpec(std::nullopt, kDiskBytes), tmp_ / "pkg", eo));
  std::string vmdk;
  for (const auto& n : listDir(tmp_ / "pkg")) {
    if (n.ends_with(".vmdk")) {
      vmdk = tmp_ / "pkg" + "/" + n;
    }
  }
  ASSERT_FALSE(vmdk.empty());
  std::string bytes = slurp(vmdk);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x55);
  spit(vmdk, bytes);
  auto r = importPackage(tmp_ / "pkg", dest(), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::ManifestMismatch);
  EXPECT_FALSE(fs::exists(dest()));
  // --lax imports anyway (the operator's choice), with the mismatch as a warning.
  ImportOptions lax;
  lax.inspect.lax = true;
  auto r2 = importPackage(tmp_ / "pkg", dest(), lax);
  ASSERT_TRUE(r2) << r2.error().describe();
  EXPECT_FALSE(r2->spec.warnings.empty());
}

TEST_F(ImportTest, ImageThatIsNotWhatTheDescriptorClaimsIsRefused) {
  // The descriptor says streamOptimized VMDK; the file is raw bytes.
  writeFolder(tmp_ / "pkg", oneDiskSpec("disk1.vmdk", kDiskBytes));
  makeRawImage(tmp_ / "pkg/disk1.vmdk", kDiskBytes);
  fs::create_directories(dest());
  spit(dest() + "/keep.txt", "operator data");
  auto r = importPackage(tmp_ / "pkg", dest(), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::DiskImageInvalid) << r.error().describe();
  EXPECT_EQ(listDir(dest()), std::set<std::string>{"keep.txt"});
}

TEST_F(ImportTest, CapacityDifferentFromDescriptorIsRefused) {
  writeFolder(tmp_ / "pkg", oneDiskSpec("disk1.qcow2", kDiskBytes * 2, "qcow2"));
  run({"qemu-img", "create", "-q", "-f", "qcow2", tmp_ / "pkg/disk1.qcow2",
       std::to_string(kDiskBytes)});
  auto r = importPackage(tmp_ / "pkg", dest(), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::DiskImageInvalid);
  EXPECT_NE(r.error().message.find(std::to_string(kDiskBytes * 2)), std::string::npos)
      << r.error().message;
  EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(ImportTest, GzipCompressedAndChunkedMembersAreImported) {
  // gzip: the File says ovf:compression="gzip".
  VmSpec gz = oneDiskSpec("disk1.qcow2.gz", kDiskBytes, "qcow2");
  gz.files[0].compression = "gzip";
  writeFolder(tmp_ / "gz", gz);
  const std::string img = tmp_ / "img.qcow2";
  makeRawImage(tmp_ / "img.raw", kDiskBytes);
  run({"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", tmp_ / "img.raw", img});
  run({"sh", "-c", "gzip -c '" + img + "' > '" + tmp_ / "gz/disk1.qcow2.gz" + "'"});
  auto r = importPackage(tmp_ / "gz", tmp_ / "dest-gz", {});
  ASSERT_TRUE(r) << r.error().describe();
  run({"qemu-img", "compare", "-f", "raw", "-F", "qcow2", tmp_ / "img.raw", r->disks[0].path});

  // chunked: disk1.qcow2.000000000, .000000001, ... with ovf:chunkSize.
  VmSpec ch = oneDiskSpec("disk1.qcow2", kDiskBytes, "qcow2");
  const std::string bytes = slurp(img);
  const size_t chunk = 64 * 1024;
  ch.files[0].chunk_size = chunk;
  ch.files[0].size = bytes.size();
  writeFolder(tmp_ / "ch", ch);
  for (size_t off = 0, i = 0; off < bytes.size(); off += chunk, ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "/disk1.qcow2.%09zu", i);
    spit(tmp_ / "ch" + name, bytes.substr(off, chunk));
  }
  auto r2 = importPackage(tmp_ / "ch", tmp_ / "dest-ch", {});
  ASSERT_TRUE(r2) << r2.error().describe();
  run({"qemu-img", "compare", "-f", "raw", "-F", "qcow2", tmp_ / "img.raw", r2->disks[0].path});
}

TEST_F(ImportTest, BlankDiskGetsAnEmptyQcow2OfItsCapacity) {
  writeFolder(tmp_ / "pkg", oneDiskSpec(std::nullopt, kDiskBytes));
  auto r = importPackage(tmp_ / "pkg", dest(), {});
  ASSERT_TRUE(r) << r.error().describe();
  auto info = probeImage(r->disks[0].path);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->virtual_size, kDiskBytes);
}

TEST_F(ImportTest, SecondImportIntoTheSameFolderIsRefused) {
  writeFolder(tmp_ / "pkg", oneDiskSpec(std::nullopt, kDiskBytes));
  ASSERT_TRUE(importPackage(tmp_ / "pkg", dest(), {}));
  const auto before = listDir(dest());
  auto r = importPackage(tmp_ / "pkg", dest(), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(listDir(dest()), before);
}

TEST(InspectTest, ReferencedFileMissingOrWrongSizeIsAProblem) {
  TempDir tmp;
  VmSpec spec = oneDiskSpec("disk1.vmdk", kDiskBytes);
  spec.files[0].size = 1234;
  writeFolder(tmp / "pkg", spec);
  auto missing = inspectPackage(tmp / "pkg", {});
  ASSERT_TRUE(missing) << missing.error().describe();
  ASSERT_FALSE(missing->problems.empty());
  EXPECT_EQ(missing->problems.front().code, ErrorCode::PackageMissingFile);

  spit(tmp / "pkg/disk1.vmdk", std::string(1000, 'x'));
  auto wrong = inspectPackage(tmp / "pkg", {});
  ASSERT_TRUE(wrong);
  ASSERT_EQ(wrong->problems.size(), 1U);
  EXPECT_EQ(wrong->problems.front().code, ErrorCode::OvfValue);
  EXPECT_FALSE(requireSound(*wrong));

  InspectOptions lax;
  lax.lax = true;
  auto laxed = inspectPackage(tmp / "pkg", lax);
  ASSERT_TRUE(laxed);
  EXPECT_TRUE(laxed->problems.empty());
  EXPECT_TRUE(requireSound(*laxed));
}

TEST(InspectTest, UnreferencedMemberIsAWarningNotAProblem) {
  TempDir tmp;
  writeFolder(tmp / "pkg", oneDiskSpec(std::nullopt, kDiskBytes));
  spit(tmp / "pkg/readme.txt", "hello");
  auto r = inspectPackage(tmp / "pkg", {});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_TRUE(r->problems.empty()) << r->problems.front().describe();
  const bool warned =
      std::any_of(r->spec.warnings.begin(), r->spec.warnings.end(),
                  [](const std::string& w) { return w.find("readme.txt") != std::string::npos; });
  EXPECT_TRUE(warned);
}

}  // namespace
}  // namespace vandra::ovf
