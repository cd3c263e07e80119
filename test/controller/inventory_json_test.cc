// The inventory's JSON readers: strict on requests (unknown members, bounds, names), and a
// PATCH is all or nothing.
#include "vandra/controller/inventory_json.h"

#include <gtest/gtest.h>

namespace vandra::controller {
namespace {

using nlohmann::json;

TEST(InventoryJson, NamesAreBoundedPlainTokens) {
  EXPECT_TRUE(checkName("cloud-eu", "Site"));
  EXPECT_TRUE(checkName("web_1.a", "VM"));
  for (const char* bad : {"", "..", ".hidden", "-x", "a/b", "a b", "ä"}) {
    EXPECT_FALSE(checkName(bad, "Site")) << bad;
  }
  EXPECT_FALSE(checkName(std::string(65, 'a'), "Site"));
}

TEST(InventoryJson, APatchIsAllOrNothing) {
  Site s;
  s.name = "dc";
  s.jurisdictions = {"EU"};
  s.networks = {"lan"};
  const Site before = s;
  auto r = patchSite(s, {{"jurisdictions", {"SE"}}, {"vcpu_overcommit", 100}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("vcpu_overcommit"), std::string::npos);
  EXPECT_EQ(s, before);
  r = patchSite(s, {{"default_network", "wan"}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not one of the site's networks"), std::string::npos);
  ASSERT_TRUE(patchSite(s, {{"jurisdictions", {"SE"}}, {"water_marks", {{"high", 0.9}}}}));
  EXPECT_EQ(s.jurisdictions, std::vector<std::string>{"SE"});
  EXPECT_EQ(s.water_marks.high, 0.9);
  EXPECT_EQ(s.water_marks.low, 0.6);
}

TEST(InventoryJson, ReadersRefuseWhatTheyDoNotKnow) {
  EXPECT_FALSE(linkFromJson({{"a", "x"}, {"b", "y"}, {"rtt_ms", 1}, {"mbps", 1}, {"loss", 0}}));
  EXPECT_FALSE(linkFromJson({{"a", "x"}, {"b", "y"}, {"rtt_ms", -1}, {"mbps", 1}}));
  EXPECT_FALSE(linkFromJson({{"a", "x"}, {"b", "y"}, {"rtt_ms", "1"}, {"mbps", 1}}));
  EXPECT_FALSE(locationFromJson({{"name", "x"}, {"rtt_ms", {{"../etc", 1}}}}));
  EXPECT_FALSE(networkMappingFromJson({{"name", "x"}, {"members", {{"dc", 5}}}}));
  json many = json::object();
  for (int i = 0; i < 300; ++i) {
    many["s" + std::to_string(i)] = 1;
  }
  auto r = locationFromJson({{"name", "x"}, {"rtt_ms", many}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::LimitExceeded);
  auto site = siteFromJson({{"name", "dc"}, {"jurisdictions", {"EU"}}, {"agents", json::array()}});
  ASSERT_FALSE(site);
  EXPECT_NE(site.error().message.find("agents"), std::string::npos);
}

TEST(InventoryJson, NetworksAreNamedAsTheHypervisorNamesThem) {
  // VMware's default port group; a site that came from VMware calls its LAN so.
  auto site = siteFromJson({{"name", "dc"}, {"networks", {"lan", "VM Network"}}});
  ASSERT_TRUE(site) << site.error().describe();
  EXPECT_EQ(site->networks, (std::vector<std::string>{"lan", "VM Network"}));
  auto m = networkMappingFromJson(
      {{"name", "office-lan"}, {"members", {{"dc", "VM Network"}, {"cloud-eu", "lan"}}}});
  ASSERT_TRUE(m) << m.error().describe();
  EXPECT_EQ(m->members["dc"], "VM Network");
  // The mapping's own name is in URLs: still a plain name.
  EXPECT_FALSE(networkMappingFromJson({{"name", "office lan"}, {"members", {{"dc", "lan"}}}}));
  for (const char* bad : {"", " lan", "lan ", "a\tb", "caf\xc3\xa9"}) {
    EXPECT_FALSE(checkNetworkName(bad)) << bad;
  }
  EXPECT_FALSE(checkNetworkName(std::string(65, 'n')));
}

}  // namespace
}  // namespace vandra::controller
