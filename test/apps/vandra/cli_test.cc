// The vandra CLI as users and scripts see it: exit codes, one clear line on stderr for bad
// input, --json documents with the promised fields, SLA edits in place, and the demo.
// Runs the real binary on packages the tests make.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "../../ovf/writer/writer_test_util.h"
#include "vandra/common/subprocess.h"
#include "vandra/ovf/writer.h"

namespace vandra::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ovf::testing::slurp;
using ovf::testing::spit;
using ovf::testing::TempDir;

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

Outcome vandra(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {VANDRA_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Subprocess::start(argv, {.capture_stdout = true, .capture_stderr = true});
  EXPECT_TRUE(p) << p.error().describe();
  Outcome r;
  EXPECT_TRUE(p->drainStdout([&](std::string_view c) { r.out.append(c); }));
  auto st = p->wait();
  EXPECT_TRUE(st);
  r.code = st->code;
  r.err = p->stderrText();
  return r;
}

ovf::VmSpec spec() {
  ovf::VmSpec s;
  ovf::VirtualSystemSpec vs;
  vs.id = "web1";
  vs.name = "web1";
  vs.vcpus = 2;
  vs.memory_mib = 512;
  vs.controllers.push_back({"scsi0", ovf::ControllerKind::Scsi, "lsilogic"});
  vs.disks.push_back({.id = "disk1",
                      .capacity_bytes = 4ULL << 20,
                      .populated_bytes = std::nullopt,
                      .format = "vmdk-stream",
                      .format_uri = "",
                      .file = std::nullopt,
                      .parent = std::nullopt,
                      .controller = "scsi0",
                      .unit = 0});
  vs.nics.push_back({.network = "lan", .model = "virtio", .mac = std::nullopt, .connected = true});
  s.networks.push_back({"lan", ""});
  s.virtual_systems.push_back(vs);
  return s;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ovf::testing::makeRawImage(tmp_ / "disk.raw", 4ULL << 20);
    ovf::ExportOptions eo;
    eo.disk_images["disk1"] = tmp_ / "disk.raw";
    auto r = ovf::exportPackage(spec(), ova(), eo);
    ASSERT_TRUE(r) << r.error().describe();
  }
  std::string ova() const { return tmp_ / "web1.ova"; }
  TempDir tmp_;
};

TEST_F(CliTest, InspectJsonHasTheContractFields) {
  Outcome r = vandra({"ovf", "inspect", ova(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  for (const char* k : {"ovf_version", "virtual_systems", "networks", "files", "deployment_options",
                        "sla", "warnings"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  const auto& vs = j["virtual_systems"][0];
  for (const char* k : {"id", "name", "vcpus", "memory_mib", "disks", "nics", "firmware", "os"}) {
    EXPECT_TRUE(vs.contains(k)) << k;
  }
  EXPECT_EQ(vs["vcpus"], 2);
  EXPECT_EQ(vs["memory_mib"], 512);
  EXPECT_EQ(vs["disks"][0]["capacity_bytes"], 4ULL << 20);
  for (const char* k : {"capacity_bytes", "format", "file", "controller"}) {
    EXPECT_TRUE(vs["disks"][0].contains(k)) << k;
  }
  EXPECT_EQ(vs["nics"][0]["network"], "lan");
  EXPECT_EQ(vs["nics"][0]["model"], "virtio");
  EXPECT_TRUE(j["sla"].is_null());
}

TEST_F(CliTest, InvalidDescriptorGivesOneLineNamingTheLineAndExit3) {
  fs::create_directories(tmp_ / "bad");
  spit(tmp_ / "bad/bad.ovf",
       "<?xml version=\"1.0\"?>\n<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"\n"
       " xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\">\n<References>\n"
       "<File ovf:id=\"f\" ovf:href=\"../../etc/passwd\"/>\n</References>\n</Envelope>\n");
  Outcome r = vandra({"ovf", "inspect", tmp_ / "bad/bad.ovf"});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(r.out.empty());
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("(line 5)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[ovf_reference]"), std::string::npos) << r.err;

  // validate lists every problem (here also: no virtual system), exit 3.
  Outcome v = vandra({"ovf", "validate", tmp_ / "bad/bad.ovf", "--json"});
  EXPECT_EQ(v.code, 3);
  json j = json::parse(v.out);
  EXPECT_FALSE(j["valid"].get<bool>());
  EXPECT_GE(j["problems"].size(), 2U);
}

TEST_F(CliTest, ValidateSoundPackageExitsZero) {
  Outcome r = vandra({"ovf", "validate", ova()});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("valid"), std::string::npos);
}

TEST_F(CliTest, SlaSetShowClearInPlace) {
  Outcome set = vandra({"ovf", "sla", "set", ova(), "downtime-budget-ms=300", "jurisdictions=EU,CH",
                        "mobility=automatic", "max-rtt=office:25", "post-copy=allowed"});
  ASSERT_EQ(set.code, 0) << set.err;
  Outcome show = vandra({"ovf", "sla", "show", ova(), "--json"});
  ASSERT_EQ(show.code, 0) << show.err;
  json s = json::parse(show.out);
  EXPECT_EQ(s["downtime_budget_ms"], 300);
  EXPECT_EQ(s["jurisdictions"], json::array({"EU", "CH"}));
  EXPECT_EQ(s["mobility"], "automatic");
  EXPECT_EQ(s["max_rtt"]["ms"], 25);
  EXPECT_EQ(s["post_copy_allowed"], true);
  // The package is still sound (manifest refreshed) and inspect sees the SLA.
  Outcome insp = vandra({"ovf", "inspect", ova(), "--json"});
  ASSERT_EQ(insp.code, 0) << insp.err;
  EXPECT_EQ(json::parse(insp.out)["sla"]["downtime_budget_ms"], 300);

  // An invalid value names the field and changes nothing.
  const std::string before = slurp(ova());
  Outcome bad = vandra({"ovf", "sla", "set", ova(), "downtime-budget-ms=0"});
  EXPECT_EQ(bad.code, 3);
  EXPECT_NE(bad.err.find("downtime-budget-ms"), std::string::npos) << bad.err;
  EXPECT_EQ(slurp(ova()), before);

  Outcome clear = vandra({"ovf", "sla", "clear", ova()});
  ASSERT_EQ(clear.code, 0) << clear.err;
  Outcome show2 = vandra({"ovf", "sla", "show", ova(), "--json"});
  EXPECT_EQ(json::parse(show2.out), json(nullptr));
}

TEST_F(CliTest, TamperedPackageRefusedUnlessLax) {
  std::string bytes = slurp(ova());
  bytes[bytes.size() - 2048] = static_cast<char>(bytes[bytes.size() - 2048] ^ 0x01);
  spit(ova(), bytes);
  Outcome r = vandra({"ovf", "inspect", ova()});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("[manifest_mismatch]"), std::string::npos) << r.err;
  Outcome lax = vandra({"ovf", "inspect", ova(), "--lax", "--json"});
  EXPECT_EQ(lax.code, 0) << lax.err;
  EXPECT_FALSE(json::parse(lax.out)["warnings"].empty());
  Outcome show = vandra({"ovf", "sla", "show", ova()});
  EXPECT_EQ(show.code, 3);
}

TEST_F(CliTest, ImportWritesQcow2AndJson) {
  Outcome r = vandra({"ovf", "import", ova(), tmp_ / "vm", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["result"], "ok");
  EXPECT_TRUE(fs::exists(j["disks"][0]["path"].get<std::string>()));
}

TEST_F(CliTest, UsageErrorsExit2AndMissingFilesExit4) {
  EXPECT_EQ(vandra({"ovf", "inspect"}).code, 2);
  EXPECT_EQ(vandra({"ovf", "frobnicate"}).code, 2);
  Outcome missing = vandra({"ovf", "inspect", tmp_ / "nope.ova"});
  EXPECT_EQ(missing.code, 4) << missing.err;
}

// The package story (no root). The site story runs in test/apps/vandra/demo_test.cc.
TEST(DemoTest, OvfOnlyDemoRunsEndToEndAndReportsJson) {
  Outcome r = vandra({"demo", "--ovf-only", "--json"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["result"], "ok");
  EXPECT_GE(j["steps"].size(), 6U);
  for (const auto& s : j["steps"]) {
    EXPECT_TRUE(s["ok"].get<bool>()) << s.dump();
  }
}

}  // namespace
}  // namespace vandra::cli
