// Namespace URIs and section names of the OVF standard and of the extensions vandra knows.
// Matching is always by URI. See docs/ovf/dialects.md for what each extension maps to.
#pragma once

#include <optional>
#include <string_view>

#include "vandra/ovf/vm_spec.h"

namespace vandra::ovf::names {

inline constexpr std::string_view kEnvelope1 = "http://schemas.dmtf.org/ovf/envelope/1";
inline constexpr std::string_view kEnvelope2 = "http://schemas.dmtf.org/ovf/envelope/2";
inline constexpr std::string_view kEnvelopeOvirt = "http://schemas.dmtf.org/ovf/envelope/1/";
inline constexpr std::string_view kEnvelopeDraft = "http://schemas.dmtf.org/ovf/envelope";
inline constexpr std::string_view kEnvelopeVmware09 = "http://www.vmware.com/schema/ovf/1/envelope";
inline constexpr std::string_view kXsi = "http://www.w3.org/2001/XMLSchema-instance";
inline constexpr std::string_view kCimPrefix = "http://schemas.dmtf.org/wbem/wscim/1/";
inline constexpr std::string_view kRasd =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
inline constexpr std::string_view kVssd =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
inline constexpr std::string_view kSasd =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData";
inline constexpr std::string_view kEpasd =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData";
inline constexpr std::string_view kVmw = "http://www.vmware.com/schema/ovf";
inline constexpr std::string_view kVbox = "http://www.virtualbox.org/ovf/machine";

/// Which OVF version an Envelope namespace (and its ovf:version attribute) means.
std::optional<OvfVersion> versionOf(std::string_view envelope_ns, std::string_view version_attr,
                                    std::string_view schema_location);

/// True for namespaces whose elements vandra reads or deliberately ignores (documented in
/// docs/ovf/dialects.md): CIM schemas, OVF environment/strings, VMware, VirtualBox, vCloud,
/// oVirt, XenClient, Cisco, and vandra's own SLA namespace.
bool isKnownNamespace(std::string_view ns);

/// Sections defined by DSP8023 (any version); anything else in the OVF namespace is unknown.
bool isStandardSection(std::string_view local);

}  // namespace vandra::ovf::names
