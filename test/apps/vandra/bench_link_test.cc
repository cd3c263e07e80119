// `vandra bench link` on wan, one short run of one plain TCP connection and of vandra's site
// tunnel: both transfers complete through the emulated link, neither beats the link's rate
// (the shaper holds, the steady rate is measured honestly), and the tunnel's bytes were not
// shrunk by compression (the payload is incompressible). Needs root; skipped otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cli_json_lines.h"
#include "test/support/require.h"

namespace vandra {
namespace {

TEST(BenchLinkTest, TcpAndTheTunnelCrossTheWanProfileNoFasterThanItsRate) {
  if (::geteuid() != 0) {
    VANDRA_SKIP_OR_FAIL("needs root (the testbed's namespaces)");
  }
  const auto run =
      test::runCliJsonLines({VANDRA_BIN, "bench", "link", "--json", "--profiles", "wan",
                             "--systems", "tcp-cubic,vandra", "--runs", "1", "--seconds", "3"});
  EXPECT_TRUE(run.exited_ok) << run.report;
  const auto& rows = run.rows;
  ASSERT_EQ(rows.size(), 2U) << run.report;
  constexpr double kWanMbit = 1000;  // the wan profile's rate
  for (const auto& r : rows) {
    EXPECT_EQ(r["result"], "ok") << r.dump(2);
    EXPECT_EQ(r["profile"], "wan");
    EXPECT_GT(r["bytes"].get<uint64_t>(), 10'000'000U) << r.dump(2);
    EXPECT_GT(r["steady_mbit_s"].get<double>(), 0) << r.dump(2);
    EXPECT_LE(r["steady_mbit_s"].get<double>(), kWanMbit * 1.02) << r.dump(2);
    EXPECT_NEAR(r["share_of_link"].get<double>(), r["steady_mbit_s"].get<double>() / kWanMbit,
                1e-6);
    if (r["system"] == "vandra") {
      // TLS records and frame headers on top of every payload byte, none taken away.
      EXPECT_GE(r["wire_bytes"].get<uint64_t>(), r["bytes"].get<uint64_t>()) << r.dump(2);
    }
  }
  EXPECT_NE(rows[0]["system"], rows[1]["system"]);
}

}  // namespace
}  // namespace vandra
