// `vandra bench migrate` once on lan with the small test guest: one row per system (vandra,
// qemu, qemu-tuned), each a complete migration whose client lost no TCP byte and whose data
// checked out, measured alike. Needs root and a built test guest (VANDRA_GUEST_DIR); skipped
// otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
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

}  // namespace
}  // namespace vandra
