#include "vandra/ovf/vm_spec.h"

namespace vandra::ovf {

std::string_view toString(OvfVersion v) {
  switch (v) {
    case OvfVersion::V0_9:
      return "0.9";
    case OvfVersion::V1_0:
      return "1.0";
    case OvfVersion::V1_1:
      return "1.1";
    case OvfVersion::V2_0:
      return "2.0";
    case OvfVersion::V2_1:
      return "2.1";
  }
  return "1.0";
}

std::string_view toString(Firmware f) {
  switch (f) {
    case Firmware::Bios:
      return "bios";
    case Firmware::Efi:
      return "efi";
  }
  return "bios";
}

std::string_view toString(ControllerKind k) {
  switch (k) {
    case ControllerKind::Ide:
      return "ide";
    case ControllerKind::Scsi:
      return "scsi";
    case ControllerKind::Sata:
      return "sata";
    case ControllerKind::Nvme:
      return "nvme";
    case ControllerKind::Virtio:
      return "virtio";
    case ControllerKind::Floppy:
      return "floppy";
    case ControllerKind::Usb:
      return "usb";
  }
  return "ide";
}

}  // namespace vandra::ovf
