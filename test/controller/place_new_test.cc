// Placement of a VM that runs nowhere yet (an import): the cheapest site that keeps its SLA
// and has room, a named site that breaks the SLA refused with the clause, and the VM's OVF
// networks mapped to the site's (explicitly, by the same name, or to the site's default),
// the VMware way ("VM Network") included.
#include <gtest/gtest.h>

#include "test/controller/controller_fixture.h"

namespace vandra::controller::testing {
namespace {

class PlaceNewTest : public ControllerFixture {
 protected:
  void SetUp() override {
    ControllerFixture::SetUp();
    service_->refreshOnce();  // leader, hosts' capacity known
  }
  NewVm vm(std::vector<std::string> networks = {"lan"}) {
    NewVm v;
    v.name = "new1";
    v.vcpus = 2;
    v.memory_mib = 2048;
    v.disk_gib = 10;
    v.sla = euOnly();
    v.networks = std::move(networks);
    return v;
  }
};

TEST_F(PlaceNewTest, TheCheapestSiteThatKeepsTheSla) {
  auto p = service_->placeNew(vm());
  ASSERT_TRUE(p) << p.error().describe();
  EXPECT_EQ(p->site, "cloud-eu");  // cheaper than dc; cloud-us is cheaper still but US
  EXPECT_EQ(p->host, "cloud-eu-h1");
  EXPECT_EQ(p->networks.at("lan"), "lan");
  EXPECT_NEAR(p->cost_per_hour, 2 * 0.025 + 2 * 0.004, 1e-9);
}

TEST_F(PlaceNewTest, ANamedSiteThatBreaksTheSlaIsRefusedWithTheClause) {
  auto p = service_->placeNew(vm(), "cloud-us");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ErrorCode::SlaViolated);
  EXPECT_NE(p.error().message.find("cloud-us: jurisdiction"), std::string::npos)
      << p.error().message;
  EXPECT_EQ(service_->placeNew(vm(), "mars").error().code, ErrorCode::NotFound);
}

TEST_F(PlaceNewTest, AVmwareNetworkGoesToTheSitesDefaultOrIsRefusedByName) {
  auto p = service_->placeNew(vm({"VM Network"}), "dc");
  ASSERT_TRUE(p) << p.error().describe();
  EXPECT_EQ(p->networks.at("VM Network"), "lan");  // dc's default network

  ASSERT_TRUE(service_->patchSite("cloud-eu", {{"default_network", ""}}));
  auto refused = service_->placeNew(vm({"VM Network"}), "cloud-eu");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(refused.error().message.find("no network 'VM Network' here"), std::string::npos)
      << refused.error().message;
  // Mapped explicitly, it goes.
  auto mapped = vm({"VM Network"});
  mapped.network_map["VM Network"] = "lan";
  auto ok = service_->placeNew(mapped, "cloud-eu");
  ASSERT_TRUE(ok) << ok.error().describe();
  EXPECT_EQ(ok->networks.at("VM Network"), "lan");
  // A mapping to a network the site does not have is refused.
  mapped.network_map["VM Network"] = "nope";
  EXPECT_FALSE(service_->placeNew(mapped, "cloud-eu"));
}

TEST_F(PlaceNewTest, TooLargeForEveryHostSaysWhatIsShort) {
  auto big = vm();
  big.memory_mib = 65536;
  auto p = service_->placeNew(big);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code,
            ErrorCode::SlaViolated);  // cloud-us by jurisdiction, the others by memory
  EXPECT_NE(p.error().message.find("memory"), std::string::npos) << p.error().message;
  big.sla.jurisdictions.clear();
  auto anywhere = service_->placeNew(big);
  ASSERT_FALSE(anywhere);
  EXPECT_EQ(anywhere.error().code, ErrorCode::CapacityExceeded) << anywhere.error().message;
}

}  // namespace
}  // namespace vandra::controller::testing
