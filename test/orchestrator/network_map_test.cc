// A move whose NICs' network the target calls otherwise (MigrateRequest::networks, the
// preflight's network_map): the source sends the renames, the target applies them to the spec
// before its network check and registers the VM on its own names; without them the target
// refuses the network it does not have; a map that renames what the VM does not use, or into
// a network the target lacks, is refused there. Both sites are mocks (MockMigrationHost),
// every message goes through the codec both ways.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "mock_migration_host.h"
#include "vandra/orchestrator/migrator.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::orchestrator {
namespace {

using ::testing::_;
using ::testing::NiceMock;

// A VM at dc with one NIC on dc's "VM Network" and one on "storage" (the same at both).
const char* kSpec = R"({"virtual_systems":[{"id":"web1","memory_mib":512,"vcpus":1,
  "disks":[{"id":"disk0","capacity_bytes":1073741824}],
  "nics":[{"network":"VM Network"},{"network":"storage"}]}],
  "networks":[{"name":"VM Network"},{"name":"storage"}]})";

// The target behind the wire format; keeps the preflight as the target decoded it.
class WireChannel : public PeerChannel {
 public:
  explicit WireChannel(TargetSide& target) : target_(target) {}
  Result<tunnel::ControlMessage> exchange(const tunnel::ControlMessage& request,
                                          Clock::time_point) override {
    VANDRA_TRY_ASSIGN(const std::string wire, tunnel::encodeControl(request));
    VANDRA_TRY_ASSIGN(const auto received, tunnel::decodeControl(wire));
    if (const auto* pf = std::get_if<tunnel::Preflight>(&received)) {
      preflight = *pf;
      preflight_wire = wire;
    }
    VANDRA_TRY_ASSIGN(const auto answer, target_.handle(received));
    VANDRA_TRY_ASSIGN(const std::string back, tunnel::encodeControl(answer));
    return tunnel::decodeControl(back);
  }
  std::optional<tunnel::Preflight> preflight;
  std::string preflight_wire;

 private:
  TargetSide& target_;
};

class NetworkMapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/vandra-netmap-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    auto a = openSqliteMigrationStore(dir_ + "/dc.db");
    auto b = openSqliteMigrationStore(dir_ + "/cloud.db");
    ASSERT_TRUE(a && b);
    source_store_ = std::move(*a);
    target_store_ = std::move(*b);
    ON_CALL(source_, vm(_)).WillByDefault([](const std::string&) -> Result<HostVm> {
      return HostVm{kSpec, 512, 1, true, true};
    });
    ON_CALL(source_, diskBases(_))
        .WillByDefault([](const std::string&) -> Result<std::map<std::string, std::string>> {
          return std::map<std::string, std::string>{};
        });
    ON_CALL(source_, migrateOut(_, _))
        .WillByDefault([](const agent::OutgoingRequest& r,
                          migration::SourceMigration&) -> Result<migration::SwitchoverResult> {
          VANDRA_TRY(r.before_step(agent::OutgoingStep::Ram));
          VANDRA_TRY(r.before_step(agent::OutgoingStep::Switchover));
          migration::SwitchoverResult out;
          out.downtime_ms = 40;
          return out;
        });
    ON_CALL(target_, vm(_)).WillByDefault([](const std::string& id) -> Result<HostVm> {
      return fail(ErrorCode::NotFound, "No VM '" + id + "'");
    });
    ON_CALL(target_, freeCapacity()).WillByDefault([]() -> Result<agent::Resources> {
      return agent::Resources{8, 16384, 1ULL << 40};
    });
    ON_CALL(target_, prepareIncoming(_))
        .WillByDefault([this](const agent::IncomingRequest& r) -> Result<void> {
          registered_ = r.spec_json;
          return {};
        });
    ON_CALL(target_, finishIncoming(_, _, _))
        .WillByDefault([](const std::string&, bool,
                          std::chrono::steady_clock::time_point) -> Result<uint64_t> {
          return uint64_t{4242};
        });
    TargetSide::Config c;
    c.site = "cloud";
    c.networks = {"lan", "storage"};
    c.paths = [this](const std::string& id) {
      return StreamPaths{dir_ + "/" + id + "-nbd.sock", dir_ + "/" + id + "-mig.sock"};
    };
    target_side_ = std::make_unique<TargetSide>(target_, *target_store_, std::move(c));
    channel_ = std::make_unique<WireChannel>(*target_side_);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  MigrateRequest request(const std::string& id, std::map<std::string, std::string> networks) {
    MigrateRequest r;
    r.migration_id = id;
    r.vm_id = "web1";
    r.source_site = "dc";
    r.target_site = "cloud";
    r.source_paths = {dir_ + "/src-nbd.sock", dir_ + "/src-mig.sock"};
    r.max_total = std::chrono::seconds(60);
    r.networks = std::move(networks);
    return r;
  }
  // The NIC networks of the spec the target registered.
  std::vector<std::string> registeredNics() {
    auto spec = ovf::vmSpecFromJson(nlohmann::json::parse(registered_, nullptr, false));
    EXPECT_TRUE(spec) << registered_;
    std::vector<std::string> out;
    for (const auto& vs : spec ? spec->virtual_systems : std::vector<ovf::VirtualSystemSpec>{}) {
      for (const auto& nic : vs.nics) {
        out.push_back(nic.network);
      }
    }
    return out;
  }

  std::string dir_;
  MigrationStorePtr source_store_;
  MigrationStorePtr target_store_;
  NiceMock<testing::MockMigrationHost> source_;
  NiceMock<testing::MockMigrationHost> target_;
  std::unique_ptr<TargetSide> target_side_;
  std::unique_ptr<WireChannel> channel_;
  std::string registered_;
};

TEST_F(NetworkMapTest, TheTargetRegistersTheVmOnItsOwnNames) {
  auto rec = runSourceMigration(source_, *source_store_, *channel_,
                                request("m-map", {{"VM Network", "lan"}}));
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Done) << rec->error;
  ASSERT_TRUE(channel_->preflight);
  EXPECT_EQ(channel_->preflight->network_map,
            (std::map<std::string, std::string>{{"VM Network", "lan"}}));
  EXPECT_EQ(channel_->preflight->networks, (std::vector<std::string>{"VM Network", "storage"}));
  EXPECT_EQ(registeredNics(), (std::vector<std::string>{"lan", "storage"}));
  // The NetworkSection names the target's networks too.
  const auto spec = nlohmann::json::parse(registered_);
  EXPECT_EQ(spec["networks"].size(), 2U) << registered_;
  EXPECT_EQ(spec["networks"][0].value("name", ""), "lan") << registered_;
  auto theirs = target_store_->get("m-map");
  ASSERT_TRUE(theirs && *theirs);
  EXPECT_EQ((*theirs)->report["network_map"], (nlohmann::json{{"VM Network", "lan"}}));
}

TEST_F(NetworkMapTest, WithoutAMapTheTargetRefusesANetworkItLacksAndSendsNoMap) {
  auto rec = runSourceMigration(source_, *source_store_, *channel_, request("m-plain", {}));
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::RolledBack);
  EXPECT_NE(rec->error.find("no network 'VM Network' here"), std::string::npos) << rec->error;
  EXPECT_EQ(channel_->preflight_wire.find("network_map"), std::string::npos);
  EXPECT_TRUE(registered_.empty());
}

TEST_F(NetworkMapTest, AMapIntoANetworkTheTargetLacksIsRefused) {
  auto rec = runSourceMigration(source_, *source_store_, *channel_,
                                request("m-dmz", {{"VM Network", "dmz"}}));
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::RolledBack);
  EXPECT_NE(rec->error.find("no network 'dmz' here"), std::string::npos) << rec->error;
  EXPECT_TRUE(registered_.empty());
}

// A hostile or confused source: a map that renames a network its own offer lists but no NIC
// of the spec uses is refused by the target, not applied.
TEST_F(NetworkMapTest, TheTargetRefusesAMapThatDoesNotFitTheSpec) {
  tunnel::Preflight pf;
  pf.migration_id = "m-odd";
  pf.vm_id = "web1";
  pf.spec = nlohmann::json::parse(kSpec);
  pf.source_site = "dc";
  pf.sla = nlohmann::json::object();
  pf.disks = {{"disk0", 1073741824, ""}};
  pf.machine_type = "q35";
  pf.cpu_model = "qemu64";
  pf.networks = {"VM Network", "storage", "dmz"};
  pf.memory_mib = 512;
  pf.vcpus = 1;
  pf.network_map = {{"dmz", "lan"}};
  auto answer = target_side_->handle(pf);
  ASSERT_TRUE(answer) << answer.error().describe();
  const auto* res = std::get_if<tunnel::PreflightResult>(&*answer);
  ASSERT_NE(res, nullptr);
  EXPECT_FALSE(res->ok);
  ASSERT_FALSE(res->reasons.empty());
  EXPECT_NE(res->reasons.front().find("the network map cannot be applied"), std::string::npos)
      << res->reasons.front();
  auto none = target_store_->get("m-odd");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
}

}  // namespace
}  // namespace vandra::orchestrator
