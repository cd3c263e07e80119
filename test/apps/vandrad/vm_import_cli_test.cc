// `vandra vm import` against a real vandrad: a local OVA is uploaded then imported (JSON output
// stable, with the upload added; quiet on stderr with --json), sent again only when the agent
// lacks it, --on-agent imports from an import folder, a path outside is refused (exit 6), and
// `vm packages` lists and deletes uploads.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "../../ovf/writer/writer_test_util.h"
#include "agent_process.h"
#include "vandra/ovf/writer.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

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

void makeOva(const std::string& path, const std::string& raw) {
  ovf::VmSpec spec;
  ovf::VirtualSystemSpec vs;
  vs.id = "vm";
  vs.name = "vm";
  vs.vcpus = 1;
  vs.memory_mib = 128;
  vs.controllers.push_back({"virtio0", ovf::ControllerKind::Virtio, ""});
  vs.disks.push_back({.id = "disk1",
                      .capacity_bytes = 4ULL << 20,
                      .populated_bytes = std::nullopt,
                      .format = "vmdk-stream",
                      .format_uri = "",
                      .file = std::nullopt,
                      .parent = std::nullopt,
                      .controller = "virtio0",
                      .unit = 0});
  spec.virtual_systems.push_back(vs);
  ovf::testing::makeRawImage(raw, 4ULL << 20);
  ovf::ExportOptions eo;
  eo.disk_images["disk1"] = raw;
  auto r = ovf::exportPackage(spec, path, eo);
  ASSERT_TRUE(r) << r.error().describe();
}

TEST(VmImportCli, UploadsThenImportsOrImportsFromAnImportFolder) {
  ovf::testing::TempDir tmp;
  const std::string dir = tmp.path();
  issueAgentPki(dir);
  ASSERT_FALSE(HasFatalFailure());
  fs::create_directories(dir + "/local");
  fs::create_directories(dir + "/imports");
  makeOva(dir + "/local/vm.ova", dir + "/d.raw");
  fs::copy_file(dir + "/local/vm.ova", dir + "/imports/on.ova");
  AgentProcess agent(dir, {"--import-dir", dir + "/imports", "--capacity-vcpus", "8"});
  ASSERT_GT(agent.port(), 0);
  const std::vector<std::string> conn = {"--agent", "127.0.0.1:" + std::to_string(agent.port()),
                                         "--ca",    dir + "/pki/ca.crt",
                                         "--cert",  dir + "/pki/op.crt",
                                         "--key",   dir + "/pki/op.key"};
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.end(), conn.begin(), conn.end());
    return vandra(args);
  };

  Outcome up = run({"vm", "import", "web1", dir + "/local/vm.ova", "--json"});
  ASSERT_EQ(up.code, 0) << up.err;
  EXPECT_TRUE(up.err.empty()) << "--json is quiet: " << up.err;
  const json j = json::parse(up.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << up.out;
  EXPECT_EQ(j["id"], "web1");  // the VM's fields, as before
  EXPECT_EQ(j["state"], "created");
  EXPECT_EQ(j["upload"]["name"], "vm.ova");
  EXPECT_EQ(j["upload"]["reused"], false);
  EXPECT_EQ(j["upload"]["size"], fs::file_size(dir + "/local/vm.ova"));
  EXPECT_TRUE(fs::exists(dir + "/state/uploads/vm.ova"));

  // The agent has it: nothing is sent again.
  Outcome again = run({"vm", "import", "web2", dir + "/local/vm.ova"});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("already on the agent"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("web2"), std::string::npos) << again.out;

  // Without --json: progress on stderr, under the name asked for.
  Outcome named = run({"vm", "import", "web5", dir + "/local/vm.ova", "--name", "copy.ova"});
  ASSERT_EQ(named.code, 0) << named.err;
  EXPECT_NE(named.err.find("uploading copy.ova: 100%"), std::string::npos) << named.err;
  EXPECT_NE(named.out.find("package copy.ova uploaded"), std::string::npos) << named.out;
  Outcome bad_name = run({"vm", "import", "web6", dir + "/local/vm.ova", "--name", "../x.ova"});
  EXPECT_EQ(bad_name.code, 3) << bad_name.err;  // invalid argument, nothing sent

  Outcome on = run({"vm", "import", "web3", "--on-agent", dir + "/imports/on.ova", "--json"});
  ASSERT_EQ(on.code, 0) << on.err;
  EXPECT_EQ(json::parse(on.out, nullptr, false)["state"], "created") << on.out;

  Outcome shadow = run({"vm", "import", "web4", "--on-agent", "/etc/shadow"});
  EXPECT_EQ(shadow.code, 6) << shadow.err;  // forbidden
  EXPECT_NE(shadow.err.find("import folders"), std::string::npos) << shadow.err;
  Outcome local_path = run({"vm", "import", "web4", "--on-agent", dir + "/local/vm.ova"});
  EXPECT_EQ(local_path.code, 6) << local_path.err;
  Outcome neither = run({"vm", "import", "web4"});
  EXPECT_NE(neither.code, 0);

  Outcome list = run({"vm", "packages", "--json"});
  ASSERT_EQ(list.code, 0) << list.err;
  const json l = json::parse(list.out, nullptr, false);
  ASSERT_EQ(l["packages"].size(), 2U) << list.out;
  EXPECT_EQ(l["packages"][0]["name"], "copy.ova");
  EXPECT_EQ(l["packages"][1]["name"], "vm.ova");
  Outcome del = run({"vm", "packages", "delete", "vm.ova"});
  ASSERT_EQ(del.code, 0) << del.err;
  EXPECT_FALSE(fs::exists(dir + "/state/uploads/vm.ova"));
  Outcome vms = run({"vm", "list", "--json"});
  ASSERT_EQ(vms.code, 0) << vms.err;
  EXPECT_EQ(json::parse(vms.out, nullptr, false)["vms"].size(), 4U) << vms.out;
}

}  // namespace
}  // namespace vandra::agent
