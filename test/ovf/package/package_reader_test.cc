// openPackage on generated OVAs and folders: tar formats, hostile members with their
// ErrorCodes, manifest checks, limits, lax mode and progress.
#include <gtest/gtest.h>

#include <algorithm>

#include "package_test_util.h"
#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf {
namespace {

using testing::Format;
using testing::TarMember;
using testing::TempDir;

bool hasProblem(const Package& p, ErrorCode code) {
  return std::any_of(p.problems.begin(), p.problems.end(),
                     [code](const Error& e) { return e.code == code; });
}
bool hasWarning(const Package& p, std::string_view text) {
  return std::any_of(p.warnings.begin(), p.warnings.end(),
                     [text](const std::string& w) { return w.find(text) != std::string::npos; });
}
std::string problemList(const Package& p) {
  std::string s;
  for (const auto& e : p.problems) {
    s += std::string(toString(e.code)) + ": " + e.describe() + "\n";
  }
  return s;
}

// Opens @p bytes both from a file and from memory and checks both agree.
Result<Package> openOva(const std::string& bytes, const OpenOptions& options = {}) {
  TempDir dir;
  const std::string path = dir.write("p.ova", bytes);
  auto from_file = openPackage(path, options);
  auto from_memory = openPackageFromMemory(bytes, path, options);
  EXPECT_EQ(from_file.has_value(), from_memory.has_value());
  if (from_file && from_memory) {
    EXPECT_EQ(from_file->problems.size(), from_memory->problems.size());
    EXPECT_EQ(from_file->members.size(), from_memory->members.size());
  }
  return from_file;
}

const std::string kDisk = std::string(100000, 'x') + "disk data";

std::vector<TarMember> goodMembers() {
  const std::string mf = "SHA256(vm.ovf)= " + testing::sha256(testing::kDescriptor) +
                         "\nSHA256(disk1.vmdk)= " + testing::sha256(kDisk) + "\n";
  return {{"vm.ovf", testing::kDescriptor}, {"vm.mf", mf}, {"disk1.vmdk", kDisk}};
}

class OvaFormats : public ::testing::TestWithParam<Format> {};

TEST_P(OvaFormats, ReadsSoundPackage) {
  uint64_t last_done = 0;
  uint64_t last_total = 0;
  OpenOptions o;
  o.progress = [&](uint64_t d, uint64_t t) {
    EXPECT_LE(d, t);
    last_done = d;
    last_total = t;
  };
  auto pkg = openOva(testing::makeTar(goodMembers(), GetParam()), o);
  ASSERT_TRUE(pkg) << pkg.error().describe();
  EXPECT_TRUE(pkg->problems.empty()) << problemList(*pkg);
  EXPECT_EQ(pkg->kind, PackageKind::Ova);
  EXPECT_EQ(pkg->descriptor_name, "vm.ovf");
  EXPECT_EQ(pkg->descriptor, testing::kDescriptor);
  ASSERT_EQ(pkg->members.size(), 3U);
  EXPECT_EQ(pkg->members[2].name, "disk1.vmdk");
  EXPECT_EQ(pkg->members[2].size, kDisk.size());
  ASSERT_TRUE(pkg->manifest);
  EXPECT_EQ(pkg->manifest->size(), 2U);
  EXPECT_EQ(pkg->signature.status, SignatureStatus::Unsigned);
  EXPECT_GT(last_total, 0U);
  EXPECT_EQ(last_done, last_total);
}

INSTANTIATE_TEST_SUITE_P(Tar, OvaFormats,
                         ::testing::Values(Format::Ustar, Format::Pax, Format::Gnu));

TEST(OpenOva, LongNamesInPaxAndGnu) {
  const std::string name(300, 'n');
  for (const auto f : {Format::Pax, Format::Gnu}) {
    auto pkg = openOva(testing::makeTar({{"vm.ovf", testing::kDescriptor}, {name, "x"}}, f));
    ASSERT_TRUE(pkg);
    ASSERT_EQ(pkg->members.size(), 2U);
    EXPECT_EQ(pkg->members[1].name, name);
  }
}

TEST(OpenOva, DescriptorNotFirstWarnsButReads) {
  auto members = goodMembers();
  std::rotate(members.begin(), members.begin() + 2, members.end());  // disk first
  auto pkg = openOva(testing::makeTar(members));
  ASSERT_TRUE(pkg) << pkg.error().describe();
  EXPECT_TRUE(hasWarning(*pkg, "not the first member"));
  EXPECT_TRUE(pkg->problems.empty()) << problemList(*pkg);  // digests computed before the .mf
  EXPECT_EQ(pkg->members.front().name, "vm.ovf");
}

struct HostileCase {
  const char* label;
  TarMember member;
  ErrorCode code;
};

class Hostile : public ::testing::TestWithParam<HostileCase> {};

TEST_P(Hostile, ReportedWithItsCodeAndNotAMember) {
  const auto& c = GetParam();
  auto pkg = openOva(testing::makeTar({{"vm.ovf", testing::kDescriptor}, c.member}));
  ASSERT_TRUE(pkg) << pkg.error().describe();
  EXPECT_TRUE(hasProblem(*pkg, c.code)) << problemList(*pkg);
  for (const auto& m : pkg->members) {
    EXPECT_NE(m.name, c.member.name);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Members, Hostile,
    ::testing::Values(
        HostileCase{"traversal", {"../x", "evil"}, ErrorCode::ArchiveForbiddenMember},
        HostileCase{"inner_traversal", {"a/../../x", "evil"}, ErrorCode::ArchiveForbiddenMember},
        HostileCase{"absolute", {"/etc/evil", "evil"}, ErrorCode::ArchiveForbiddenMember},
        HostileCase{"nested", {"dir/file", "evil"}, ErrorCode::ArchiveForbiddenMember},
        HostileCase{
            "symlink", {"link", "", AE_IFLNK, "/etc/passwd"}, ErrorCode::ArchiveForbiddenMember},
        HostileCase{
            "hardlink", {"hard", "", AE_IFREG, "vm.ovf", true}, ErrorCode::ArchiveForbiddenMember},
        HostileCase{"chardev", {"dev", "", AE_IFCHR}, ErrorCode::ArchiveForbiddenMember},
        HostileCase{"blockdev", {"blk", "", AE_IFBLK}, ErrorCode::ArchiveForbiddenMember},
        HostileCase{"fifo", {"fifo", "", AE_IFIFO}, ErrorCode::ArchiveForbiddenMember},
        HostileCase{"long_name", {std::string(1100, 'a'), "x"}, ErrorCode::LimitExceeded}),
    [](const auto& param_info) { return std::string(param_info.param.label); });

TEST(OpenOva, DuplicateKeepsFirstCopy) {
  auto pkg = openOva(testing::makeTar({{"vm.ovf", testing::kDescriptor}, {"a", "1"}, {"a", "22"}}));
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::ArchiveForbiddenMember));
  ASSERT_EQ(pkg->members.size(), 2U);
  EXPECT_EQ(pkg->members[1].size, 1U);
}

TEST(OpenOva, DirectoryEntryIgnoredWithWarning) {
  auto pkg =
      openOva(testing::makeTar({{"vm.ovf", testing::kDescriptor}, {"somedir/", "", AE_IFDIR}}));
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(pkg->problems.empty()) << problemList(*pkg);
  EXPECT_TRUE(hasWarning(*pkg, "Ignored directory entry"));
  EXPECT_EQ(pkg->members.size(), 1U);
}

TEST(OpenOva, EveryProblemIsCollected) {
  auto pkg = openOva(testing::makeTar({{"vm.ovf", testing::kDescriptor},
                                       {"../x", "1"},
                                       {"/abs", "2"},
                                       {"link", "", AE_IFLNK, "x"}}));
  ASSERT_TRUE(pkg);
  EXPECT_EQ(pkg->problems.size(), 3U) << problemList(*pkg);
}

TEST(OpenOva, LaxTurnsProblemsIntoWarnings) {
  OpenOptions o;
  o.lax = true;
  auto pkg = openOva(testing::makeTar({{"vm.ovf", testing::kDescriptor}, {"../x", "1"}}), o);
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(pkg->problems.empty());
  EXPECT_TRUE(hasWarning(*pkg, "climbs out"));
}

TEST(OpenOva, TruncatedAfterDescriptorIsAProblem) {
  std::string tar = testing::makeTar(goodMembers(), Format::Ustar);
  // Cut inside the disk's data (descriptor and manifest stay whole).
  tar.resize(512 * 6 + 50000);
  auto pkg = openOva(tar);
  ASSERT_TRUE(pkg) << pkg.error().describe();
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::ArchiveInvalid)) << problemList(*pkg);
}

TEST(OpenOva, TruncatedBeforeDescriptorFails) {
  std::string tar = testing::makeTar(goodMembers(), Format::Ustar);
  tar.resize(700);  // inside the descriptor header + data
  auto pkg = openOva(tar);
  ASSERT_FALSE(pkg);
  EXPECT_EQ(pkg.error().code, ErrorCode::ArchiveInvalid);
}

TEST(OpenOva, NotATarFails) {
  auto pkg = openOva(std::string(4096, 'z'));
  ASSERT_FALSE(pkg);
  EXPECT_EQ(pkg.error().code, ErrorCode::ArchiveInvalid);
}

TEST(OpenOva, SizeBeyondArchiveIsInvalid) {
  // 10 MiB, 1 TiB (octal) and 2^62 (GNU base-256) declared; 1 KiB present.
  for (const uint64_t declared : {uint64_t{10} << 20, uint64_t{1} << 40, uint64_t{1} << 62}) {
    std::string tar = testing::rawHeader("vm.ovf", testing::kDescriptor.size());
    tar += testing::kDescriptor;
    tar.resize((tar.size() + 511) / 512 * 512, '\0');
    tar += testing::rawHeader("disk.vmdk", declared);
    tar += std::string(1024, 'd');
    tar += std::string(1024, '\0');
    auto pkg = openOva(tar);
    ASSERT_TRUE(pkg) << pkg.error().describe();
    EXPECT_TRUE(hasProblem(*pkg, ErrorCode::ArchiveInvalid)) << declared << problemList(*pkg);
    EXPECT_EQ(pkg->members.size(), 1U);
  }
}

TEST(OpenOva, HugeDeclaredSizes) {
  for (const uint64_t size : {uint64_t{1} << 40, uint64_t{1} << 62}) {
    // On the descriptor itself: refused before any allocation.
    std::string tar = testing::rawHeader("vm.ovf", size) + std::string(2048, '\0');
    auto pkg = openOva(tar);
    ASSERT_FALSE(pkg);
    EXPECT_TRUE(pkg.error().code == ErrorCode::ArchiveInvalid ||
                pkg.error().code == ErrorCode::LimitExceeded)
        << pkg.error().describe();
  }
}

TEST(OpenOva, DescriptorTooLargeFails) {
  const std::string big(kMaxDescriptorBytes + 1, ' ');
  auto pkg =
      openPackageFromMemory(testing::makeTar({{"vm.ovf", big}}, Format::Pax), "m", OpenOptions{});
  ASSERT_FALSE(pkg);
  EXPECT_EQ(pkg.error().code, ErrorCode::LimitExceeded);
}

TEST(OpenOva, ManifestTooLargeIsAProblem) {
  auto pkg = openOva(testing::makeTar(
      {{"vm.ovf", testing::kDescriptor}, {"vm.mf", std::string(kMaxManifestBytes + 1, ' ')}}));
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::LimitExceeded));
}

TEST(OpenOva, TooManyMembers) {
  std::vector<TarMember> members{{"vm.ovf", testing::kDescriptor}};
  for (size_t i = 0; i < kMaxPackageMembers + 5; ++i) {
    members.push_back({"f" + std::to_string(i), ""});
  }
  auto pkg = openPackageFromMemory(testing::makeTar(members, Format::Ustar), "m", {});
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::LimitExceeded));
  EXPECT_LE(pkg->members.size(), kMaxPackageMembers);
}

TEST(OpenOva, NoDescriptorFails) {
  auto pkg = openOva(testing::makeTar({{"disk.vmdk", "x"}}));
  ASSERT_FALSE(pkg);
  EXPECT_EQ(pkg.error().code, ErrorCode::PackageMissingFile);
}

TEST(OpenOva, MissingFileNotFoundFails) {
  auto pkg = openPackage("/nonexistent/vandra.ova", {});
  ASSERT_FALSE(pkg);
  EXPECT_EQ(pkg.error().code, ErrorCode::NotFound);
}

TEST(Manifest, WrongDigestNamesFileAndBothDigests) {
  auto members = goodMembers();
  members[2].data = "tampered";
  auto pkg = openOva(testing::makeTar(members));
  ASSERT_TRUE(pkg);
  ASSERT_EQ(pkg->problems.size(), 1U) << problemList(*pkg);
  const Error& e = pkg->problems[0];
  EXPECT_EQ(e.code, ErrorCode::ManifestMismatch);
  EXPECT_NE(e.message.find("disk1.vmdk"), std::string::npos);
  EXPECT_NE(e.message.find(testing::sha256("tampered")), std::string::npos);
  EXPECT_NE(e.message.find(testing::sha256(kDisk)), std::string::npos);
}

TEST(Manifest, ListedFileAbsent) {
  auto members = goodMembers();
  members.pop_back();
  auto pkg = openOva(testing::makeTar(members));
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::PackageMissingFile)) << problemList(*pkg);
}

TEST(Manifest, UnlistedMemberIsExtra) {
  auto members = goodMembers();
  members.push_back({"extra.iso", "cd"});
  auto pkg = openOva(testing::makeTar(members));
  ASSERT_TRUE(pkg);
  ASSERT_EQ(pkg->problems.size(), 1U) << problemList(*pkg);
  EXPECT_EQ(pkg->problems[0].code, ErrorCode::PackageExtraFile);
}

TEST(Manifest, BadLineReportedOthersStillChecked) {
  auto members = goodMembers();
  members[1].data += "this is not a digest line\nSHA256(x)= abcd\n";
  members[2].data = "tampered";
  auto pkg = openOva(testing::makeTar(members));
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::ManifestInvalid)) << problemList(*pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::ManifestMismatch)) << problemList(*pkg);
  const auto invalid =
      std::count_if(pkg->problems.begin(), pkg->problems.end(),
                    [](const Error& e) { return e.code == ErrorCode::ManifestInvalid; });
  EXPECT_EQ(invalid, 2);
}

TEST(Manifest, EmptyManifestIsAWarning) {
  auto pkg = openOva(testing::makeTar(
      {{"vm.ovf", testing::kDescriptor}, {"vm.mf", std::string(68, ' ')}, {"d", "x"}}));
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(pkg->problems.empty()) << problemList(*pkg);
  EXPECT_TRUE(hasWarning(*pkg, "lists no files"));
}

TEST(Manifest, ManifestAfterDataStillVerifies) {
  auto members = goodMembers();
  std::swap(members[1], members[2]);  // disk before .mf
  auto pkg = openOva(testing::makeTar(members));
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(pkg->problems.empty()) << problemList(*pkg);
  members[1].data = "tampered";
  pkg = openOva(testing::makeTar(members));
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::ManifestMismatch));
}

TEST(Manifest, VerifyDigestsOffSkipsHashing) {
  auto members = goodMembers();
  members[2].data = "tampered";
  OpenOptions o;
  o.verify_digests = false;
  auto pkg = openOva(testing::makeTar(members), o);
  ASSERT_TRUE(pkg);
  EXPECT_FALSE(hasProblem(*pkg, ErrorCode::ManifestMismatch));
  EXPECT_EQ(pkg->members.size(), 3U);
}

TEST(ParseManifest, BothFormsPaddingAndCase) {
  const std::string text = "SHA1(a.ovf)= " + std::string(40, 'A') + "\r\n\n" +
                           "SHA256 (b (1).vmdk) = " + std::string(64, 'b') + "\n" +
                           "SHA512(c)=" + std::string(128, 'c') + "\n" + std::string(40, ' ') +
                           std::string(10, '\0');
  auto m = parseManifest(text);
  ASSERT_TRUE(m) << m.error().describe();
  ASSERT_EQ(m->size(), 3U);
  EXPECT_EQ((*m)[0].algorithm, DigestAlgorithm::Sha1);
  EXPECT_EQ((*m)[0].hex_digest, std::string(40, 'a'));
  EXPECT_EQ((*m)[1].file, "b (1).vmdk");
  EXPECT_EQ((*m)[1].algorithm, DigestAlgorithm::Sha256);
  EXPECT_EQ((*m)[2].algorithm, DigestAlgorithm::Sha512);
}

TEST(ParseManifest, Errors) {
  struct Case {
    std::string text;
    int line;
  };
  for (const auto& c : {Case{"garbage", 1}, Case{"\nMD5(a)= " + std::string(32, 'a'), 2},
                        Case{"SHA256(a)= " + std::string(40, 'a'), 1},  // SHA1 length
                        Case{"SHA256(a)= " + std::string(63, 'a') + "g", 1},
                        Case{"SHA256()= " + std::string(64, 'a'), 1},
                        Case{"SHA256(a) " + std::string(64, 'a'), 1}}) {
    auto m = parseManifest(c.text);
    ASSERT_FALSE(m) << c.text;
    EXPECT_EQ(m.error().code, ErrorCode::ManifestInvalid);
    EXPECT_EQ(m.error().line, c.line) << c.text;
  }
  auto empty = parseManifest(std::string(68, ' '));
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

// Folder packages --------------------------------------------------------------------------

TEST(OpenFolder, FolderAndLoneDescriptor) {
  TempDir dir;
  dir.write("vm.ovf", testing::kDescriptor);
  dir.write("disk1.vmdk", kDisk);
  dir.write("vm.mf", "SHA1(vm.ovf)= " + testing::sha1(testing::kDescriptor) +
                         "\nSHA1(disk1.vmdk)= " + testing::sha1(kDisk) + "\n");
  auto pkg = openPackage(dir.path(), {});
  ASSERT_TRUE(pkg) << pkg.error().describe();
  EXPECT_EQ(pkg->kind, PackageKind::Directory);
  EXPECT_TRUE(pkg->problems.empty()) << problemList(*pkg);
  EXPECT_EQ(pkg->members.size(), 3U);
  EXPECT_EQ(pkg->members.front().name, "vm.ovf");

  dir.write("notes.txt", "unlisted");
  pkg = openPackage(dir.path(), {});
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::PackageExtraFile));
  // Named .ovf: only its own files count, other files in the folder are not members.
  pkg = openPackage(dir.file("vm.ovf"), {});
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(pkg->problems.empty()) << problemList(*pkg);

  dir.write("disk1.vmdk", "tampered");
  pkg = openPackage(dir.file("vm.ovf"), {});
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::ManifestMismatch));
  std::filesystem::remove(dir.file("disk1.vmdk"));
  pkg = openPackage(dir.file("vm.ovf"), {});
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::PackageMissingFile));
}

TEST(OpenFolder, ManifestNamingOutsideFileIsForbidden) {
  TempDir dir;
  dir.write("vm.ovf", testing::kDescriptor);
  dir.write("vm.mf", "SHA1(../secret)= " + std::string(40, 'a') + "\n");
  auto pkg = openPackage(dir.file("vm.ovf"), {});
  ASSERT_TRUE(pkg);
  EXPECT_TRUE(hasProblem(*pkg, ErrorCode::ArchiveForbiddenMember)) << problemList(*pkg);
}

TEST(OpenFolder, ZeroOrSeveralDescriptors) {
  TempDir dir;
  auto none = openPackage(dir.path(), {});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::NotFound);
  dir.write("a.ovf", testing::kDescriptor);
  dir.write("b.ovf", testing::kDescriptor);
  auto two = openPackage(dir.path(), {});
  ASSERT_FALSE(two);
  EXPECT_EQ(two.error().code, ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace vandra::ovf
