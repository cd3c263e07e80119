// Private to src/ovf/descriptor: the reader behind readDescriptor() (descriptor_reader.cc),
// one pass over a libxml2 tree. Its parts: reader.cc (the envelope, references, disks,
// networks, properties, virtual systems, OS, product) and reader_hardware.cc (the
// VirtualHardwareSection's items: CPUs, memory, controllers, disks, NICs, media).
//
//   run() -> References -> DiskSection -> NetworkSection -> VirtualSystem(Collection)*
//            -> per VirtualSystem: OS, Product, hardware Items (readHardware) -> checks
#pragma once

#include <libxml/tree.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vandra/ovf/descriptor_reader.h"
#include "xml_document.h"

namespace vandra::ovf::reading {

using xml::attr;
using xml::children;
using xml::lineOf;
using xml::nameOf;
using xml::nsOf;
using xml::text;

std::string lower(std::string_view s);
bool iequals(std::string_view a, std::string_view b);
std::vector<std::string> splitSpaces(std::string_view s);
std::string diskFormatFromUri(std::string_view uri);
std::string nicModel(std::string_view subtype);
std::optional<std::string> normaliseMac(std::string_view raw);

enum class ItemKind : uint8_t { Rasd, Storage, Ethernet };

// One hardware Item, with its CIM child elements by local name.
struct ItemView {
  xmlNode* node = nullptr;
  ItemKind kind = ItemKind::Rasd;
  std::map<std::string, std::string> fields;  // local name -> text (first)
  std::vector<std::string> host_resources;
  std::vector<xmlNode*> extensions;  // non-CIM children (vmw:Config, ...)

  std::string get(const std::string& k) const {
    auto it = fields.find(k);
    return it == fields.end() ? std::string{} : it->second;
  }
  bool has(const std::string& k) const { return fields.count(k) != 0; }
};

struct DiskEntry {
  DiskSpec spec;
  std::string file_ref;
  int line = 0;
};

class Reader {
 public:
  Reader(xmlDoc* doc, const ReadOptions& options) : doc_(doc), options_(options) {}

  Result<DescriptorReadResult> run();

 private:
  // OVF elements are those in the Envelope's namespace. Unqualified elements count too:
  // OVF 0.9 producers and the DMTF draft wrote children without a prefix.
  bool isOvf(const xmlNode* n) const;

  std::optional<std::string> ovfAttr(const xmlNode* n, std::string_view local) const;

  // Name of an OVF element, with 0.9's <Section xsi:type="ovf:DiskSection_Type"> and
  // <Content xsi:type="ovf:VirtualSystem_Type"> resolved through the in-scope namespaces.
  std::string effectiveName(xmlNode* n) const;

  void problem(ErrorCode code, std::string msg, const xmlNode* at);

  void warn(std::string msg, const xmlNode* at);

  bool isRequired(const xmlNode* n) const;

  bool selected(const xmlNode* n) const;

  std::string infoOf(const xmlNode* section);

  bool hasInfo(const xmlNode* section);

  void requireInfo(const xmlNode* section, const std::string& what);

  void checkExtensions(xmlNode* n);

  bool isSectionOrTopLevel(const xmlNode* c) const;

  std::string describeName(const xmlNode* c, const std::string& name) const;

  void reportUnknown(const xmlNode* c, const std::string& what);

  Result<void> readDeploymentOptions(xmlNode* section);

  void collectProperties(xmlNode* n);

  template <class F>
  void forEachProperty(xmlNode* product, F&& f) {
    auto visit = [&](xmlNode* container, auto& self) -> void {
      for (xmlNode* p : children(container)) {
        if (!isOvf(p)) {
          continue;
        }
        if (nameOf(p) == "Category") {
          continue;
        }
        if (nameOf(p) != "Property") {
          continue;
        }
        Property prop;
        prop.key = ovfAttr(p, "key").value_or("");
        prop.type = ovfAttr(p, "type").value_or("");
        prop.value = ovfAttr(p, "value").value_or("");
        auto uc = ovfAttr(p, "userConfigurable");
        prop.user_configurable = uc && (*uc == "true" || *uc == "1");
        auto pw = ovfAttr(p, "password");
        prop.password = pw && (*pw == "true" || *pw == "1");
        for (xmlNode* pc : children(p)) {
          if (!isOvf(pc)) {
            continue;
          }
          if (nameOf(pc) == "Label") {
            prop.label = text(pc);
          } else if (nameOf(pc) == "Description") {
            prop.description = text(pc);
          } else if (nameOf(pc) == "Value" && !spec_.configuration.empty()) {
            // <Value ovf:value="..." ovf:configuration="x"/> overrides per configuration.
            auto cfg = ovfAttr(pc, "configuration");
            if (cfg) {
              const auto list = splitSpaces(*cfg);
              if (std::find(list.begin(), list.end(), spec_.configuration) != list.end()) {
                prop.value = ovfAttr(pc, "value").value_or(prop.value);
              }
            }
          }
        }
        if (prop.key.empty()) {
          problem(ErrorCode::OvfInvalid, "Property without ovf:key", p);
          continue;
        }
        f(p, prop);
      }
      (void)self;
    };
    visit(product, visit);
  }

  std::optional<uint64_t> parseSize(const std::string& raw, const std::string& units,
                                    const xmlNode* at, const std::string& what);

  static bool unsafeHref(const std::string& href);

  void readReferences(xmlNode* refs);

  void readDisks(xmlNode* section);

  void readNetworks(xmlNode* section);

  void readContent(xmlNode* c, const std::string& collection, int depth);

  void checkId(const std::string& id, const xmlNode* at);

  void readStartup(xmlNode* section);

  void readVirtualSystem(xmlNode* vsNode, const std::string& collection);

  void readVboxMachine(xmlNode* machine, VirtualSystemSpec& vs);

  void readOs(xmlNode* section, VirtualSystemSpec& vs);

  void readProduct(xmlNode* section, VirtualSystemSpec& vs);

  void readResourceAllocation(xmlNode* section, VirtualSystemSpec& vs);

  ItemView itemView(xmlNode* n, ItemKind kind);

  std::optional<uint64_t> itemBytes(const ItemView& it, const std::string& field);

  void applyAllocation(const ItemView& it, VirtualSystemSpec& vs);

  void readHardware(xmlNode* section, VirtualSystemSpec& vs);

  // "ovf:/disk/ID", "/disk/ID", "ovf://disk/ID", "ovf:/file/ID" -> {"disk"|"file", ID};
  // anything else (oVirt: "group/image") -> {"", value}.
  static std::pair<std::string, std::string> hostResource(std::string v);

  void readDiskItem(const ItemView& it, VirtualSystemSpec& vs, const std::string& controller,
                    int unit);

  void checkUnusedDisks();

  xmlDoc* doc_;
  const ReadOptions& options_;
  std::string env_ns_;
  VmSpec spec_;
  std::vector<Error> problems_;
  std::map<std::string, std::string> properties_;
  std::map<std::string, FileSpec> files_;
  std::map<std::string, DiskEntry> disks_;
  std::vector<std::string> disk_order_;
  std::set<std::string> used_disks_;
  std::set<std::string> network_names_;
  std::set<std::string> content_ids_;
  std::set<std::string> referenced_disks_;           // by any Item, in any configuration
  std::map<std::string, std::string> disk_by_file_;  // fileRef or href -> disk id (oVirt)
  std::set<std::string> parent_disks_;
  std::map<std::string, std::string> file_by_href_;  // href -> File id
  std::set<std::string> option_ids_;
  std::set<std::string> vs_disk_ids_;  // disk ids of the virtual system being read
  bool ovirt_ = false;
};

}  // namespace vandra::ovf::reading
