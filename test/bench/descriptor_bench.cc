// descriptor_bench: parse throughput of readDescriptor on generated descriptors of three
// sizes: small (~5 KB, one ordinary VM), medium (~50 KB, a ProductSection with many
// properties) and large (~1 MB, thousands of properties and hardware Items). Reports bytes/s.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "vandra/ovf/descriptor_reader.h"

namespace {

using vandra::ovf::readDescriptor;
using vandra::ovf::ReadOptions;

// A VMware-style descriptor with @p properties ProductSection properties and @p nics extra
// network adapter Items (each a full rasd Item, as ovftool writes them).
std::string makeDescriptor(int properties, int nics) {
  std::string s = R"(<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References>
    <File ovf:href="bench-disk1.vmdk" ovf:id="file1" ovf:size="734003712"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="24" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="lan"><Description>The lan network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="bench">
    <Info>A virtual machine</Info>
    <Name>bench</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian11_64Guest">
      <Info>The kind of installed guest operating system</Info>
      <Description>Debian GNU/Linux 11 (64-bit)</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemType>vmx-17</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>4 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>4</rasd:VirtualQuantity>
        <vmw:CoresPerSocket ovf:required="false">2</vmw:CoresPerSocket>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>4096MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>4096</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
)";
  for (int i = 0; i < nics; ++i) {
    const std::string n = std::to_string(i);
    s += "      <Item>\n        <rasd:AddressOnParent>" + std::to_string(7 + i % 20) +
         "</rasd:AddressOnParent>\n        "
         "<rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>\n"
         "        <rasd:Connection>lan</rasd:Connection>\n"
         "        <rasd:Description>VmxNet3 ethernet adapter on lan</rasd:Description>\n"
         "        <rasd:ElementName>Network adapter " +
         n +
         "</rasd:ElementName>\n"
         "        <rasd:InstanceID>" +
         std::to_string(100 + i) +
         "</rasd:InstanceID>\n"
         "        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>\n"
         "        <rasd:ResourceType>10</rasd:ResourceType>\n"
         "        <vmw:Config ovf:required=\"false\" vmw:key=\"wakeOnLanEnabled\" "
         "vmw:value=\"true\"/>\n"
         "      </Item>\n";
  }
  s += R"(      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
    <ProductSection ovf:class="org.example.bench" ovf:required="false">
      <Info>Information about the installed software</Info>
      <Product>Bench Appliance</Product>
      <Vendor>Example</Vendor>
      <Version>1.0</Version>
)";
  for (int i = 0; i < properties; ++i) {
    const std::string n = std::to_string(i);
    s += "      <Property ovf:key=\"setting_" + n +
         "\" ovf:type=\"string\" ovf:userConfigurable=\"true\" ovf:value=\"value-" + n +
         "\">\n        <Label>Setting number " + n +
         "</Label>\n        <Description>What setting " + n +
         " controls, in a sentence of ordinary length.</Description>\n      </Property>\n";
  }
  s += "    </ProductSection>\n  </VirtualSystem>\n</Envelope>\n";
  return s;
}

void parse(benchmark::State& state, const std::string& xml) {
  // Sanity: a descriptor that does not read cleanly would measure the error path.
  auto check = readDescriptor(xml, ReadOptions{});
  if (!check || !check->problems.empty()) {
    state.SkipWithError("generated descriptor does not read cleanly");
    return;
  }
  for (auto _ : state) {
    auto r = readDescriptor(xml, ReadOptions{});
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(xml.size()));
  state.counters["descriptor_bytes"] = static_cast<double>(xml.size());
}

void BM_ParseSmall(benchmark::State& state) {
  static const std::string xml = makeDescriptor(2, 1);
  parse(state, xml);
}
void BM_ParseMedium(benchmark::State& state) {
  static const std::string xml = makeDescriptor(200, 4);
  parse(state, xml);
}
void BM_ParseLarge(benchmark::State& state) {
  static const std::string xml = makeDescriptor(3000, 800);
  parse(state, xml);
}
void BM_RewriteSlaMedium(benchmark::State& state) {
  static const std::string xml = makeDescriptor(200, 4);
  vandra::ovf::Sla sla;
  sla.downtime_budget_ms = 500;
  sla.jurisdictions = {"EU"};
  for (auto _ : state) {
    auto r = vandra::ovf::rewriteSla(xml, "", sla);
    if (!r) {
      state.SkipWithError("rewriteSla failed");
      return;
    }
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(xml.size()));
}

// Scaling with the number of hardware Items: must be linear (O(N)), not quadratic, or a
// hostile 32 MiB descriptor could hold a core for an hour.
void BM_ManyItems(benchmark::State& state) {
  const std::string xml = makeDescriptor(0, static_cast<int>(state.range(0)));
  parse(state, xml);
  state.SetComplexityN(state.range(0));
}

BENCHMARK(BM_ParseSmall);
BENCHMARK(BM_ManyItems)
    ->RangeMultiplier(4)
    ->Range(256, 16384)
    ->Unit(benchmark::kMillisecond)
    ->Complexity();
BENCHMARK(BM_ParseMedium);
BENCHMARK(BM_ParseLarge)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RewriteSlaMedium);

}  // namespace

BENCHMARK_MAIN();
