// Two agents (dc and cloud state folders) in one process with the real command-line builder,
// a started VM "web1" at dc with a patterned 8 MiB disk, and local unix sockets where
// production has the site tunnel. Shared by the agent's and the orchestrator's migration tests.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "../ovf/writer/writer_test_util.h"
#include "test/support/require.h"
#include "vandra/agent/agent_service.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/writer.h"
#include "vandra/qemu/cmdline_builder.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::agent::testing {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

inline Result<std::vector<std::string>> builderCommandLine(const ovf::VirtualSystemSpec& vs,
                                                           const std::vector<VmDisk>& disks,
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

class TwoAgentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!runCapture({"sh", "-c", "command -v qemu-system-x86_64"})) {
      VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 not installed");
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
    vs.disks.push_back({.id = "disk1",
                        .capacity_bytes = 8ULL << 20,
                        .populated_bytes = std::nullopt,
                        .format = "vmdk-stream",
                        .format_uri = "",
                        .file = std::nullopt,
                        .parent = std::nullopt,
                        .controller = "virtio0",
                        .unit = 0});
    spec.virtual_systems.push_back(vs);
    ovf::testing::makeRawImage(dir_ + "/d.raw", 8ULL << 20);
    // Recognisable content at both ends of the disk: the target must end up with it.
    ASSERT_TRUE(runCapture({"qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", "-c",
                            "write -P 0xa5 7M 1M", dir_ + "/d.raw"}));
    ovf::ExportOptions eo;
    eo.disk_images["disk1"] = dir_ + "/d.raw";
    ASSERT_TRUE(ovf::exportPackage(spec, dir_ + "/vm.ova", eo));
    for (auto [name, svc] :
         {std::pair<const char*, std::unique_ptr<AgentService>*>{"dc", &dc_},
          std::pair<const char*, std::unique_ptr<AgentService>*>{"cloud", &cloud_}}) {
      AgentConfig c{.state_dir = dir_ + "/" + std::string(name),
                    .capacity = {.total = {2, 1024, 1ULL << 30}, .reserved = {}},
                    .trust_store = "",
                    .command_line = builderCommandLine,
                    .stop_timeout = std::chrono::milliseconds(500),
                    .bridge = "",
                    .import_dirs = {dir_},
                    .max_upload_bytes = kDefaultMaxUploadBytes,
                    .retain_departed = std::chrono::hours(24)};
      auto s = AgentService::open(c);
      ASSERT_TRUE(s) << s.error().describe();
      *svc = std::move(*s);
    }
    ASSERT_TRUE(dc_->importVm({.id = "web1",
                               .package = dir_ + "/vm.ova",
                               .vs = "",
                               .lax = false,
                               .from = "",
                               .upload = "",
                               .networks = {}}));
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
    return {.id = "web1",
            .spec_json = dc_->get("web1")->spec_json,
            .nbd_socket = dir_ + "/nbd.sock",
            .migration_socket = dir_ + "/mig.sock",
            .base_digests = {},
            .migration_id = ""};
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

}  // namespace vandra::agent::testing
