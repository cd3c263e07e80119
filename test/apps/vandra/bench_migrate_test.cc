// `vandra bench migrate` once on lan with the small test guest: one row per system (vandra,
// qemu, qemu-tuned), each a complete migration whose client lost no TCP byte and whose data
// checked out, measured alike. Needs root and a built test guest (VANDRA_GUEST_DIR); skipped
// otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "test/support/require.h"
#include "vandra/common/subprocess.h"

namespace vandra {
namespace {

namespace fs = std::filesystem;

TEST(BenchMigrateTest, ThreeSystemsOnLanEachComplete) {
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  if (::geteuid() != 0 || guest == nullptr || !fs::exists(fs::path(guest) / "test-guest.ova")) {
    VANDRA_SKIP_OR_FAIL("needs root and VANDRA_GUEST_DIR with a built test guest");
  }
  // The small guest: 64 MiB data disk, 256 MiB RAM; a light workload keeps this quick.
  auto p = Subprocess::start(
      {VANDRA_BIN,     "bench", "migrate",      "--json", "--profile",       "lan",
       "--runs",       "1",     "--guest-dir",  guest,    "--disk-data-mib", "16",
       "--wss-mib",    "16",    "--dirty-mbps", "10",     "--max-total-s",   "180",
       "--congestion", "cubic"},
      {.capture_stdout = true, .capture_stderr = true});
  ASSERT_TRUE(p) << p.error().describe();
  std::string out;
  ASSERT_TRUE(p->drainStdout([&](std::string_view c) { out.append(c); }));
  auto st = p->wait();
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->ok()) << "exit " << st->code << "\n" << out << p->stderrText();

  std::map<std::string, nlohmann::json> rows;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_EQ(rows.count(j["system"]), 0U) << "two rows of " << j["system"];
    rows[j["system"]] = j;
  }
  ASSERT_EQ(rows.size(), 3U) << out;
  for (const char* sys : {"vandra", "qemu", "qemu-tuned"}) {
    ASSERT_EQ(rows.count(sys), 1U) << sys << "\n" << out;
    const auto& r = rows[sys];
    EXPECT_EQ(r["result"], "ok") << r.dump(2);
    EXPECT_EQ(r["profile"], "lan");
    EXPECT_EQ(r["congestion"], "cubic");
    EXPECT_GT(r["total_s"].get<double>(), 0.0) << sys;
    EXPECT_EQ(r["tcp_bytes_lost"].get<uint64_t>(), 0U) << sys;
    EXPECT_GT(r["wan_bytes"].get<uint64_t>(), 16U << 20) << sys;  // at least the disk data
    EXPECT_GT(r["cpu_s"].get<double>(), 0.0) << sys;
  }
  // qemu-tuned ran with what makes it tuned (QEMU's own account of its parameters).
  const auto& tuned = rows["qemu-tuned"]["detail"]["parameters"];
  EXPECT_EQ(tuned["multifd-compression"], "zstd") << tuned.dump();
  EXPECT_GE(tuned["multifd-channels"].get<int>(), 1);
  EXPECT_GT(tuned["xbzrle-cache-size"].get<uint64_t>(), 0U);
  // Plain QEMU ran with QEMU 7.2's defaults, read from QEMU itself.
  const auto& defaults = rows["qemu"]["detail"]["qemu_defaults"];
  EXPECT_EQ(defaults["multifd-compression"], "none") << defaults.dump();
  EXPECT_GT(defaults["downtime-limit"].get<uint64_t>(), 0U);
}

// --content real: a guest whose data disk holds real files (guest/build.sh --real-files-mib,
// this host's own files), read into its page cache before the move and each checked against
// its SHA-256 after it. Built here small (16 MiB of files) from VANDRA_GUEST_DIR's package
// cache; only vandra runs, to keep it quick.
TEST(BenchMigrateTest, RealContentIsReadBeforeAndCheckedAfterTheMove) {
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  if (::geteuid() != 0 || guest == nullptr || !fs::exists(fs::path(guest) / "test-guest.ova")) {
    VANDRA_SKIP_OR_FAIL("needs root and VANDRA_GUEST_DIR with a built test guest");
  }
  // A guest without real files is refused by name, before any testbed is made.
  auto refused = runCapture({VANDRA_BIN, "bench", "migrate", "--guest-dir", guest, "--content",
                             "real", "--systems", "vandra"});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().describe().find("--real-files-mib"), std::string::npos)
      << refused.error().describe();

  const fs::path dir =
      fs::temp_directory_path() / ("vandra-real-guest-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto built = runCapture({VANDRA_SOURCE_DIR "/guest/build.sh", dir.string(), "--cache",
                           (fs::path(guest) / "cache").string(), "--vandra", VANDRA_BIN,
                           "--real-files-mib", "16"});
  ASSERT_TRUE(built) << built.error().describe();
  const auto content = nlohmann::json::parse(std::ifstream(dir / "content.json"), nullptr, false);
  ASSERT_TRUE(content.is_object());
  EXPECT_EQ(content["content"], "real");
  EXPECT_GT(content["files"].get<int>(), 10);
  EXPECT_GT(content["bytes"].get<uint64_t>(), 8U << 20);

  auto out =
      runCapture({VANDRA_BIN,      "bench",  "migrate",      "--json",     "--profile",    "lan",
                  "--runs",        "1",      "--guest-dir",  dir.string(), "--content",    "real",
                  "--systems",     "vandra", "--wss-mib",    "16",         "--dirty-mbps", "10",
                  "--max-total-s", "180",    "--congestion", "cubic"});
  fs::remove_all(dir);
  ASSERT_TRUE(out) << out.error().describe();
  const auto r = nlohmann::json::parse(*out, nullptr, false);
  ASSERT_TRUE(r.is_object()) << *out;
  EXPECT_EQ(r["result"], "ok") << r.dump(2);  // every file's SHA-256 checked in the guest
  EXPECT_EQ(r["detail"]["content"], "real");
  EXPECT_EQ(r["tcp_bytes_lost"].get<uint64_t>(), 0U);
  // The files crossed the link (they are on the data disk, not in the base image).
  EXPECT_GT(r["wan_bytes"].get<uint64_t>(), content["bytes"].get<uint64_t>()) << r.dump(2);
}

}  // namespace
}  // namespace vandra
