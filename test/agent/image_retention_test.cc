// Kept images for return trips (image_store.h, ADR 0027): a departing disk folds the kept
// images it stands on into itself, so a VM that goes back and forth keeps a short chain, and
// the sweep removes what no move back can use any more. Real qcow2 files (qemu-img, qemu-io).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "vandra/agent/image_store.h"
#include "vandra/common/subprocess.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kMiB = "1048576";

class ImageRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "vandra-retention-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    root_ = t;
    auto s = ImageStore::open(root_ + "/store");
    ASSERT_TRUE(s) << s.error().describe();
    store_.emplace(std::move(*s));
    base_ = root_ + "/store/base/";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // A qcow2 image at @p path on @p backing ("" for none), with @p pattern written at
  // @p offset (64 KiB).
  void image(const std::string& path, const std::string& backing, int pattern, int offset_k) {
    fs::create_directories(fs::path(path).parent_path());
    std::vector<std::string> argv{"qemu-img", "create", "-q", "-f", "qcow2"};
    if (!backing.empty()) {
      argv.insert(argv.end(), {"-F", "qcow2", "-b", backing});
    }
    argv.insert(argv.end(), {path, kMiB});
    ASSERT_TRUE(runCapture(argv));
    ASSERT_TRUE(runCapture(
        {"qemu-io", "-f", "qcow2", "-c",
         "write -P " + std::to_string(pattern) + " " + std::to_string(offset_k) + "k 64k", path}));
  }
  // A kept folder's marker (kind departed or arrival, for VM @p vm, kept at @p at).
  void kept(const std::string& key, const std::string& kind, const std::string& vm, int64_t at) {
    std::ofstream(base_ + key + "/vmspec.json") << "{}";
    json k{{"kind", kind}, {"vm", vm}, {"migration_id", key}, {"at", at}};
    if (kind == "departed") {
      k["expires"] = ::time(nullptr) + 86400;  // not expired
    }
    std::ofstream(base_ + key + "/retained.json") << k.dump();
  }
  // The content the guest sees, as raw bytes.
  std::string content(const std::string& path) {
    const std::string raw = root_ + "/content.raw";
    EXPECT_TRUE(runCapture({"qemu-img", "convert", "-U", "-O", "raw", path, raw}));
    std::ifstream in(raw, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  std::vector<std::string> chain(const std::string& path) {
    auto info = runCapture({"qemu-img", "info", "--backing-chain", "--output=json", "-U", path});
    EXPECT_TRUE(info);
    std::vector<std::string> out;
    for (const auto& f : json::parse(info ? *info : "[]")) {
      out.push_back(f.value("filename", ""));
    }
    out.erase(out.begin());
    return out;
  }

  std::string root_;
  std::string base_;
  std::optional<ImageStore> store_;
};

// dc's disk after a few trips: its overlay on the arrival image of the last move here, on
// the disks dc kept when the VM left before, on the package's base.
TEST_F(ImageRetentionTest, ADepartingDiskFoldsKeptImagesInAndStandsOnThePackageBaseOnly) {
  const std::string pkg = base_ + "pkg/d.qcow2";
  image(pkg, "", 1, 0);
  std::ofstream(base_ + "pkg/vmspec.json") << "{}";  // an imported package: no retained.json
  image(base_ + "k1/d.qcow2", pkg, 2, 64);
  kept("k1", "departed", "web", 100);
  image(base_ + "k2/d.qcow2", base_ + "k1/d.qcow2", 3, 128);
  kept("k2", "arrival", "web", 200);
  const std::string disk = root_ + "/store/vms/web/d.qcow2";
  image(disk, base_ + "k2/d.qcow2", 4, 192);
  const std::string before = content(disk);
  ASSERT_EQ(chain(disk).size(), 3U);

  ASSERT_TRUE(store_->retainDeparted("web", "m3", "{}", ::time(nullptr) + 3600));
  const std::string kept_disk = base_ + ImageStore::arrivalKey("m3") + "/d.qcow2";
  ASSERT_TRUE(fs::exists(kept_disk));
  EXPECT_FALSE(fs::exists(root_ + "/store/vms/web"));
  EXPECT_EQ(chain(kept_disk), std::vector<std::string>{pkg});
  EXPECT_EQ(content(kept_disk), before);

  // The older departed copy and the arrival image stand under nothing now; the package's
  // base and the newest departed copy stay.
  const auto removed = store_->sweepRetained(::time(nullptr));
  EXPECT_EQ(removed.size(), 2U);
  EXPECT_FALSE(fs::exists(base_ + "k1"));
  EXPECT_FALSE(fs::exists(base_ + "k2"));
  EXPECT_TRUE(fs::exists(pkg));
  EXPECT_EQ(content(kept_disk), before);
}

TEST_F(ImageRetentionTest, WithoutAPackageBaseTheDepartingDiskBecomesStandalone) {
  image(base_ + "k1/d.qcow2", "", 2, 0);
  kept("k1", "departed", "web", 100);
  image(base_ + "k2/d.qcow2", base_ + "k1/d.qcow2", 3, 64);
  kept("k2", "arrival", "web", 200);
  const std::string disk = root_ + "/store/vms/web/d.qcow2";
  image(disk, base_ + "k2/d.qcow2", 4, 0);  // overwrites k1's block
  const std::string before = content(disk);

  ASSERT_TRUE(store_->retainDeparted("web", "m3", "{}", ::time(nullptr) + 3600));
  const std::string kept_disk = base_ + ImageStore::arrivalKey("m3") + "/d.qcow2";
  EXPECT_TRUE(chain(kept_disk).empty());
  EXPECT_EQ(content(kept_disk), before);
}

// The VM is back here, its disk an overlay on the arrival image of the move back, which stands
// on what this site kept when it left: kept while used, gone once nothing stands on it.
TEST_F(ImageRetentionTest, ADepartedCopyOfAVmThatIsHereAgainGoesOnceUnused) {
  image(base_ + "k1/d.qcow2", "", 2, 0);
  kept("k1", "departed", "web", 100);
  image(base_ + "other/d.qcow2", "", 5, 0);
  kept("other", "departed", "db", 100);  // another VM's, not expired: stays
  const std::string disk = root_ + "/store/vms/web/d.qcow2";
  image(disk, base_ + "k1/d.qcow2", 4, 64);

  EXPECT_TRUE(store_->sweepRetained(::time(nullptr)).empty());
  EXPECT_TRUE(fs::exists(base_ + "k1/d.qcow2"));

  ASSERT_TRUE(runCapture({"qemu-img", "rebase", "-q", "-f", "qcow2", "-b", "", disk}));
  EXPECT_EQ(store_->sweepRetained(::time(nullptr)), std::vector<std::string>{"k1"});
  EXPECT_TRUE(fs::exists(base_ + "other/d.qcow2"));
}

}  // namespace
}  // namespace vandra::agent
