// The VM lifecycle on real QEMU (TCG): start, a second start refused, the agent "restarted"
// while QEMU runs (QEMU untouched and re-attached), kill, stop (ACPI ignored by a guest with
// no OS, so forced after the timeout), QEMU dying behind the agent's back (failed on restart,
// stopped with the reason while the agent runs), the event log, and the per-VM operation lock.
// The command line here is a minimal real one; the product's builder is tested in test/qemu.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <future>
#include <thread>

#include "../ovf/writer/writer_test_util.h"
#include "test/support/require.h"
#include "vandra/agent/agent_service.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/writer.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;

Result<std::vector<std::string>> minimalCommandLine(const ovf::VirtualSystemSpec& vs,
                                                    const std::vector<VmDisk>& disks,
                                                    const VmRunPaths& paths) {
  std::vector<std::string> a = {"qemu-system-x86_64",
                                "-machine",
                                "q35",
                                "-accel",
                                "tcg",
                                "-nodefaults",
                                "-no-user-config",
                                "-display",
                                "none",
                                "-m",
                                std::to_string(vs.memory_mib),
                                "-qmp",
                                "unix:" + paths.qmp_socket + ",server=on,wait=off",
                                "-qmp",
                                "unix:" + paths.event_socket + ",server=on,wait=off",
                                "-serial",
                                "file:" + paths.serial_log};
  for (const auto& d : disks) {
    a.insert(a.end(),
             {"-blockdev", R"({"driver":"qcow2","node-name":"d-)" + d.disk_id +
                               R"(","file":{"driver":"file","filename":")" + d.path + R"("}})"});
    a.insert(a.end(), {"-device", "virtio-blk-pci,drive=d-" + d.disk_id});
  }
  return a;
}

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!runCapture({"sh", "-c", "command -v qemu-system-x86_64"})) {
      VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 not installed (package qemu-system-x86)");
    }
    std::string t = "/tmp/vlc-XXXXXX";  // short: unix socket paths must stay < 108 bytes
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
    ovf::VmSpec spec;
    ovf::VirtualSystemSpec vs;
    vs.id = "vm";
    vs.vcpus = 1;
    vs.memory_mib = 64;
    vs.controllers.push_back({"virtio0", ovf::ControllerKind::Virtio, ""});
    vs.disks.push_back({.id = "disk1",
                        .capacity_bytes = 4ULL << 20,
                        .populated_bytes = std::nullopt,
                        .format = "vmdk-stream",
                        .format_uri = "",
                        .file = std::nullopt,
                        .parent = std::nullopt,
                        .controller = "virtio0",
                        .unit = 0});
    spec.virtual_systems.push_back(vs);
    ovf::testing::makeRawImage(dir_ + "/d.raw", 4ULL << 20);
    ovf::ExportOptions eo;
    eo.disk_images["disk1"] = dir_ + "/d.raw";
    ASSERT_TRUE(ovf::exportPackage(spec, dir_ + "/vm.ova", eo));
    config_ = {.state_dir = dir_ + "/s",
               .capacity = {.total = {2, 1024, 1ULL << 30}, .reserved = {}},
               .trust_store = "",
               .command_line = minimalCommandLine,
               .stop_timeout = std::chrono::milliseconds(500),
               .bridge = "",
               .import_dirs = {dir_},
               .max_upload_bytes = kDefaultMaxUploadBytes,
               .retain_departed = std::chrono::hours(24)};
    open();
    ASSERT_TRUE(svc_->importVm({.id = "web1",
                                .package = dir_ + "/vm.ova",
                                .vs = "",
                                .lax = false,
                                .from = "",
                                .upload = "",
                                .networks = {}}));
  }
  void TearDown() override {
    if (svc_) {
      if (auto r = svc_->get("web1"); r && r->pid != 0) {
        (void)signalProcess({r->pid, r->pid_start_time}, SIGKILL);
        (void)waitForExit({r->pid, r->pid_start_time}, std::chrono::seconds(10));
      }
    }
    svc_.reset();
    if (!dir_.empty()) {
      fs::remove_all(dir_);
    }
  }
  void open() {
    svc_.reset();
    auto s = AgentService::open(config_);
    ASSERT_TRUE(s) << s.error().describe();
    svc_ = std::move(*s);
  }
  std::string qmpStatus() {
    auto c = qmp::connectQmp(svc_->runPaths("web1").qmp_socket, {});
    if (!c) {
      return "unreachable";
    }
    auto st = (*c)->execute(qmp::makeCommand("query-status"));
    return st ? st->value("status", "") : "error";
  }

  std::string dir_;
  AgentConfig config_;
  std::unique_ptr<AgentService> svc_;
};

TEST_F(LifecycleTest, StartRestartReattachKillStop) {
  auto started = svc_->startVm("web1");
  ASSERT_TRUE(started) << started.error().describe();
  EXPECT_EQ(started->state, VmState::Running);
  const QemuPid qemu{started->pid, started->pid_start_time};
  EXPECT_TRUE(observeProcess(qemu.pid, qemu.start_time).alive);
  EXPECT_EQ(qmpStatus(), "running");

  auto again = svc_->startVm("web1");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::IllegalTransition);

  // Agent restart while QEMU runs: QEMU is untouched and the VM is re-attached.
  open();
  auto after = svc_->get("web1");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->state, VmState::Running);
  EXPECT_EQ(after->pid, qemu.pid);
  EXPECT_TRUE(observeProcess(qemu.pid, qemu.start_time).alive);
  EXPECT_EQ(qmpStatus(), "running");

  auto killed = svc_->killVm("web1");
  ASSERT_TRUE(killed) << killed.error().describe();
  EXPECT_EQ(killed->state, VmState::Stopped);
  EXPECT_FALSE(observeProcess(qemu.pid, qemu.start_time).alive);

  auto restarted = svc_->startVm("web1");
  ASSERT_TRUE(restarted) << restarted.error().describe();
  const QemuPid second{restarted->pid, restarted->pid_start_time};
  auto stopped = svc_->stopVm("web1");  // no OS answers ACPI: forced after 500 ms
  ASSERT_TRUE(stopped) << stopped.error().describe();
  EXPECT_EQ(stopped->state, VmState::Stopped);
  EXPECT_FALSE(observeProcess(second.pid, second.start_time).alive);
  auto del = svc_->deleteVm("web1");
  ASSERT_TRUE(del) << del.error().describe();
}

TEST_F(LifecycleTest, QemuDyingWhileTheAgentIsDownIsMarkedFailed) {
  auto started = svc_->startVm("web1");
  ASSERT_TRUE(started) << started.error().describe();
  svc_.reset();  // agent down
  ASSERT_TRUE(signalProcess({started->pid, started->pid_start_time}, SIGKILL));
  ASSERT_TRUE(waitForExit({started->pid, started->pid_start_time}, std::chrono::seconds(10)));
  open();
  auto r = svc_->get("web1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, VmState::Failed);
  EXPECT_EQ(r->pid, 0);
  // A failed VM can be started again.
  auto again = svc_->startVm("web1");
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_EQ(again->state, VmState::Running);
}

TEST_F(LifecycleTest, RunningVmCannotBeDeletedAndStartFailureLeavesNoQemu) {
  ASSERT_TRUE(svc_->startVm("web1"));
  auto del = svc_->deleteVm("web1");
  ASSERT_FALSE(del);
  EXPECT_EQ(del.error().code, ErrorCode::IllegalTransition);
  ASSERT_TRUE(svc_->killVm("web1"));
  // A command line QEMU rejects: Failed, and no process is left.
  config_.command_line = [](const ovf::VirtualSystemSpec&, const std::vector<VmDisk>&,
                            const VmRunPaths&) -> Result<std::vector<std::string>> {
    return std::vector<std::string>{"qemu-system-x86_64", "-bogus-option"};
  };
  open();
  auto bad = svc_->startVm("web1");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::Subprocess);
  EXPECT_EQ(svc_->get("web1")->state, VmState::Failed);
  EXPECT_EQ(svc_->get("web1")->pid, 0);
}

// Waits (bounded) for an event of @p kind/@p name about web1 after @p since; returns it.
std::optional<AgentEvent> awaitEvent(EventLog& log, uint64_t since, const std::string& kind,
                                     const std::string& name) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    const EventPage page = log.read(since, "web1", 100, std::chrono::seconds(1));
    for (const auto& e : page.events) {
      if (e.kind == kind && e.name == name) {
        return e;
      }
      since = e.seq;
    }
  }
  return std::nullopt;
}

TEST_F(LifecycleTest, EventsFromQemuAndStateChangesReachTheLog) {
  const uint64_t before = svc_->events().read(0, "", 1000, std::chrono::milliseconds(0)).last_seq;
  auto started = svc_->startVm("web1");
  ASSERT_TRUE(started) << started.error().describe();
  auto running = awaitEvent(svc_->events(), before, "state", "running");
  ASSERT_TRUE(running);
  EXPECT_EQ(running->data.value("from", ""), "starting");
  // Pause and resume through the command monitor: QEMU's STOP and RESUME arrive on the event
  // monitor the agent holds.
  auto c = qmp::connectQmp(svc_->runPaths("web1").qmp_socket, {});
  ASSERT_TRUE(c) << c.error().describe();
  ASSERT_TRUE((*c)->execute(qmp::makeCommand("stop")));
  ASSERT_TRUE(awaitEvent(svc_->events(), running->seq, "qmp", "STOP"));
  ASSERT_TRUE((*c)->execute(qmp::makeCommand("cont")));
  auto resumed = awaitEvent(svc_->events(), running->seq, "qmp", "RESUME");
  ASSERT_TRUE(resumed);
  EXPECT_GT(resumed->time_us, 0);
  // QEMU told to quit behind the agent's back: nobody asked the agent, so the VM failed, with
  // the reason.
  (void)(*c)->execute(qmp::makeCommand("quit"));
  auto stopped = awaitEvent(svc_->events(), resumed->seq, "state", "failed");
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->data.value("reason", ""), "qemu-exited");
  ASSERT_TRUE(awaitEvent(svc_->events(), resumed->seq, "qmp", "SHUTDOWN"));
  auto r = svc_->get("web1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, VmState::Failed);
  EXPECT_EQ(r->pid, 0);
}

TEST_F(LifecycleTest, QemuKilledFromOutsideWhileTheAgentRunsIsRecorded) {
  auto started = svc_->startVm("web1");
  ASSERT_TRUE(started) << started.error().describe();
  const uint64_t since = svc_->events().read(0, "", 1000, std::chrono::milliseconds(0)).last_seq;
  ASSERT_TRUE(signalProcess({started->pid, started->pid_start_time}, SIGKILL));
  auto stopped = awaitEvent(svc_->events(), since, "state", "failed");
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->data.value("reason", ""), "qemu-exited");
  EXPECT_EQ(svc_->get("web1")->pid, 0);
  // And it can be started again.
  auto again = svc_->startVm("web1");
  ASSERT_TRUE(again) << again.error().describe();
}

TEST_F(LifecycleTest, SecondRequestWhileOneRunsIsBusyAndChangesNothing) {
  config_.stop_timeout = std::chrono::seconds(3);  // no OS answers ACPI: the stop takes 3 s
  open();
  ASSERT_TRUE(svc_->startVm("web1"));
  const uint64_t since = svc_->events().read(0, "", 1000, std::chrono::milliseconds(0)).last_seq;
  auto stop = std::async(std::launch::async, [&] { return svc_->stopVm("web1"); });
  // "stopping" is logged while the stop holds the VM's lock.
  ASSERT_TRUE(awaitEvent(svc_->events(), since, "state", "stopping"));
  auto kill = svc_->killVm("web1");
  ASSERT_FALSE(kill);
  EXPECT_EQ(kill.error().code, ErrorCode::Busy);
  auto del = svc_->deleteVm("web1");
  ASSERT_FALSE(del);
  EXPECT_EQ(del.error().code, ErrorCode::Busy);
  auto stopped = stop.get();
  ASSERT_TRUE(stopped) << stopped.error().describe();
  EXPECT_EQ(stopped->state, VmState::Stopped);
  EXPECT_EQ(stopped->pid, 0);
}

TEST_F(LifecycleTest, CreateMakesASecondVmOnTheSameBaseWithoutCopying) {
  auto made = svc_->createVm("web2", "web1");
  ASSERT_TRUE(made) << made.error().describe();
  EXPECT_EQ(made->state, VmState::Created);
  auto backing = [&](const std::string& vm) {
    auto info = runCapture({"qemu-img", "info", "--output=json", "-U",
                            config_.state_dir + "/images/vms/" + vm + "/disk1.qcow2"});
    EXPECT_TRUE(info);
    return info ? nlohmann::json::parse(*info).value("full-backing-filename", std::string())
                : std::string();
  };
  EXPECT_FALSE(backing("web2").empty());
  EXPECT_EQ(backing("web2"), backing("web1"));
  auto again = svc_->createVm("web2", "web1");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::AlreadyExists);
  auto missing = svc_->createVm("web3", "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
  EXPECT_FALSE(fs::exists(config_.state_dir + "/images/vms/web3"));
  // Both run at once, each on its own overlay.
  ASSERT_TRUE(svc_->startVm("web1"));
  auto second = svc_->startVm("web2");
  ASSERT_TRUE(second) << second.error().describe();
  EXPECT_EQ(second->state, VmState::Running);
  ASSERT_TRUE(svc_->killVm("web2"));
  ASSERT_TRUE(svc_->deleteVm("web2"));
  EXPECT_FALSE(fs::exists(config_.state_dir + "/images/vms/web2"));
}

TEST_F(LifecycleTest, CreateThatDoesNotFitChangesNothing) {
  config_.capacity.total = {2, 100, 1ULL << 30};  // room for one 64 MiB VM only
  open();
  auto made = svc_->createVm("web2", "web1");
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error().code, ErrorCode::CapacityExceeded);
  EXPECT_EQ(svc_->get("web2").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(fs::exists(config_.state_dir + "/images/vms/web2"));
}

}  // namespace
}  // namespace vandra::agent
