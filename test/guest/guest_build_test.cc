// guest/build.sh: two builds from the same packages give identical boot artefacts.
#include "guest_test_support.h"

namespace vandra {
namespace {

// ----------------------------------------------------------------------------------------

TEST(GuestBuild, TwoBuildsGiveIdenticalBootArtefacts) {
  if (!inPath("apt-get") || !inPath("gcc") || !inPath("cpio") || !inPath("mcopy") ||
      !inPath("syslinux")) {
    VANDRA_SKIP_OR_FAIL("needs apt-get, gcc, cpio, mtools and syslinux (tools/install-deps.sh)");
  }
  TempDir a, b;
  ASSERT_FALSE(a.path.empty());
  ASSERT_FALSE(b.path.empty());
  fs::path cache = fs::path(VANDRA_GUEST_WORK_DIR) / "guest-cache";
  ASSERT_EQ(buildGuest(a.path, cache), "");
  ASSERT_EQ(buildGuest(b.path, cache), "");
  auto sa = sums(a.path);
  auto sb = sums(b.path);
  for (const char* f : {"vmlinuz", "initrd.img", "boot.raw", "disk2.raw", "bin/vguest-seqd",
                        "bin/vguest-mempat", "bin/vguest-diskpat", "bin/vguest-dirtier"}) {
    ASSERT_TRUE(sa.count(f)) << f;
    EXPECT_EQ(sa[f], sb[f]) << f << " differs between two builds";
  }
  std::cout << "[ reproducible ] initrd.img sha256 " << sa["initrd.img"] << "\n";
  std::cout << "[ reproducible ] boot.raw sha256 " << sa["boot.raw"] << "\n";

  // The boot disk: BIOS boot signature in sector 0, the very kernel and initrd of the build,
  // and a SYSLINUX configuration booting them with the defaults of build.sh.
  std::string boot = slurp(a.path / "boot.raw");
  ASSERT_EQ(boot.size(), 32u << 20);
  EXPECT_EQ(boot.substr(510, 2), std::string("\x55\xAA", 2));
  EXPECT_EQ(fs::file_size(a.path / "disk2.raw"), 64u << 20);
  for (const char* f : {"vmlinuz", "initrd.img"}) {
    Outcome m = run({"mtype", "-i", (a.path / "boot.raw").string(), std::string("::/") + f});
    ASSERT_EQ(m.code, 0) << m.err;
    EXPECT_TRUE(m.out == slurp(a.path / f)) << f << " on boot.raw differs from the build's";
  }
  Outcome cfg = run({"mtype", "-i", (a.path / "boot.raw").string(), "::/syslinux.cfg"});
  ASSERT_EQ(cfg.code, 0) << cfg.err;
  EXPECT_NE(cfg.out.find("APPEND console=ttyS0 vandra.ip=10.10.0.10/24 vandra.gw=10.10.0.1\n"),
            std::string::npos)
      << cfg.out;
  Outcome dir = run({"mdir", "-a", "-b", "-i", (a.path / "boot.raw").string(), "::/"});
  EXPECT_NE(dir.out.find("::/ldlinux.sys\n"), std::string::npos) << dir.out << dir.err;
}

}  // namespace
}  // namespace vandra
