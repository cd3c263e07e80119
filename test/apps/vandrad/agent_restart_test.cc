// vandrad as a process: a VM imported and started through the API keeps running while the
// agent is killed (SIGKILL) and restarted, and the new agent re-attaches to it; then a stop
// through the API. Real QEMU (TCG), real mutual TLS, the product's command-line builder.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "../../ovf/writer/writer_test_util.h"
#include "agent_process.h"
#include "test/support/require.h"
#include "vandra/agent/qemu_process.h"
#include "vandra/agent/recovery.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/writer.h"
#include "vandra/pki/pki.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TEST(AgentRestartTest, VmSurvivesAgentKillAndIsReattached) {
  if (!runCapture({"sh", "-c", "command -v qemu-system-x86_64"})) {
    VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 not installed (package qemu-system-x86)");
  }
  std::string dir = "/tmp/var-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  issueAgentPki(dir);
  if (HasFatalFailure()) {
    return;
  }
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
  ovf::testing::makeRawImage(dir + "/d.raw", 4ULL << 20);
  ovf::ExportOptions eo;
  eo.disk_images["disk1"] = dir + "/d.raw";
  ASSERT_TRUE(ovf::exportPackage(spec, dir + "/vm.ova", eo));

  auto client = [&](int port) {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", port, dir + "/pki/op.crt",
                                                  dir + "/pki/op.key");
    c->set_ca_cert_path((dir + "/pki/ca.crt").c_str());
    c->enable_server_certificate_verification(true);
    c->set_read_timeout(120);
    return c;
  };
  QemuPid qemu;
  {
    AgentProcess agent(dir, {"--import-dir", dir});
    ASSERT_GT(agent.port(), 0);
    auto c = client(agent.port());
    auto imp = c->Post("/v1/vms", json{{"id", "web1"}, {"package", dir + "/vm.ova"}}.dump(),
                       "application/json");
    ASSERT_TRUE(imp);
    ASSERT_EQ(imp->status, 201) << imp->body;
    auto start = c->Post("/v1/vms/web1/start", "{}", "application/json");
    ASSERT_TRUE(start);
    ASSERT_EQ(start->status, 200) << start->body;
    const json j = json::parse(start->body);
    EXPECT_EQ(j["state"], "running");
    qemu.pid = j["pid"].get<int64_t>();
    qemu.start_time = processStartTime(qemu.pid);
    agent.killHard();
  }
  EXPECT_TRUE(observeProcess(qemu.pid, qemu.start_time).alive) << "QEMU must outlive its agent";
  {
    AgentProcess agent(dir, {"--import-dir", dir});
    ASSERT_GT(agent.port(), 0);
    auto c = client(agent.port());
    auto show = c->Get("/v1/vms/web1");
    ASSERT_TRUE(show);
    const json j = json::parse(show->body);
    EXPECT_EQ(j["state"], "running");
    EXPECT_EQ(j["pid"], qemu.pid);
    auto stop = c->Post("/v1/vms/web1/stop", "{}", "application/json");
    ASSERT_TRUE(stop);
    EXPECT_EQ(stop->status, 200) << stop->body;
    EXPECT_FALSE(observeProcess(qemu.pid, qemu.start_time).alive);
  }
  (void)signalProcess(qemu, SIGKILL);  // whatever happened above, leave no QEMU behind
  (void)waitForExit(qemu, std::chrono::seconds(10));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace vandra::agent
