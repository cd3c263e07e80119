// vandrad --peer NAME=HOST:PORT[,mbps=N]: the site pair's address and its optional send cap.
#include <gtest/gtest.h>

#include "vandra/orchestrator/migration_service.h"

namespace vandra::orchestrator {
namespace {

TEST(PeerSpecTest, NameAddressAndOptionalCap) {
  auto plain = parsePeerSpec("cloud=10.20.0.1:9443");
  ASSERT_TRUE(plain) << plain.error().describe();
  EXPECT_EQ(plain->name, "cloud");
  EXPECT_EQ(plain->host, "10.20.0.1");
  EXPECT_EQ(plain->port, 9443);
  EXPECT_EQ(plain->bandwidth_bytes_per_s, 0U);  // the agent-wide cap applies

  auto capped = parsePeerSpec("dc-2=10.10.0.1:9443,mbps=250");
  ASSERT_TRUE(capped) << capped.error().describe();
  EXPECT_EQ(capped->name, "dc-2");
  EXPECT_EQ(capped->port, 9443);
  EXPECT_EQ(capped->bandwidth_bytes_per_s, 31'250'000U);
  auto fraction = parsePeerSpec("x=127.0.0.1:1,mbps=0.5");
  ASSERT_TRUE(fraction) << fraction.error().describe();
  EXPECT_EQ(fraction->bandwidth_bytes_per_s, 62'500U);
}

TEST(PeerSpecTest, RefusesWhatIsNotASpecNamingThePart) {
  const std::pair<const char*, const char*> cases[] = {
      {"cloud", "no '='"},
      {"=10.0.0.1:9443", "site name"},
      {"Cloud=10.0.0.1:9443", "site name"},
      {"cl/oud=10.0.0.1:9443", "site name"},
      {"cloud=10.0.0.1", "HOST:PORT"},
      {"cloud=10.0.0.1:99999", "HOST:PORT"},
      {"cloud=10.0.0.1:9443,mbps=", "mbps"},
      {"cloud=10.0.0.1:9443,mbps=0", "mbps"},
      {"cloud=10.0.0.1:9443,mbps=-5", "mbps"},
      {"cloud=10.0.0.1:9443,mbps=1e9", "mbps"},
      {"cloud=10.0.0.1:9443,mbps=12abc", "mbps"},
      {"cloud=10.0.0.1:9443,mbps=nan", "mbps"},
      {"cloud=10.0.0.1:9443,gbps=1", "unknown option"},
  };
  for (const auto& [spec, why] : cases) {
    auto p = parsePeerSpec(spec);
    ASSERT_FALSE(p) << spec;
    EXPECT_EQ(p.error().code, ErrorCode::InvalidArgument) << spec;
    EXPECT_NE(p.error().message.find(why), std::string::npos) << spec << ": " << p.error().message;
  }
  EXPECT_FALSE(parsePeerSpec("cloud=" + std::string(600, 'a') + ":1"));
}

}  // namespace
}  // namespace vandra::orchestrator
