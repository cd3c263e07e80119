// Both agents' halves of a live migration on real QEMU (TCG), in one process: a dc agent and
// a cloud agent (two state folders), the real command-line builder, the QMP engine, and local
// unix sockets where production has the site tunnel. The VM has no OS (the engine's own tests
// migrate the test guest); what is checked here is the agent's part: records, disks,
// processes, locks, and that a failure leaves the source as it was and the target empty.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <future>

#include "../ovf/writer/writer_test_util.h"
#include "vandra/agent/agent_service.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/writer.h"
#include "vandra/qemu/cmdline_builder.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

Result<std::vector<std::string>> builderCommandLine(const ovf::VirtualSystemSpec& vs, const std::vector<VmDisk>& disks,
                                                    const VmRunPaths& paths) {
  qemu::QemuRunConfig rc;
  rc.accel = "tcg";
  rc.qmp_socket = paths.qmp_socket;
  rc.qmp_event_socket = paths.event_socket;
  rc.serial_log = paths.serial_log;
  rc.pidfile = paths.dir + "/qemu.pid";
  for (const auto& d : disks) {
    rc.disk_overlays[d.disk_id] = d.path;
  }
  if (paths.incoming) {
    rc.incoming = "defer";
    rc.start_paused = true;
  }
  return qemu::buildCommandLine(vs, rc);
}

class AgentMigrationTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (!runCapture({"sh", "-c", "command -v qemu-system-x86_64"})) {
      GTEST_SKIP() << "qemu-system-x86_64 not installed";
    }
    std::string t = "/tmp/vam-XXXXXX";  // short: unix socket paths stay < 108 bytes
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
    ovf::VmSpec spec;
    ovf::VirtualSystemSpec vs;
    vs.id = "vm";
    vs.vcpus = 1;
    vs.memory_mib = 64;
    vs.controllers.push_back({"virtio0", ovf::ControllerKind::Virtio, ""});
    vs.disks.push_back({.id = "disk1", .capacity_bytes = 8ULL << 20, .populated_bytes = std::nullopt,
                        .format = "vmdk-stream", .format_uri = "", .file = std::nullopt, .parent = std::nullopt,
                        .controller = "virtio0", .unit = 0});
    spec.virtual_systems.push_back(vs);
    ovf::testing::makeRawImage(dir_ + "/d.raw", 8ULL << 20);
    // Recognisable content at both ends of the disk: the target must end up with it.
    ASSERT_TRUE(runCapture({"qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", "-c", "write -P 0xa5 7M 1M", dir_ + "/d.raw"}));
    ovf::ExportOptions eo;
    eo.disk_images["disk1"] = dir_ + "/d.raw";
    ASSERT_TRUE(ovf::exportPackage(spec, dir_ + "/vm.ova", eo));
    for (auto [name, svc] : {std::pair<const char*, std::unique_ptr<AgentService>*>{"dc", &dc_}, std::pair<const char*, std::unique_ptr<AgentService>*>{"cloud", &cloud_}}) {
      AgentConfig c{.state_dir = dir_ + "/" + std::string(name), .capacity = {.total = {2, 1024, 1ULL << 30}, .reserved = {}},
                    .trust_store = "", .command_line = builderCommandLine,
                    .stop_timeout = std::chrono::milliseconds(500), .bridge = ""};
      auto s = AgentService::open(c);
      ASSERT_TRUE(s) << s.error().describe();
      *svc = std::move(*s);
    }
    ASSERT_TRUE(dc_->importVm({.id = "web1", .package = dir_ + "/vm.ova", .vs = "", .lax = false, .from = ""}));
    auto started = dc_->startVm("web1");
    ASSERT_TRUE(started) << started.error().describe();
  }
  void TearDown() override {
    for (auto* svc : {&dc_, &cloud_}) {
      if (*svc) {
        if (auto r = (*svc)->get("web1"); r && r->pid != 0) {
          (void)signalProcess({r->pid, r->pid_start_time}, SIGKILL);
          (void)waitForExit({r->pid, r->pid_start_time}, std::chrono::seconds(10));
        }
      }
      svc->reset();
    }
    if (!dir_.empty()) {
      fs::remove_all(dir_);
    }
  }
  IncomingRequest incoming() {
    return {.id = "web1", .spec_json = dc_->get("web1")->spec_json, .nbd_socket = dir_ + "/nbd.sock",
            .migration_socket = dir_ + "/mig.sock"};
  }
  OutgoingRequest outgoing() {
    OutgoingRequest o;
    o.id = "web1";
    o.nbd_socket = dir_ + "/nbd.sock";
    o.migration_socket = dir_ + "/mig.sock";
    o.deadline = Clock::now() + std::chrono::seconds(120);
    return o;
  }
  std::string qmpStatus(AgentService& svc) {
    auto c = qmp::connectQmp(svc.runPaths("web1").qmp_socket, {});
    if (!c) {
      return "unreachable";
    }
    auto st = (*c)->execute(qmp::makeCommand("query-status"));
    return st ? st->value("status", "") : "error";
  }

  std::string dir_;
  std::unique_ptr<AgentService> dc_;
  std::unique_ptr<AgentService> cloud_;
};

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
  for (auto deadline = Clock::now() + std::chrono::seconds(30); !started && Clock::now() < deadline;) {
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

  auto running = cloud_->finishIncoming("web1", state.vm_was_running, Clock::now() + std::chrono::seconds(60));
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
    migrated_in = migrated_in || (e.name == "running" && e.data.value("reason", "") == "migrated-in");
  }
  EXPECT_TRUE(migrated_in);
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
  EXPECT_TRUE(cloud_->finishIncoming("web1", state2.vm_was_running, Clock::now() + std::chrono::seconds(60)));
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

} // namespace
} // namespace vandra::agent
