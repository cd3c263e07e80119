// An OVA exported the VMware way: a descriptor with VMware's namespace and extensions
// (vmx-13, vmw:osType, vmw:Config), an LSI Logic SCSI controller, an E1000 NIC on
// "VM Network", the disk a streamOptimized VMDK, a SHA1 manifest, the descriptor first in the
// tar. Built here from the test guest's boot disk (the descriptor text is this test's own). It
// imports and boots at dc, whose LAN is called "VM Network" as in the VMware datacenter it came
// from; its live move to cloud-eu, which has no such network, is refused at the controller's
// preflight and nothing moves; once an operator maps dc's "VM Network" to cloud-eu's "lan" the
// preflight passes and the move completes, the mapping travelling with it: cloud-eu's agent
// registers the VM with its NIC on "lan". The test guest's kernel (Debian's cloud flavour,
// guest/build.sh) has no E1000 driver, so its init reports that it found no eth0: the boot is shown
// by the console, not by the guest's service. Needs root, namespaces, qemu-img and the built guest.
#include <signal.h>

#include "controller_client.h"
#include "test/testbed/testbed_migration.h"

namespace vandra::testbed {
namespace {

using nlohmann::json;

// The descriptor, VMware style (what ovftool writes for a vSphere VM), for one disk of
// @p capacity bytes in file @p vmdk of @p vmdk_size bytes.
std::string vmwareDescriptor(const std::string& vmdk, uint64_t vmdk_size, uint64_t capacity) {
  std::ostringstream o;
  o << R"(<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-0000000" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href=")"
    << vmdk << R"(" ovf:id="file1" ovf:size=")" << vmdk_size << R"("/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity=")"
    << capacity
    << R"(" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="legacy-web">
    <Info>A virtual machine</Info>
    <Name>legacy-web</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="other4xLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>legacy-web</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>1 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity>
        <vmw:CoresPerSocket ovf:required="false">1</vmw:CoresPerSocket>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>256MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>256</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
        <vmw:Config ovf:required="false" vmw:key="slotInfo.pciSlotNumber" vmw:value="16"/>
      </Item>
      <Item>
        <rasd:Address>1</rasd:Address>
        <rasd:Description>IDE Controller</rasd:Description>
        <rasd:ElementName>IDE 1</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceType>5</rasd:ResourceType>
      </Item>
      <Item ovf:required="false">
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:ElementName>CD/DVD drive 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:Parent>4</rasd:Parent>
        <rasd:ResourceSubType>vmware.cdrom.remotepassthrough</rasd:ResourceSubType>
        <rasd:ResourceType>15</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
        <vmw:Config ovf:required="false" vmw:key="backing.writeThrough" vmw:value="false"/>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>E1000 ethernet adapter on &quot;VM Network&quot;</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>7</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
        <vmw:Config ovf:required="false" vmw:key="wakeOnLanEnabled" vmw:value="true"/>
      </Item>
      <Item ovf:required="false">
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:ElementName>Video card</rasd:ElementName>
        <rasd:InstanceID>8</rasd:InstanceID>
        <rasd:ResourceType>24</rasd:ResourceType>
        <vmw:Config ovf:required="false" vmw:key="videoRamSizeInKB" vmw:value="4096"/>
      </Item>
      <Item ovf:required="false">
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:ElementName>VMCI device</rasd:ElementName>
        <rasd:InstanceID>9</rasd:InstanceID>
        <rasd:ResourceSubType>vmware.vmci</rasd:ResourceSubType>
        <rasd:ResourceType>1</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="bios"/>
      <vmw:Config ovf:required="false" vmw:key="tools.syncTimeWithHost" vmw:value="false"/>
      <vmw:Config ovf:required="false" vmw:key="powerOpInfo.powerOffType" vmw:value="soft"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
)";
  return o.str();
}

// "SHA1(name)= hex" for @p file, as ovftool writes a manifest line.
std::string sha1Line(const fs::path& file) {
  auto out = runCapture({"sha1sum", file.string()});
  EXPECT_TRUE(out) << (out ? "" : out.error().describe());
  const std::string hex = out ? out->substr(0, out->find(' ')) : std::string();
  return "SHA1(" + file.filename().string() + ")= " + hex + "\n";
}

// The OVA in @p dir from the guest's boot disk @p boot_raw. Its path, "" on failure.
std::string buildVmwareOva(const fs::path& dir, const fs::path& boot_raw) {
  fs::create_directories(dir);
  const fs::path vmdk = dir / "legacy-web-disk1.vmdk";
  auto conv = runCapture({"qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                          "subformat=streamOptimized", boot_raw.string(), vmdk.string()});
  if (!conv) {
    ADD_FAILURE() << "qemu-img: " << conv.error().describe();
    return "";
  }
  const fs::path ovf = dir / "legacy-web.ovf";
  std::ofstream(ovf, std::ios::binary)
      << vmwareDescriptor(vmdk.filename().string(), fs::file_size(vmdk), fs::file_size(boot_raw));
  const fs::path mf = dir / "legacy-web.mf";
  std::ofstream(mf, std::ios::binary) << sha1Line(ovf) << sha1Line(vmdk);
  const fs::path ova = dir / "legacy-web.ova";
  // Descriptor first, then manifest and disk: the order OVF 1.x asks of an OVA.
  auto tar =
      runCapture({"tar", "--format=ustar", "-cf", ova.string(), "-C", dir.string(),
                  ovf.filename().string(), mf.filename().string(), vmdk.filename().string()});
  if (!tar) {
    ADD_FAILURE() << "tar: " << tar.error().describe();
    return "";
  }
  return ova.string();
}

std::string cmdlineOfPid(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

TEST(VmwareOva, ImportsAndBootsAtDcAndMovesOnceTheNetworkIsMapped) {
  if (const std::string why = cannotRun(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  if (guest == nullptr || !fs::exists(fs::path(guest) / "boot.raw")) {
    VANDRA_SKIP_OR_FAIL("VANDRA_GUEST_DIR does not name a built test guest");
  }
  if (!runCapture({"qemu-img", "--version"})) {
    VANDRA_SKIP_OR_FAIL("no qemu-img");
  }
  ::signal(SIGPIPE, SIG_IGN);
  const auto t0 = Clock::now();
  StateDir dir;
  TestbedOptions o = agentOptionsFor("lan", dir.path());
  o.controller = true;
  auto up_result = up(o);
  ASSERT_TRUE(up_result) << up_result.error().describe();
  const TestbedInfo tb = *up_result;
  auto dc = clientFor(siteOf(tb, "dc"), siteOf(tb, "dc"));
  auto cloud = clientFor(siteOf(tb, "cloud-eu"), siteOf(tb, "cloud-eu"));

  const std::string ova =
      buildVmwareOva(fs::path(dir.path()) / "vmware-export", fs::path(guest) / "boot.raw");
  ASSERT_FALSE(ova.empty());
  auto imported = importUploaded(dc, "legacy-web", ova);
  ASSERT_TRUE(imported) << imported.error().describe();
  // What the reader made of VMware's hardware.
  auto rec = dc.get("/v1/vms/legacy-web");
  ASSERT_TRUE(rec) << rec.error().describe();
  const json& vs = (*rec)["spec"]["virtual_systems"][0];
  ASSERT_EQ(vs["nics"].size(), 1U) << vs.dump(2);
  EXPECT_EQ(vs["nics"][0].value("model", ""), "e1000") << vs.dump(2);
  EXPECT_EQ(vs["nics"][0].value("network", ""), "VM Network") << vs.dump(2);
  bool lsi = false;
  for (const auto& c : vs["controllers"]) {
    lsi = lsi || (c.value("kind", "") == "scsi" && c.value("model", "") == "lsilogic");
  }
  EXPECT_TRUE(lsi) << vs.dump(2);

  auto started = dc.post("/v1/vms/legacy-web/start", json::object());
  ASSERT_TRUE(started) << started.error().describe();
  const pid_t qemu = (*started)["pid"].get<pid_t>();
  const std::string argv = cmdlineOfPid(qemu);
  EXPECT_NE(argv.find("e1000"), std::string::npos) << argv;
  EXPECT_NE(argv.find("scsi-hd"), std::string::npos) << argv;

  // Boots: SeaBIOS finds the disk on the SCSI controller, SYSLINUX loads the kernel, the
  // guest's init runs and reports on the serial console.
  std::string console;
  const auto boot_deadline = Clock::now() + 300s;
  while (Clock::now() < boot_deadline && console.find("VANDRA-GUEST-") == std::string::npos) {
    auto text = dc.getText("/v1/vms/legacy-web/console");
    console = text ? *text : "";
    std::this_thread::sleep_for(1s);  // a poll of the console log
  }
  EXPECT_NE(console.find("Linux version 6."), std::string::npos) << console;
  const bool ready = console.find("VANDRA-GUEST-READY") != std::string::npos;
  if (ready) {  // a guest with an E1000 driver answers on the LAN
    auto conn = GuestConnection::connect(tb.client_netns, "10.10.0.10", 7000, Clock::now() + 60s);
    EXPECT_TRUE(conn) << conn.error().describe();
  } else {
    EXPECT_NE(console.find("VANDRA-GUEST-FAILED reason=no eth0"), std::string::npos)
        << console.substr(console.size() > 3000 ? console.size() - 3000 : 0);
  }
  std::printf("[ measured ] VMware OVA imported and booted at dc: %.1f s (guest %s)\n",
              std::chrono::duration<double>(Clock::now() - t0).count(),
              ready ? "ready" : "without a NIC driver");

  // The controller knows it at dc, on "VM Network".
  auto known = waitForVm(tb, "legacy-web", "dc", "running");
  ASSERT_EQ(known.body.value("state", ""), "running") << known.text;
  EXPECT_EQ(known.body["networks"], json::array({"VM Network"})) << known.text;

  // cloud-eu has no "VM Network": the move is refused at preflight and nothing moves.
  auto refused = controllerRequest(tb, "POST", "/v1/vms/legacy-web/migrate", {{"to", "cloud-eu"}});
  EXPECT_GE(refused.status, 400) << refused.text;
  EXPECT_LT(refused.status, 500) << refused.text;
  EXPECT_NE(refused.text.find("no network 'VM Network' here"), std::string::npos) << refused.text;
  auto at_dc = dc.get("/v1/vms/legacy-web");
  ASSERT_TRUE(at_dc) << at_dc.error().describe();
  EXPECT_EQ((*at_dc)["state"], "running");
  EXPECT_EQ(cloud.get("/v1/vms/legacy-web").error().code, ErrorCode::NotFound);
  auto none = controllerRequest(tb, "GET", "/v1/migrations?vm=legacy-web");
  EXPECT_EQ(none.status, 200) << none.text;
  EXPECT_TRUE(none.body["migrations"].empty()) << none.text;
  auto pf = controllerRequest(tb, "GET", "/v1/vms/legacy-web/preflight?to=cloud-eu");
  ASSERT_EQ(pf.status, 200) << pf.text;
  EXPECT_FALSE(pf.body.value("ok", true)) << pf.text;

  // Mapped: dc's "VM Network" is cloud-eu's "lan"; the preflight no longer refuses.
  auto mapped = controllerRequest(tb, "PUT", "/v1/networks/office-lan",
                                  {{"members", {{"dc", "VM Network"}, {"cloud-eu", "lan"}}}});
  ASSERT_EQ(mapped.status, 200) << mapped.text;
  auto pf2 = controllerRequest(tb, "GET", "/v1/vms/legacy-web/preflight?to=cloud-eu");
  ASSERT_EQ(pf2.status, 200) << pf2.text;
  EXPECT_TRUE(pf2.body.value("ok", false)) << pf2.text;
  EXPECT_EQ(pf2.text.find("network"), std::string::npos) << pf2.text;

  // The move: the mapping travels with it (dc's agent sends it in the preflight), cloud-eu's
  // agent registers the VM on its "lan" and the guest runs there. The guest has no E1000
  // driver: what shows it is the agents' state and the controller's record, not the LAN.
  const auto move_t0 = Clock::now();
  auto moved = controllerRequest(tb, "POST", "/v1/vms/legacy-web/migrate",
                                 {{"to", "cloud-eu"}, {"reason", "the network is mapped"}});
  ASSERT_EQ(moved.status, 202) << moved.text;
  EXPECT_EQ(moved.body["networks"], json({{"VM Network", "lan"}})) << moved.text;
  const std::string mpath = "/v1/migrations/" + std::to_string(moved.body.value("id", int64_t{0}));
  auto ended = waitForController(
      tb, mpath + "?wait_ms=10000",
      [](const ControllerAnswer& a) {
        return a.status == 200 && a.body.value("state", "running") != "running";
      },
      600s);
  ASSERT_EQ(ended.body.value("state", ""), "done") << ended.text;
  std::printf("[ measured ] VMware OVA VM moved dc -> cloud-eu: %.1f s, interruption %s ms\n",
              std::chrono::duration<double>(Clock::now() - move_t0).count(),
              ended.body["downtime_ms"].dump().c_str());
  auto there = cloud.get("/v1/vms/legacy-web");
  ASSERT_TRUE(there) << there.error().describe();
  EXPECT_EQ((*there)["state"], "running") << there->dump(2);
  const json& moved_vs = (*there)["spec"]["virtual_systems"][0];
  ASSERT_EQ(moved_vs["nics"].size(), 1U) << there->dump(2);
  EXPECT_EQ(moved_vs["nics"][0].value("network", ""), "lan") << there->dump(2);
  EXPECT_EQ(moved_vs["nics"][0].value("model", ""), "e1000") << there->dump(2);
  EXPECT_EQ(dc.get("/v1/vms/legacy-web").error().code, ErrorCode::NotFound);
  auto at_eu = waitForVm(tb, "legacy-web", "cloud-eu", "running");
  ASSERT_EQ(at_eu.body.value("site", ""), "cloud-eu") << at_eu.text;
  EXPECT_EQ(at_eu.body["networks"], json::array({"lan"})) << at_eu.text;
  // The guest runs on after the move: its QEMU at cloud-eu is not paused.
  auto running_at_eu = cloud.get("/v1/vms/legacy-web");
  ASSERT_TRUE(running_at_eu) << running_at_eu.error().describe();
  EXPECT_EQ((*running_at_eu)["state"], "running");
  std::printf("[ measured ] VMware OVA test: %.1f s\n",
              std::chrono::duration<double>(Clock::now() - t0).count());
}

}  // namespace
}  // namespace vandra::testbed
