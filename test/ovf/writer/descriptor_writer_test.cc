// Descriptor writer tests: golden files (VmSpec JSON -> expected .ovf, never auto-accepted),
// RASD child order, namespaces of the parsed output, escaping, argument errors, and the
// round trip through the descriptor reader.
#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/ovf/writer.h"

namespace vandra::ovf {
namespace {

const std::string kDataDir = std::string(VANDRA_TEST_DATA) + "/writer/";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

VmSpec loadSpec(const std::string& name) {
  const std::string text = slurp(kDataDir + name + ".vmspec.json");
  auto j = nlohmann::json::parse(text, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << name;
  auto spec = vmSpecFromJson(j);
  EXPECT_TRUE(spec.has_value()) << name << ": " << spec.error().describe();
  return spec ? *spec : VmSpec{};
}

// libxml2 document owned for the test's scope.
struct Doc {
  explicit Doc(const std::string& xml)
      : doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "test.ovf", nullptr,
                          XML_PARSE_NONET | XML_PARSE_NOBLANKS)) {}
  ~Doc() { xmlFreeDoc(doc); }
  Doc(const Doc&) = delete;
  Doc& operator=(const Doc&) = delete;
  xmlDocPtr doc;
};

const xmlChar* X(const char* s) {
  return reinterpret_cast<const xmlChar*>(s);
}

std::string nsOf(const xmlNode* n) {
  return n->ns != nullptr && n->ns->href != nullptr ? reinterpret_cast<const char*>(n->ns->href)
                                                    : "";
}
std::string nameOf(const xmlNode* n) {
  return reinterpret_cast<const char*>(n->name);
}
std::string textOf(xmlNode* n) {
  xmlChar* c = xmlNodeGetContent(n);
  std::string s = c != nullptr ? reinterpret_cast<const char*>(c) : "";
  xmlFree(c);
  return s;
}

template <class F>
void walk(xmlNode* n, F&& f) {
  for (xmlNode* c = n; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE) {
      f(c);
      walk(c->children, f);
    }
  }
}

constexpr const char* kRasd =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
constexpr const char* kSasd =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData";
constexpr const char* kEpasd =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData";

struct GoldenCase {
  std::string spec;
  WriteVersion version;
  std::string expected;
};

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, MatchesExpectedFile) {
  const auto& c = GetParam();
  const VmSpec spec = loadSpec(c.spec);
  auto xml = writeDescriptor(spec, c.version);
  ASSERT_TRUE(xml.has_value()) << xml.error().describe();
  const std::string expected_path = kDataDir + c.expected + ".expected.ovf";
  if (!std::filesystem::exists(expected_path)) {
    std::ofstream(kDataDir + c.expected + ".actual.ovf", std::ios::binary) << *xml;
    FAIL() << "No " << expected_path << "; wrote " << c.expected
           << ".actual.ovf for review (rename it to accept)";
  }
  EXPECT_EQ(*xml, slurp(expected_path)) << "descriptor for " << c.spec << " changed";
}

INSTANTIATE_TEST_SUITE_P(Writer, Golden,
                         ::testing::Values(GoldenCase{"minimal", WriteVersion::V1_0, "minimal"},
                                           GoldenCase{"full", WriteVersion::V1_0, "full"},
                                           GoldenCase{"full", WriteVersion::V2_0, "full.v2"},
                                           GoldenCase{"multi", WriteVersion::V1_0, "multi"}),
                         [](const auto& param_info) {
                           std::string n = param_info.param.expected;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

// The CIM schemas declare item children as an alphabetical sequence; ovftool enforces it.
TEST(DescriptorWriter, ItemChildrenAreInSchemaOrder) {
  for (const auto version : {WriteVersion::V1_0, WriteVersion::V2_0}) {
    auto xml = writeDescriptor(loadSpec("full"), version);
    ASSERT_TRUE(xml.has_value()) << xml.error().describe();
    Doc d(*xml);
    ASSERT_NE(d.doc, nullptr);
    int items = 0;
    walk(xmlDocGetRootElement(d.doc), [&](xmlNode* n) {
      const std::string name = nameOf(n);
      if (name != "Item" && name != "StorageItem" && name != "EthernetPortItem") {
        return;
      }
      if (nameOf(n->parent) != "VirtualHardwareSection") {
        return;  // StartupSection items have no children
      }
      ++items;
      std::vector<std::string> cim;
      bool vendor_seen = false;
      for (xmlNode* c = n->children; c != nullptr; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) {
          continue;
        }
        const std::string ns = nsOf(c);
        if (ns == kRasd || ns == kSasd || ns == kEpasd) {
          EXPECT_FALSE(vendor_seen) << "CIM element after a vendor extension";
          cim.push_back(nameOf(c));
        } else {
          vendor_seen = true;
        }
      }
      EXPECT_TRUE(std::is_sorted(cim.begin(), cim.end())) << "unsorted children in " << name;
      EXPECT_FALSE(cim.empty());
    });
    EXPECT_EQ(items, 2 + 4 + 3 + 2 + 3);  // cpu, mem, 4 controllers (no floppy), disks, media, nics
  }
}

TEST(DescriptorWriter, NamespacesOfVersion1) {
  auto xml = writeDescriptor(loadSpec("full"), WriteVersion::V1_0);
  ASSERT_TRUE(xml.has_value());
  Doc d(*xml);
  ASSERT_NE(d.doc, nullptr);
  xmlNode* root = xmlDocGetRootElement(d.doc);
  EXPECT_EQ(nameOf(root), "Envelope");
  EXPECT_EQ(nsOf(root), "http://schemas.dmtf.org/ovf/envelope/1");
  xmlChar* ver = xmlGetNsProp(root, X("version"), X("http://schemas.dmtf.org/ovf/envelope/1"));
  ASSERT_NE(ver, nullptr);
  EXPECT_STREQ(reinterpret_cast<const char*>(ver), "1.0");
  xmlFree(ver);
  int sla = 0;
  int rasd_children = 0;
  bool efi = false;
  walk(root, [&](xmlNode* n) {
    if (nameOf(n) == "SlaSection") {
      ++sla;
      EXPECT_EQ(nsOf(n), std::string(kSlaNamespace));
      // Last section of its VirtualSystem.
      xmlNode* next = n->next;
      while (next != nullptr && next->type != XML_ELEMENT_NODE) {
        next = next->next;
      }
      EXPECT_EQ(next, nullptr);
      EXPECT_EQ(nameOf(n->parent), "VirtualSystem");
      xmlNode* info = xmlFirstElementChild(n);
      ASSERT_NE(info, nullptr);
      EXPECT_EQ(nameOf(info), "Info");
      EXPECT_EQ(nsOf(info), "http://schemas.dmtf.org/ovf/envelope/1");
    }
    if (nameOf(n) == "StorageItem" || nameOf(n) == "EthernetPortItem") {
      ADD_FAILURE() << "OVF 2 item in an OVF 1.0 descriptor";
    }
    if (nameOf(n) == "Item" && nameOf(n->parent) == "VirtualHardwareSection") {
      for (xmlNode* c = xmlFirstElementChild(n); c != nullptr; c = xmlNextElementSibling(c)) {
        rasd_children += nsOf(c) == kRasd ? 1 : 0;
      }
    }
    if (nameOf(n) == "Config" && nsOf(n) == "http://www.vmware.com/schema/ovf") {
      xmlChar* key = xmlGetNsProp(n, X("key"), X("http://www.vmware.com/schema/ovf"));
      xmlChar* value = xmlGetNsProp(n, X("value"), X("http://www.vmware.com/schema/ovf"));
      efi = key != nullptr && value != nullptr &&
            std::string(reinterpret_cast<const char*>(key)) == "firmware" &&
            std::string(reinterpret_cast<const char*>(value)) == "efi";
      xmlFree(key);
      xmlFree(value);
    }
  });
  EXPECT_EQ(sla, 1);
  EXPECT_GT(rasd_children, 40);
  EXPECT_TRUE(efi);
}

TEST(DescriptorWriter, Version2UsesStorageAndEthernetPortItems) {
  auto xml = writeDescriptor(loadSpec("full"), WriteVersion::V2_0);
  ASSERT_TRUE(xml.has_value());
  Doc d(*xml);
  ASSERT_NE(d.doc, nullptr);
  xmlNode* root = xmlDocGetRootElement(d.doc);
  EXPECT_EQ(nsOf(root), "http://schemas.dmtf.org/ovf/envelope/2");
  int storage = 0;
  int ether = 0;
  walk(root, [&](xmlNode* n) {
    const std::string name = nameOf(n);
    if (name == "StorageItem" || name == "EthernetPortItem") {
      (name == "StorageItem" ? storage : ether)++;
      for (xmlNode* c = xmlFirstElementChild(n); c != nullptr; c = xmlNextElementSibling(c)) {
        EXPECT_EQ(nsOf(c), name == "StorageItem" ? kSasd : kEpasd) << nameOf(c);
      }
    }
  });
  EXPECT_EQ(storage, 3);
  EXPECT_EQ(ether, 3);
}

TEST(DescriptorWriter, EscapesTextAndAttributes) {
  VmSpec spec = loadSpec("minimal");
  ProductSpec p;
  p.product = "A <b> & \"c\"";
  const std::string tricky = "x < y && \"q\" 'a'\nnext\tline\r\nend ]]> <!-- -->";
  p.properties.push_back({"k", "string", tricky, "L&<", "", true, false});
  spec.virtual_systems[0].products.push_back(p);
  spec.virtual_systems[0].eulas.push_back(tricky);
  auto xml = writeDescriptor(spec, WriteVersion::V1_0);
  ASSERT_TRUE(xml.has_value()) << xml.error().describe();
  Doc d(*xml);
  ASSERT_NE(d.doc, nullptr) << *xml;
  std::string value;
  std::string license;
  std::string product;
  walk(xmlDocGetRootElement(d.doc), [&](xmlNode* n) {
    if (nameOf(n) == "Property") {
      xmlChar* v = xmlGetNsProp(n, X("value"), X("http://schemas.dmtf.org/ovf/envelope/1"));
      value = v != nullptr ? reinterpret_cast<const char*>(v) : "";
      xmlFree(v);
    } else if (nameOf(n) == "License") {
      license = textOf(n);
    } else if (nameOf(n) == "Product") {
      product = textOf(n);
    }
  });
  EXPECT_EQ(value, tricky);
  EXPECT_EQ(license, tricky);
  EXPECT_EQ(product, p.product);
}

TEST(DescriptorWriter, RefusesCharactersXmlCannotCarry) {
  VmSpec spec = loadSpec("minimal");
  spec.virtual_systems[0].eulas.push_back(std::string("bell\x07"));
  auto xml = writeDescriptor(spec, WriteVersion::V1_0);
  ASSERT_FALSE(xml.has_value());
  EXPECT_EQ(xml.error().code, ErrorCode::InvalidArgument);

  spec = loadSpec("minimal");
  spec.virtual_systems[0].name = std::string("bad\xC3(utf8");
  xml = writeDescriptor(spec, WriteVersion::V1_0);
  ASSERT_FALSE(xml.has_value());
  EXPECT_EQ(xml.error().code, ErrorCode::InvalidArgument);
}

TEST(DescriptorWriter, ArgumentErrorsNameTheField) {
  struct Case {
    std::function<void(VmSpec&)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](VmSpec& s) { s.virtual_systems[0].disks[0].controller = "scsi9"; },
       "virtual_systems[0].disks[0].controller"},
      {[](VmSpec& s) { s.virtual_systems[0].disks[0].file = "other.vmdk"; },
       "virtual_systems[0].disks[0].file"},
      {[](VmSpec& s) { s.virtual_systems[0].disks[0].capacity_bytes = 0; },
       "virtual_systems[0].disks[0].capacity_bytes"},
      {[](VmSpec& s) { s.virtual_systems[0].vcpus = 0; }, "virtual_systems[0].vcpus"},
      {[](VmSpec& s) { s.virtual_systems[0].nics[0].network = "nowhere"; },
       "virtual_systems[0].nics[0].network"},
      {[](VmSpec& s) { s.virtual_systems.push_back(s.virtual_systems[0]); },
       "virtual_systems[1].id"},
      {[](VmSpec& s) { s.virtual_systems.clear(); }, "virtual_systems"},
      {[](VmSpec& s) { s.virtual_systems[0].disks[0].format = "weird"; },
       "virtual_systems[0].disks[0].format"},
  };
  for (const auto& c : cases) {
    VmSpec spec = loadSpec("minimal");
    c.edit(spec);
    auto xml = writeDescriptor(spec, WriteVersion::V1_0);
    ASSERT_FALSE(xml.has_value()) << c.field;
    EXPECT_EQ(xml.error().code, ErrorCode::InvalidArgument) << c.field;
    EXPECT_NE(xml.error().message.find("'" + c.field + "'"), std::string::npos)
        << xml.error().message;
  }
  VmSpec spec = loadSpec("minimal");
  Sla bad;
  bad.currency = "euro";
  spec.virtual_systems[0].sla = bad;
  auto xml = writeDescriptor(spec, WriteVersion::V1_0);
  ASSERT_FALSE(xml.has_value());
  EXPECT_EQ(xml.error().code, ErrorCode::SlaInvalid);
}

TEST(DescriptorWriter, DoublesAreShortestRoundTrip) {
  VmSpec spec = loadSpec("minimal");
  Sla sla;
  sla.max_cost_per_hour = 0.1;
  sla.availability_percent = 99.999;
  spec.virtual_systems[0].sla = sla;
  auto xml = writeDescriptor(spec, WriteVersion::V1_0);
  ASSERT_TRUE(xml.has_value());
  EXPECT_NE(xml->find(">0.1</vandra:MaxCostPerHour>"), std::string::npos);
  EXPECT_NE(xml->find("<vandra:Availability>99.999</vandra:Availability>"), std::string::npos);
}

// read(write(spec)) must be a fixed point: write(read(write(spec))) reads back the same.
class RoundTrip : public ::testing::TestWithParam<std::pair<std::string, WriteVersion>> {};

TEST_P(RoundTrip, ReadWriteReadIsStable) {
  const VmSpec original = loadSpec(GetParam().first);
  const WriteVersion version = GetParam().second;
  auto xml1 = writeDescriptor(original, version);
  ASSERT_TRUE(xml1.has_value()) << xml1.error().describe();
  auto read1 = readDescriptor(*xml1, {});
  ASSERT_TRUE(read1.has_value()) << read1.error().describe();
  for (const auto& p : read1->problems) {
    ADD_FAILURE() << "problem: " << p.describe();
  }
  auto xml2 = writeDescriptor(read1->spec, version);
  ASSERT_TRUE(xml2.has_value()) << xml2.error().describe();
  auto read2 = readDescriptor(*xml2, {});
  ASSERT_TRUE(read2.has_value()) << read2.error().describe();
  EXPECT_TRUE(read2->problems.empty());
  EXPECT_EQ(toJson(read1->spec).dump(1), toJson(read2->spec).dump(1));
  EXPECT_EQ(*xml1, *xml2) << "writer output is not a fixed point";

  // What the writer was given survives the trip.
  const VmSpec& got = read1->spec;
  ASSERT_EQ(got.virtual_systems.size(), original.virtual_systems.size());
  for (size_t i = 0; i < original.virtual_systems.size(); ++i) {
    const auto& a = original.virtual_systems[i];
    const auto& b = got.virtual_systems[i];
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.vcpus, b.vcpus);
    EXPECT_EQ(a.cores_per_socket, b.cores_per_socket);
    EXPECT_EQ(a.memory_mib, b.memory_mib);
    EXPECT_EQ(a.firmware, b.firmware);
    EXPECT_EQ(a.os.cim_id, b.os.cim_id);
    EXPECT_EQ(a.sla, b.sla);
    EXPECT_EQ(a.eulas, b.eulas);
    EXPECT_EQ(a.resources, b.resources);
    ASSERT_EQ(a.disks.size(), b.disks.size());
    for (size_t k = 0; k < a.disks.size(); ++k) {
      EXPECT_EQ(a.disks[k].id, b.disks[k].id);
      EXPECT_EQ(a.disks[k].capacity_bytes, b.disks[k].capacity_bytes);
      EXPECT_EQ(a.disks[k].populated_bytes, b.disks[k].populated_bytes);
      EXPECT_EQ(a.disks[k].file, b.disks[k].file);
      EXPECT_EQ(a.disks[k].controller, b.disks[k].controller);
      EXPECT_EQ(a.disks[k].unit, b.disks[k].unit);
    }
    ASSERT_EQ(a.nics.size(), b.nics.size());
    for (size_t k = 0; k < a.nics.size(); ++k) {
      EXPECT_EQ(a.nics[k], b.nics[k]);
    }
    ASSERT_EQ(a.products.size(), b.products.size());
    for (size_t k = 0; k < a.products.size(); ++k) {
      EXPECT_EQ(a.products[k].properties, b.products[k].properties);
      EXPECT_EQ(a.products[k].product, b.products[k].product);
    }
  }
  EXPECT_EQ(got.networks.size(), original.networks.size());
  EXPECT_EQ(got.files, original.files);
  EXPECT_EQ(got.startup.size(), original.startup.size());
}

INSTANTIATE_TEST_SUITE_P(Writer, RoundTrip,
                         ::testing::Values(std::pair{"minimal", WriteVersion::V1_0},
                                           std::pair{"full", WriteVersion::V1_0},
                                           std::pair{"full", WriteVersion::V2_0},
                                           std::pair{"multi", WriteVersion::V1_0},
                                           std::pair{"multi", WriteVersion::V2_0}),
                         [](const auto& param_info) {
                           return param_info.param.first +
                                  (param_info.param.second == WriteVersion::V1_0 ? "_v1" : "_v2");
                         });

}  // namespace
}  // namespace vandra::ovf
