// VmSpec: the normalised, producer-independent description of a package's virtual machines
// that the agent boots from. Produced by the descriptor reader, consumed by the writer and
// the agent. Pure value types; JSON form in vm_spec_json.h.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vandra/ovf/sla.h"

namespace vandra::ovf {

enum class OvfVersion : uint8_t { V0_9, V1_0, V1_1, V2_0, V2_1 };
std::string_view toString(OvfVersion v);  // "0.9", "1.0", ...

enum class Firmware : uint8_t { Bios, Efi };
std::string_view toString(Firmware f);  // "bios", "efi"

enum class ControllerKind : uint8_t { Ide, Scsi, Sata, Nvme, Virtio, Floppy, Usb };
std::string_view toString(ControllerKind k);  // "ide", "scsi", ...

struct ControllerSpec {
  std::string id;  // stable name: "<kind><index>", e.g. "scsi0"
  ControllerKind kind = ControllerKind::Ide;
  std::string model;  // e.g. "lsilogic", "virtio-scsi", "piix4", "ahci"; may be empty
  bool operator==(const ControllerSpec&) const = default;
};

struct DiskSpec {
  std::string id;  // DiskSection ovf:diskId
  uint64_t capacity_bytes = 0;
  std::optional<uint64_t> populated_bytes;
  std::string format;                 // "vmdk-stream", "vmdk-sparse", "vmdk-flat", "qcow2", "raw",
                                      // "vhd", "vhdx", "iso", or "unknown"
  std::string format_uri;             // as written in the descriptor
  std::optional<std::string> file;    // package member (References href); none for blank disks
  std::optional<std::string> parent;  // parent disk id (delta disk chain)
  std::string controller;             // ControllerSpec::id
  int unit = 0;                       // address on the controller
  bool operator==(const DiskSpec&) const = default;
};

struct NicSpec {
  std::string network;             // NetworkSection name ("" when unconnected)
  std::string model;               // "e1000", "e1000e", "vmxnet3", "virtio", "pcnet", "rtl8139"
  std::optional<std::string> mac;  // "52:54:00:..." lower case when the descriptor has one
  bool connected = true;
  bool operator==(const NicSpec&) const = default;
};

enum class MediaKind : uint8_t { Cdrom, Floppy };
struct MediaSpec {
  MediaKind kind = MediaKind::Cdrom;
  std::optional<std::string> file;  // ISO/floppy image member, if any
  std::string controller;
  bool operator==(const MediaSpec&) const = default;
};

struct OsSpec {
  int cim_id = 0;           // CIM_OperatingSystem OsType id (DSP0243), 0 = Unknown
  std::string family;       // normalised: "linux", "windows", "bsd", "other"
  std::string description;  // Description / vmw:osType / vbox OSType as given
  bool operator==(const OsSpec&) const = default;
};

struct Property {
  std::string key;
  std::string type;   // xs type: "string", "boolean", "uint16", ...
  std::string value;  // default value (after configuration selection)
  std::string label;
  std::string description;
  bool user_configurable = false;
  bool password = false;
  bool operator==(const Property&) const = default;
};

struct ProductSpec {
  std::string class_id;  // ovf:class
  std::string instance;  // ovf:instance
  std::string product, vendor, version, full_version, product_url;
  std::vector<Property> properties;
  bool operator==(const ProductSpec&) const = default;
};

struct StartupEntry {
  std::string id;
  int order = 0;
  int start_delay_s = 0;
  int stop_delay_s = 0;
  std::string start_action, stop_action;
  bool operator==(const StartupEntry&) const = default;
};

struct ResourceAllocation {  // ResourceAllocationSection / reservation-limit-weight hints
  std::optional<uint64_t> memory_reservation_mib;
  std::optional<uint64_t> memory_limit_mib;
  std::optional<uint64_t> cpu_reservation_mhz;
  std::optional<uint64_t> cpu_limit_mhz;
  bool operator==(const ResourceAllocation&) const = default;
};

struct VirtualSystemSpec {
  std::string id;          // ovf:id
  std::string name;        // Name element, else VirtualSystemIdentifier, else id
  std::string collection;  // id of the enclosing VirtualSystemCollection, if any
  uint32_t vcpus = 1;
  uint32_t cores_per_socket = 0;  // 0 = not stated
  uint64_t memory_mib = 0;
  Firmware firmware = Firmware::Bios;
  std::string hardware_family;  // VirtualSystemType, e.g. "vmx-13 virtualbox-2.2"
  OsSpec os;
  std::vector<ControllerSpec> controllers;
  std::vector<DiskSpec> disks;
  std::vector<NicSpec> nics;
  std::vector<MediaSpec> media;
  std::vector<ProductSpec> products;
  std::vector<std::string> eulas;
  std::optional<Sla> sla;
  ResourceAllocation resources;
  bool operator==(const VirtualSystemSpec&) const = default;
};

struct FileSpec {
  std::string id;
  std::string href;
  std::optional<uint64_t> size;
  std::string compression;  // "" or "gzip"
  std::optional<uint64_t> chunk_size;
  bool operator==(const FileSpec&) const = default;
};

struct NetworkSpec {
  std::string name;
  std::string description;
  bool operator==(const NetworkSpec&) const = default;
};

struct DeploymentOption {
  std::string id;
  std::string label;
  std::string description;
  bool is_default = false;
  bool operator==(const DeploymentOption&) const = default;
};

struct VmSpec {
  OvfVersion ovf_version = OvfVersion::V1_0;
  std::string configuration;  // the DeploymentOption used to read the hardware ("" if none)
  std::vector<VirtualSystemSpec> virtual_systems;
  std::vector<NetworkSpec> networks;
  std::vector<FileSpec> files;
  std::vector<DeploymentOption> deployment_options;
  std::vector<StartupEntry> startup;
  std::vector<std::string> warnings;
  bool operator==(const VmSpec&) const = default;
};

}  // namespace vandra::ovf
