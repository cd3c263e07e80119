// Both agents' halves of a live migration on real QEMU (TCG), in one process: a dc agent and
// a cloud agent (two state folders), the real command-line builder, the QMP engine, and local
// unix sockets where production has the site tunnel. The VM has no OS (the engine's own tests
// migrate the test guest); what is checked here is the agent's part: records, disks,
// processes, locks, and that a failure leaves the source as it was and the target empty.
#include <future>

#include "two_agents_fixture.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

using AgentMigrationTest = testing::TwoAgentsTest;

TEST_F(AgentMigrationTest, VmMovesWithItsDiskAndTheSourceIsReleased) {
  const auto source = *dc_->get("web1");
  auto prepared = cloud_->prepareIncoming(incoming());
  ASSERT_TRUE(prepared) << prepared.error().describe();
  EXPECT_EQ(prepared->state, VmState::Incoming);
  EXPECT_EQ(qmpStatus(*cloud_), "inmigrate");

  migration::SourceMigration state;
  const uint64_t since = dc_->events().read(0, "", 1000, std::chrono::milliseconds(0)).last_seq;
  auto req = outgoing();
  req.mirror.bandwidth_bytes_per_s = 2 << 20;  // 8 MiB disk: the mirror takes about 4 s
  auto out = std::async(std::launch::async, [&] { return dc_->migrateOut(req, state); });
  // "migration-started" is logged once migrateOut holds the VM's lock: a kill meanwhile is
  // busy and changes nothing.
  bool started = false;
  for (auto deadline = Clock::now() + std::chrono::seconds(30);
       !started && Clock::now() < deadline;) {
    for (const auto& e : dc_->events().read(since, "web1", 100, std::chrono::seconds(1)).events) {
      started = started || e.name == "migration-started";
    }
  }
  ASSERT_TRUE(started);
  auto kill = dc_->killVm("web1");
  ASSERT_FALSE(kill);
  EXPECT_EQ(kill.error().code, ErrorCode::Busy);
  auto switched = out.get();
  ASSERT_TRUE(switched) << switched.error().describe();
  EXPECT_GT(switched->ram_transferred, 0U);
  EXPECT_GT(switched->disk_transferred, 0U);

  auto running =
      cloud_->finishIncoming("web1", state.vm_was_running, Clock::now() + std::chrono::seconds(60));
  ASSERT_TRUE(running) << running.error().describe();
  EXPECT_EQ(running->state, VmState::Running);
  EXPECT_EQ(qmpStatus(*cloud_), "running");
  EXPECT_EQ(qmpStatus(*dc_), "postmigrate");
  // The target's disk holds what the source's had.
  auto same = runCapture({"qemu-img", "compare", "-U", "-f", "raw", dir_ + "/d.raw", "-F", "qcow2",
                          dir_ + "/cloud/images/vms/web1/disk1.qcow2"});
  EXPECT_TRUE(same) << same.error().describe();

  ASSERT_TRUE(dc_->releaseMigrated("web1"));
  EXPECT_EQ(dc_->get("web1").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(observeProcess(source.pid, source.pid_start_time).alive);
  EXPECT_FALSE(fs::exists(dir_ + "/dc/images/vms/web1"));
  // The cloud agent owns it now, also after a restart of its agent.
  auto events = cloud_->events().read(0, "web1", 100, std::chrono::milliseconds(0));
  bool migrated_in = false;
  for (const auto& e : events.events) {
    migrated_in =
        migrated_in || (e.name == "running" && e.data.value("reason", "") == "migrated-in");
  }
  EXPECT_TRUE(migrated_in);
}

// A target that imported the same package holds the same base image: its disk becomes an
// overlay on that base and only the source's overlay is mirrored; the guest's disk reads the
// same at both ends. A site without the base gets a full copy (the test above).
TEST_F(AgentMigrationTest, TargetWithTheBaseImageReceivesOnlyTheOverlay) {
  // What the VM wrote since its import lives in its overlay only (the write through the
  // device's own block backend: the guest's node is not writable by anyone else).
  {
    auto qmp = qmp::connectQmp(dc_->runPaths("web1").qmp_socket, {});
    ASSERT_TRUE(qmp) << qmp.error().describe();
    auto w = (*qmp)->execute(qmp::makeCommand(
        "human-monitor-command",
        {{"command-line",
          "qemu-io -d /machine/peripheral/disk-disk1/virtio-backend \"write -P 0x77 2M 256k\""}}));
    ASSERT_TRUE(w) << w.error().describe();
    EXPECT_EQ(w->dump(), "\"\"") << "qemu-io said: " << w->dump();  // silent when it wrote
  }
  auto bases = dc_->diskBases("web1");
  ASSERT_TRUE(bases) << bases.error().describe();
  ASSERT_EQ(bases->size(), 1U);
  const std::string digest = bases->at("disk1");
  EXPECT_EQ(digest.size(), 64U);
  EXPECT_FALSE(cloud_->hasBase(digest));
  // The same package imported at cloud (another VM): now cloud holds the base.
  ASSERT_TRUE(cloud_->importVm({.id = "other",
                                .package = dir_ + "/vm.ova",
                                .vs = "",
                                .lax = false,
                                .from = "",
                                .upload = "",
                                .networks = {}}));
  EXPECT_TRUE(cloud_->hasBase(digest));

  auto in = incoming();
  in.base_digests["disk1"] = digest;
  auto prepared = cloud_->prepareIncoming(in);
  ASSERT_TRUE(prepared) << prepared.error().describe();
  const std::string target_disk = dir_ + "/cloud/images/vms/web1/disk1.qcow2";
  auto info = runCapture({"qemu-img", "info", "--output=json", "-U", target_disk});
  ASSERT_TRUE(info);
  const auto j = nlohmann::json::parse(*info);
  EXPECT_EQ(j.value("full-backing-filename", j.value("backing-filename", ""))
                .rfind(dir_ + "/cloud/images/base/", 0),
            0U)
      << *info;
  EXPECT_EQ(j.value("virtual-size", uint64_t{0}), 8ULL << 20);

  migration::SourceMigration state;
  auto req = outgoing();
  req.overlay_only_disks = {"disk1"};
  auto switched = dc_->migrateOut(req, state);
  ASSERT_TRUE(switched) << switched.error().describe();
  // 256 KiB written since the import (plus qcow2 cluster rounding), not the 8 MiB disk.
  EXPECT_GT(switched->disk_transferred, 0U);
  EXPECT_LT(switched->disk_transferred, 1ULL << 20);
  auto running =
      cloud_->finishIncoming("web1", state.vm_was_running, Clock::now() + std::chrono::seconds(60));
  ASSERT_TRUE(running) << running.error().describe();
  // The base's patterns and the overlay's write, both read through the target's chain.
  for (const char* check : {"read -P 0x5a 0 1M", "read -P 0x77 2M 256k", "read -P 0xa5 7M 1M"}) {
    auto r = runCapture({"qemu-io", "-r", "-U", "-f", "qcow2", "-c", check, target_disk});
    ASSERT_TRUE(r) << check << ": " << r.error().describe();
    EXPECT_EQ(r->find("Pattern verification failed"), std::string::npos) << check << ": " << *r;
  }
  // The disk now has a base again: a later migration from cloud can go overlay-only too.
  auto again = cloud_->diskBases("web1");
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_EQ(again->count("disk1") != 0 ? again->at("disk1") : "", digest);
}

TEST_F(AgentMigrationTest, PrepareWithABaseThatIsNotHereChangesNothing) {
  auto in = incoming();
  in.base_digests["disk1"] = std::string(64, 'a');
  auto prepared = cloud_->prepareIncoming(in);
  ASSERT_FALSE(prepared);
  EXPECT_EQ(prepared.error().code, ErrorCode::NotFound);
  EXPECT_EQ(cloud_->get("web1").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(fs::exists(dir_ + "/cloud/images/vms/web1"));
}

TEST_F(AgentMigrationTest, FailureLeavesTheSourceRunningAndAbortLeavesNothingAtTheTarget) {
  const auto source = *dc_->get("web1");
  auto prepared = cloud_->prepareIncoming(incoming());
  ASSERT_TRUE(prepared) << prepared.error().describe();
  const auto target = *cloud_->get("web1");
  // The target's NBD server goes away (as when the tunnel breaks mid-mirror).
  {
    auto c = qmp::connectQmp(cloud_->runPaths("web1").qmp_socket, {});
    ASSERT_TRUE(c);
    ASSERT_TRUE((*c)->execute(qmp::makeCommand("nbd-server-stop")));
  }
  migration::SourceMigration state;
  auto out = dc_->migrateOut(outgoing(), state);
  ASSERT_FALSE(out);
  // Source: running as before, same process, no jobs left.
  auto r = dc_->get("web1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, VmState::Running);
  EXPECT_EQ(r->pid, source.pid);
  EXPECT_EQ(qmpStatus(*dc_), "running");
  {
    // QEMU's monitor takes one client at a time: this one closes before the agent needs it.
    auto sc = qmp::connectQmp(dc_->runPaths("web1").qmp_socket, {});
    ASSERT_TRUE(sc);
    auto jobs = (*sc)->execute(qmp::makeCommand("query-block-jobs"));
    ASSERT_TRUE(jobs);
    EXPECT_TRUE(jobs->empty()) << jobs->dump();
  }
  // Target: aborted, nothing left.
  ASSERT_TRUE(cloud_->abortIncoming("web1"));
  EXPECT_EQ(cloud_->get("web1").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(observeProcess(target.pid, target.pid_start_time).alive);
  EXPECT_FALSE(fs::exists(dir_ + "/cloud/images/vms/web1"));
  EXPECT_TRUE(cloud_->abortIncoming("web1")) << "idempotent";
  // And the VM can still be migrated afterwards.
  auto again = cloud_->prepareIncoming(incoming());
  ASSERT_TRUE(again) << again.error().describe();
  migration::SourceMigration state2;
  auto ok = dc_->migrateOut(outgoing(), state2);
  ASSERT_TRUE(ok) << ok.error().describe();
  EXPECT_TRUE(cloud_->finishIncoming("web1", state2.vm_was_running,
                                     Clock::now() + std::chrono::seconds(60)));
}

TEST_F(AgentMigrationTest, IncomingThatDoesNotFitOrExistsIsRefusedAndChangesNothing) {
  auto req = incoming();
  auto first = cloud_->prepareIncoming(req);
  ASSERT_TRUE(first) << first.error().describe();
  auto dup = cloud_->prepareIncoming(req);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  ASSERT_TRUE(cloud_->abortIncoming("web1"));
  auto spec = nlohmann::json::parse(req.spec_json);
  spec["virtual_systems"][0]["memory_mib"] = 4096;  // more than the cloud agent has
  req.spec_json = spec.dump();
  auto big = cloud_->prepareIncoming(req);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ErrorCode::CapacityExceeded);
  EXPECT_EQ(cloud_->get("web1").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(fs::exists(dir_ + "/cloud/images/vms/web1"));
}

}  // namespace
}  // namespace vandra::agent
