// Golden and unit tests for src/qemu/cmdline_builder. Golden: test/golden/cmdline/<case>.
// vmspec.json + the run config below -> <case>.args (one argument per line). A missing or
// different expected file is written as <case>.actual.args for review and the test fails;
// nothing is ever accepted automatically.
#include "vandra/qemu/cmdline_builder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>

#include "vandra/ovf/vm_spec_json.h"

namespace vandra::qemu {
namespace {

const std::string kGoldenDir = std::string(VANDRA_SOURCE_DIR) + "/test/golden/cmdline/";

Result<ovf::VirtualSystemSpec> loadSpec(const std::string& name) {
  std::ifstream in(kGoldenDir + name + ".vmspec.json");
  if (!in) {
    return fail(ErrorCode::NotFound, "no " + name + ".vmspec.json");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::InvalidArgument, name + ".vmspec.json is not JSON");
  }
  VANDRA_TRY_ASSIGN(auto spec, ovf::vmSpecFromJson(j));
  if (spec.virtual_systems.size() != 1) {
    return fail(ErrorCode::InvalidArgument, name + ": expected one virtual system");
  }
  return spec.virtual_systems[0];
}

QemuRunConfig baseConfig(const std::string& vm) {
  QemuRunConfig cfg;
  const std::string dir = "/var/lib/vandra/vms/" + vm;
  cfg.qmp_socket = "/run/vandra/" + vm + "/qmp.sock";
  cfg.qmp_event_socket = "/run/vandra/" + vm + "/qmp-event.sock";
  cfg.serial_log = dir + "/serial.log";
  cfg.pidfile = "/run/vandra/" + vm + "/qemu.pid";
  return cfg;
}

void addOverlays(const ovf::VirtualSystemSpec& vs, QemuRunConfig& cfg) {
  for (const auto& d : vs.disks) {
    cfg.disk_overlays[d.id] = "/var/lib/vandra/vms/" + vs.name + "/" + d.id + ".qcow2";
  }
}

// @p lines against <name>.<ext>, one per line (ext "args": argv; "qmp": startup commands).
void expectGolden(const std::string& name, const std::vector<std::string>& argv,
                  const std::string& ext = "args") {
  std::string actual;
  for (const auto& a : argv) {
    ASSERT_EQ(a.find('\n'), std::string::npos) << "argument with a newline: " << a;
    actual += a + "\n";
  }
  const std::string expected_path = kGoldenDir + name + "." + ext;
  std::ifstream in(expected_path);
  std::string expected;
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    expected = ss.str();
  }
  if (!in || expected != actual) {
    std::ofstream(kGoldenDir + name + ".actual." + ext) << actual;
    FAIL() << (in ? "output differs from " : "no expected file ") << expected_path << "; wrote "
           << name << ".actual." << ext << " for review:\n"
           << actual;
  }
}

TEST(CmdlineBuilderGoldenTest, Minimal) {
  auto vs = loadSpec("minimal");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("tiny");
  addOverlays(*vs, cfg);
  cfg.nics = {{"vt-tiny-0", std::nullopt}};
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("minimal", *argv);
}

TEST(CmdlineBuilderGoldenTest, ScsiIdeSataNvmeMix) {
  auto vs = loadSpec("storage-mix");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("db-01");
  cfg.accel = "kvm";
  cfg.cpu = "host";
  addOverlays(*vs, cfg);
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("storage-mix", *argv);
}

TEST(CmdlineBuilderGoldenTest, NicModelsAndMacs) {
  auto vs = loadSpec("nic-models");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("web1");
  addOverlays(*vs, cfg);
  cfg.nics = {{"vt-web1-0", std::nullopt},
              {"vt-web1-1", std::nullopt},
              {"vt-web1-2", "52:54:00:AA:BB:CC"},
              {"vt-web1-3", std::nullopt}};
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("nic-models", *argv);
}

TEST(CmdlineBuilderGoldenTest, EfiWithOvmf) {
  auto vs = loadSpec("efi");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("win-efi");
  addOverlays(*vs, cfg);
  cfg.nics = {{"vt-win-0", std::nullopt}};
  cfg.ovmf_code = "/usr/share/OVMF/OVMF_CODE.fd";
  cfg.ovmf_vars = "/var/lib/vandra/vms/win-efi/OVMF_VARS.fd";
  cfg.uuid = "4c4c4544-0042-3510-8052-b4c04f4e3232";
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("efi", *argv);
}

TEST(CmdlineBuilderGoldenTest, TestGuestKernelBootIncomingDefer) {
  auto vs = loadSpec("kernel-incoming");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("testguest");
  addOverlays(*vs, cfg);
  cfg.nics = {{"vt-tg-0", std::nullopt}};
  cfg.kernel = "/var/lib/vandra/testguest/vmlinuz";
  cfg.initrd = "/var/lib/vandra/testguest/initrd.img";
  cfg.append = "console=ttyS0 panic=-1 quiet";
  cfg.incoming = "defer";
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("kernel-incoming", *argv);
}

// Removable media: IDE CD-ROM on the second IDE controller's AHCI port pair with an ISO.
TEST(CmdlineBuilderGoldenTest, IdeCdromWithIso) {
  auto vs = loadSpec("cdrom-ide-iso");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("install");
  addOverlays(*vs, cfg);
  ASSERT_EQ(mediaIds(*vs), std::vector<std::string>{"cdrom0"});
  cfg.media_files["cdrom0"] = "/var/lib/vandra/media/debian-12-netinst.iso";
  EXPECT_TRUE(unbackedMedia(*vs, cfg).empty());
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("cdrom-ide-iso", *argv);
}

// SATA CD-ROM without a medium: the next free port of the SATA controller's ahci, no blockdev.
TEST(CmdlineBuilderGoldenTest, SataCdromEmpty) {
  auto vs = loadSpec("cdrom-sata-empty");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("sata-vm");
  addOverlays(*vs, cfg);
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("cdrom-sata-empty", *argv);
}

// SCSI CD-ROMs after the SCSI disks: one with its ISO, one whose spec names an image the run
// config does not map (empty, reported by unbackedMedia), and one with no controller.
TEST(CmdlineBuilderGoldenTest, ScsiCdroms) {
  auto vs = loadSpec("cdrom-scsi");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("appliance");
  addOverlays(*vs, cfg);
  cfg.media_files["cdrom0"] = "/var/lib/vandra/vms/appliance/ovf-env.iso";
  EXPECT_EQ(unbackedMedia(*vs, cfg), std::vector<std::string>{"cdrom1"});
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("cdrom-scsi", *argv);
}

// Floppies on the one isa-fdc q35 gets (units 0 and 1), with and without an image, next to
// an IDE CD-ROM on the disk's controller.
TEST(CmdlineBuilderGoldenTest, Floppies) {
  auto vs = loadSpec("floppy");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("legacy-win");
  addOverlays(*vs, cfg);
  EXPECT_EQ(mediaIds(*vs), (std::vector<std::string>{"floppy0", "cdrom0", "floppy1"}));
  cfg.media_files["floppy0"] = "/var/lib/vandra/vms/legacy-win/drivers.flp";
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("floppy", *argv);
}

// One connected and one disconnected NIC: the command line is the same as with both
// connected apart from -S; the link goes down through the startup QMP commands.
TEST(CmdlineBuilderGoldenTest, DisconnectedNicStartsPausedWithSetLink) {
  auto vs = loadSpec("nic-link");
  ASSERT_TRUE(vs) << vs.error().describe();
  auto cfg = baseConfig("router");
  addOverlays(*vs, cfg);
  cfg.nics = {{"vt-router-0", std::nullopt}, {"vt-router-1", std::nullopt}};
  const auto startup = startupQmpCommands(*vs);
  cfg.start_paused = !startup.empty();
  auto argv = buildCommandLine(*vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  expectGolden("nic-link", *argv);
  std::vector<std::string> qmp;
  for (const auto& c : startup) {
    qmp.push_back(nlohmann::json{{"execute", c.name}, {"arguments", c.args}}.dump());
  }
  expectGolden("nic-link", qmp, "qmp");
}

// ---- unit tests ----------------------------------------------------------------------------

ovf::VirtualSystemSpec tinySpec() {
  ovf::VirtualSystemSpec vs;
  vs.id = "vm1";
  vs.name = "vm1";
  vs.memory_mib = 128;
  ovf::DiskSpec d;
  d.id = "d1";
  d.capacity_bytes = 1;
  d.format = "qcow2";
  vs.disks.push_back(d);
  ovf::NicSpec n;
  n.network = "lan";
  n.model = "virtio";
  vs.nics.push_back(n);
  return vs;
}

ovf::ControllerSpec controller(std::string id, ovf::ControllerKind kind) {
  ovf::ControllerSpec c;
  c.id = std::move(id);
  c.kind = kind;
  return c;
}

ovf::MediaSpec cdrom(std::string ctrl) {
  ovf::MediaSpec m;
  m.kind = ovf::MediaKind::Cdrom;
  m.controller = std::move(ctrl);
  return m;
}

ovf::MediaSpec floppy(std::string ctrl) {
  ovf::MediaSpec m;
  m.kind = ovf::MediaKind::Floppy;
  m.controller = std::move(ctrl);
  return m;
}

QemuRunConfig tinyConfig() {
  auto cfg = baseConfig("vm1");
  cfg.disk_overlays["d1"] = "/x/d1.qcow2";
  cfg.nics = {{"tap0", std::nullopt}};
  return cfg;
}

// QEMU 7.2 loses guest writes while migrating a TCG guest whose RAM is a multiple of
// 256 KiB (see buildCommandLine): under TCG the guest gets 8 KiB more; under KVM exactly
// the spec's size.
TEST(CmdlineBuilderTest, TcgRamIsNotAMultipleOf256KibKvmRamIsTheSpecs) {
  ovf::VirtualSystemSpec vs;
  vs.id = "vm1";
  vs.vcpus = 1;
  vs.memory_mib = 256;
  for (const char* accel : {"tcg", "kvm"}) {
    auto cfg = baseConfig("vm1");
    cfg.accel = accel;
    auto argv = buildCommandLine(vs, cfg);
    ASSERT_TRUE(argv) << argv.error().describe();
    auto m = std::find(argv->begin(), argv->end(), "-m");
    ASSERT_NE(m, argv->end());
    ASSERT_NE(m + 1, argv->end());
    if (std::string(accel) == "tcg") {
      EXPECT_EQ(*(m + 1), "262152k");
      EXPECT_NE((256ULL * 1024 + kTcgExtraRamKib) % 256, 0U);
    } else {
      EXPECT_EQ(*(m + 1), "256M");
    }
  }
}

TEST(CmdlineBuilderTest, StableMacIsAPureFunctionOfVmAndIndex) {
  EXPECT_EQ(stableMac("vm1", 0), stableMac("vm1", 0));
  EXPECT_NE(stableMac("vm1", 0), stableMac("vm1", 1));
  EXPECT_NE(stableMac("vm1", 0), stableMac("vm2", 0));
  EXPECT_NE(stableMac("vm1", 10), stableMac("vm11", 0));  // separator between id and index
  const std::string mac = stableMac("vm1", 3);
  EXPECT_EQ(mac.size(), 17u);
  EXPECT_EQ(mac.substr(0, 9), "52:54:00:");
  EXPECT_EQ(stableMac("tiny", 0), "52:54:00:b4:31:f3");  // pinned: changing it renames NICs
}

TEST(CmdlineBuilderTest, EfiWithoutOvmfIsUnsupportedNamingThePackage) {
  auto vs = tinySpec();
  vs.firmware = ovf::Firmware::Efi;
  auto argv = buildCommandLine(vs, tinyConfig());
  ASSERT_FALSE(argv);
  EXPECT_EQ(argv.error().code, ErrorCode::Unsupported);
  EXPECT_NE(argv.error().message.find("'ovmf'"), std::string::npos) << argv.error().message;
}

TEST(CmdlineBuilderTest, StartupCommandsOnlyForDisconnectedNics) {
  auto vs = tinySpec();
  EXPECT_TRUE(startupQmpCommands(vs).empty());
  vs.nics.push_back(vs.nics[0]);
  vs.nics.push_back(vs.nics[0]);
  vs.nics[2].connected = false;
  const auto cmds = startupQmpCommands(vs);
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0].name, "set_link");
  EXPECT_EQ(cmds[0].args, (nlohmann::json{{"name", "nic2"}, {"up", false}}));
  // The name is the device id buildCommandLine gives that NIC.
  auto cfg = tinyConfig();
  cfg.nics = {{"tap0", std::nullopt}, {"tap1", std::nullopt}, {"tap2", std::nullopt}};
  auto argv = buildCommandLine(vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  EXPECT_TRUE(std::any_of(argv->begin(), argv->end(), [](const std::string& a) {
    return a.starts_with("virtio-net-pci,netdev=net2,") && a.ends_with(",id=nic2");
  }));
  EXPECT_EQ(std::count(argv->begin(), argv->end(), "-S"), 0);
  cfg.start_paused = true;
  argv = buildCommandLine(vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  EXPECT_EQ(std::count(argv->begin(), argv->end(), "-S"), 1);
}

TEST(CmdlineBuilderTest, MediaIdsCountEachKindInSpecOrder) {
  auto vs = tinySpec();
  EXPECT_TRUE(mediaIds(vs).empty());
  ovf::MediaSpec cd;
  ovf::MediaSpec fd;
  fd.kind = ovf::MediaKind::Floppy;
  vs.media = {cd, fd, cd, fd, cd};
  EXPECT_EQ(mediaIds(vs),
            (std::vector<std::string>{"cdrom0", "floppy0", "cdrom1", "floppy1", "cdrom2"}));
}

TEST(CmdlineBuilderTest, UnattachedCdromTakesTheFirstFreeAhciPortAfterAttachedMedia) {
  auto vs = tinySpec();
  vs.controllers = {controller("ide0", ovf::ControllerKind::Ide)};
  vs.disks[0].controller = "ide0";  // ide.0
  ovf::MediaSpec loose;             // no controller: placed after the attached one
  ovf::MediaSpec attached;
  attached.controller = "ide0";  // ide.1
  vs.media = {loose, attached};
  auto argv = buildCommandLine(vs, tinyConfig());
  ASSERT_TRUE(argv) << argv.error().describe();
  EXPECT_NE(std::find(argv->begin(), argv->end(), "ide-cd,bus=ide.2,id=cdrom0,bootindex=2"),
            argv->end());
  EXPECT_NE(std::find(argv->begin(), argv->end(), "ide-cd,bus=ide.1,id=cdrom1,bootindex=3"),
            argv->end());
}

TEST(CmdlineBuilderTest, CommasInOptionValuesAreDoubled) {
  auto cfg = tinyConfig();
  cfg.qmp_socket = "/tmp/a,b/qmp.sock";
  auto argv = buildCommandLine(tinySpec(), cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  EXPECT_NE(std::find(argv->begin(), argv->end(),
                      "socket,id=qmp,path=/tmp/a,,b/qmp.sock,server=on,wait=off"),
            argv->end());
}

TEST(CmdlineBuilderTest, RefusesBadInput) {
  struct Case {
    const char* what;
    std::function<void(ovf::VirtualSystemSpec&, QemuRunConfig&)> mutate;
    ErrorCode code;
  };
  const std::vector<Case> cases = {
      {"accel", [](auto&, auto& c) { c.accel = "xen"; }, ErrorCode::InvalidArgument},
      {"no memory", [](auto& v, auto&) { v.memory_mib = 0; }, ErrorCode::InvalidArgument},
      {"no vcpus", [](auto& v, auto&) { v.vcpus = 0; }, ErrorCode::InvalidArgument},
      {"no overlay", [](auto&, auto& c) { c.disk_overlays.clear(); }, ErrorCode::InvalidArgument},
      {"tap count", [](auto&, auto& c) { c.nics.clear(); }, ErrorCode::InvalidArgument},
      {"tap name", [](auto&, auto& c) { c.nics[0].tap = "tap0,script=/x"; },
       ErrorCode::InvalidArgument},
      {"long tap", [](auto&, auto& c) { c.nics[0].tap = "a-very-long-tapname"; },
       ErrorCode::InvalidArgument},
      {"multicast mac", [](auto& v, auto&) { v.nics[0].mac = "01:00:5e:00:00:01"; },
       ErrorCode::InvalidArgument},
      {"garbage mac", [](auto& v, auto&) { v.nics[0].mac = "52:54:00:xx:00:01"; },
       ErrorCode::InvalidArgument},
      {"nic model", [](auto& v, auto&) { v.nics[0].model = "ne2k_isa"; }, ErrorCode::Unsupported},
      {"unknown controller", [](auto& v, auto&) { v.disks[0].controller = "scsi9"; },
       ErrorCode::InvalidArgument},
      {"floppy controller",
       [](auto& v, auto&) {
         v.controllers.push_back(controller("fd0", ovf::ControllerKind::Floppy));
         v.disks[0].controller = "fd0";
       },
       ErrorCode::Unsupported},
      {"ide unit 2",
       [](auto& v, auto&) {
         v.controllers.push_back(controller("ide0", ovf::ControllerKind::Ide));
         v.disks[0].controller = "ide0";
         v.disks[0].unit = 2;
       },
       ErrorCode::InvalidArgument},
      {"same sockets", [](auto&, auto& c) { c.qmp_event_socket = c.qmp_socket; },
       ErrorCode::InvalidArgument},
      {"long socket path", [](auto&, auto& c) { c.qmp_socket = "/" + std::string(107, 's'); },
       ErrorCode::InvalidArgument},
      {"no pidfile", [](auto&, auto& c) { c.pidfile.clear(); }, ErrorCode::InvalidArgument},
      {"bad uuid", [](auto&, auto& c) { c.uuid = "not-a-uuid"; }, ErrorCode::InvalidArgument},
      {"append without kernel", [](auto&, auto& c) { c.append = "quiet"; },
       ErrorCode::InvalidArgument},
      {"two disks on one IDE port",
       [](auto& v, auto& c) {
         v.controllers.push_back(controller("ide0", ovf::ControllerKind::Ide));
         v.disks[0].controller = "ide0";
         v.disks.push_back(v.disks[0]);
         v.disks[1].id = "d2";
         c.disk_overlays["d2"] = "/x/d2.qcow2";
       },
       ErrorCode::InvalidArgument},
      {"cdrom on unknown controller", [](auto& v, auto&) { v.media = {cdrom("sata9")}; },
       ErrorCode::InvalidArgument},
      {"cdrom with no free IDE unit",
       [](auto& v, auto& c) {
         v.controllers.push_back(controller("ide0", ovf::ControllerKind::Ide));
         v.disks[0].controller = "ide0";
         v.disks.push_back(v.disks[0]);
         v.disks[1].id = "d2";
         v.disks[1].unit = 1;
         c.disk_overlays["d2"] = "/x/d2.qcow2";
         v.media = {cdrom("ide0")};
       },
       ErrorCode::InvalidArgument},
      {"cdrom on a fourth IDE controller",
       [](auto& v, auto&) {
         for (const char* id : {"ide0", "ide1", "ide2", "ide3"}) {
           v.controllers.push_back(controller(id, ovf::ControllerKind::Ide));
         }
         v.media = {cdrom("ide3")};
       },
       ErrorCode::InvalidArgument},
      {"cdrom with no free AHCI port", [](auto& v, auto&) { v.media.assign(7, cdrom("")); },
       ErrorCode::InvalidArgument},
      {"cdrom with no free SATA port",
       [](auto& v, auto&) {
         v.controllers.push_back(controller("sata0", ovf::ControllerKind::Sata));
         v.media.assign(7, cdrom("sata0"));
       },
       ErrorCode::InvalidArgument},
      {"third floppy", [](auto& v, auto&) { v.media.assign(3, floppy("")); },
       ErrorCode::InvalidArgument},
      {"floppy on an IDE controller",
       [](auto& v, auto&) {
         v.controllers.push_back(controller("ide0", ovf::ControllerKind::Ide));
         v.media = {floppy("ide0")};
       },
       ErrorCode::InvalidArgument},
      {"cdrom on a floppy controller",
       [](auto& v, auto&) {
         v.controllers.push_back(controller("fd0", ovf::ControllerKind::Floppy));
         v.media = {cdrom("fd0")};
       },
       ErrorCode::InvalidArgument},
      {"cdrom on nvme",
       [](auto& v, auto&) {
         v.controllers.push_back(controller("nvme0", ovf::ControllerKind::Nvme));
         v.media = {cdrom("nvme0")};
       },
       ErrorCode::Unsupported},
      {"cdrom on usb",
       [](auto& v, auto&) {
         v.controllers.push_back(controller("usb0", ovf::ControllerKind::Usb));
         v.media = {cdrom("usb0")};
       },
       ErrorCode::Unsupported},
      {"media file for a drive the VM lacks",
       [](auto& v, auto& c) {
         v.media = {cdrom("")};
         c.media_files["cdrom1"] = "/x/a.iso";
       },
       ErrorCode::InvalidArgument},
      {"empty media path",
       [](auto& v, auto& c) {
         v.media = {cdrom("")};
         c.media_files["cdrom0"] = "";
       },
       ErrorCode::InvalidArgument},
      {"media node names clash with a disk",
       [](auto& v, auto& c) {
         v.disks[0].id = "cdrom0";
         c.disk_overlays = {{"cdrom0", "/x/d.qcow2"}};
         v.media = {cdrom("")};
         c.media_files["cdrom0"] = "/x/a.iso";
       },
       ErrorCode::InvalidArgument},
      {"media id clashes with a controller device id",
       [](auto& v, auto&) {
         v.controllers.push_back(controller("cdrom0", ovf::ControllerKind::Scsi));
         v.media = {cdrom("cdrom0")};
       },
       ErrorCode::InvalidArgument},
      {"node name clash",
       [](auto& v, auto& c) {
         v.disks.push_back(v.disks[0]);
         v.disks[1].id = "d/1";
         v.disks[0].id = "d1";
         v.disks.push_back(v.disks[0]);
         v.disks[2].id = "???";  // -> "d2"
         v.disks[0].id = "d2";
         c.disk_overlays = {{"d2", "/a"}, {"d/1", "/b"}, {"???", "/c"}};
       },
       ErrorCode::InvalidArgument},
  };
  for (const auto& c : cases) {
    auto vs = tinySpec();
    auto cfg = tinyConfig();
    c.mutate(vs, cfg);
    auto argv = buildCommandLine(vs, cfg);
    ASSERT_FALSE(argv) << c.what;
    EXPECT_EQ(argv.error().code, c.code) << c.what << ": " << argv.error().message;
  }
}

}  // namespace
}  // namespace vandra::qemu
