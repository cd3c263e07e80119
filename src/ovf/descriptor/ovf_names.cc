#include "ovf_names.h"

#include <array>

#include "vandra/ovf/sla.h"

namespace vandra::ovf::names {

std::optional<OvfVersion> versionOf(std::string_view ns, std::string_view version_attr,
                                    std::string_view schema_location) {
  if (ns == kEnvelopeVmware09 || ns == kEnvelopeDraft) {
    return OvfVersion::V0_9;
  }
  if (ns == kEnvelope1 || ns == kEnvelopeOvirt) {
    // 1.1 shares 1.0's namespace; it is told apart by ovf:version or the schema it cites.
    if (version_attr == "1.1" || version_attr.starts_with("1.1.") ||
        schema_location.find("dsp8023_1.1") != std::string_view::npos) {
      return OvfVersion::V1_1;
    }
    return OvfVersion::V1_0;
  }
  if (ns == kEnvelope2) {
    if (version_attr == "2.1" || version_attr.starts_with("2.1.") ||
        schema_location.find("dsp8023_2.1") != std::string_view::npos) {
      return OvfVersion::V2_1;
    }
    return OvfVersion::V2_0;
  }
  return std::nullopt;
}

bool isKnownNamespace(std::string_view ns) {
  static constexpr std::array<std::string_view, 16> kKnown = {
      "http://schemas.dmtf.org/ovf/environment/1",
      "http://schemas.dmtf.org/ovf/strings/1",
      "http://www.vmware.com/schema/ovf",
      "http://www.vmware.com/schema/ovfenv",
      "http://www.virtualbox.org/ovf/machine",
      "http://www.vmware.com/vcloud/v1.5",
      "http://www.vmware.com/vcloud/v1",
      "http://www.vmware.com/vcloud/extension/v1.5",
      "http://www.ovirt.org/ovf",
      "http://www.citrix.com/xenclient/ovf/1",
      "http://www.cisco.com/ovf",
      "http://www.w3.org/2001/XMLSchema-instance",
      "http://www.w3.org/XML/1998/namespace",
      "urn:vandra:ovf:sla:1",
      "http://www.vmware.com/schema/vcloud/v1",
      "http://schemas.vmware.com/vcloud/v1.5",
  };
  if (ns.starts_with(kCimPrefix)) {
    return true;
  }
  for (const auto k : kKnown) {
    if (ns == k) {
      return true;
    }
  }
  return false;
}

bool isStandardSection(std::string_view local) {
  static constexpr std::array<std::string_view, 22> kSections = {"References",
                                                                 "DiskSection",
                                                                 "NetworkSection",
                                                                 "DeploymentOptionSection",
                                                                 "VirtualSystem",
                                                                 "VirtualSystemCollection",
                                                                 "AnnotationSection",
                                                                 "ProductSection",
                                                                 "EulaSection",
                                                                 "StartupSection",
                                                                 "VirtualHardwareSection",
                                                                 "OperatingSystemSection",
                                                                 "ResourceAllocationSection",
                                                                 "InstallSection",
                                                                 "Strings",
                                                                 "EnvironmentFilesSection",
                                                                 "BootDeviceSection",
                                                                 "SharedDiskSection",
                                                                 "ScaleOutSection",
                                                                 "PlacementGroupSection",
                                                                 "PlacementSection",
                                                                 "EncryptionSection"};
  for (const auto s : kSections) {
    if (local == s) {
      return true;
    }
  }
  return false;
}

}  // namespace vandra::ovf::names
