// Real QEMU accepts what buildCommandLine produces: every disk controller kind with real
// (tiny) qcow2 overlays, CD-ROMs and floppies with and without images, both QMP monitors,
// serial log and pidfile; the VM stays paused (-S, no bootable disk). NICs only in the
// set_link test, with their tap backends swapped for QEMU's internal hub (taps need
// privileges and product code has no user networking). Skips only when qemu-system-x86_64 /
// qemu-img (or, for the EFI case, the ovmf package) are not installed.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "qmp_commands.h"
#include "test/support/require.h"
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
    VANDRA_SKIP_OR_FAIL(
        "qemu-system-x86_64 or qemu-img not installed "
        "(apt-get install qemu-system-x86 qemu-utils)");
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
    ASSERT_TRUE(cv.wait_for(
        lock, 10s, [&] { return std::find(seen.begin(), seen.end(), "STOP") != seen.end(); }));
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

ovf::MediaSpec medium(ovf::MediaKind kind, std::string ctrl, std::optional<std::string> file) {
  ovf::MediaSpec m;
  m.kind = kind;
  m.controller = std::move(ctrl);
  m.file = std::move(file);
  return m;
}

// Any file is a raw read-only medium; QEMU does not look inside.
void writeZeros(const std::string& path, size_t bytes) {
  std::ofstream(path, std::ios::binary).close();
  fs::resize_file(path, bytes);
}

struct PausedQemu {
  Subprocess process;
  qmp::QmpClientPtr client;
};

// Starts @p argv and connects to its command monitor; on failure QEMU's stderr is in the error.
Result<PausedQemu> startAndConnect(const std::vector<std::string>& argv, const std::string& sock) {
  VANDRA_TRY_ASSIGN(auto qemu, Subprocess::start(argv, {}));
  qmp::QmpClientOptions o;
  o.connect_timeout = 30s;  // TCG start-up on a loaded 2-core machine
  auto client = qmp::connectQmp(sock, o);
  if (!client) {
    ::kill(qemu.pid(), SIGKILL);  // usually already gone: QEMU refused the command line
    (void)qemu.wait();
    Error e = client.error();
    e.message += "\nqemu stderr: " + qemu.stderrText();
    return fail(std::move(e));
  }
  return PausedQemu{std::move(qemu), std::move(*client)};
}

void quitAndWait(PausedQemu& q) {
  auto r = qmp::execute<qmp::Quit>(*q.client);
  if (!r) {  // QEMU may close the socket right after (or before flushing) the reply
    EXPECT_EQ(r.error().code, ErrorCode::QmpDisconnected) << r.error().describe();
  }
  auto status = q.process.wait();
  ASSERT_TRUE(status) << status.error().describe();
  EXPECT_TRUE(status->ok()) << q.process.stderrText();
}

TEST(CmdlineQemuIntegrationTest, RealQemuAcceptsCdromsAndFloppies) {
  if (!onPath("qemu-system-x86_64") || !onPath("qemu-img")) {
    VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 or qemu-img not installed");
  }
  std::array<char, 32> tmpl{};
  std::strncpy(tmpl.data(), "/tmp/vq-XXXXXX", tmpl.size() - 1);
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl.data();
  auto cleanup = defer([&] {
    std::error_code ec;
    fs::remove_all(dir, ec);
  });

  using ovf::MediaKind;
  ovf::VirtualSystemSpec vs;
  vs.id = "media";
  vs.memory_mib = 64;
  vs.controllers = {controller("ide0", ovf::ControllerKind::Ide),
                    controller("ide1", ovf::ControllerKind::Ide),
                    controller("sata0", ovf::ControllerKind::Sata),
                    controller("scsi0", ovf::ControllerKind::Scsi),
                    controller("floppy0", ovf::ControllerKind::Floppy)};
  vs.disks = {disk("hda", "ide0", 0), disk("sda", "scsi0", 0)};
  vs.media = {medium(MediaKind::Cdrom, "ide1", "install.iso"),      // cdrom0: IDE + ISO
              medium(MediaKind::Cdrom, "sata0", "missing.iso"),     // cdrom1: SATA, unmapped
              medium(MediaKind::Cdrom, "scsi0", "ovf-env.iso"),     // cdrom2: SCSI + ISO
              medium(MediaKind::Cdrom, "", std::nullopt),           // cdrom3: AHCI, empty
              medium(MediaKind::Floppy, "floppy0", "drivers.flp"),  // floppy0: image
              medium(MediaKind::Floppy, "", std::nullopt)};         // floppy1: empty

  QemuRunConfig cfg;
  cfg.qmp_socket = dir + "/qmp.sock";
  cfg.qmp_event_socket = dir + "/ev.sock";
  cfg.serial_log = dir + "/serial.log";
  cfg.pidfile = dir + "/qemu.pid";
  cfg.start_paused = true;
  for (const auto& d : vs.disks) {
    const std::string path = dir + "/" + d.id + ".qcow2";
    auto made = runCapture({"qemu-img", "create", "-q", "-f", "qcow2", path, "1M"});
    ASSERT_TRUE(made) << made.error().describe();
    cfg.disk_overlays[d.id] = path;
  }
  writeZeros(dir + "/install.iso", 64 * 2048);
  writeZeros(dir + "/ovf-env.iso", 2048);
  writeZeros(dir + "/drivers.flp", 1474560);  // 1.44 MB: a geometry the floppy model knows
  cfg.media_files = {{"cdrom0", dir + "/install.iso"},
                     {"cdrom2", dir + "/ovf-env.iso"},
                     {"floppy0", dir + "/drivers.flp"}};
  EXPECT_EQ(unbackedMedia(vs, cfg), std::vector<std::string>{"cdrom1"});
  auto argv = buildCommandLine(vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();

  auto q = startAndConnect(*argv, cfg.qmp_socket);
  ASSERT_TRUE(q) << q.error().describe();
  auto st = qmp::execute<qmp::QueryStatus>(*q->client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_EQ(st->status, "prelaunch");  // start_paused

  // query-block lists every drive by its device id ("qdev"): removable, with the read-only
  // raw node the builder named, or with no medium at all.
  auto blocks = q->client->execute(qmp::makeCommand("query-block"));
  ASSERT_TRUE(blocks) << blocks.error().describe();
  std::map<std::string, nlohmann::json> by_qdev;
  for (const auto& b : *blocks) {
    by_qdev[b.value("qdev", "")] = b;
  }
  const std::map<std::string, bool> expect_medium = {{"cdrom0", true},  {"cdrom1", false},
                                                     {"cdrom2", true},  {"cdrom3", false},
                                                     {"floppy0", true}, {"floppy1", false}};
  for (const auto& [id, has_medium] : expect_medium) {
    SCOPED_TRACE(id);
    auto b = by_qdev.find(id);
    ASSERT_NE(b, by_qdev.end()) << blocks->dump();
    EXPECT_TRUE(b->second.value("removable", false));
    ASSERT_EQ(b->second.contains("inserted"), has_medium) << b->second.dump();
    if (has_medium) {
      EXPECT_EQ(b->second["inserted"].value("node-name", ""), "fmt-" + id);
      EXPECT_TRUE(b->second["inserted"].value("ro", false));
      EXPECT_EQ(b->second["inserted"].value("drv", ""), "raw");
    }
  }
  // The guest can start with them (the firmware probes every drive).
  ASSERT_TRUE(q->client->execute(qmp::makeCommand("cont")));
  st = qmp::execute<qmp::QueryStatus>(*q->client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_TRUE(st->running) << st->status;
  quitAndWait(*q);
}

// connected=false: the builder's NIC ids are what set_link takes on QEMU 7.2, before `cont`.
TEST(CmdlineQemuIntegrationTest, StartupSetLinkNamesTheBuildersNics) {
  if (!onPath("qemu-system-x86_64") || !onPath("qemu-img")) {
    VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 or qemu-img not installed");
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
  vs.id = "links";
  vs.memory_mib = 64;
  vs.disks = {disk("vda", "", 0)};
  ovf::NicSpec up;
  up.network = "lan";
  up.model = "virtio";
  ovf::NicSpec down;
  down.model = "e1000";
  down.connected = false;
  vs.nics = {up, down, down};
  QemuRunConfig cfg;
  cfg.qmp_socket = dir + "/qmp.sock";
  cfg.qmp_event_socket = dir + "/ev.sock";
  cfg.serial_log = dir + "/serial.log";
  cfg.pidfile = dir + "/qemu.pid";
  cfg.disk_overlays["vda"] = dir + "/vda.qcow2";
  cfg.nics = {{"vq-l0", std::nullopt}, {"vq-l1", std::nullopt}, {"vq-l2", std::nullopt}};
  auto made = runCapture({"qemu-img", "create", "-q", "-f", "qcow2", dir + "/vda.qcow2", "1M"});
  ASSERT_TRUE(made) << made.error().describe();

  const auto startup = startupQmpCommands(vs);
  ASSERT_EQ(startup.size(), 2u);
  cfg.start_paused = !startup.empty();  // what the agent does
  auto argv = buildCommandLine(vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  // The NIC devices stay as built; only their backends change from tap to a hub port.
  int swapped = 0;
  for (size_t i = 0; i + 1 < argv->size(); ++i) {
    if ((*argv)[i] == "-netdev") {
      ASSERT_TRUE((*argv)[i + 1].starts_with("tap,id=net" + std::to_string(swapped) + ","));
      (*argv)[i + 1] =
          "hubport,id=net" + std::to_string(swapped) + ",hubid=" + std::to_string(swapped);
      ++swapped;
    }
  }
  ASSERT_EQ(swapped, 3);

  auto q = startAndConnect(*argv, cfg.qmp_socket);
  ASSERT_TRUE(q) << q.error().describe();
  auto st = qmp::execute<qmp::QueryStatus>(*q->client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_EQ(st->status, "prelaunch");
  for (const auto& c : startup) {
    auto r = q->client->execute(qmp::makeCommand(c.name, c.args));
    EXPECT_TRUE(r) << c.name << " " << c.args.dump() << ": " << r.error().describe();
  }
  // The name matters: QEMU refuses one that is no NIC (or netdev) of this VM.
  auto bogus = q->client->execute(
      qmp::makeCommand("set_link", nlohmann::json{{"name", "nic9"}, {"up", false}}));
  ASSERT_FALSE(bogus);
  EXPECT_EQ(bogus.error().code, ErrorCode::QmpError);
  EXPECT_NE(bogus.error().message.find("DeviceNotFound"), std::string::npos)
      << bogus.error().message;
  ASSERT_TRUE(q->client->execute(qmp::makeCommand("cont")));
  st = qmp::execute<qmp::QueryStatus>(*q->client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_TRUE(st->running) << st->status;
  quitAndWait(*q);
}

TEST(CmdlineQemuIntegrationTest, RealQemuAcceptsEfiPflash) {
  const std::string code = "/usr/share/OVMF/OVMF_CODE.fd";
  const std::string vars = "/usr/share/OVMF/OVMF_VARS.fd";
  if (!onPath("qemu-system-x86_64") || !onPath("qemu-img")) {
    VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 or qemu-img not installed");
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
    VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 or qemu-img not installed");
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

}  // namespace
}  // namespace vandra::qemu
