// exportPackage and editPackageSla tests, checked through openPackage: manifest digests,
// member order (descriptor first), ustar headers, signature trusted by a test CA, atomicity
// (nothing left behind on error; package unchanged when an edit fails).
#include <gtest/gtest.h>

#include <filesystem>

#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/ovf/writer.h"
#include "writer_test_util.h"

namespace vandra::ovf {
namespace {

using testing::TempDir;

constexpr uint64_t kDisk1 = 8U << 20;
constexpr uint64_t kDisk2 = 2U << 20;

VmSpec twoDiskSpec() {
  VmSpec s;
  VirtualSystemSpec vs;
  vs.id = "app";
  vs.name = "app";
  vs.vcpus = 2;
  vs.memory_mib = 1024;
  vs.os = {101, "linux", ""};
  vs.controllers = {{"scsi0", ControllerKind::Scsi, "lsilogic"}};
  vs.disks.push_back(
      {"root", kDisk1, std::nullopt, "vmdk-stream", "", std::nullopt, std::nullopt, "scsi0", 0});
  vs.disks.push_back(
      {"data", kDisk2, std::nullopt, "vmdk-stream", "", std::nullopt, std::nullopt, "scsi0", 1});
  vs.nics.push_back({"lan", "vmxnet3", std::nullopt, true});
  s.networks.push_back({"lan", ""});
  s.virtual_systems.push_back(vs);
  return s;
}

Sla testSla() {
  Sla sla;
  sla.downtime_budget_ms = 250;
  sla.jurisdictions = {"EU"};
  sla.mobility = Mobility::Pinned;
  sla.availability_percent = 99.9;
  return sla;
}

class Export : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::makeRawImage(dir_ / "root.raw", kDisk1);
    testing::makeRawImage(dir_ / "data.raw", kDisk2);
    options_.disk_images = {{"root", dir_ / "root.raw"}, {"data", dir_ / "data.raw"}};
  }

  Package open(const std::string& path, const std::string& trust = "") {
    OpenOptions o;
    o.trust_store = trust;
    auto p = openPackage(path, o);
    EXPECT_TRUE(p.has_value()) << p.error().describe();
    if (!p) {
      return {};
    }
    for (const auto& e : p->problems) {
      ADD_FAILURE() << "package problem: " << e.describe();
    }
    return *p;
  }

  TempDir dir_;
  ExportOptions options_;
};

std::vector<std::string> memberNames(const Package& p) {
  std::vector<std::string> out;
  for (const auto& m : p.members) {
    out.push_back(m.name);
  }
  return out;
}

TEST_F(Export, SignedOvaOpensVerifiedAndTrusted) {
  TempDir pki_dir;
  const auto pki = testing::makePki(pki_dir);
  options_.sign_key = pki.key_pem;
  options_.sign_cert = pki.cert_pem;
  std::set<std::string> stages;
  options_.progress = [&](const std::string& stage, double f) {
    EXPECT_GE(f, 0.0);
    EXPECT_LE(f, 1.0);
    stages.insert(stage);
  };
  VmSpec spec = twoDiskSpec();
  spec.virtual_systems[0].sla = testSla();
  const std::string out = dir_ / "app.ova";
  auto r = exportPackage(spec, out, options_);
  ASSERT_TRUE(r.has_value()) << r.error().describe();

  const Package p = open(out, pki.ca_pem_path);
  EXPECT_EQ(p.kind, PackageKind::Ova);
  EXPECT_EQ(memberNames(p), (std::vector<std::string>{"app.ovf", "app.mf", "app.cert",
                                                      "app-disk1.vmdk", "app-disk2.vmdk"}));
  EXPECT_EQ(p.signature.status, SignatureStatus::Trusted) << toString(p.signature.status);
  ASSERT_TRUE(p.manifest.has_value());
  ASSERT_EQ(p.manifest->size(), 3U);
  EXPECT_EQ((*p.manifest)[0].file, "app.ovf");
  EXPECT_EQ((*p.manifest)[0].algorithm, DigestAlgorithm::Sha256);
  EXPECT_TRUE(stages.count("convert root") == 1 && stages.count("convert data") == 1 &&
              stages.count("sign") == 1 && stages.count("write ova") == 1);

  // ustar headers ("ustar\0" "00" at offset 257), descriptor first.
  const std::string tar = testing::slurp(out);
  ASSERT_GT(tar.size(), 1024U);
  EXPECT_EQ(tar.substr(0, 7), "app.ovf");
  EXPECT_EQ(tar.substr(257, 8), std::string("ustar\0"
                                            "00",
                                            8));

  auto d = readDescriptor(p.descriptor, {});
  ASSERT_TRUE(d.has_value()) << d.error().describe();
  const auto& vs = d->spec.virtual_systems.at(0);
  ASSERT_EQ(vs.disks.size(), 2U);
  EXPECT_EQ(vs.disks[0].capacity_bytes, kDisk1);
  EXPECT_EQ(vs.disks[0].file, "app-disk1.vmdk");
  EXPECT_EQ(vs.disks[0].format, "vmdk-stream");
  EXPECT_TRUE(vs.disks[0].populated_bytes.has_value());
  EXPECT_EQ(vs.disks[1].file, "app-disk2.vmdk");
  ASSERT_EQ(d->spec.files.size(), 2U);
  for (const auto& f : d->spec.files) {
    const auto m = std::find_if(p.members.begin(), p.members.end(),
                                [&](const PackageMember& pm) { return pm.name == f.href; });
    ASSERT_NE(m, p.members.end());
    EXPECT_EQ(f.size, m->size);
  }
  EXPECT_EQ(vs.sla, testSla());
  // Nothing but the OVA beside it.
  EXPECT_EQ(testing::listDir(dir_.path()),
            (std::set<std::string>{"root.raw", "data.raw", "app.ova"}));
}

TEST_F(Export, FolderExportWithVersion2) {
  options_.ova = false;
  options_.version = WriteVersion::V2_0;
  options_.name = "pkg";
  const std::string out = dir_ / "folder";
  auto r = exportPackage(twoDiskSpec(), out, options_);
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_EQ(testing::listDir(out),
            (std::set<std::string>{"pkg.ovf", "pkg.mf", "pkg-disk1.vmdk", "pkg-disk2.vmdk"}));
  const Package p = open(out);
  EXPECT_EQ(p.kind, PackageKind::Directory);
  EXPECT_EQ(p.signature.status, SignatureStatus::Unsigned);
  EXPECT_NE(p.descriptor.find("http://schemas.dmtf.org/ovf/envelope/2"), std::string::npos);
  const std::string mf = testing::slurp(out + "/pkg.mf");
  EXPECT_EQ(mf.rfind("SHA256(pkg.ovf)= ", 0), 0U) << mf;
  auto img = runCapture({"qemu-img", "compare", "-f", "raw", "-F", "vmdk", dir_ / "root.raw",
                         out + "/pkg-disk1.vmdk"});
  EXPECT_TRUE(img.has_value()) << img.error().describe();
}

TEST_F(Export, CapacityMismatchLeavesNothingBehind) {
  VmSpec spec = twoDiskSpec();
  spec.virtual_systems[0].disks[1].capacity_bytes = kDisk2 * 2;
  const auto before = testing::listDir(dir_.path());
  for (const bool ova : {true, false}) {
    options_.ova = ova;
    const std::string out = dir_ / "out";
    auto r = exportPackage(spec, out, options_);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::DiskImageInvalid);
    EXPECT_FALSE(std::filesystem::exists(out));
    EXPECT_EQ(testing::listDir(dir_.path()), before);
  }
}

TEST_F(Export, RefusesBadArguments) {
  const std::string out = dir_ / "x.ova";
  testing::spit(out, "existing");
  auto r = exportPackage(twoDiskSpec(), out, options_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(testing::slurp(out), "existing");

  ExportOptions o = options_;
  o.name = "../evil";
  r = exportPackage(twoDiskSpec(), dir_ / "y.ova", o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);

  o = options_;
  o.disk_images["nonexistent"] = dir_ / "root.raw";
  r = exportPackage(twoDiskSpec(), dir_ / "y.ova", o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);

  o = options_;
  o.sign_key = "not a key";
  o.sign_cert = "not a cert";
  r = exportPackage(twoDiskSpec(), dir_ / "y.ova", o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "y.ova"));
  EXPECT_EQ(testing::listDir(dir_.path()),
            (std::set<std::string>{"root.raw", "data.raw", "x.ova"}));
}

// ---- editPackageSla -------------------------------------------------------------------

class SlaEdit : public Export, public ::testing::WithParamInterface<bool> {
 protected:
  std::string exportPkg(bool ova, bool signed_pkg) {
    options_.ova = ova;
    if (signed_pkg) {
      options_.sign_key = pki_.key_pem;
      options_.sign_cert = pki_.cert_pem;
    }
    const std::string out = dir_ / (ova ? "p.ova" : "p");
    auto r = exportPackage(twoDiskSpec(), out, options_);
    EXPECT_TRUE(r.has_value()) << r.error().describe();
    return out;
  }
  // Bytes of every file of the package, to prove an edit that fails changes nothing.
  std::map<std::string, std::string> snapshot(const std::string& path) {
    std::map<std::string, std::string> out;
    if (std::filesystem::is_directory(path)) {
      for (const auto& n : testing::listDir(path)) {
        out[n] = testing::slurp(path + "/" + n);
      }
    } else {
      out[path] = testing::slurp(path);
    }
    return out;
  }
  TempDir pki_dir_;
  testing::TestPki pki_ = testing::makePki(pki_dir_);
};

TEST_P(SlaEdit, UnsignedSetThenRemove) {
  const bool ova = GetParam();
  const std::string path = exportPkg(ova, false);
  auto w = editPackageSla(path, testSla(), {});
  ASSERT_TRUE(w.has_value()) << w.error().describe();
  EXPECT_TRUE(w->empty());
  Package p = open(path);
  EXPECT_EQ(p.members.front().name, "app.ovf");
  auto sla = readSla(p.descriptor, "");
  ASSERT_TRUE(sla.has_value()) << sla.error().describe();
  ASSERT_TRUE(sla->has_value());
  EXPECT_EQ(toJson(**sla).dump(), toJson(testSla()).dump());
  EXPECT_EQ(p.signature.status, SignatureStatus::Unsigned);

  w = editPackageSla(path, std::nullopt, {});
  ASSERT_TRUE(w.has_value()) << w.error().describe();
  p = open(path);
  sla = readSla(p.descriptor, "");
  ASSERT_TRUE(sla.has_value());
  EXPECT_FALSE(sla->has_value());
  EXPECT_EQ(testing::listDir(dir_.path()).size(), 3U);  // two images + the package
}

TEST_P(SlaEdit, SignedWithoutKeyDropsSignatureWithWarning) {
  const bool ova = GetParam();
  const std::string path = exportPkg(ova, true);
  EXPECT_EQ(open(path, pki_.ca_pem_path).signature.status, SignatureStatus::Trusted);
  auto w = editPackageSla(path, testSla(), {});
  ASSERT_TRUE(w.has_value()) << w.error().describe();
  ASSERT_EQ(w->size(), 1U);
  EXPECT_EQ(w->front(), "signature removed: package was modified");
  const Package p = open(path, pki_.ca_pem_path);
  EXPECT_EQ(p.signature.status, SignatureStatus::Unsigned);
  const auto names = memberNames(p);
  EXPECT_EQ(std::count(names.begin(), names.end(), "app.cert"), 0);
  EXPECT_EQ(names.front(), "app.ovf");
}

TEST_P(SlaEdit, SignedWithKeyIsResigned) {
  const bool ova = GetParam();
  const std::string path = exportPkg(ova, true);
  SlaEditOptions o;
  o.sign_key = pki_.key_pem;
  o.sign_cert = pki_.cert_pem;
  auto w = editPackageSla(path, testSla(), o);
  ASSERT_TRUE(w.has_value()) << w.error().describe();
  EXPECT_TRUE(w->empty());
  const Package p = open(path, pki_.ca_pem_path);
  EXPECT_EQ(p.signature.status, SignatureStatus::Trusted);
  if (ova) {
    EXPECT_EQ(memberNames(p), (std::vector<std::string>{"app.ovf", "app.mf", "app.cert",
                                                        "app-disk1.vmdk", "app-disk2.vmdk"}));
  }
  auto sla = readSla(p.descriptor, "app");
  ASSERT_TRUE(sla.has_value() && sla->has_value());
  EXPECT_EQ(toJson(**sla).dump(), toJson(testSla()).dump());
}

TEST_P(SlaEdit, FailedEditLeavesPackageUnchanged) {
  const bool ova = GetParam();
  const std::string path = exportPkg(ova, true);
  const auto before = snapshot(path);
  const auto dir_before = testing::listDir(dir_.path());

  SlaEditOptions o;
  o.vs_id = "no-such-vm";
  auto w = editPackageSla(path, testSla(), o);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, ErrorCode::NotFound);

  Sla bad = testSla();
  bad.availability_percent = 250;
  w = editPackageSla(path, bad, {});
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, ErrorCode::SlaInvalid);

  o = {};
  o.sign_key = "garbage";
  o.sign_cert = pki_.cert_pem;
  w = editPackageSla(path, testSla(), o);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, ErrorCode::InvalidArgument);

  EXPECT_EQ(snapshot(path), before);
  EXPECT_EQ(testing::listDir(dir_.path()), dir_before);
}

TEST_F(SlaEdit, RefusesPackageThatDoesNotVerify) {
  const std::string path = exportPkg(false, false);
  // Corrupt a disk: the manifest no longer matches, so the edit must not re-bless it.
  std::string disk = testing::slurp(path + "/app-disk2.vmdk");
  disk[disk.size() / 2] = static_cast<char>(disk[disk.size() / 2] ^ 0x55);
  testing::spit(path + "/app-disk2.vmdk", disk);
  const auto before = snapshot(path);
  auto w = editPackageSla(path, testSla(), {});
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(snapshot(path), before);
}

INSTANTIATE_TEST_SUITE_P(Kinds, SlaEdit, ::testing::Values(false, true),
                         [](const auto& param_info) {
                           return param_info.param ? "ova" : "folder";
                         });

}  // namespace
}  // namespace vandra::ovf
