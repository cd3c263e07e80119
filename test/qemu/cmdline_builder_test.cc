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

void expectGolden(const std::string& name, const std::vector<std::string>& argv) {
  std::string actual;
  for (const auto& a : argv) {
    ASSERT_EQ(a.find('\n'), std::string::npos) << "argument with a newline: " << a;
    actual += a + "\n";
  }
  const std::string expected_path = kGoldenDir + name + ".args";
  std::ifstream in(expected_path);
  std::string expected;
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    expected = ss.str();
  }
  if (!in || expected != actual) {
    std::ofstream(kGoldenDir + name + ".actual.args") << actual;
    FAIL() << (in ? "argv differs from " : "no expected file ") << expected_path
           << "; wrote " << name << ".actual.args for review:\n"
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

QemuRunConfig tinyConfig() {
  auto cfg = baseConfig("vm1");
  cfg.disk_overlays["d1"] = "/x/d1.qcow2";
  cfg.nics = {{"tap0", std::nullopt}};
  return cfg;
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

} // namespace
} // namespace vandra::qemu
