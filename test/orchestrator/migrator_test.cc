// The migration protocol between two agents on real QEMU (TCG): runSourceMigration at dc,
// TargetSide at cloud, control messages through the codec (encode, decode) in a loopback
// channel, QEMU's streams over local unix sockets (the site tunnel replaces both in
// production). Checks the records at both sites, the VM's new home, and that refusals and
// failures leave the VM running at the source and nothing at the target.
#include "vandra/orchestrator/migrator.h"

#include <gtest/gtest.h>

#include <set>

#include "../agent/two_agents_fixture.h"
#include "vandra/agent/migration_host_adapter.h"
#include "vandra/ovf/sla.h"

namespace vandra::orchestrator {
namespace {

namespace fs = std::filesystem;

// The peer agent behind the wire format: each message is encoded and decoded both ways.
class LoopbackChannel : public PeerChannel {
 public:
  explicit LoopbackChannel(TargetSide& target) : target_(target) {}
  Result<tunnel::ControlMessage> exchange(const tunnel::ControlMessage& request,
                                          Clock::time_point) override {
    VANDRA_TRY_ASSIGN(const std::string wire, tunnel::encodeControl(request));
    VANDRA_TRY_ASSIGN(const auto received, tunnel::decodeControl(wire));
    VANDRA_TRY_ASSIGN(const auto answer, target_.handle(received));
    VANDRA_TRY_ASSIGN(const std::string back, tunnel::encodeControl(answer));
    ++exchanges;
    return tunnel::decodeControl(back);
  }
  int exchanges = 0;

 private:
  TargetSide& target_;
};

// The loopback with a WAN that fails on cue: a message type in `lost` never reaches the
// target; one in `answer_lost` reaches it, but its answer does not come back.
class FlakyChannel : public PeerChannel {
 public:
  explicit FlakyChannel(PeerChannel& inner) : inner_(inner) {}
  Result<tunnel::ControlMessage> exchange(const tunnel::ControlMessage& request,
                                          Clock::time_point deadline) override {
    const std::string type(tunnel::typeName(request));
    sent.push_back(type);
    if (lost.count(type) != 0) {
      return fail(ErrorCode::Io, "the link is down (" + type + " lost)");
    }
    auto answer = inner_.exchange(request, deadline);
    if (answer_lost.count(type) != 0) {
      return fail(ErrorCode::Io, "the link went down before the answer to " + type);
    }
    return answer;
  }
  std::set<std::string> lost;
  std::set<std::string> answer_lost;
  std::vector<std::string> sent;

 private:
  PeerChannel& inner_;
};

class MigratorTest : public agent::testing::TwoAgentsTest {
 protected:
  void SetUp() override {
    TwoAgentsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    auto a = openSqliteMigrationStore(dir_ + "/dc-migrations.db");
    auto b = openSqliteMigrationStore(dir_ + "/cloud-migrations.db");
    ASSERT_TRUE(a && b);
    dc_store_ = std::move(*a);
    cloud_store_ = std::move(*b);
    dc_host_ = std::make_unique<agent::AgentMigrationHost>(*dc_);
    cloud_host_ = std::make_unique<agent::AgentMigrationHost>(*cloud_);
    target_ =
        std::make_unique<TargetSide>(*cloud_host_, *cloud_store_, targetConfig(jurisdiction_));
    channel_ = std::make_unique<LoopbackChannel>(*target_);
  }
  TargetSide::Config targetConfig(std::vector<std::string> jurisdictions) {
    TargetSide::Config c;
    c.site = "cloud";
    c.jurisdictions = std::move(jurisdictions);
    c.paths = [this](const std::string&) {
      return StreamPaths{dir_ + "/nbd.sock", dir_ + "/mig.sock"};
    };
    return c;
  }
  MigrateRequest request(const std::string& id) {
    MigrateRequest r;
    r.migration_id = id;
    r.vm_id = "web1";
    r.source_site = "dc";
    r.target_site = "cloud";
    r.source_paths = {dir_ + "/nbd.sock", dir_ + "/mig.sock"};
    r.max_total = std::chrono::seconds(120);
    return r;
  }
  std::vector<std::string> jurisdiction_ = {"EU"};
  MigrationStorePtr dc_store_;
  std::unique_ptr<agent::AgentMigrationHost> dc_host_;
  std::unique_ptr<agent::AgentMigrationHost> cloud_host_;
  MigrationStorePtr cloud_store_;
  std::unique_ptr<TargetSide> target_;
  std::unique_ptr<LoopbackChannel> channel_;
};

TEST_F(MigratorTest, WholeMigrationEndsDoneAtBothSites) {
  const auto source = *dc_->get("web1");
  auto rec = runSourceMigration(*dc_host_, *dc_store_, *channel_, request("m1"));
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Done) << rec->error;
  // The source walked every phase, in order, each written to its store.
  std::vector<std::string> phases;
  for (const auto& t : rec->timeline) {
    phases.push_back(t["phase"]);
  }
  EXPECT_EQ(phases, (std::vector<std::string>{"preflight", "prepare_target", "mirror_disks",
                                              "precopy_ram", "switchover", "confirm", "done"}));
  EXPECT_GT(rec->report.value("ram_bytes", 0), 0);
  EXPECT_GT(rec->report.value("total_s", 0.0), 0.0);
  auto stored = dc_store_->get("m1");
  ASSERT_TRUE(stored && stored->has_value());
  EXPECT_EQ((*stored)->phase, MigrationPhase::Done);
  auto theirs = cloud_store_->get("m1");
  ASSERT_TRUE(theirs && theirs->has_value());
  EXPECT_EQ((*theirs)->role, MigrationRole::Target);
  EXPECT_EQ((*theirs)->phase, MigrationPhase::Done);
  // The VM lives at cloud now, and nothing of it at dc.
  auto there = cloud_->get("web1");
  ASSERT_TRUE(there);
  EXPECT_EQ(there->state, agent::VmState::Running);
  EXPECT_EQ(qmpStatus(*cloud_), "running");
  EXPECT_EQ(dc_->get("web1").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(agent::observeProcess(source.pid, source.pid_start_time).alive);
  EXPECT_TRUE(runCapture({"qemu-img", "compare", "-U", "-f", "raw", dir_ + "/d.raw", "-F", "qcow2",
                          dir_ + "/cloud/images/vms/web1/disk1.qcow2"}));
  EXPECT_EQ(channel_->exchanges, 4);  // preflight, prepare, switchover, confirm
}

// Return trips (ADR 0027): dc keeps what web1 left there, cloud freezes the arrival image
// under the guest; the move back finds dc's copy and sends only what changed at cloud.
TEST_F(MigratorTest, MoveBackSendsOnlyWhatChangedSinceTheArrival) {
  auto out = runSourceMigration(*dc_host_, *dc_store_, *channel_, request("m-out"));
  ASSERT_TRUE(out) << out.error().describe();
  ASSERT_EQ(out->phase, MigrationPhase::Done) << out->error;
  const std::string key = agent::ImageStore::arrivalKey("m-out");
  const std::string dc_kept = dir_ + "/dc/images/base/" + key + "/disk1.qcow2";
  const std::string cloud_arrival = dir_ + "/cloud/images/base/" + key + "/disk1.qcow2";
  const std::string cloud_disk = dir_ + "/cloud/images/vms/web1/disk1.qcow2";
  EXPECT_TRUE(fs::exists(dc_kept)) << "dc keeps what the VM left";
  EXPECT_TRUE(fs::exists(dir_ + "/dc/images/base/" + key + "/retained.json"));
  EXPECT_FALSE(fs::exists(dir_ + "/dc/images/vms/web1"));
  auto info = runCapture({"qemu-img", "info", "--output=json", "-U", cloud_disk});
  ASSERT_TRUE(info);
  EXPECT_EQ(nlohmann::json::parse(*info).value("backing-filename", ""), cloud_arrival);
  EXPECT_TRUE(runCapture({"qemu-img", "compare", "-U", dc_kept, cloud_arrival}));
  const uint64_t out_disk = out->report.value("disk_bytes", uint64_t{0});
  EXPECT_GE(out_disk, 2ULL << 20);  // the two 1 MiB patterns at least

  // The disk changes at cloud: 256 KiB in the middle, written through the guest's device.
  {
    auto q = qmp::connectQmp(cloud_->runPaths("web1").qmp_socket, {});
    ASSERT_TRUE(q);
    auto w = (*q)->execute(qmp::makeCommand(
        "human-monitor-command",
        {{"command-line",
          "qemu-io -d /machine/peripheral/disk-disk1/virtio-backend \"write -P 0x3c 4M 256k\""}}));
    ASSERT_TRUE(w) << w.error().describe();
    ASSERT_EQ(w->get<std::string>(), "") << w->dump();
  }

  // And back: dc holds the base, so only cloud's overlay goes.
  TargetSide dc_side(*dc_host_, *dc_store_, targetConfig(jurisdiction_));
  LoopbackChannel to_dc(dc_side);
  MigrateRequest back = request("m-back");
  back.source_site = "cloud";
  back.target_site = "dc";
  auto rec = runSourceMigration(*cloud_host_, *cloud_store_, to_dc, back);
  ASSERT_TRUE(rec) << rec.error().describe();
  ASSERT_EQ(rec->phase, MigrationPhase::Done) << rec->error;
  EXPECT_EQ(rec->report.value("overlay_only_disks", nlohmann::json::array()),
            nlohmann::json::array({"disk1"}));
  const uint64_t back_disk = rec->report.value("disk_bytes", uint64_t{0});
  EXPECT_GE(back_disk, 256ULL << 10) << "the change was not sent";
  EXPECT_LE(back_disk, 1ULL << 20) << "sent " << back_disk << " of the way out's " << out_disk;
  EXPECT_LT(back_disk * 5, out_disk);
  // dc runs it on an overlay of what it kept, with cloud's change and the original content.
  const std::string dc_disk = dir_ + "/dc/images/vms/web1/disk1.qcow2";
  ASSERT_TRUE(dc_->get("web1"));
  EXPECT_EQ(dc_->get("web1")->state, agent::VmState::Running);
  auto read = runCapture({"sh", "-c",
                          "qemu-io -r -U -f qcow2 -c 'read -P 0x3c 4M 256k' -c 'read -P 0x5a 0 1M' "
                          "-c 'read -P 0xa5 7M 1M' " +
                              dc_disk + " 2>&1; echo exit=$?"});
  ASSERT_TRUE(read) << read.error().describe();
  EXPECT_EQ(read->find("verification failed"), std::string::npos) << *read;
  EXPECT_NE(read->find("exit=0"), std::string::npos) << *read;
  // cloud kept its side too (for the next trip), on the arrival image it stands on.
  const std::string cloud_kept =
      dir_ + "/cloud/images/base/" + agent::ImageStore::arrivalKey("m-back") + "/disk1.qcow2";
  EXPECT_TRUE(fs::exists(cloud_kept));
  EXPECT_TRUE(runCapture({"qemu-img", "compare", "-U", cloud_kept, dc_disk}));
}

// Another CPU model or machine type: the guest would see its hardware change under it. Refused at
// preflight, with every reason, and nothing changes at either site.
TEST_F(MigratorTest, OtherCpuMachineOrNetworkIsRefusedAtPreflight) {
  auto cfg = targetConfig(jurisdiction_);
  cfg.cpu_model = "host";
  cfg.machine_type = "pc-i440fx-7.2";
  TargetSide other(*cloud_host_, *cloud_store_, cfg);
  LoopbackChannel to_other(other);
  const auto before = dc_->get("web1");
  auto rec = runSourceMigration(*dc_host_, *dc_store_, to_other, request("m-cpu"));
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::RolledBack);
  EXPECT_NE(rec->error.find("CPU model 'qemu64', this site runs 'host'"), std::string::npos)
      << rec->error;
  EXPECT_NE(rec->error.find("machine type 'q35'"), std::string::npos) << rec->error;
  EXPECT_EQ(to_other.exchanges, 2);  // preflight, abort: nothing was prepared
  EXPECT_EQ(dc_->get("web1")->pid, before->pid);
  EXPECT_EQ(dc_->get("web1")->state, agent::VmState::Running);
  EXPECT_EQ(cloud_->get("web1").error().code, ErrorCode::NotFound);
  auto theirs = cloud_store_->get("m-cpu");
  ASSERT_TRUE(theirs);
  EXPECT_FALSE(theirs->has_value());
}

TEST_F(MigratorTest, TargetOutsideTheSlasJurisdictionsIsRefusedAndNothingChanges) {
  // A VM whose SLA allows the EU only, and a target site in CH and US; then one labelled SE and
  // EU (a site has several labels; one of them in the SLA's list is enough).
  ovf::VmSpec spec;
  ovf::VirtualSystemSpec vs;
  vs.id = "vm";
  vs.vcpus = 1;
  vs.memory_mib = 64;
  vs.controllers.push_back({"virtio0", ovf::ControllerKind::Virtio, ""});
  vs.disks.push_back({.id = "disk1",
                      .capacity_bytes = 8ULL << 20,
                      .populated_bytes = std::nullopt,
                      .format = "vmdk-stream",
                      .format_uri = "",
                      .file = std::nullopt,
                      .parent = std::nullopt,
                      .controller = "virtio0",
                      .unit = 0});
  ovf::Sla sla;
  sla.jurisdictions = {"EU"};
  vs.sla = sla;
  spec.virtual_systems.push_back(vs);
  ovf::ExportOptions eo;
  eo.disk_images["disk1"] = dir_ + "/d.raw";
  ASSERT_TRUE(ovf::exportPackage(spec, dir_ + "/eu.ova", eo));
  ASSERT_TRUE(dc_->importVm({.id = "web9",
                             .package = dir_ + "/eu.ova",
                             .vs = "",
                             .lax = false,
                             .from = "",
                             .upload = "",
                             .networks = {}}));
  auto started = dc_->startVm("web9");
  ASSERT_TRUE(started) << started.error().describe();
  TargetSide ch(*cloud_host_, *cloud_store_, targetConfig({"CH", "US"}));
  LoopbackChannel to_ch(ch);
  auto req = request("m2");
  req.vm_id = "web9";
  auto rec = runSourceMigration(*dc_host_, *dc_store_, to_ch, req);
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::RolledBack);
  EXPECT_NE(rec->error.find("the SLA allows [\"EU\"], this site is in [\"CH\",\"US\"]"),
            std::string::npos)
      << rec->error;
  auto r = dc_->get("web9");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, agent::VmState::Running);
  EXPECT_EQ(r->pid, started->pid);
  EXPECT_EQ(cloud_->get("web9").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(fs::exists(dir_ + "/cloud/images/vms/web9"));
  // A site in SE and EU may take it.
  TargetSide se_eu(*cloud_host_, *cloud_store_, targetConfig({"SE", "EU"}));
  LoopbackChannel to_se_eu(se_eu);
  auto req2 = request("m2b");
  req2.vm_id = "web9";
  auto moved = runSourceMigration(*dc_host_, *dc_store_, to_se_eu, req2);
  ASSERT_TRUE(moved) << moved.error().describe();
  EXPECT_EQ(moved->phase, MigrationPhase::Done) << moved->error;
  EXPECT_EQ(cloud_->get("web9")->state, agent::VmState::Running);
  ASSERT_TRUE(cloud_->killVm("web9"));
}

TEST_F(MigratorTest, PreflightRefusalLeavesBothSitesAsTheyWere) {
  // The target has a VM of the same name already: refused before anything is made.
  ASSERT_TRUE(cloud_->importVm({.id = "web1",
                                .package = dir_ + "/vm.ova",
                                .vs = "",
                                .lax = false,
                                .from = "",
                                .upload = "",
                                .networks = {}}));
  const auto source = *dc_->get("web1");
  auto rec = runSourceMigration(*dc_host_, *dc_store_, *channel_, request("m3"));
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::RolledBack);
  EXPECT_NE(rec->error.find("exists here already"), std::string::npos) << rec->error;
  auto r = dc_->get("web1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, agent::VmState::Running);
  EXPECT_EQ(r->pid, source.pid);
  EXPECT_EQ(qmpStatus(*dc_), "running");
  EXPECT_EQ(cloud_->get("web1")->state, agent::VmState::Created);  // theirs, untouched
  auto theirs = cloud_store_->get("m3");
  ASSERT_TRUE(theirs);
  EXPECT_FALSE(theirs->has_value());
}

TEST_F(MigratorTest, FailureMidMirrorRollsBackBothSites) {
  const auto source = *dc_->get("web1");
  auto req = request("m4");
  req.source_paths.nbd_socket = dir_ + "/nowhere.sock";  // the NBD stream cannot reach the target
  auto rec = runSourceMigration(*dc_host_, *dc_store_, *channel_, req);
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::RolledBack);
  EXPECT_FALSE(rec->error.empty());
  auto r = dc_->get("web1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, agent::VmState::Running);
  EXPECT_EQ(r->pid, source.pid);
  EXPECT_EQ(qmpStatus(*dc_), "running");
  // The target cleaned up: no VM, no disks, its record rolled back.
  EXPECT_EQ(cloud_->get("web1").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(fs::exists(dir_ + "/cloud/images/vms/web1"));
  auto theirs = cloud_store_->get("m4");
  ASSERT_TRUE(theirs && theirs->has_value());
  EXPECT_EQ((*theirs)->phase, MigrationPhase::RolledBack);
  // A second migration of the same VM is possible afterwards, and a concurrent one is not.
  auto busy = dc_store_->insert([] {
    MigrationRecord m;
    m.id = "m5";
    m.vm_id = "web1";
    m.peer_site = "cloud";
    return m;
  }());
  ASSERT_TRUE(busy);
  auto second = runSourceMigration(*dc_host_, *dc_store_, *channel_, request("m6"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::Busy);
}

// The target started the guest, but its `started` never came back: the source must not resume
// (two copies); it asks, hears the guest runs there, and finishes the migration.
TEST_F(MigratorTest, LostAnswerToSwitchoverIsSettledByAskingTheTargetWhichRunsTheGuest) {
  const auto source = *dc_->get("web1");
  FlakyChannel flaky(*channel_);
  flaky.answer_lost = {"switchover"};
  auto rec = runSourceMigration(*dc_host_, *dc_store_, flaky, request("m7"));
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Done) << rec->error << "\n" << rec->report.dump(2);
  EXPECT_EQ(flaky.sent,
            (std::vector<std::string>{"preflight", "prepare", "switchover", "query", "confirm"}));
  ASSERT_TRUE(rec->report.contains("settle"));
  EXPECT_EQ(rec->report["settle"].back()["peer"], "target_owns");
  EXPECT_EQ(rec->report["settle"].back()["step"], "finish_confirm");
  auto theirs = cloud_store_->get("m7");
  ASSERT_TRUE(theirs && theirs->has_value());
  EXPECT_EQ((*theirs)->phase, MigrationPhase::Done);
  EXPECT_EQ(qmpStatus(*cloud_), "running");
  EXPECT_EQ(dc_->get("web1").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(agent::observeProcess(source.pid, source.pid_start_time).alive);
}

// `switchover` never reached the target, and at first the target cannot be asked either: the
// source keeps the guest paused and says what it waits for. Once the target answers (it
// never started the guest), the source resumes it, on the same QEMU, and the target cleans up.
TEST_F(MigratorTest, UnansweredSwitchoverKeepsTheGuestPausedUntilTheTargetSaysItNeverStartedIt) {
  const auto source = *dc_->get("web1");
  FlakyChannel flaky(*channel_);
  flaky.lost = {"switchover", "query"};
  auto rec = runSourceMigration(*dc_host_, *dc_store_, flaky, request("m8"));
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Switchover) << rec->error;
  EXPECT_NE(rec->error.find("Waiting for cloud"), std::string::npos) << rec->error;
  EXPECT_NE(qmpStatus(*dc_), "running");  // never two copies: the source waits, paused
  EXPECT_EQ(cloud_->get("web1")->state, agent::VmState::Incoming);
  auto stored = dc_store_->get("m8");
  ASSERT_TRUE(stored && stored->has_value());
  EXPECT_EQ((*stored)->phase, MigrationPhase::Switchover);

  flaky.lost.clear();  // the link is back
  auto settled = settleSourceMigration(*dc_host_, *dc_store_, flaky, **stored);
  ASSERT_TRUE(settled) << settled.error().describe();
  EXPECT_EQ(settled->phase, MigrationPhase::RolledBack) << settled->error;
  EXPECT_NE(settled->error.find("never started the guest"), std::string::npos) << settled->error;
  EXPECT_EQ(settled->report["settle"].back()["peer"], "not_started");
  EXPECT_EQ(flaky.sent.back(), "abort");  // the target's incoming VM is told to go
  auto r = dc_->get("web1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->pid, source.pid);
  EXPECT_EQ(qmpStatus(*dc_), "running");
  EXPECT_EQ(cloud_->get("web1").error().code, ErrorCode::NotFound);
  auto theirs = cloud_store_->get("m8");
  ASSERT_TRUE(theirs && theirs->has_value());
  EXPECT_EQ((*theirs)->phase, MigrationPhase::RolledBack);
  // Settling a settled record changes nothing.
  auto again = settleSourceMigration(*dc_host_, *dc_store_, flaky, *settled);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->phase, MigrationPhase::RolledBack);
}

}  // namespace
}  // namespace vandra::orchestrator
