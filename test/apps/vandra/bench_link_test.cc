// `vandra bench link` on wan, one short run of one plain TCP connection and of vandra's site
// tunnel: both transfers complete through the emulated link, neither beats the link's rate
// (the shaper holds, the steady rate is measured honestly), and the tunnel's bytes were not
// shrunk by compression (the payload is incompressible). Needs root; skipped otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test/support/require.h"
#include "vandra/common/subprocess.h"

namespace vandra {
namespace {

TEST(BenchLinkTest, TcpAndTheTunnelCrossTheWanProfileNoFasterThanItsRate) {
  if (::geteuid() != 0) {
    VANDRA_SKIP_OR_FAIL("needs root (the testbed's namespaces)");
  }
  auto p = Subprocess::start({VANDRA_BIN, "bench", "link", "--json", "--profiles", "wan",
                              "--systems", "tcp-cubic,vandra", "--runs", "1", "--seconds", "3"},
                             {.capture_stdout = true, .capture_stderr = true});
  ASSERT_TRUE(p) << p.error().describe();
  std::string out;
  ASSERT_TRUE(p->drainStdout([&](std::string_view c) { out.append(c); }));
  auto st = p->wait();
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->ok()) << "exit " << st->code << "\n" << out << p->stderrText();

  std::vector<nlohmann::json> rows;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    rows.push_back(j);
  }
  ASSERT_EQ(rows.size(), 2U) << out;
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
