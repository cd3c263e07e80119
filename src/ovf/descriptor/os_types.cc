#include "os_types.h"

#include <algorithm>
#include <cctype>

namespace vandra::ovf {

// Values of CIM_OperatingSystem.OsType (CIM schema 2.x value map), which DSP0243 uses for
// OperatingSystemSection ovf:id.
std::string osFamilyFromCimId(int id) {
  switch (id) {
    case 0:
    case 1:
      return "";  // Unknown, Other
    // Linux: LINUX, RHEL, SUSE, SLES, Novell Linux Desktop, Mandriva, TurboLinux, Ubuntu,
    // Debian, Linux 2.4/2.6, Linux 64-Bit, CentOS, Oracle Linux.
    case 36:
    case 79:
    case 80:
    case 82:
    case 83:
    case 84:
    case 85:
    case 87:
    case 89:
    case 90:
    case 91:
    case 92:
    case 93:
    case 94:
    case 95:
    case 96:
    case 97:
    case 98:
    case 99:
    case 100:
    case 101:
    case 106:
    case 107:
    case 108:
    case 109:
      return "linux";
    // Windows: 3.x/95/98/NT/CE, 2000, Me, XP, 2003, Vista, 2008, 7, 2011, 2012, 8.
    case 15:
    case 16:
    case 17:
    case 18:
    case 19:
    case 58:
    case 63:
    case 67:
    case 69:
    case 70:
    case 71:
    case 72:
    case 73:
    case 74:
    case 75:
    case 76:
    case 77:
    case 103:
    case 105:
    case 111:
    case 112:
    case 113:
    case 114:
    case 115:
    case 116:
      return "windows";
    case 41:
    case 42:
    case 43:
    case 65:
    case 78:  // BSDUNIX, FreeBSD, NetBSD, OpenBSD
      return "bsd";
    case 29:
    case 30:
    case 81:  // Solaris, SunOS, Solaris 64-Bit
      return "solaris";
    default:
      return "other";
  }
}

std::string osFamilyFromName(std::string_view name) {
  std::string n;
  for (const char c : name) {
    n.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  auto has = [&](std::string_view s) { return n.find(s) != std::string::npos; };
  if (n.empty()) {
    return "";
  }
  if (has("win")) {
    return "windows";
  }
  if (has("linux") || has("ubuntu") || has("debian") || has("centos") || has("rhel") ||
      has("redhat") || has("suse") || has("sles") || has("fedora") || has("photon") ||
      has("oracle") || has("coreos") || has("alma") || has("rocky") || has("arch") ||
      has("gentoo") || has("mandriva") || has("turbolinux") || has("asianux")) {
    return "linux";
  }
  if (has("bsd")) {
    return "bsd";
  }
  if (has("solaris") || has("sunos")) {
    return "solaris";
  }
  return "other";
}

}  // namespace vandra::ovf
