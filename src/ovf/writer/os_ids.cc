// CIM OsType table (CIM_OperatingSystem.OSType ValueMap, DSP0243 refers to it). Ids 0..102
// match VirtualBox's CIMOSType enumeration; 103..115 are later CIM schema additions. VMware
// guest ids are given only where the CIM entry maps to exactly one of them.
#include "os_ids.h"

#include <algorithm>
#include <array>

namespace vandra::ovf::detail {
namespace {

constexpr std::array kTable = {
    OsIdInfo{0, "Unknown", "other", ""},
    OsIdInfo{1, "Other", "other", "otherGuest"},
    OsIdInfo{2, "MACOS", "other", "darwinGuest"},
    OsIdInfo{8, "HPUX", "other", ""},
    OsIdInfo{9, "AIX", "other", ""},
    OsIdInfo{12, "OS/2", "other", "os2Guest"},
    OsIdInfo{14, "MSDOS", "other", "dosGuest"},
    OsIdInfo{15, "WIN3x", "windows", "win31Guest"},
    OsIdInfo{16, "WIN95", "windows", "win95Guest"},
    OsIdInfo{17, "WIN98", "windows", "win98Guest"},
    OsIdInfo{18, "WINNT", "windows", "winNTGuest"},
    OsIdInfo{21, "NetWare", "other", "netware6Guest"},
    OsIdInfo{25, "SCO UnixWare", "other", "unixWare7Guest"},
    OsIdInfo{26, "SCO OpenServer", "other", "openServer6Guest"},
    OsIdInfo{29, "Solaris", "other", "solaris10Guest"},
    OsIdInfo{30, "SunOS", "other", ""},
    OsIdInfo{36, "LINUX", "linux", "otherLinuxGuest"},
    OsIdInfo{41, "BSDUNIX", "bsd", ""},
    OsIdInfo{42, "FreeBSD", "bsd", "freebsdGuest"},
    OsIdInfo{43, "NetBSD", "bsd", ""},
    OsIdInfo{48, "QNX", "other", ""},
    OsIdInfo{58, "Windows 2000", "windows", "win2000ServGuest"},
    OsIdInfo{63, "Windows (R) Me", "windows", "winMeGuest"},
    OsIdInfo{65, "OpenBSD", "bsd", ""},
    OsIdInfo{66, "Not Applicable", "other", ""},
    OsIdInfo{67, "Windows XP", "windows", "winXPProGuest"},
    OsIdInfo{69, "Microsoft Windows Server 2003", "windows", "winNetStandardGuest"},
    OsIdInfo{70, "Microsoft Windows Server 2003 64-Bit", "windows", "winNetStandard64Guest"},
    OsIdInfo{71, "Windows XP 64-Bit", "windows", "winXPPro64Guest"},
    OsIdInfo{72, "Windows XP Embedded", "windows", ""},
    OsIdInfo{73, "Windows Vista", "windows", "winVistaGuest"},
    OsIdInfo{74, "Windows Vista 64-Bit", "windows", "winVista64Guest"},
    OsIdInfo{75, "Windows Embedded for Point of Service", "windows", ""},
    OsIdInfo{76, "Microsoft Windows Server 2008", "windows", "winLonghornGuest"},
    OsIdInfo{77, "Microsoft Windows Server 2008 64-Bit", "windows", "winLonghorn64Guest"},
    OsIdInfo{78, "FreeBSD 64-Bit", "bsd", "freebsd64Guest"},
    OsIdInfo{79, "RedHat Enterprise Linux", "linux", "rhel6Guest"},
    OsIdInfo{80, "RedHat Enterprise Linux 64-Bit", "linux", "rhel7_64Guest"},
    OsIdInfo{81, "Solaris 64-Bit", "other", "solaris10_64Guest"},
    OsIdInfo{82, "SUSE", "linux", "suseGuest"},
    OsIdInfo{83, "SUSE 64-Bit", "linux", "suse64Guest"},
    OsIdInfo{84, "SLES", "linux", "slesGuest"},
    OsIdInfo{85, "SLES 64-Bit", "linux", "sles64Guest"},
    OsIdInfo{86, "Novell OES", "linux", "oesGuest"},
    OsIdInfo{87, "Novell Linux Desktop", "linux", "nld9Guest"},
    OsIdInfo{88, "Sun Java Desktop System", "linux", "sjdsGuest"},
    OsIdInfo{89, "Mandriva", "linux", "mandrivaGuest"},
    OsIdInfo{90, "Mandriva 64-Bit", "linux", "mandriva64Guest"},
    OsIdInfo{91, "TurboLinux", "linux", "turboLinuxGuest"},
    OsIdInfo{92, "TurboLinux 64-Bit", "linux", "turboLinux64Guest"},
    OsIdInfo{93, "Ubuntu", "linux", "ubuntuGuest"},
    OsIdInfo{94, "Ubuntu 64-Bit", "linux", "ubuntu64Guest"},
    OsIdInfo{95, "Debian", "linux", "debian10Guest"},
    OsIdInfo{96, "Debian 64-Bit", "linux", "debian10_64Guest"},
    OsIdInfo{97, "Linux 2.4.x", "linux", "other24xLinuxGuest"},
    OsIdInfo{98, "Linux 2.4.x 64-Bit", "linux", "other24xLinux64Guest"},
    OsIdInfo{99, "Linux 2.6.x", "linux", "other26xLinuxGuest"},
    OsIdInfo{100, "Linux 2.6.x 64-Bit", "linux", "other26xLinux64Guest"},
    OsIdInfo{101, "Linux 64-Bit", "linux", "otherLinux64Guest"},
    OsIdInfo{102, "Other 64-Bit", "other", "otherGuest64"},
    OsIdInfo{103, "Microsoft Windows Server 2008 R2", "windows", "windows7Server64Guest"},
    OsIdInfo{104, "VMware ESXi", "other", "vmkernel6Guest"},
    OsIdInfo{105, "Microsoft Windows 7", "windows", "windows7Guest"},
    OsIdInfo{106, "CentOS 32-bit", "linux", "centosGuest"},
    OsIdInfo{107, "CentOS 64-bit", "linux", "centos64Guest"},
    OsIdInfo{108, "Oracle Enterprise Linux 32-bit", "linux", "oracleLinuxGuest"},
    OsIdInfo{109, "Oracle Enterprise Linux 64-bit", "linux", "oracleLinux64Guest"},
    OsIdInfo{110, "eComStation 32-bitx", "other", "eComStation2Guest"},
    OsIdInfo{111, "Microsoft Windows Server 2011", "windows", ""},
    OsIdInfo{112, "Microsoft Windows Server 2012", "windows", "windows8Server64Guest"},
    OsIdInfo{113, "Microsoft Windows 8", "windows", "windows8Guest"},
    OsIdInfo{114, "Microsoft Windows 8 64-bit", "windows", "windows8_64Guest"},
    OsIdInfo{115, "Microsoft Windows Server 2012 R2", "windows", "windows8Server64Guest"},
};

}  // namespace

const OsIdInfo* osIdInfo(int cim_id) {
  const auto* it = std::find_if(kTable.begin(), kTable.end(),
                                [&](const OsIdInfo& e) { return e.cim_id == cim_id; });
  return it == kTable.end() ? nullptr : &*it;
}

}  // namespace vandra::ovf::detail
