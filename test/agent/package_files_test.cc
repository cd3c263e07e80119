// Where an agent may read packages from (openImportPackage) and its upload folder
// (UploadStore): names, folders, symlinks, bounds, and that a failed upload leaves nothing.
#include "vandra/agent/package_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "../ovf/writer/writer_test_util.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using ovf::testing::TempDir;

void writeFile(const fs::path& p, const std::string& content) {
  std::ofstream(p, std::ios::binary) << content;
}

// Every entry of @p dir, hidden ones included.
std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  return out;
}

TEST(UploadName, AcceptsPlainOvaNamesOnly) {
  for (const char* good : {"a.ova", "test-guest.ova", "A_b.c-9.ova", "x..ova"}) {
    EXPECT_TRUE(validUploadName(good)) << good;
  }
  EXPECT_TRUE(validUploadName(std::string(124, 'a') + ".ova"));   // 128 characters
  EXPECT_FALSE(validUploadName(std::string(125, 'a') + ".ova"));  // 129
  for (const char* bad :
       {"", ".ova", ".hidden.ova", "../x.ova", "a/b.ova", "/abs.ova", "a.ovf", "a.OVA",
        "a.ova.part", "a b.ova", "a\\b.ova", "..", ".", "a.ova/", "a\n.ova", "ä.ova"}) {
    EXPECT_FALSE(validUploadName(bad)) << bad;
  }
  EXPECT_FALSE(validUploadName(std::string("a\0b.ova", 7)));
}

// Whatever the input, an accepted name is one flat, visible file name.
TEST(UploadName, AcceptedNamesNeverEscapeTheFolder) {
  std::mt19937 rng(7);
  const std::string alphabet = "ab./\\-_\0\n.ova";
  size_t accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    const size_t n = rng() % 12;
    for (size_t k = 0; k < n; ++k) {
      s.push_back(alphabet[rng() % alphabet.size()]);
    }
    if (rng() % 2 == 0) {
      s += ".ova";
    }
    if (validUploadName(s)) {
      ++accepted;
      EXPECT_EQ(s.find('/'), std::string::npos) << s;
      EXPECT_NE(s.front(), '.') << s;
      EXPECT_EQ(fs::path(s).filename().string(), s) << s;
      EXPECT_TRUE(s.ends_with(".ova")) << s;
    }
  }
  EXPECT_GT(accepted, 100U);  // the generator does reach valid names
}

class ImportPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(tmp_ / "imports/sub");
    fs::create_directories(tmp_ / "outside");
    writeFile(tmp_ / "imports/a.ova", "package bytes");
    writeFile(tmp_ / "imports/sub/b.ova", "more bytes");
    writeFile(tmp_ / "outside/x.ova", "secret");
    dirs_ = {tmp_ / "imports"};
  }
  TempDir tmp_;
  std::vector<std::string> dirs_;
};

TEST_F(ImportPathTest, AFileInAnImportFolderOpensAsItself) {
  auto p = openImportPackage(tmp_ / "imports/sub/b.ova", dirs_);
  ASSERT_TRUE(p) << p.error().describe();
  EXPECT_EQ(p->canonical, fs::canonical(tmp_ / "imports/sub/b.ova").string());
  EXPECT_EQ(p->size, 10U);
  std::ifstream in(p->readPath());
  std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(got, "more bytes");
}

TEST_F(ImportPathTest, PathsOutsideTheFoldersAreForbiddenAndNamed) {
  auto shadow = openImportPackage("/etc/shadow", dirs_);
  ASSERT_FALSE(shadow);
  EXPECT_EQ(shadow.error().code, ErrorCode::Forbidden);
  EXPECT_NE(shadow.error().message.find("/etc/shadow"), std::string::npos);
  EXPECT_NE(shadow.error().message.find(fs::canonical(tmp_ / "imports").string()),
            std::string::npos)
      << shadow.error().message;
  for (const std::string& p : {tmp_ / "outside/x.ova", tmp_ / "imports/../outside/x.ova",
                               tmp_ / "imports/sub/../a.ova",  // '..' even inside
                               tmp_ / "imports", std::string("/nonexistent/y.ova")}) {
    auto r = openImportPackage(p, dirs_);
    ASSERT_FALSE(r) << p;
    EXPECT_EQ(r.error().code, ErrorCode::Forbidden) << p << ": " << r.error().describe();
  }
}

TEST_F(ImportPathTest, SymlinksAreJudgedByWhereTheyLead) {
  fs::create_symlink(tmp_ / "outside/x.ova", tmp_ / "imports/link.ova");
  fs::create_symlink(tmp_ / "outside", tmp_ / "imports/outdir");
  fs::create_symlink(tmp_ / "imports/a.ova", tmp_ / "imports/alias.ova");
  for (const char* p : {"imports/link.ova", "imports/outdir/x.ova"}) {
    auto r = openImportPackage(tmp_ / p, dirs_);
    ASSERT_FALSE(r) << p;
    EXPECT_EQ(r.error().code, ErrorCode::Forbidden) << r.error().describe();
    EXPECT_NE(r.error().message.find("resolves to"), std::string::npos) << r.error().message;
  }
  auto alias = openImportPackage(tmp_ / "imports/alias.ova", dirs_);
  ASSERT_TRUE(alias) << alias.error().describe();
  EXPECT_EQ(alias->canonical, fs::canonical(tmp_ / "imports/a.ova").string());
  // An import folder given through a symlink is the folder it names.
  fs::create_symlink(tmp_ / "imports", tmp_ / "via");
  auto via = openImportPackage(tmp_ / "imports/a.ova", {tmp_ / "via"});
  EXPECT_TRUE(via) << via.error().describe();
}

TEST_F(ImportPathTest, OnlyRegularOvaFilesAreRead) {
  ASSERT_EQ(::mkfifo((tmp_ / "imports/fifo.ova").c_str(), 0600), 0);
  fs::create_directories(tmp_ / "imports/dir.ova");
  for (const char* p : {"imports/fifo.ova", "imports/dir.ova"}) {
    auto r = openImportPackage(tmp_ / p, dirs_);
    ASSERT_FALSE(r) << p;
    EXPECT_EQ(r.error().code, ErrorCode::Forbidden) << r.error().describe();
  }
  writeFile(tmp_ / "imports/x.ovf", "<Envelope/>");
  auto ovf = openImportPackage(tmp_ / "imports/x.ovf", dirs_);
  ASSERT_FALSE(ovf);
  EXPECT_EQ(ovf.error().code, ErrorCode::InvalidArgument);
  auto missing = openImportPackage(tmp_ / "imports/none.ova", dirs_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
  auto relative = openImportPackage("imports/a.ova", dirs_);
  ASSERT_FALSE(relative);
  EXPECT_EQ(relative.error().code, ErrorCode::InvalidArgument);
}

class UploadStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = UploadStore::open(tmp_ / "uploads", 1024);
    ASSERT_TRUE(s) << s.error().describe();
    store_.emplace(std::move(*s));
  }
  static Result<void> accept(const std::string&) { return {}; }
  TempDir tmp_;
  std::optional<UploadStore> store_;
};

TEST_F(UploadStoreTest, CommittedUploadIsListedWithItsDigest) {
  auto w = store_->begin("a.ova", 3);
  ASSERT_TRUE(w) << w.error().describe();
  ASSERT_TRUE(w->write("abc", 3));
  std::string seen;
  auto info = w->commit([&](const std::string& path) -> Result<void> {
    std::ifstream in(path);
    std::getline(in, seen);
    return {};
  });
  ASSERT_TRUE(info) << info.error().describe();
  EXPECT_EQ(seen, "abc");  // verified before it was renamed
  EXPECT_EQ(*info->sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto all = store_->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1U);
  EXPECT_EQ((*all)[0].name, "a.ova");
  EXPECT_EQ((*all)[0].size, 3U);
  EXPECT_EQ((*all)[0].sha256, info->sha256);
  // The same name again: refused before anything is written.
  auto again = store_->begin("a.ova", 3);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::AlreadyExists);
  ASSERT_TRUE(store_->remove("a.ova"));
  EXPECT_TRUE(entries(tmp_ / "uploads").empty());
  EXPECT_EQ(store_->remove("a.ova").error().code, ErrorCode::NotFound);
}

TEST_F(UploadStoreTest, EveryFailureLeavesNothing) {
  // Declared too large: refused before a file exists.
  auto big = store_->begin("big.ova", 1025);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ErrorCode::LimitExceeded);
  EXPECT_TRUE(entries(tmp_ / "uploads").empty());
  {
    // Undeclared, growing past the bound while written.
    auto w = store_->begin("grow.ova", std::nullopt);
    ASSERT_TRUE(w);
    const std::string chunk(600, 'x');
    ASSERT_TRUE(w->write(chunk.data(), chunk.size()));
    auto over = w->write(chunk.data(), chunk.size());
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, ErrorCode::LimitExceeded);
  }
  EXPECT_TRUE(entries(tmp_ / "uploads").empty());
  {
    // A second upload of a name being received is refused and does not touch the first.
    auto w = store_->begin("busy.ova", std::nullopt);
    ASSERT_TRUE(w);
    auto twin = store_->begin("busy.ova", std::nullopt);
    ASSERT_FALSE(twin);
    EXPECT_EQ(twin.error().code, ErrorCode::AlreadyExists);
    EXPECT_EQ(entries(tmp_ / "uploads"), std::vector<std::string>{".busy.ova.part"});
    // Abandoned (the client went away): the partial file goes with it.
  }
  EXPECT_TRUE(entries(tmp_ / "uploads").empty());
  {
    auto w = store_->begin("bad.ova", 3);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->write("abc", 3));
    auto info = w->commit([](const std::string&) -> Result<void> {
      return fail(ErrorCode::ManifestInvalid, "not a package");
    });
    ASSERT_FALSE(info);
    EXPECT_EQ(info.error().code, ErrorCode::ManifestInvalid);
  }
  EXPECT_TRUE(entries(tmp_ / "uploads").empty());
  auto name = store_->begin("../x.ova", 1);
  ASSERT_FALSE(name);
  EXPECT_EQ(name.error().code, ErrorCode::InvalidArgument);
}

TEST_F(UploadStoreTest, PartialFilesOfACrashAreRemovedOnOpen) {
  writeFile(tmp_ / "uploads/.old.ova.part", "half");
  writeFile(tmp_ / "uploads/kept.ova", "whole");
  auto s = UploadStore::open(tmp_ / "uploads", 1024);
  ASSERT_TRUE(s);
  EXPECT_EQ(entries(tmp_ / "uploads"), std::vector<std::string>{"kept.ova"});
  auto all = s->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1U);
  EXPECT_FALSE((*all)[0].sha256.has_value());  // not received by the agent: no digest
}

}  // namespace
}  // namespace vandra::agent
