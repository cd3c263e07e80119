// Import folders and package uploads through the agent API over mutual TLS: paths outside the
// folders are refused (403) with nothing created; an upload is streamed, bounded, verified
// before it gets its name, and every failure (bad package, too large, bad name, duplicate, a
// client that goes away) leaves nothing in the upload folder.
#include <openssl/evp.h>

#include <fstream>

#include "api_test_fixture.h"
#include "vandra/agent/agent_client.h"

namespace vandra::agent {
namespace {

using testing::ApiTest;
using testing::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", md[i]);
    out += b;
  }
  return out;
}

class UploadTest : public ApiTest {
 protected:
  fs::path uploads() const { return tmp_ / "state/uploads"; }
  // Everything in the upload folder, hidden (partial) files included.
  std::vector<std::string> uploadFiles() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(uploads())) {
      out.push_back(e.path().filename().string());
    }
    return out;
  }
  AgentClient agentClient() {
    AgentEndpoint ep{.host = "127.0.0.1",
                     .port = port_,
                     .ca = tmp_ / "pki/ca.crt",
                     .cert = client_cert_,
                     .key = client_key_,
                     .netns = ""};
    return AgentClient(ep);
  }
  httplib::Result put(const std::string& name, const std::string& bytes) {
    return client()->Put(("/v1/packages/" + name).c_str(), bytes, "application/octet-stream");
  }
  // Nothing of a refused import: no VM, no base image, no VM folder.
  void expectNothingImported() {
    EXPECT_TRUE(body(client()->Get("/v1/vms"))["vms"].empty());
    EXPECT_TRUE(fs::is_empty(tmp_ / "state/images/base"));
    EXPECT_TRUE(fs::is_empty(tmp_ / "state/images/vms"));
  }
};

TEST_F(UploadTest, EtcShadowIsForbiddenAndNothingChanges) {
  auto r = client()->Post("/v1/vms", json{{"id", "x"}, {"package", "/etc/shadow"}}.dump(),
                          "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403) << r->body;
  EXPECT_EQ(body(r)["error"]["code"], "forbidden");
  const std::string msg = body(r)["error"]["message"];
  EXPECT_NE(msg.find("/etc/shadow"), std::string::npos) << msg;
  EXPECT_NE(msg.find(fs::canonical(tmp_ / "imports").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find(fs::canonical(uploads()).string()), std::string::npos) << msg;
  EXPECT_EQ(msg.find("tar"), std::string::npos) << "the file must not have been read: " << msg;
  expectNothingImported();
}

TEST_F(UploadTest, DotDotAndSymlinksLeadingOutAreForbidden) {
  const std::string ova = makeOva("small", 256);  // in tmp_/imports
  fs::create_directories(tmp_ / "outside");
  fs::copy_file(ova, tmp_ / "outside/out.ova");
  fs::create_symlink(tmp_ / "outside/out.ova", tmp_ / "imports/link.ova");
  for (const std::string& p :
       {tmp_ / "imports/../outside/out.ova", tmp_ / "imports/link.ova", tmp_ / "outside/out.ova"}) {
    auto r =
        client()->Post("/v1/vms", json{{"id", "x"}, {"package", p}}.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << p << " -> " << r->body;
  }
  expectNothingImported();
  // The same package, inside the folder: imported.
  auto ok =
      client()->Post("/v1/vms", json{{"id", "x"}, {"package", ova}}.dump(), "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 201) << ok->body;
}

TEST_F(UploadTest, UploadThenImportFromTheUpload) {
  const std::string ova = makeOva("small", 256);
  auto agent = agentClient();
  uint64_t last = 0;
  uint64_t total = 0;
  auto up = agent.uploadPackage(ova, "guest.ova", [&](uint64_t sent, uint64_t all) {
    EXPECT_GE(sent, last);
    last = sent;
    total = all;
  });
  ASSERT_TRUE(up) << up.error().describe();
  const std::string bytes = slurp(ova);
  EXPECT_EQ((*up)["reused"], false);
  EXPECT_EQ((*up)["size"], bytes.size());
  EXPECT_EQ((*up)["sha256"], sha256Hex(bytes));
  EXPECT_EQ(last, bytes.size());
  EXPECT_EQ(total, bytes.size());
  EXPECT_EQ(slurp(uploads() / "guest.ova"), bytes);

  auto list = agent.get("/v1/packages");
  ASSERT_TRUE(list) << list.error().describe();
  ASSERT_EQ((*list)["packages"].size(), 1U);
  EXPECT_EQ((*list)["packages"][0]["name"], "guest.ova");
  EXPECT_EQ((*list)["packages"][0]["sha256"], sha256Hex(bytes));

  // Sent again: the agent has it, nothing goes up.
  auto again = agent.uploadPackage(ova, "guest.ova");
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_EQ((*again)["reused"], true);

  auto vm = agent.post("/v1/vms", {{"id", "web1"}, {"upload", "guest.ova"}});
  ASSERT_TRUE(vm) << vm.error().describe();
  EXPECT_EQ((*vm)["state"], "created");
  // An upload is a path in an import folder too.
  auto by_path = agent.post("/v1/vms", {{"id", "web2"}, {"package", uploads() / "guest.ova"}});
  ASSERT_TRUE(by_path) << by_path.error().describe();
  auto missing = agent.post("/v1/vms", {{"id", "web3"}, {"upload", "none.ova"}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);

  // Another file under the same name is refused by the client before it sends anything.
  const std::string other = makeOva("other", 512);
  auto clash = agent.uploadPackage(other, "guest.ova");
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, ErrorCode::AlreadyExists);

  auto del = agent.del("/v1/packages/guest.ova");
  ASSERT_TRUE(del) << del.error().describe();
  EXPECT_TRUE(uploadFiles().empty());
  EXPECT_EQ(agent.del("/v1/packages/guest.ova").error().code, ErrorCode::NotFound);
  // The VMs keep their disks: the base image is the store's, not the upload.
  auto start = agent.get("/v1/vms/web1");
  ASSERT_TRUE(start);
}

// The controller maps a VM's OVF networks to the site's at import: the agent records the NICs
// on the site's networks, and refuses a map that names a network the VM does not use.
TEST_F(UploadTest, ImportMapsTheNetworksItIsGiven) {
  const std::string ova = makeOva("vmware", 256, {"VM Network"});
  auto agent = agentClient();
  ASSERT_TRUE(agent.uploadPackage(ova, "vmware.ova"));
  for (const json& bad : {json{{"Other", "lan"}}, json{{"VM Network", 7}}, json::array()}) {
    auto r = agent.post("/v1/vms", {{"id", "web1"}, {"upload", "vmware.ova"}, {"networks", bad}});
    ASSERT_FALSE(r) << bad.dump();
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << r.error().describe();
  }
  EXPECT_EQ(agent.get("/v1/vms/web1").error().code, ErrorCode::NotFound);
  auto vm = agent.post(
      "/v1/vms", {{"id", "web1"}, {"upload", "vmware.ova"}, {"networks", {{"VM Network", "lan"}}}});
  ASSERT_TRUE(vm) << vm.error().describe();
  auto got = agent.get("/v1/vms/web1");
  ASSERT_TRUE(got) << got.error().describe();
  const json& vs = (*got)["spec"]["virtual_systems"][0];
  EXPECT_EQ(vs["nics"][0]["network"], "lan") << got->dump();
  EXPECT_EQ((*got)["spec"]["networks"][0]["name"], "lan");
  // Without a map, the OVF's own name stays.
  auto plain = agent.post("/v1/vms", {{"id", "web2"}, {"upload", "vmware.ova"}});
  ASSERT_TRUE(plain) << plain.error().describe();
  EXPECT_EQ((*agent.get("/v1/vms/web2"))["spec"]["virtual_systems"][0]["nics"][0]["network"],
            "VM Network");
}

TEST_F(UploadTest, SameNameTwiceIsAConflict) {
  const std::string bytes = slurp(makeOva("small", 256));
  auto first = put("twice.ova", bytes);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 201) << first->body;
  auto second = put("twice.ova", bytes);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 409) << second->body;
  EXPECT_EQ(body(second)["error"]["code"], "already_exists");
  EXPECT_EQ(uploadFiles().size(), 2U);  // twice.ova and its digest, nothing partial
  EXPECT_TRUE(fs::exists(uploads() / "twice.ova"));
}

TEST_F(UploadTest, BadPackagesAre422AndLeaveNothing) {
  const std::string bytes = slurp(makeOva("small", 256));
  ASSERT_GT(bytes.size(), 4096U);
  // A byte of the disk's content (the member after the tar header naming a .vmdk): the
  // manifest's digest no longer matches.
  std::string flipped = bytes;
  size_t header = std::string::npos;
  for (size_t off = 0; off + 512 < bytes.size(); off += 512) {
    const std::string name = bytes.substr(off, 100).c_str();
    if (name.ends_with(".vmdk")) {
      header = off;
      break;
    }
  }
  ASSERT_NE(header, std::string::npos) << "no .vmdk member in the test OVA";
  ASSERT_LT(header + 512 + 100, bytes.size());
  flipped[header + 512 + 100] ^= 0x55;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"truncated.ova", bytes.substr(0, bytes.size() / 2)},
      {"flipped.ova", flipped},
      {"text.ova", "this is not a tar archive\n"},
  };
  for (const auto& [name, content] : cases) {
    auto r = put(name, content);
    ASSERT_TRUE(r) << name;
    EXPECT_EQ(r->status, 422) << name << " -> " << r->body;
    EXPECT_TRUE(uploadFiles().empty()) << name;
  }
  EXPECT_TRUE(body(client()->Get("/v1/packages"))["packages"].empty());
}

TEST_F(UploadTest, BadNamesAre400) {
  const std::string bytes = slurp(makeOva("small", 256));
  for (const char* name :
       {"../x.ova", ".hidden.ova", "a/b.ova", "a%2Fb.ova", "x.txt", "x.ovf", "%2E%2E%2Fx.ova"}) {
    auto r = put(name, bytes);
    ASSERT_TRUE(r) << name;
    EXPECT_EQ(r->status, 400) << name << " -> " << r->body;
    EXPECT_EQ(body(r)["error"]["code"], "invalid_argument") << name;
  }
  EXPECT_TRUE(uploadFiles().empty());
  EXPECT_FALSE(fs::exists(tmp_ / "state/x.ova"));
  auto r = client()->Post("/v1/vms", json{{"id", "x"}, {"upload", "../x.ova"}}.dump(),
                          "application/json");
  EXPECT_EQ(r->status, 400) << r->body;
}

class TinyUploadTest : public UploadTest {
 protected:
  uint64_t maxUploadBytes() const override { return 2048; }
};

TEST_F(TinyUploadTest, OversizeIs413AndLeavesNothing) {
  const std::string bytes = slurp(makeOva("small", 256));
  ASSERT_GT(bytes.size(), 2048U);
  // Declared (Content-Length): refused before the body is read.
  auto declared = put("big.ova", bytes);
  ASSERT_TRUE(declared);
  EXPECT_EQ(declared->status, 413) << declared->body;
  EXPECT_EQ(body(declared)["error"]["code"], "limit_exceeded");
  EXPECT_TRUE(uploadFiles().empty());
  // Undeclared (chunked): refused when the bound is passed.
  auto chunked = client()->Put(
      "/v1/packages/big.ova",
      [&](size_t offset, httplib::DataSink& sink) {
        if (offset >= bytes.size()) {
          sink.done();
          return true;
        }
        return sink.write(bytes.data() + offset, std::min<size_t>(1024, bytes.size() - offset));
      },
      "application/octet-stream");
  if (chunked) {  // the agent may close before the client has sent everything
    EXPECT_EQ(chunked->status, 413) << chunked->body;
  }
  EXPECT_TRUE(uploadFiles().empty());
  // The client says so before sending anything.
  auto mine = agentClient().uploadPackage(tmp_ / "imports/small.ova", "big.ova");
  ASSERT_FALSE(mine);
  EXPECT_EQ(mine.error().code, ErrorCode::LimitExceeded);
  // JSON bodies keep their own, smaller bound.
  auto json_body =
      client()->Post("/v1/vms", std::string(kMaxRequestBody + 1, ' '), "application/json");
  ASSERT_TRUE(json_body);
  EXPECT_EQ(json_body->status, 413);
}

TEST_F(UploadTest, ClientThatGoesAwayMidUploadLeavesNoPartialFile) {
  const std::string bytes = slurp(makeOva("small", 256));
  const fs::path part = uploads() / ".gone.ova.part";
  bool saw_part = false;
  auto r = client()->Put(
      "/v1/packages/gone.ova", bytes.size() * 4,
      [&](size_t offset, size_t, httplib::DataSink& sink) {
        if (offset == 0) {
          return sink.write(bytes.data(), 1024);
        }
        // The agent holds a partial file now; hang up.
        const auto deadline = Clock::now() + std::chrono::seconds(20);
        while (Clock::now() < deadline && !saw_part) {
          saw_part = fs::exists(part) && fs::file_size(part) > 0;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
      },
      "application/octet-stream");
  EXPECT_FALSE(r);
  EXPECT_TRUE(saw_part) << "the upload never reached the agent's folder";
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline && !uploadFiles().empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(uploadFiles().empty());
}

TEST_F(UploadTest, ChunkedJsonBodiesAreRefused) {
  auto r = client()->Post(
      "/v1/vms",
      [](size_t offset, httplib::DataSink& sink) {
        if (offset == 0) {
          return sink.write("{}", 2);
        }
        sink.done();
        return true;
      },
      "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  expectNothingImported();
}

}  // namespace
}  // namespace vandra::agent

namespace vandra::agent {
namespace {

// Export and seed through the API (ADR 0029): a created VM is exported into the uploads, the
// package downloads byte for byte (checked against the digest the agent states), imported as
// a seed it is the VM's own frozen images' identity; hostile requests change nothing.
TEST_F(UploadTest, ExportDownloadAndSeedAndHostileRequests) {
  auto agent = agentClient();
  ASSERT_TRUE(agent.uploadPackage(makeOva("small", 256), "guest.ova"));
  ASSERT_TRUE(agent.post("/v1/vms", {{"id", "web1"}, {"upload", "guest.ova"}}));
  auto e = agent.post("/v1/vms/web1/export", {{"name", "web1-x.ova"}});
  ASSERT_TRUE(e) << e.error().describe();
  EXPECT_FALSE((*e)["running"].get<bool>());
  EXPECT_EQ((*e)["package"]["name"], "web1-x.ova");
  EXPECT_EQ((*e)["package_key"].get<std::string>().size(), 64U);
  const std::string local = tmp_ / "down.ova";
  uint64_t seen = 0;
  auto got = agent.downloadFile("/v1/packages/web1-x.ova/file", local,
                                [&](uint64_t n, uint64_t) { seen = n; });
  ASSERT_TRUE(got) << got.error().describe();
  EXPECT_EQ(*got, (*e)["package"]["size"].get<uint64_t>());
  EXPECT_EQ(seen, *got);
  EXPECT_EQ(sha256Hex(slurp(local)), (*e)["package"]["sha256"]);
  // Never over an existing file; a missing upload is the agent's 404, and leaves no file.
  EXPECT_EQ(agent.downloadFile("/v1/packages/web1-x.ova/file", local).error().code,
            ErrorCode::AlreadyExists);
  auto none = agent.downloadFile("/v1/packages/none.ova/file", tmp_ / "none.ova");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::NotFound);
  EXPECT_FALSE(fs::exists(tmp_ / "none.ova"));
  EXPECT_FALSE(fs::exists(tmp_ / "none.ova.part"));
  // The same name again is a conflict; the VM's disks stand on the frozen images meanwhile.
  EXPECT_EQ(agent.post("/v1/vms/web1/export", {{"name", "web1-x.ova"}}).error().code,
            ErrorCode::AlreadyExists);
  auto seed = agent.post("/v1/seeds", {{"upload", "web1-x.ova"}, {"keep_hours", 2}});
  ASSERT_TRUE(seed) << seed.error().describe();
  EXPECT_EQ((*seed)["key"], (*e)["package_key"]);
  EXPECT_EQ((*seed)["disks"].size(), 1U);
  const auto images = tmp_ / "state/images/base";
  const auto folders = std::distance(fs::directory_iterator(images), fs::directory_iterator());
  for (const json& bad : {json{{"upload", "../x.ova"}}, json{{"upload", "web1-x.ova"}, {"x", 1}},
                          json{{"upload", "web1-x.ova"}, {"keep_hours", 0}},
                          json{{"upload", "web1-x.ova"}, {"keep_hours", -3}},
                          json{{"upload", "none.ova"}}, json::array()}) {
    auto r = agent.post("/v1/seeds", bad);
    ASSERT_FALSE(r) << bad.dump();
    EXPECT_TRUE(r.error().code == ErrorCode::InvalidArgument ||
                r.error().code == ErrorCode::NotFound)
        << bad.dump() << ": " << r.error().describe();
  }
  for (const json& bad : {json{{"name", "../../x.ova"}}, json{{"name", "x.tar"}},
                          json{{"sign", "yes"}}, json{{"other", true}}}) {
    auto r = agent.post("/v1/vms/web1/export", bad);
    ASSERT_FALSE(r) << bad.dump();
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << bad.dump();
  }
  EXPECT_EQ(agent.post("/v1/vms/nobody/export", json::object()).error().code, ErrorCode::NotFound);
  EXPECT_EQ(std::distance(fs::directory_iterator(images), fs::directory_iterator()), folders);
}

}  // namespace
}  // namespace vandra::agent
