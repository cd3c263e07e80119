// `vandra bench soak` on lan with the small test guest, four moves (two round trips): every
// move completes with its data checked and no TCP byte lost, and the disks' backing chains
// stay short however often the guest goes back and forth (kept images are folded in when a
// VM departs, ADR 0027). Needs root and a built test guest (VANDRA_GUEST_DIR); skipped
// otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli_json_lines.h"
#include "test/support/require.h"

namespace vandra {
namespace {

namespace fs = std::filesystem;

TEST(BenchSoakTest, FourMovesBackAndForthEachCheckedWithShortChains) {
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  if (::geteuid() != 0 || guest == nullptr || !fs::exists(fs::path(guest) / "test-guest.ova")) {
    VANDRA_SKIP_OR_FAIL("needs root and VANDRA_GUEST_DIR with a built test guest");
  }
  const auto run =
      test::runCliJsonLines({VANDRA_BIN, "bench", "soak", "--json", "--guest-dir", guest,
                             "--migrations", "4", "--between-s", "0", "--max-total-s", "180"});
  EXPECT_TRUE(run.exited_ok) << run.report;
  std::vector<nlohmann::json> moves;
  nlohmann::json summary;
  for (const auto& j : run.rows) {
    (j["kind"] == "move" ? moves.emplace_back(j) : summary) = j;
  }
  ASSERT_EQ(moves.size(), 4U) << run.report;
  for (size_t i = 0; i < moves.size(); ++i) {
    const auto& m = moves[i];
    EXPECT_EQ(m["from"], i % 2 == 0 ? "dc" : "cloud-eu");
    EXPECT_EQ(m["run"]["result"], "ok") << m.dump(2);  // data checked where it runs now
    EXPECT_EQ(m["run"]["tcp_bytes_lost"].get<uint64_t>(), 0U);
    // One QEMU in all: at the site the guest went to.
    EXPECT_EQ(m["sites"][m["to"].get<std::string>()]["qemus"].get<uint64_t>(), 1U) << m.dump(2);
    EXPECT_EQ(m["sites"][m["from"].get<std::string>()]["qemus"].get<uint64_t>(), 0U);
    // overlay -> arrival image -> what this site kept when the guest left (-> the package's
    // base at dc): never deeper, where unflattened chains grow two files a trip.
    for (const char* site : {"dc", "cloud-eu"}) {
      EXPECT_LE(m["sites"][site]["max_chain"].get<uint64_t>(), 3U) << m.dump(2);
      EXPECT_LE(m["sites"][site]["kept_images"].get<uint64_t>(), 2U) << m.dump(2);
    }
  }
  // The way back found what dc kept: fewer bytes than the way out.
  EXPECT_LT(moves[1]["run"]["wan_bytes"].get<uint64_t>(),
            moves[0]["run"]["wan_bytes"].get<uint64_t>());
  EXPECT_EQ(summary["result"], "ok") << summary.dump(2);
  EXPECT_EQ(summary["migrations"], 4);
  EXPECT_EQ(summary["failed"], 0);
}

}  // namespace
}  // namespace vandra
