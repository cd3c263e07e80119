// CIM_OperatingSystem OsType ids (as used in OperatingSystemSection ovf:id, DSP0243) mapped
// to a normalised family, and a guess from free-text names (vmw:osType, VirtualBox OSType).
#pragma once

#include <string>
#include <string_view>

namespace vandra::ovf {

/// "linux", "windows", "bsd", "solaris", "other" or "" when unknown.
std::string osFamilyFromCimId(int id);
std::string osFamilyFromName(std::string_view name);

}  // namespace vandra::ovf
