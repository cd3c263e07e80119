// Guest OS identifiers: CIM_OperatingSystem OsType ids (as used by OVF's
// OperatingSystemSection ovf:id), their family, and the VMware guest id (vmw:osType) used
// when we know one. Pure lookup tables; no I/O. The table is documented in docs/ovf/writer.md.
#pragma once

#include <string_view>

namespace vandra::ovf::detail {

struct OsIdInfo {
  int cim_id = 0;
  std::string_view name;         // CIM description, e.g. "Linux 64-Bit"
  std::string_view family;       // "linux", "windows", "bsd", "other"
  std::string_view vmw_os_type;  // e.g. "otherLinux64Guest"; "" when there is no good match
};

/// The entry for @p cim_id, or nullptr for an id outside the table.
const OsIdInfo* osIdInfo(int cim_id);

}  // namespace vandra::ovf::detail
