// Real QEMU accepts what buildCommandLine produces: every disk controller kind with real
// (tiny) qcow2 overlays, both QMP monitors, serial log and pidfile; the VM stays paused (-S,
// no bootable disk). No NICs: tap devices need privileges and product code has no user
// networking. Skips only when qemu-system-x86_64 / qemu-img (or, for the EFI case, the ovmf
// package) are not installed.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>
#include <cstring>
#include <filesystem>
#include <set>

#include "qmp_commands.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/qemu/cmdline_builder.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::qemu {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

bool onPath(const std::string& prog) {
  const char* path = std::getenv("PATH");
  std::string p = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    const size_t end = std::min(p.find(':', start), p.size());
    if (::access((p.substr(start, end - start) + "/" + prog).c_str(), X_OK) == 0) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

ovf::ControllerSpec controller(std::string id, ovf::ControllerKind kind) {
  ovf::ControllerSpec c;
  c.id = std::move(id);
  c.kind = kind;
  return c;
}

ovf::DiskSpec disk(std::string id, std::string ctrl, int unit) {
  ovf::DiskSpec d;
  d.id = std::move(id);
  d.capacity_bytes = 1 << 20;
  d.format = "qcow2";
  d.controller = std::move(ctrl);
  d.unit = unit;
  return d;
}

TEST(CmdlineQemuIntegrationTest, RealQemuAcceptsEveryDiskControllerKind) {
  if (!onPath("qemu-system-x86_64") || !onPath("qemu-img")) {
    GTEST_SKIP() << "qemu-system-x86_64 or qemu-img not installed "
                    "(apt-get install qemu-system-x86 qemu-utils)";
  }
  std::array<char, 32> tmpl{};
  std::strncpy(tmpl.data(), "/tmp/vq-XXXXXX", tmpl.size() - 1);
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl.data();
  auto cleanup = defer([&] {
    std::error_code ec;
    fs::remove_all(dir, ec);
  });

  ovf::VirtualSystemSpec vs;
  vs.id = "itest";
  vs.name = "itest";
  vs.vcpus = 2;
  vs.cores_per_socket = 2;
  vs.memory_mib = 64;
  vs.controllers = {controller("scsi0", ovf::ControllerKind::Scsi),
                    controller("ide0", ovf::ControllerKind::Ide),
                    controller("ide1", ovf::ControllerKind::Ide),
                    controller("sata0", ovf::ControllerKind::Sata),
                    controller("nvme0", ovf::ControllerKind::Nvme),
                    controller("virtio0", ovf::ControllerKind::Virtio)};
  vs.disks = {disk("vda", "virtio0", 0), disk("sda", "scsi0", 0), disk("sdb", "scsi0", 3),
              disk("hda", "ide0", 0),    disk("hdd", "ide1", 1),  disk("sata", "sata0", 2),
              disk("nvme", "nvme0", 0)};

  QemuRunConfig cfg;
  cfg.qmp_socket = dir + "/qmp.sock";
  cfg.qmp_event_socket = dir + "/ev.sock";
  cfg.serial_log = dir + "/serial.log";
  cfg.pidfile = dir + "/qemu.pid";
  for (const auto& d : vs.disks) {
    const std::string path = dir + "/" + d.id + ".qcow2";
    auto made = runCapture({"qemu-img", "create", "-q", "-f", "qcow2", path, "1M"});
    ASSERT_TRUE(made) << made.error().describe();
    cfg.disk_overlays[d.id] = path;
  }
  auto argv = buildCommandLine(vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  argv->push_back("-S");

  auto qemu = Subprocess::start(*argv, {});
  ASSERT_TRUE(qemu) << qemu.error().describe();
  qmp::QmpClientOptions o;
  o.connect_timeout = 30s;
  auto client = qmp::connectQmp(cfg.qmp_socket, o);
  if (!client) {
    ::kill(qemu->pid(), SIGKILL);  // usually already gone: QEMU refused the command line
    (void)qemu->wait();
    FAIL() << client.error().describe() << "\nqemu stderr: " << qemu->stderrText();
  }
  // The second monitor carries events only (the agent's design): RESUME/STOP caused by
  // commands on the first monitor arrive here.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> seen;
  qmp::QmpClientOptions eo = o;
  eo.on_event = [&](const qmp::QmpEvent& e) {
    std::lock_guard lock(mu);
    seen.push_back(e.name);
    cv.notify_all();
  };
  auto events = qmp::connectQmp(cfg.qmp_event_socket, eo);
  ASSERT_TRUE(events) << events.error().describe();

  auto st = qmp::execute<qmp::QueryStatus>(**client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_EQ(st->status, "prelaunch");
  EXPECT_TRUE(fs::exists(cfg.pidfile));
  EXPECT_TRUE(fs::exists(cfg.serial_log));

  // Every disk is a file -> qcow2 node pair with the names the builder chose.
  auto nodes = (*client)->execute(qmp::makeCommand("query-named-block-nodes"));
  ASSERT_TRUE(nodes) << nodes.error().describe();
  std::set<std::string> names;
  for (const auto& n : *nodes) {
    if (n.is_object() && n.contains("node-name") && n["node-name"].is_string()) {
      names.insert(n["node-name"].get<std::string>());
    }
  }
  for (const auto& d : vs.disks) {
    EXPECT_EQ(names.count("file-" + d.id), 1u) << d.id;
    EXPECT_EQ(names.count("fmt-" + d.id), 1u) << d.id;
  }

  ASSERT_TRUE((*client)->execute(qmp::makeCommand("cont")));
  ASSERT_TRUE((*client)->execute(qmp::makeCommand("stop")));
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] {
      return std::find(seen.begin(), seen.end(), "STOP") != seen.end();
    }));
    ASSERT_GE(seen.size(), 2u);
    EXPECT_EQ(seen[0], "RESUME");
  }

  auto q = qmp::execute<qmp::Quit>(**client);
  if (!q) {
    EXPECT_EQ(q.error().code, ErrorCode::QmpDisconnected) << q.error().describe();
  }
  auto status = qemu->wait();
  ASSERT_TRUE(status) << status.error().describe();
  EXPECT_TRUE(status->ok()) << qemu->stderrText();
}

TEST(CmdlineQemuIntegrationTest, RealQemuAcceptsEfiPflash) {
  const std::string code = "/usr/share/OVMF/OVMF_CODE.fd";
  const std::string vars = "/usr/share/OVMF/OVMF_VARS.fd";
  if (!onPath("qemu-system-x86_64") || !onPath("qemu-img")) {
    GTEST_SKIP() << "qemu-system-x86_64 or qemu-img not installed";
  }
  if (!fs::exists(code) || !fs::exists(vars)) {
    GTEST_SKIP() << "OVMF not installed (apt-get install ovmf)";
  }
  std::array<char, 32> tmpl{};
  std::strncpy(tmpl.data(), "/tmp/vq-XXXXXX", tmpl.size() - 1);
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl.data();
  auto cleanup = defer([&] {
    std::error_code ec;
    fs::remove_all(dir, ec);
  });

  ovf::VirtualSystemSpec vs;
  vs.id = "efi";
  vs.memory_mib = 128;
  vs.firmware = ovf::Firmware::Efi;
  vs.disks = {disk("vda", "", 0)};
  QemuRunConfig cfg;
  cfg.qmp_socket = dir + "/qmp.sock";
  cfg.qmp_event_socket = dir + "/ev.sock";
  cfg.serial_log = dir + "/serial.log";
  cfg.pidfile = dir + "/qemu.pid";
  cfg.ovmf_code = code;
  cfg.ovmf_vars = dir + "/OVMF_VARS.fd";
  fs::copy_file(vars, *cfg.ovmf_vars);
  cfg.disk_overlays["vda"] = dir + "/vda.qcow2";
  auto made = runCapture({"qemu-img", "create", "-q", "-f", "qcow2", dir + "/vda.qcow2", "1M"});
  ASSERT_TRUE(made) << made.error().describe();
  auto argv = buildCommandLine(vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  argv->push_back("-S");

  auto qemu = Subprocess::start(*argv, {});
  ASSERT_TRUE(qemu) << qemu.error().describe();
  qmp::QmpClientOptions o;
  o.connect_timeout = 30s;
  auto client = qmp::connectQmp(cfg.qmp_socket, o);
  if (!client) {
    ::kill(qemu->pid(), SIGKILL);
    (void)qemu->wait();
    FAIL() << client.error().describe() << "\nqemu stderr: " << qemu->stderrText();
  }
  auto st = qmp::execute<qmp::QueryStatus>(**client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_EQ(st->status, "prelaunch");
  (void)qmp::execute<qmp::Quit>(**client);
  auto status = qemu->wait();
  ASSERT_TRUE(status) << status.error().describe();
  EXPECT_TRUE(status->ok()) << qemu->stderrText();
}

TEST(CmdlineQemuIntegrationTest, IncomingDeferWaitsForMigration) {
  if (!onPath("qemu-system-x86_64") || !onPath("qemu-img")) {
    GTEST_SKIP() << "qemu-system-x86_64 or qemu-img not installed";
  }
  std::array<char, 32> tmpl{};
  std::strncpy(tmpl.data(), "/tmp/vq-XXXXXX", tmpl.size() - 1);
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl.data();
  auto cleanup = defer([&] {
    std::error_code ec;
    fs::remove_all(dir, ec);
  });
  ovf::VirtualSystemSpec vs;
  vs.id = "dst";
  vs.memory_mib = 64;
  vs.disks = {disk("vda", "", 0)};
  QemuRunConfig cfg;
  cfg.qmp_socket = dir + "/qmp.sock";
  cfg.qmp_event_socket = dir + "/ev.sock";
  cfg.serial_log = dir + "/serial.log";
  cfg.pidfile = dir + "/qemu.pid";
  cfg.incoming = "defer";
  cfg.disk_overlays["vda"] = dir + "/vda.qcow2";
  auto made = runCapture({"qemu-img", "create", "-q", "-f", "qcow2", dir + "/vda.qcow2", "1M"});
  ASSERT_TRUE(made) << made.error().describe();
  auto argv = buildCommandLine(vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();  // no -S: -incoming alone keeps it stopped

  auto qemu = Subprocess::start(*argv, {});
  ASSERT_TRUE(qemu) << qemu.error().describe();
  qmp::QmpClientOptions o;
  o.connect_timeout = 30s;
  auto client = qmp::connectQmp(cfg.qmp_socket, o);
  if (!client) {
    ::kill(qemu->pid(), SIGKILL);
    (void)qemu->wait();
    FAIL() << client.error().describe() << "\nqemu stderr: " << qemu->stderrText();
  }
  auto st = qmp::execute<qmp::QueryStatus>(**client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_EQ(st->status, "inmigrate");
  EXPECT_FALSE(st->running);
  (void)qmp::execute<qmp::Quit>(**client);
  auto status = qemu->wait();
  ASSERT_TRUE(status) << status.error().describe();
  EXPECT_TRUE(status->ok()) << qemu->stderrText();
}

} // namespace
} // namespace vandra::qemu
