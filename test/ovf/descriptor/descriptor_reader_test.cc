// Unit tests of specific reader behaviours: deployment option selection, lax mode, ${}
// capacity references, allocation units, namespace matching by URI, SLA read/rewrite round
// trips, and hostile-input limits (size, depth, element count, entity expansion).
// Descriptors are built here from small pieces so each test shows what it varies.
#include "vandra/ovf/descriptor_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "vandra/ovf/vm_spec_json.h"

namespace vandra::ovf {
namespace {

using ::testing::HasSubstr;

constexpr const char* kEnvOpen =
    R"(<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vandra="urn:vandra:ovf:sla:1">
)";

std::string item(const std::string& iid, int type, const std::string& body,
                 const std::string& attrs = "") {
  return "      <Item" + attrs + "><rasd:InstanceID>" + iid +
         "</rasd:InstanceID><rasd:ResourceType>" + std::to_string(type) + "</rasd:ResourceType>" +
         body + "</Item>\n";
}

std::string cpu(int n, const std::string& attrs = "") {
  return item("1", 3, "<rasd:VirtualQuantity>" + std::to_string(n) + "</rasd:VirtualQuantity>",
              attrs);
}

std::string memory(const std::string& qty, const std::string& units,
                   const std::string& attrs = "") {
  const std::string u =
      units.empty() ? "" : "<rasd:AllocationUnits>" + units + "</rasd:AllocationUnits>";
  return item("2", 4, u + "<rasd:VirtualQuantity>" + qty + "</rasd:VirtualQuantity>", attrs);
}

// One VirtualSystem "vm" with the given hardware Items and extra sections.
std::string virtualSystem(const std::string& items, const std::string& sections = "",
                          const std::string& id = "vm") {
  return "  <VirtualSystem ovf:id=\"" + id + "\">\n    <Info>test VM</Info>\n" + sections +
         "    <VirtualHardwareSection>\n      <Info>hw</Info>\n" + items +
         "    </VirtualHardwareSection>\n  </VirtualSystem>\n";
}

std::string envelope(const std::string& body) {
  return std::string(kEnvOpen) + body + "</Envelope>\n";
}

std::string simple(const std::string& sections = "") {
  return envelope(virtualSystem(cpu(1) + memory("512", "byte * 2^20"), sections));
}

DescriptorReadResult readOk(const std::string& xml, const ReadOptions& options = {}) {
  auto r = readDescriptor(xml, options);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().describe());
  return r ? *r : DescriptorReadResult{};
}

// --- deployment options ---------------------------------------------------------------

std::string optionsDoc(bool mark_default) {
  const std::string def = mark_default ? R"( ovf:default="true")" : "";
  return envelope(R"(  <DeploymentOptionSection>
    <Info>sizes</Info>
    <Configuration ovf:id="small"><Label>Small</Label></Configuration>
    <Configuration ovf:id="medium")" +
                  def + R"(><Label>Medium</Label></Configuration>
    <Configuration ovf:id="large"><Label>Large</Label></Configuration>
  </DeploymentOptionSection>
)" +
                  virtualSystem(cpu(1) + cpu(2, R"( ovf:configuration="medium")") +
                                cpu(8, R"( ovf:configuration="large")") +
                                memory("1024", "byte * 2^20") +
                                memory("16384", "byte * 2^20", R"( ovf:configuration="large")")));
}

TEST(DeploymentOption, DefaultIsTheOneMarkedDefault) {
  auto r = readOk(optionsDoc(true));
  EXPECT_EQ(r.spec.configuration, "medium");
  ASSERT_EQ(r.spec.virtual_systems.size(), 1U);
  EXPECT_EQ(r.spec.virtual_systems[0].vcpus, 2U);
  EXPECT_EQ(r.spec.virtual_systems[0].memory_mib, 1024U);
  EXPECT_TRUE(r.problems.empty());
}

TEST(DeploymentOption, DefaultIsTheFirstWhenNoneIsMarked) {
  auto r = readOk(optionsDoc(false));
  EXPECT_EQ(r.spec.configuration, "small");
  EXPECT_EQ(r.spec.virtual_systems[0].vcpus, 1U);  // the generic Item
}

TEST(DeploymentOption, ExplicitSelectionOverridesGenericItems) {
  ReadOptions o;
  o.configuration = "large";
  auto r = readOk(optionsDoc(true), o);
  EXPECT_EQ(r.spec.configuration, "large");
  EXPECT_EQ(r.spec.virtual_systems[0].vcpus, 8U);
  EXPECT_EQ(r.spec.virtual_systems[0].memory_mib, 16384U);
  ASSERT_EQ(r.spec.deployment_options.size(), 3U);
  EXPECT_TRUE(r.spec.deployment_options[1].is_default);
}

TEST(DeploymentOption, UnknownOptionIsInvalidArgumentListingTheKnownOnes) {
  ReadOptions o;
  o.configuration = "huge";
  auto r = readDescriptor(optionsDoc(true), o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_THAT(r.error().message, HasSubstr("huge"));
  EXPECT_THAT(r.error().message, HasSubstr("small, medium, large"));
}

TEST(DeploymentOption, RequestingOneFromADescriptorWithoutOptionsFails) {
  ReadOptions o;
  o.configuration = "large";
  auto r = readDescriptor(simple(), o);
  // No DeploymentOptionSection: nothing can honour the request. Silently ignoring it would
  // deploy something other than what the user asked for.
  ASSERT_FALSE(r.has_value()) << "request for 'large' neither honoured nor refused";
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
}

TEST(DeploymentOption, PropertyValuesFollowTheConfiguration) {
  const std::string product = R"(    <ProductSection>
      <Info>p</Info>
      <Property ovf:key="tier" ovf:type="string" ovf:value="basic">
        <Value ovf:configuration="large medium" ovf:value="premium"/>
      </Property>
    </ProductSection>
)";
  const std::string doc = envelope(R"(  <DeploymentOptionSection><Info>s</Info>
    <Configuration ovf:id="small"><Label>S</Label></Configuration>
    <Configuration ovf:id="large"><Label>L</Label></Configuration>
  </DeploymentOptionSection>
)" + virtualSystem(cpu(1) + memory("512", ""), product));
  auto def = readOk(doc);
  ASSERT_EQ(def.spec.virtual_systems[0].products.size(), 1U);
  EXPECT_EQ(def.spec.virtual_systems[0].products[0].properties.at(0).value, "basic");
  ReadOptions o;
  o.configuration = "large";
  auto large = readOk(doc, o);
  EXPECT_EQ(large.spec.virtual_systems[0].products[0].properties.at(0).value, "premium");
}

// --- lax mode -------------------------------------------------------------------------

TEST(LaxMode, MovesProblemsToWarnings) {
  const std::string doc =
      simple(R"(    <acme:Licensing xmlns:acme="urn:example:acme"><Info>x</Info></acme:Licensing>
)");
  auto strict = readOk(doc);
  ASSERT_EQ(strict.problems.size(), 1U);
  EXPECT_EQ(strict.problems[0].code, ErrorCode::OvfUnsupportedRequired);
  EXPECT_THAT(strict.problems[0].message, HasSubstr("Licensing"));
  const size_t strict_warnings = strict.spec.warnings.size();

  ReadOptions lax;
  lax.lax = true;
  auto r = readOk(doc, lax);
  EXPECT_TRUE(r.problems.empty());
  ASSERT_EQ(r.spec.warnings.size(), strict_warnings + 1);
  EXPECT_THAT(r.spec.warnings.back(), HasSubstr("Licensing"));
  // Apart from the warnings the two readings agree.
  r.spec.warnings = strict.spec.warnings;
  EXPECT_EQ(r.spec, strict.spec);
}

TEST(LaxMode, OptionalUnknownSectionIsOnlyAWarningEvenWhenStrict) {
  auto r = readOk(simple(
      R"(    <acme:Licensing xmlns:acme="urn:example:acme" ovf:required="false"><Info>x</Info></acme:Licensing>
)"));
  EXPECT_TRUE(r.problems.empty());
  ASSERT_EQ(r.spec.warnings.size(), 1U);
  EXPECT_THAT(r.spec.warnings[0], HasSubstr("urn:example:acme"));
}

// --- ${} capacity references ----------------------------------------------------------

std::string capacityDoc(const std::string& capacity, const std::string& product_attrs,
                        const std::string& key) {
  return envelope(
      R"(  <DiskSection><Info>d</Info>
    <Disk ovf:diskId="d1" ovf:capacity=")" +
      capacity + R"(" ovf:capacityAllocationUnits="byte * 2^30"/>
  </DiskSection>
)" +
      virtualSystem(cpu(1) + memory("512", "") +
                        item("3", 17, "<rasd:HostResource>ovf:/disk/d1</rasd:HostResource>"),
                    "    <ProductSection" + product_attrs +
                        "><Info>p</Info>\n      <Property ovf:key=\"" + key +
                        "\" ovf:type=\"uint16\" ovf:value=\"12\"/>\n    </ProductSection>\n"));
}

TEST(CapacityReference, ResolvesAProductSectionProperty) {
  auto r = readOk(capacityDoc("${disk_gb}", "", "disk_gb"));
  EXPECT_TRUE(r.problems.empty());
  ASSERT_EQ(r.spec.virtual_systems[0].disks.size(), 1U);
  EXPECT_EQ(r.spec.virtual_systems[0].disks[0].capacity_bytes, 12ULL << 30);
}

TEST(CapacityReference, ResolvesClassAndInstanceQualifiedKeys) {
  const std::string attrs = R"( ovf:class="org.example" ovf:instance="2")";
  auto full = readOk(capacityDoc("${org.example.disk_gb.2}", attrs, "disk_gb"));
  EXPECT_TRUE(full.problems.empty());
  EXPECT_EQ(full.spec.virtual_systems[0].disks.at(0).capacity_bytes, 12ULL << 30);
}

TEST(CapacityReference, UnknownPropertyIsAReferenceProblem) {
  auto r = readOk(capacityDoc("${nope}", "", "disk_gb"));
  ASSERT_EQ(r.problems.size(), 1U);
  EXPECT_EQ(r.problems[0].code, ErrorCode::OvfReference);
  EXPECT_THAT(r.problems[0].message, HasSubstr("nope"));
}

TEST(CapacityReference, NonNumericPropertyValueIsAValueProblem) {
  std::string doc = capacityDoc("${disk_gb}", "", "disk_gb");
  doc.replace(doc.find("ovf:value=\"12\""), 14, "ovf:value=\"big\"");
  auto r = readOk(doc);
  ASSERT_EQ(r.problems.size(), 1U);
  EXPECT_EQ(r.problems[0].code, ErrorCode::OvfValue);
}

// --- allocation units -----------------------------------------------------------------

struct UnitsCase {
  const char* units;
  const char* quantity;
  uint64_t mib;
};

class MemoryUnits : public ::testing::TestWithParam<UnitsCase> {};

TEST_P(MemoryUnits, GiveTheSameMebibytes) {
  const auto& c = GetParam();
  auto r = readOk(envelope(virtualSystem(cpu(1) + memory(c.quantity, c.units))));
  EXPECT_TRUE(r.problems.empty()) << r.problems.at(0).describe();
  ASSERT_EQ(r.spec.virtual_systems.size(), 1U);
  EXPECT_EQ(r.spec.virtual_systems[0].memory_mib, c.mib) << c.units;
}

INSTANTIATE_TEST_SUITE_P(
    AllForms, MemoryUnits,
    ::testing::Values(UnitsCase{"byte * 2^20", "2048", 2048}, UnitsCase{"byte*2^20", "2048", 2048},
                      UnitsCase{"MegaBytes", "2048", 2048}, UnitsCase{"MB", "2048", 2048},
                      UnitsCase{"byte*2^30", "2", 2048}, UnitsCase{"byte * 2^30", "2", 2048},
                      UnitsCase{"GigaBytes", "2", 2048}, UnitsCase{"KiloBytes", "2097152", 2048},
                      UnitsCase{"byte * 2^10", "2097152", 2048},
                      UnitsCase{"byte", "2147483648", 2048},
                      UnitsCase{"bytes * 1024 * 1024", "2048", 2048}, UnitsCase{"", "2048", 2048},
                      UnitsCase{"  byte  *  2 ^ 20 ", "2048", 2048}));

TEST(MemoryUnitsErrors, UnknownUnitsAreAValueProblem) {
  auto r = readOk(envelope(virtualSystem(cpu(1) + memory("2", "furlongs"))));
  ASSERT_FALSE(r.problems.empty());
  EXPECT_EQ(r.problems[0].code, ErrorCode::OvfValue);
  EXPECT_THAT(r.problems[0].message, HasSubstr("furlongs"));
}

TEST(MemoryUnitsErrors, OverflowIsAValueProblemNotAWrappedNumber) {
  auto r = readOk(envelope(virtualSystem(cpu(1) + memory("17179869184", "byte * 2^40"))));
  ASSERT_FALSE(r.problems.empty());
  EXPECT_EQ(r.problems[0].code, ErrorCode::OvfValue);
  EXPECT_THAT(r.problems[0].message, HasSubstr("overflows"));
}

// --- namespaces by URI ----------------------------------------------------------------

TEST(Namespaces, PrefixesDoNotMatterOnlyUris) {
  const std::string a = optionsDoc(true);
  std::string b = a;
  auto swap = [&](const std::string& from, const std::string& to) {
    for (size_t p = b.find(from); p != std::string::npos; p = b.find(from, p + to.size())) {
      b.replace(p, from.size(), to);
    }
  };
  // Envelope under "o9" (and no default namespace), rasd under "cim".
  swap("xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" ", "");
  swap("xmlns:ovf=", "xmlns:o9=");
  swap("ovf:", "o9:");
  swap("rasd:", "cim:");
  swap("xmlns:rasd=", "xmlns:cim=");
  for (const char* el : {"Envelope", "DeploymentOptionSection", "Info", "Configuration", "Label",
                         "VirtualSystem", "VirtualHardwareSection", "Item"}) {
    swap(std::string("<") + el + ">", std::string("<o9:") + el + ">");
    swap(std::string("<") + el + " ", std::string("<o9:") + el + " ");
    swap(std::string("</") + el + ">", std::string("</o9:") + el + ">");
  }
  ASSERT_NE(a, b);
  ASSERT_EQ(b.find("ovf:"), std::string::npos) << b;
  auto ra = readOk(a);
  auto rb = readOk(b);
  EXPECT_TRUE(rb.problems.empty());
  EXPECT_EQ(toJson(ra.spec), toJson(rb.spec));
  EXPECT_EQ(rb.spec.virtual_systems.at(0).vcpus, 2U);
}

TEST(Namespaces, FamiliarPrefixBoundToAnotherUriIsNotOvf) {
  // "rasd" bound to a foreign URI: its children are not CIM fields, so no memory is found.
  std::string doc = simple();
  const std::string rasd =
      "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
  doc.replace(doc.find(rasd), rasd.size(), "urn:example:not-cim");
  auto r = readDescriptor(doc, {});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->spec.virtual_systems.at(0).memory_mib, 0U);
  EXPECT_FALSE(r->problems.empty());
}

TEST(Namespaces, EnvelopeInTheWrongNamespaceIsRefused) {
  std::string doc = simple();
  for (size_t p; (p = doc.find("ovf/envelope/1")) != std::string::npos;) {
    doc.replace(p, 14, "ovf/envelope/9");
  }
  auto r = readDescriptor(doc, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::OvfInvalid);
}

// --- SLA ------------------------------------------------------------------------------

Sla fullSla() {
  Sla s;
  s.downtime_budget_ms = 750;
  s.jurisdictions = {"EU", "CH"};
  s.max_rtt = MaxRtt{"malmo-office", 25};
  s.encryption_in_transit = true;
  s.anti_affinity_group = "db";
  s.max_cost_per_hour = 1.25;
  s.currency = "SEK";
  s.mobility = Mobility::Automatic;
  s.availability_percent = 99.9;
  s.max_migration_mbps = 200;
  s.post_copy_allowed = true;
  s.required = false;
  return s;
}

std::string twoSystems() {
  return envelope("  <VirtualSystemCollection ovf:id=\"pair\">\n    <Info>c</Info>\n" +
                  virtualSystem(cpu(1) + memory("512", ""), "", "a") +
                  virtualSystem(cpu(2) + memory("1024", ""), "", "b") +
                  "  </VirtualSystemCollection>\n");
}

TEST(Sla, ReadsTheSchemaExample) {
  const std::string doc = simple(R"(    <vandra:SlaSection ovf:required="false">
      <Info>vandra service-level agreement</Info>
      <vandra:DowntimeBudgetMs>500</vandra:DowntimeBudgetMs>
      <vandra:Jurisdictions><vandra:Jurisdiction>EU</vandra:Jurisdiction></vandra:Jurisdictions>
      <vandra:MaxRtt vandra:location="stockholm-office" vandra:ms="30"/>
      <vandra:EncryptionInTransit>required</vandra:EncryptionInTransit>
      <vandra:AntiAffinityGroup>web</vandra:AntiAffinityGroup>
      <vandra:MaxCostPerHour vandra:currency="EUR">0.5</vandra:MaxCostPerHour>
      <vandra:Mobility>automatic</vandra:Mobility>
      <vandra:Availability>99.95</vandra:Availability>
      <vandra:MaxMigrationMbps>400</vandra:MaxMigrationMbps>
      <vandra:PostCopy>allowed</vandra:PostCopy>
    </vandra:SlaSection>
)");
  auto sla = readSla(doc, "");
  ASSERT_TRUE(sla.has_value()) << sla.error().describe();
  ASSERT_TRUE(sla->has_value());
  const Sla& s = **sla;
  EXPECT_EQ(s.downtime_budget_ms, 500U);
  EXPECT_EQ(s.jurisdictions, std::vector<std::string>{"EU"});
  ASSERT_TRUE(s.max_rtt.has_value());
  EXPECT_EQ(s.max_rtt->location, "stockholm-office");
  EXPECT_EQ(s.max_rtt->ms, 30U);
  EXPECT_TRUE(s.encryption_in_transit);
  EXPECT_EQ(s.anti_affinity_group, "web");
  EXPECT_EQ(s.max_cost_per_hour, 0.5);
  EXPECT_EQ(s.currency, "EUR");
  EXPECT_EQ(s.mobility, Mobility::Automatic);
  EXPECT_EQ(s.availability_percent, 99.95);
  EXPECT_EQ(s.max_migration_mbps, 400U);
  EXPECT_TRUE(s.post_copy_allowed);
  EXPECT_FALSE(s.required);
  // readDescriptor sees the same SLA.
  auto r = readOk(doc);
  EXPECT_EQ(r.spec.virtual_systems.at(0).sla, *sla);
}

TEST(Sla, NoSectionMeansNullopt) {
  auto sla = readSla(simple(), "");
  ASSERT_TRUE(sla.has_value());
  EXPECT_FALSE(sla->has_value());
}

TEST(Sla, RewriteThenReadGivesTheSameSla) {
  for (const bool required : {false, true}) {
    Sla want = fullSla();
    want.required = required;
    auto xml = rewriteSla(simple(), "", want);
    ASSERT_TRUE(xml.has_value()) << xml.error().describe();
    auto got = readSla(*xml, "vm");
    ASSERT_TRUE(got.has_value()) << got.error().describe();
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ(**got, want);
    // The rewritten document is still a clean descriptor for the reader.
    auto r = readOk(*xml);
    EXPECT_TRUE(r.problems.empty());
    EXPECT_EQ(r.spec.virtual_systems.at(0).sla, want);
  }
}

TEST(Sla, RewriteReplacesRatherThanAppends) {
  auto once = rewriteSla(simple(), "", fullSla());
  ASSERT_TRUE(once.has_value());
  Sla second;
  second.mobility = Mobility::Pinned;
  auto twice = rewriteSla(*once, "", second);
  ASSERT_TRUE(twice.has_value());
  EXPECT_EQ(readSla(*twice, "")->value(), second);
  size_t count = 0;
  for (size_t p = twice->find("SlaSection"); p != std::string::npos;
       p = twice->find("SlaSection", p + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 2U) << "one open and one close tag expected:\n" << *twice;
}

TEST(Sla, RewriteKeepsEverythingElse) {
  const std::string doc = optionsDoc(true);
  auto before = readOk(doc);
  auto xml = rewriteSla(doc, "vm", fullSla());
  ASSERT_TRUE(xml.has_value());
  auto after = readOk(*xml);
  ASSERT_TRUE(after.spec.virtual_systems.at(0).sla.has_value());
  after.spec.virtual_systems[0].sla.reset();
  EXPECT_EQ(toJson(after.spec), toJson(before.spec));
}

TEST(Sla, RemovingWorks) {
  auto with = rewriteSla(simple(), "", fullSla());
  ASSERT_TRUE(with.has_value());
  auto without = rewriteSla(*with, "", std::nullopt);
  ASSERT_TRUE(without.has_value());
  EXPECT_EQ(without->find("SlaSection"), std::string::npos);
  auto got = readSla(*without, "");
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->has_value());
}

TEST(Sla, TargetsOneVirtualSystemOrAll) {
  auto onlyB = rewriteSla(twoSystems(), "b", fullSla());
  ASSERT_TRUE(onlyB.has_value());
  EXPECT_FALSE(readSla(*onlyB, "a")->has_value());
  EXPECT_TRUE(readSla(*onlyB, "b")->has_value());
  auto all = rewriteSla(twoSystems(), "", fullSla());
  ASSERT_TRUE(all.has_value());
  EXPECT_TRUE(readSla(*all, "a")->has_value());
  EXPECT_TRUE(readSla(*all, "b")->has_value());
}

TEST(Sla, UnknownVirtualSystemIsNotFound) {
  auto w = rewriteSla(twoSystems(), "zz", fullSla());
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, ErrorCode::NotFound);
  auto r = readSla(twoSystems(), "zz");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::NotFound);
}

TEST(Sla, RewriteRefusesAnInvalidSla) {
  Sla bad = fullSla();
  bad.availability_percent = 120;
  auto w = rewriteSla(simple(), "", bad);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, ErrorCode::SlaInvalid);
  EXPECT_THAT(w.error().message, HasSubstr("availability"));
}

struct BadSlaCase {
  const char* element;
  const char* field;  // what the problem must name
};

class InvalidSlaInDescriptor : public ::testing::TestWithParam<BadSlaCase> {};

TEST_P(InvalidSlaInDescriptor, IsAProblemNamingTheField) {
  const std::string doc = simple(
      std::string("    <vandra:SlaSection ovf:required=\"false\">\n      <Info>i</Info>\n      ") +
      GetParam().element + "\n    </vandra:SlaSection>\n");
  auto r = readOk(doc);
  ASSERT_EQ(r.problems.size(), 1U);
  EXPECT_EQ(r.problems[0].code, ErrorCode::SlaInvalid);
  EXPECT_THAT(r.problems[0].message, HasSubstr(GetParam().field));
  EXPECT_EQ(r.problems[0].line, 7);  // the offending element's line
  EXPECT_FALSE(r.spec.virtual_systems.at(0).sla.has_value());
  auto direct = readSla(doc, "");
  ASSERT_FALSE(direct.has_value());
  EXPECT_EQ(direct.error().code, ErrorCode::SlaInvalid);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, InvalidSlaInDescriptor,
    ::testing::Values(
        BadSlaCase{"<vandra:DowntimeBudgetMs>0</vandra:DowntimeBudgetMs>", "downtime-budget-ms"},
        BadSlaCase{"<vandra:DowntimeBudgetMs>soon</vandra:DowntimeBudgetMs>", "downtime-budget-ms"},
        BadSlaCase{"<vandra:Jurisdictions><vandra:Jurisdiction>E "
                   "U</vandra:Jurisdiction></vandra:Jurisdictions>",
                   "jurisdictions"},
        BadSlaCase{R"(<vandra:MaxRtt vandra:location="x" vandra:ms="0"/>)", "max-rtt"},
        BadSlaCase{"<vandra:EncryptionInTransit>maybe</vandra:EncryptionInTransit>", "encryption"},
        BadSlaCase{"<vandra:AntiAffinityGroup>a/b</vandra:AntiAffinityGroup>",
                   "anti-affinity-group"},
        BadSlaCase{"<vandra:MaxCostPerHour>-1</vandra:MaxCostPerHour>", "max-cost-per-hour"},
        BadSlaCase{R"(<vandra:MaxCostPerHour vandra:currency="euro">1</vandra:MaxCostPerHour>)",
                   "currency"},
        BadSlaCase{"<vandra:Mobility>teleport</vandra:Mobility>", "mobility"},
        BadSlaCase{"<vandra:Availability>150</vandra:Availability>", "availability"},
        BadSlaCase{"<vandra:MaxMigrationMbps>0</vandra:MaxMigrationMbps>", "max-migration-mbps"},
        BadSlaCase{"<vandra:MaxMigrationMbps>fast</vandra:MaxMigrationMbps>", "max-migration-mbps"},
        BadSlaCase{"<vandra:PostCopy>sometimes</vandra:PostCopy>", "post-copy"}));

// --- hostile input --------------------------------------------------------------------

bool isCleanRefusal(ErrorCode c) {
  return c == ErrorCode::LimitExceeded || c == ErrorCode::XmlMalformed ||
         c == ErrorCode::XmlForbidden;
}

TEST(Hostile, TenMegabyteAttributeParsesOrFailsCleanly) {
  const std::string big(10U << 20, 'A');
  const std::string doc = simple(
      "    <ProductSection><Info>p</Info><Property ovf:key=\"blob\" ovf:type=\"string\" "
      "ovf:value=\"" +
      big + "\"/></ProductSection>\n");
  auto r = readDescriptor(doc, {});
  if (r) {
    ASSERT_EQ(r->spec.virtual_systems.at(0).products.size(), 1U);
    EXPECT_EQ(r->spec.virtual_systems[0].products[0].properties.at(0).value.size(), big.size());
  } else {
    EXPECT_TRUE(isCleanRefusal(r.error().code)) << r.error().describe();
  }
}

TEST(Hostile, InputOverTheSizeLimitIsRefusedBeforeParsing) {
  std::string doc = simple();
  // 33 MiB of comment: well-formed, so only the size check can refuse it.
  doc.insert(doc.find("<Envelope"), "<!--" + std::string(33U << 20, 'x') + "-->\n");
  ASSERT_GT(doc.size(), kMaxDescriptorBytes);
  for (auto* fn :
       {+[](const std::string& d) { return readDescriptor(d, {}).error().code; },
        +[](const std::string& d) { return readSla(d, "").error().code; },
        +[](const std::string& d) { return rewriteSla(d, "", std::nullopt).error().code; }}) {
    EXPECT_EQ(fn(doc), ErrorCode::LimitExceeded);
  }
}

std::string nested(int extra_levels) {
  std::string open;
  std::string close;
  for (int i = 0; i < extra_levels; ++i) {
    open += "<x:d>";
    close += "</x:d>";
  }
  return simple("    <x:Deep xmlns:x=\"urn:example:deep\" ovf:required=\"false\">" + open + close +
                "</x:Deep>\n");
}

TEST(Hostile, DepthLimitIsExact) {
  // Envelope (1) > VirtualSystem (2) > x:Deep (3) > n levels: depth 3 + n.
  auto at = readDescriptor(nested(kMaxXmlDepth - 3), {});
  EXPECT_TRUE(at.has_value()) << at.error().describe();
  auto over = readDescriptor(nested(kMaxXmlDepth - 2), {});
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code, ErrorCode::LimitExceeded);
}

TEST(Hostile, Depth100IsLimitExceeded) {
  const std::string doc = nested(100);
  for (auto* fn :
       {+[](const std::string& d) { return readDescriptor(d, {}).error().code; },
        +[](const std::string& d) { return readSla(d, "").error().code; },
        +[](const std::string& d) { return rewriteSla(d, "", std::nullopt).error().code; }}) {
    EXPECT_EQ(fn(doc), ErrorCode::LimitExceeded);
  }
}

TEST(Hostile, TooManyElementsIsLimitExceeded) {
  std::string many;
  many.reserve((kMaxXmlElements + 1) * 6);
  for (size_t i = 0; i <= kMaxXmlElements; ++i) {
    many += "<x:e/>";
  }
  auto r = readDescriptor(
      simple("    <x:M xmlns:x=\"urn:example:m\" ovf:required=\"false\">" + many + "</x:M>\n"), {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::LimitExceeded);
}

TEST(Hostile, BillionLaughsIsForbidden) {
  std::string dtd = "<!DOCTYPE Envelope [\n<!ENTITY l0 \"lol\">\n";
  for (int i = 1; i <= 9; ++i) {
    dtd += "<!ENTITY l" + std::to_string(i) + " \"";
    for (int k = 0; k < 10; ++k) {
      dtd += "&l" + std::to_string(i - 1) + ";";
    }
    dtd += "\">\n";
  }
  dtd += "]>\n";
  std::string doc = simple();
  doc.insert(doc.find("<Envelope"), dtd);
  doc.replace(doc.find("<Info>test VM</Info>"), 20, "<Info>&l9;</Info>");
  auto r = readDescriptor(doc, {});
  auto s = readSla(doc, "");
  auto w = rewriteSla(doc, "", fullSla());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::XmlForbidden);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::XmlForbidden);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, ErrorCode::XmlForbidden);
  // Refused before any entity is declared, so nothing is expanded (not timed: the refusal
  // happens in the prolog scan, which a test above checks on its own).
}

TEST(Hostile, EntityReferenceWithoutDtdIsNotExpanded) {
  // An undeclared entity without a DTD is a well-formedness error, never a file read.
  std::string doc = simple();
  doc.replace(doc.find("<Info>test VM</Info>"), 20, "<Info>&passwd;</Info>");
  auto r = readDescriptor(doc, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(isCleanRefusal(r.error().code)) << r.error().describe();
}

// Many hardware Items are read completely. Parse time must grow linearly with their number
// (it was once quadratic: a 32 MiB descriptor would have taken an hour); that is measured by
// BM_ManyItems in test/bench/descriptor_bench.cc, not by a timed test.
TEST(Hostile, ManyItemsAreAllRead) {
  std::string items;
  for (int i = 0; i < 20000; ++i) {
    items += item(std::to_string(100 + i), 10, "");
  }
  const std::string doc = envelope(virtualSystem(cpu(1) + memory("512", "") + items));
  auto r = readDescriptor(doc, {});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->spec.virtual_systems.at(0).nics.size(), 20000U);
}

TEST(Hostile, EmptyAndNonXmlInputFailCleanly) {
  for (const std::string& doc : {std::string(), std::string("\xEF\xBB\xBF"), std::string("not xml"),
                                 std::string("<?xml version=\"1.0\"?>"), std::string(1, '\0')}) {
    auto r = readDescriptor(doc, {});
    ASSERT_FALSE(r.has_value());
    EXPECT_TRUE(isCleanRefusal(r.error().code) || r.error().code == ErrorCode::OvfInvalid)
        << r.error().describe();
  }
}

}  // namespace
}  // namespace vandra::ovf
