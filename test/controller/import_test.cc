// Imports through the controller against fake agents that read the real package: uploads are
// verified before they are kept, the VM is placed (or its named site checked) before any agent
// is asked, the chosen agent gets the package and imports it with the networks mapped, the VM
// is recorded with its home, and a failure leaves nothing behind.
#include <gtest/gtest.h>

#include <fstream>

#include "test/controller/controller_fixture.h"
#include "test/controller/test_package.h"

namespace vandra::controller::testing {
namespace {

class ImportTest : public ControllerFixture {
 protected:
  void SetUp() override {
    ControllerFixture::SetUp();
    service_->refreshOnce();  // leader, hosts' capacity known
  }

  // Receives @p path as the controller's package @p name, as PUT /v1/packages/NAME does.
  Result<agent::UploadInfo> upload(const std::string& path, const std::string& name) {
    VANDRA_TRY_ASSIGN(auto w, service_->packages()->begin(name, std::nullopt));
    std::ifstream in(path, std::ios::binary);
    std::vector<char> buf(1 << 16);
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
      VANDRA_TRY(w.write(buf.data(), static_cast<size_t>(in.gcount())));
    }
    return service_->commitPackage(w, false);
  }

  std::string uploaded(const std::string& name, std::vector<std::string> networks,
                       const ovf::Sla& sla) {
    auto ova = makeTestPackage(dir_ / "pkg", name, networks, sla);
    EXPECT_TRUE(ova) << ova.error().describe();
    auto u = upload(*ova, name + ".ova");
    EXPECT_TRUE(u) << u.error().describe();
    return name + ".ova";
  }

  std::vector<std::string> calls(const std::string& site) {
    std::lock_guard lock(agents_[site]->mu);
    return agents_[site]->calls;
  }

  static ImportVmRequest request(const std::string& pkg, const std::string& site = "",
                                 bool start = false,
                                 std::map<std::string, std::string> network_map = {}) {
    return {.id = "web1",
            .package = pkg,
            .vs = "",
            .site = site,
            .network_map = std::move(network_map),
            .start = start,
            .lax = false};
  }

  Caller alice_{"alice", Role::Operator};
};

TEST_F(ImportTest, PlacedAtTheCheapestCompliantSiteWithItsNetworksMapped) {
  const auto pkg = uploaded("web1", {"VM Network"}, euOnly());
  auto info = service_->package(pkg);
  ASSERT_TRUE(info) << info.error().describe();
  ASSERT_EQ(info->vms.size(), 1u);
  EXPECT_EQ(info->vms[0].networks, std::vector<std::string>{"VM Network"});
  EXPECT_EQ(info->vms[0].sla, euOnly());
  EXPECT_EQ(info->signature, "unsigned");

  auto r = service_->importVm(request(pkg), alice_);
  ASSERT_TRUE(r) << r.error().describe();
  // cloud-us is cheaper but not EU; cloud-eu is cheaper than dc.
  EXPECT_EQ(r->placement.site, "cloud-eu");
  EXPECT_EQ(r->placement.networks.at("VM Network"), "lan");  // the site's default network
  EXPECT_EQ(calls("cloud-eu"),
            (std::vector<std::string>{"upload web1.ova", "import web1 web1.ova VM Network=lan",
                                      "delete upload web1.ova"}));
  EXPECT_TRUE(calls("dc").empty());
  EXPECT_TRUE(calls("cloud-us").empty());
  // The agent's VM is on the site's network; the controller knows it with its home.
  {
    std::lock_guard lock(agents_["cloud-eu"]->mu);
    ASSERT_EQ(agents_["cloud-eu"]->vms.size(), 1u);
    EXPECT_EQ(agents_["cloud-eu"]->vms[0].spec->virtual_systems[0].nics[0].network, "lan");
    EXPECT_TRUE(agents_["cloud-eu"]->packages.empty());
  }
  auto vm = store_->vm("web1");
  ASSERT_TRUE(vm) << vm.error().describe();
  EXPECT_EQ(vm->site, "cloud-eu");
  EXPECT_EQ(vm->home_site, "cloud-eu");
  EXPECT_EQ(vm->host, "cloud-eu-h1");
  EXPECT_EQ(vm->state, VmState::Defined);
  EXPECT_EQ(vm->networks, std::vector<std::string>{"lan"});
  EXPECT_EQ(vm->sla, euOnly());
  // The next refresh sees the same VM at the agent and changes nothing about it.
  service_->refreshOnce();
  EXPECT_EQ(store_->vm("web1")->home_site, "cloud-eu");
  EXPECT_EQ(store_->vm("web1")->state, VmState::Defined);
}

TEST_F(ImportTest, ANamedSiteThatBreaksTheSlaIsRefusedBeforeAnyAgentIsAsked) {
  const auto pkg = uploaded("web1", {"lan"}, euOnly());
  auto r = service_->importVm(request(pkg, "cloud-us"), alice_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::SlaViolated);
  EXPECT_NE(r.error().message.find("cloud-us: jurisdiction US not in [EU]"), std::string::npos)
      << r.error().message;
  for (const char* s : {"dc", "cloud-eu", "cloud-us"}) {
    EXPECT_TRUE(calls(s).empty()) << s;
  }
  EXPECT_EQ(store_->vm("web1").error().code, ErrorCode::NotFound);
  // A named site that keeps the SLA is where it goes, though another is cheaper.
  auto at_dc = service_->importVm(request(pkg, "dc", true), alice_);
  ASSERT_TRUE(at_dc) << at_dc.error().describe();
  EXPECT_EQ(at_dc->vm.site, "dc");
  EXPECT_EQ(at_dc->vm.state, VmState::Running);
  EXPECT_EQ(calls("dc").back(), "start web1");
}

TEST_F(ImportTest, AnUnmappableNetworkOrATakenNameIsRefusedAndNothingChanges) {
  const auto pkg = uploaded("web1", {"VM Network"}, euOnly());
  ASSERT_TRUE(service_->patchSite("dc", {{"default_network", ""}}));
  auto r = service_->importVm(request(pkg, "dc"), alice_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message.find("no network 'VM Network' here"), std::string::npos)
      << r.error().message;
  EXPECT_TRUE(calls("dc").empty());
  // Mapped explicitly, it imports; the same name again is refused before any agent is asked.
  const ImportVmRequest mapped = request(pkg, "dc", false, {{"VM Network", "lan"}});
  ASSERT_TRUE(service_->importVm(mapped, alice_));
  const size_t before = calls("dc").size();
  auto again = service_->importVm(mapped, alice_);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(calls("dc").size(), before);
}

TEST_F(ImportTest, AnAgentsFailureLeavesNoVmAndNoUploadBehind) {
  const auto pkg = uploaded("web1", {"lan"}, euOnly());
  {
    std::lock_guard lock(agents_["cloud-eu"]->mu);
    agents_["cloud-eu"]->import_error = Error(ErrorCode::CapacityExceeded, "disk full");
  }
  auto r = service_->importVm(request(pkg), alice_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::CapacityExceeded);
  EXPECT_EQ(store_->vm("web1").error().code, ErrorCode::NotFound);
  std::lock_guard lock(agents_["cloud-eu"]->mu);
  EXPECT_TRUE(agents_["cloud-eu"]->packages.empty());
  EXPECT_TRUE(agents_["cloud-eu"]->vms.empty());
  EXPECT_EQ(agents_["cloud-eu"]->calls.back(), "delete upload web1.ova");
}

TEST_F(ImportTest, ATamperedOrOversizedUploadIsRefusedAndNothingIsKept) {
  auto ova = makeTestPackage(dir_ / "pkg", "web1", {"lan"}, euOnly());
  ASSERT_TRUE(ova) << ova.error().describe();
  const std::string bad = (dir_ / "pkg" / "bad.ova").string();
  fs::copy_file(*ova, bad);
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(bad) / 2));
    f.put('\x42');
  }
  auto u = upload(bad, "bad.ova");
  ASSERT_FALSE(u);
  EXPECT_TRUE(service_->packages()->list()->empty());
  // Past the bound: refused as it streams, nothing left either.
  {
    auto w = service_->packages()->begin("big.ova", std::nullopt);
    ASSERT_TRUE(w);
    const std::vector<char> chunk(1 << 20, 'x');
    Result<void> wrote;
    for (int i = 0; i < 80 && wrote; ++i) {
      wrote = w->write(chunk.data(), chunk.size());
    }
    ASSERT_FALSE(wrote);
    EXPECT_EQ(wrote.error().code, ErrorCode::LimitExceeded);
  }  // the writer goes, its partial file with it
  EXPECT_TRUE(service_->packages()->list()->empty());
  for (const auto& e : fs::directory_iterator(service_->packages()->dir())) {
    ADD_FAILURE() << "left behind: " << e.path();
  }
}

TEST_F(ImportTest, AStandbyDoesNotImport) {
  const auto pkg = uploaded("web1", {"lan"}, euOnly());
  auto standby = makeService(*store_, "c2");
  ASSERT_NE(standby, nullptr);
  standby->refreshOnce();  // c1 holds the lease
  ASSERT_FALSE(standby->leader().leader);
  auto r = standby->importVm(request(pkg), alice_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::Busy);
  EXPECT_TRUE(calls("cloud-eu").empty());
}

}  // namespace
}  // namespace vandra::controller::testing
