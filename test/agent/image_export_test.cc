// Seeded moves in the image store (image_store.h, ADR 0029): an export's frozen images take
// the identity of the package written from them, so a store that imports that package finds
// them under the digest the exporting site sends; kept exports and seeds go once unused and
// expired. Real qcow2 files and packages (qemu-img, qemu-io, the OVF writer).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "vandra/agent/image_store.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/inspect.h"
#include "vandra/ovf/writer.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kCapacity = 4ULL << 20;

class ImageExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "vandra-export-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    root_ = t;
    for (auto* s : {&a_, &b_}) {
      auto opened = ImageStore::open(root_ + (s == &a_ ? "/a" : "/b"));
      ASSERT_TRUE(opened) << opened.error().describe();
      s->emplace(std::move(*opened));
    }
    // A package of one VM with one 4 MiB disk, imported at A; VM "web" made from it.
    ovf::VmSpec spec;
    ovf::VirtualSystemSpec vs;
    vs.id = "vm";
    vs.name = "vm";
    vs.vcpus = 1;
    vs.memory_mib = 64;
    vs.controllers.push_back({"scsi0", ovf::ControllerKind::Scsi, "virtio-scsi"});
    vs.disks.push_back({.id = "disk1",
                        .capacity_bytes = kCapacity,
                        .populated_bytes = std::nullopt,
                        .format = "vmdk-stream",
                        .format_uri = "",
                        .file = std::nullopt,
                        .parent = std::nullopt,
                        .controller = "scsi0",
                        .unit = 0});
    spec.virtual_systems.push_back(vs);
    ASSERT_TRUE(runCapture(
        {"qemu-img", "create", "-q", "-f", "raw", root_ + "/d.raw", std::to_string(kCapacity)}));
    ovf::ExportOptions eo;
    eo.disk_images["disk1"] = root_ + "/d.raw";
    auto made = ovf::exportPackage(spec, root_ + "/package.ova", eo);
    ASSERT_TRUE(made) << made.error().describe();
    auto base = a_->importBase(root_ + "/package.ova", {});
    ASSERT_TRUE(base) << base.error().describe();
    package_ = *base;
    ASSERT_TRUE(a_->createOverlays("web", package_, "vm"));
    disk_ = root_ + "/a/vms/web/disk1.qcow2";
    write(disk_, 7, 0);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  static void write(const std::string& image, int pattern, int offset_k) {
    ASSERT_TRUE(runCapture(
        {"qemu-io", "-f", "qcow2", "-c",
         "write -P " + std::to_string(pattern) + " " + std::to_string(offset_k) + "k 64k", image}));
  }
  std::string content(const std::string& path) {
    const std::string raw = root_ + "/content.raw";
    fs::remove(raw);
    EXPECT_TRUE(runCapture({"qemu-img", "convert", "-U", "-O", "raw", path, raw}));
    std::ifstream in(raw, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  // Export "e1" of the stopped VM: frozen, the package written from the frozen image into
  // @p ova, its key recorded when @p record. Returns the frozen image's path.
  std::string exportWeb(const std::string& ova, bool record, int64_t expires) {
    auto staged = a_->stageExport("web", "e1", "vm", {{"disk1", kCapacity}});
    EXPECT_TRUE(staged) << staged.error().describe();
    if (!staged) {
      return "";
    }
    // No QEMU runs: the staged overlay stands over the image on disk already.
    auto committed = a_->commitExport("web", "e1", "{}", expires);
    EXPECT_TRUE(committed) << committed.error().describe();
    ovf::ExportOptions eo;
    eo.name = "web";
    eo.disk_images["disk1"] = staged->front().frozen;
    eo.backing_within = root_ + "/a";
    auto written = ovf::exportPackage(package_.spec, ova, eo);
    EXPECT_TRUE(written) << written.error().describe();
    auto insp = ovf::inspectPackage(ova, {});
    EXPECT_TRUE(insp) << insp.error().describe();
    if (record && insp) {
      auto r = a_->recordExportPackage("e1", ImageStore::packageKey(insp->package));
      EXPECT_TRUE(r) << r.error().describe();
    }
    return staged->front().frozen;
  }

  std::string root_;
  std::optional<ImageStore> a_, b_;
  BaseImage package_;
  std::string disk_;
};

TEST_F(ImageExportTest, TheFrozenImagesAreFoundUnderOneDigestWhereThePackageIsImported) {
  const std::string ova = root_ + "/web.ova";
  const std::string frozen = exportWeb(ova, /*record=*/true, ::time(nullptr) + 100);
  ASSERT_FALSE(frozen.empty());
  // The VM's disk is a new, empty overlay on the frozen image: the same content as before.
  auto digest = a_->baseDigest("web", "disk1");
  ASSERT_TRUE(digest) << digest.error().describe();
  EXPECT_EQ(a_->findBase(*digest), frozen);
  auto seed = b_->importBase(ova, {});
  ASSERT_TRUE(seed) << seed.error().describe();
  const auto there = b_->findBase(*digest);
  ASSERT_TRUE(there.has_value());
  EXPECT_EQ(fs::path(*there).filename(), fs::path(frozen).filename());
  EXPECT_EQ(content(*there), content(frozen));
  EXPECT_EQ(content(*there), content(disk_));
  // The guest writes on into its overlay; the frozen image (and so the seed) stays.
  write(disk_, 9, 64);
  EXPECT_NE(content(disk_), content(frozen));
  EXPECT_EQ(content(*there), content(frozen));
}

TEST_F(ImageExportTest, WithoutThePackagesKeyRecordedNoOtherSiteFindsTheFrozenImages) {
  const std::string ova = root_ + "/web.ova";
  ASSERT_FALSE(exportWeb(ova, /*record=*/false, ::time(nullptr) + 100).empty());
  auto digest = a_->baseDigest("web", "disk1");
  ASSERT_TRUE(digest) << digest.error().describe();
  ASSERT_TRUE(b_->importBase(ova, {}));
  EXPECT_FALSE(b_->findBase(*digest).has_value());
  // A key that is not one is refused; an export that was never made is not found.
  EXPECT_EQ(a_->recordExportPackage("e1", "../x").error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(a_->recordExportPackage("e2", std::string(64, 'a')).error().code, ErrorCode::NotFound);
}

TEST_F(ImageExportTest, ExportsAndSeedsGoOnceUnusedAndExpired) {
  const int64_t now = ::time(nullptr);
  const std::string ova = root_ + "/web.ova";
  const std::string frozen = exportWeb(ova, /*record=*/true, now + 100);
  const std::string export_dir = fs::path(frozen).parent_path().string();
  // The VM stands on it: it stays even past its expiry.
  a_->sweepRetained(now + 1000);
  EXPECT_TRUE(fs::exists(frozen));
  ASSERT_TRUE(a_->removeVm("web"));
  a_->sweepRetained(now + 50);
  EXPECT_TRUE(fs::exists(frozen)) << "removed before it expired";
  a_->sweepRetained(now + 101);
  EXPECT_FALSE(fs::exists(export_dir));
  EXPECT_TRUE(fs::exists(package_.dir)) << "an ordinary package's images stay";

  auto seed = b_->importBase(ova, {});
  ASSERT_TRUE(seed) << seed.error().describe();
  auto until = b_->markSeed(seed->key, now + 50, /*fresh=*/true);
  ASSERT_TRUE(until) << until.error().describe();
  EXPECT_EQ(*until, now + 50);
  // Seeding the same package again extends, never shortens.
  EXPECT_EQ(b_->markSeed(seed->key, now + 10, true).value_or(0), now + 50);
  b_->sweepRetained(now + 40);
  EXPECT_TRUE(fs::exists(seed->dir));
  b_->sweepRetained(now + 51);
  EXPECT_FALSE(fs::exists(seed->dir));
  // A folder imported before as an ordinary package does not become a seed.
  EXPECT_EQ(a_->markSeed(package_.key, now + 10, /*fresh=*/false).value_or(-1), 0);
  EXPECT_FALSE(fs::exists(package_.dir + "/retained.json"));
  EXPECT_EQ(a_->markSeed("nope", now, true).error().code, ErrorCode::NotFound);
}

// A crash between QEMU taking the overlays and the commit: at the next start the export is
// completed, and what the guest wrote into the overlay meanwhile is the disk's, on top of the
// frozen image. A staging with no overlay yet is only removed.
TEST_F(ImageExportTest, AnExportACrashInterruptedIsCompletedNotUndone) {
  const std::string before = content(disk_);
  auto staged = a_->stageExport("web", "e1", "vm", {{"disk1", kCapacity}});
  ASSERT_TRUE(staged) << staged.error().describe();
  const std::string overlay = staged->front().overlay;
  // As the guest would through QEMU: a write into the overlay (opened without its backing
  // file, which is not in place yet).
  ASSERT_TRUE(runCapture({"qemu-io", "-c", "write -P 9 64k 64k",
                          "json:{\"driver\": \"qcow2\", \"backing\": null, \"file\": "
                          "{\"driver\": \"file\", \"filename\": \"" +
                              overlay + "\"}}"}));
  // The agent starts again.
  auto reopened = ImageStore::open(root_ + "/a");
  ASSERT_TRUE(reopened) << reopened.error().describe();
  const int64_t until = ::time(nullptr) + 100;
  EXPECT_EQ(reopened->completeExports(until), std::vector<std::string>{"web"});
  EXPECT_FALSE(fs::exists(overlay));
  EXPECT_FALSE(fs::exists(root_ + "/a/base/.export-web"));
  EXPECT_TRUE(fs::exists(staged->front().frozen));
  const std::string kept = fs::path(staged->front().frozen).parent_path() / "retained.json";
  ASSERT_TRUE(fs::exists(kept));
  std::ifstream in(kept);
  const auto k = nlohmann::json::parse(in, nullptr, false);
  EXPECT_EQ(k.value("kind", ""), "export");
  EXPECT_EQ(k.value("expires", int64_t{0}), until);
  // The disk: the frozen content with the overlay's write on top.
  const std::string now = content(disk_);
  EXPECT_EQ(now.substr(0, 64 << 10), before.substr(0, 64 << 10));
  EXPECT_EQ(now.substr(64 << 10, 64 << 10), std::string(64 << 10, '\x09'));
  // Nothing left to complete.
  EXPECT_TRUE(reopened->completeExports(until).empty());

  // Staged before any overlay was made: only the second names go.
  ASSERT_TRUE(fs::create_directories(root_ + "/a/base/.export-web"));
  ASSERT_EQ(::link(disk_.c_str(), (root_ + "/a/base/.export-web/vm-disk1.qcow2").c_str()), 0);
  EXPECT_TRUE(reopened->completeExports(until).empty());
  EXPECT_FALSE(fs::exists(root_ + "/a/base/.export-web"));
  EXPECT_EQ(content(disk_), now);
}

}  // namespace
}  // namespace vandra::agent
