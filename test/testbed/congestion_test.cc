// `testbed up --congestion`: every namespace of the testbed gets the one TCP congestion
// control asked for (the namespaced sysctl), the state file records it, and an algorithm the
// host does not have is refused by name before anything is made. Needs root and network
// namespaces; skipped otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "test/support/require.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/testbed/testbed.h"

namespace vandra::testbed {
namespace {

namespace fs = std::filesystem;

std::string congestionIn(const std::string& netns) {
  auto v =
      runCapture({"ip", "netns", "exec", netns, "sysctl", "-n", "net.ipv4.tcp_congestion_control"});
  return v ? v->substr(0, v->find_last_not_of(" \n") + 1) : "(" + v.error().describe() + ")";
}

fs::path freshDir() {
  std::string d = (fs::temp_directory_path() / "vandra-cctest-XXXXXX").string();
  return ::mkdtemp(d.data()) != nullptr ? fs::path(d) : fs::path();
}

TEST(TestbedCongestion, EveryNamespaceGetsTheAlgorithmAskedFor) {
  if (::geteuid() != 0 || ::access("/dev/net/tun", R_OK | W_OK) != 0) {
    VANDRA_SKIP_OR_FAIL("needs root and /dev/net/tun");
  }
  const fs::path dir = freshDir();
  ASSERT_FALSE(dir.empty());
  auto rm = defer([&] { fs::remove_all(dir); });
  // reno is built into every kernel and is nobody's default: set only if the option works.
  TestbedOptions o;
  o.profile = "lan";
  o.state_dir = (dir / "tb").string();
  o.wanem_path = VANDRA_WANEM_PATH;
  o.congestion = "reno";
  auto tb = up(o);
  ASSERT_TRUE(tb) << tb.error().describe();
  auto down_at_end = defer([&] { (void)down(o.state_dir); });
  EXPECT_EQ(tb->congestion, "reno");
  ASSERT_EQ(tb->sites.size(), 3U);
  for (const auto& site : tb->sites) {
    EXPECT_EQ(congestionIn(site.netns), "reno") << site.netns;
  }
  EXPECT_EQ(congestionIn(tb->client_netns), "reno");
  auto st = status(o.state_dir);
  ASSERT_TRUE(st) << st.error().describe();
  ASSERT_TRUE(st->info);
  EXPECT_EQ(st->info->congestion, "reno");
  ASSERT_TRUE(down(o.state_dir));
}

TEST(TestbedCongestion, AnUnknownAlgorithmIsRefusedByName) {
  if (::geteuid() != 0) {
    VANDRA_SKIP_OR_FAIL("needs root");
  }
  const fs::path dir = freshDir();
  ASSERT_FALSE(dir.empty());
  auto rm = defer([&] { fs::remove_all(dir); });
  TestbedOptions o;
  o.profile = "lan";
  o.state_dir = (dir / "tb").string();
  o.wanem_path = VANDRA_WANEM_PATH;
  o.congestion = "nosuchcc";
  auto tb = up(o);
  ASSERT_FALSE(tb);
  EXPECT_EQ(tb.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(tb.error().message.find("'nosuchcc'"), std::string::npos) << tb.error().describe();
  EXPECT_NE(tb.error().message.find("cubic"), std::string::npos) << tb.error().describe();
  EXPECT_FALSE(fs::exists(stateFilePath(o.state_dir)));
}

}  // namespace
}  // namespace vandra::testbed
