// Packages and imports through the controller's API over real mutual TLS: an upload streamed,
// bounded and verified; what a package would create and where it would go, before importing;
// the import itself; and everything refused (a viewer, a bad body, a forbidden site) changes
// nothing. Every answer is checked against the OpenAPI document.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "test/controller/api_fixture.h"
#include "test/controller/test_package.h"

namespace vandra::controller::testing {
namespace {

using nlohmann::json;

class PackageApiTest : public ApiTest {
 protected:
  PackageApiTest() { max_upload_bytes_ = 1 << 20; }

  std::string packageBytes(const std::string& name, std::vector<std::string> networks) {
    auto ova = makeTestPackage(dir_ / "pkg", name, networks, euOnly());
    EXPECT_TRUE(ova) << ova.error().describe();
    std::ifstream in(*ova, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  httplib::Result put(const std::string& who, const std::string& name, const std::string& bytes) {
    auto r = client(who)->Put("/v1/packages/" + name, bytes, "application/octet-stream");
    EXPECT_TRUE(r);
    if (r) {
      EXPECT_EQ(checkAgainstOpenApi("put", "/v1/packages/{name}", r->status, r->body), "")
          << r->status << " " << r->body;
    }
    return r;
  }
};

TEST_F(PackageApiTest, UploadShowWhereItWouldGoThenImport) {
  const std::string bytes = packageBytes("web1", {"VM Network"});
  auto up = put("alice", "web1.ova", bytes);
  ASSERT_EQ(up->status, 201) << up->body;
  EXPECT_EQ(json::parse(up->body)["size"], bytes.size());

  auto list = call("victor", "get", "/v1/packages", "/v1/packages");
  ASSERT_EQ(list->status, 200);
  EXPECT_EQ(json::parse(list->body)["packages"][0]["name"], "web1.ova");
  auto one = call("victor", "get", "/v1/packages/web1.ova", "/v1/packages/{name}");
  ASSERT_EQ(one->status, 200) << one->body;
  auto shown = json::parse(one->body);
  EXPECT_EQ(shown["vms"][0]["sla"]["jurisdictions"], json::array({"EU"}));
  EXPECT_EQ(shown["placement"]["site"], "cloud-eu");
  EXPECT_EQ(shown["placement"]["networks"]["VM Network"], "lan");
  auto at_us = call("victor", "get", "/v1/packages/web1.ova?site=cloud-us", "/v1/packages/{name}");
  ASSERT_EQ(at_us->status, 200);
  EXPECT_NE(json::parse(at_us->body)["placement"]["error"]["message"].get<std::string>().find(
                "jurisdiction US not in [EU]"),
            std::string::npos)
      << at_us->body;

  auto imported = call("alice", "post", "/v1/vms", "/v1/vms",
                       R"({"id": "web2", "package": "web1.ova", "reason": "new service"})");
  ASSERT_EQ(imported->status, 201) << imported->body;
  const auto vm = json::parse(imported->body);
  EXPECT_EQ(vm["vm"]["site"], "cloud-eu");
  EXPECT_EQ(vm["vm"]["home_site"], "cloud-eu");
  EXPECT_EQ(vm["placement"]["networks"]["VM Network"], "lan");
  EXPECT_EQ(call("victor", "get", "/v1/vms/web2", "/v1/vms/{name}")->status, 200);
  auto audit = store_->audit({0, "alice", "web2", 10});
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "POST /v1/vms");
  EXPECT_EQ((*audit)[0].reason, "new service");

  EXPECT_EQ(call("alice", "delete", "/v1/packages/web1.ova", "/v1/packages/{name}")->status, 200);
  EXPECT_EQ(call("victor", "get", "/v1/packages/web1.ova", "/v1/packages/{name}")->status, 404);
}

TEST_F(PackageApiTest, RefusedUploadsAndImportsChangeNothing) {
  const std::string bytes = packageBytes("web1", {"lan"});
  auto by_viewer = put("victor", "web1.ova", bytes);
  EXPECT_EQ(by_viewer->status, 403);
  std::string tampered = bytes;
  tampered[tampered.size() / 2] ^= 0x55;
  EXPECT_EQ(put("alice", "web1.ova", tampered)->status / 100, 4);
  EXPECT_EQ(put("alice", "big.ova", std::string(2 << 20, 'x'))->status, 413);
  EXPECT_EQ(put("alice", "..%2Fetc%2Fshadow", bytes)->status, 400);
  EXPECT_TRUE(service_->packages()->list()->empty());

  ASSERT_EQ(put("alice", "web1.ova", bytes)->status, 201);
  struct Case {
    std::string body;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {R"({"id": "web2"})", 400, "package"},
      {R"({"id": "web2", "package": "web1.ova", "colour": "red"})", 400, "'colour'"},
      {R"({"id": "web2", "package": "nope.ova"})", 404, "nope.ova"},
      {R"({"id": "web2", "package": "../x.ova"})", 400, "package"},
      {R"({"id": "web2", "package": "web1.ova", "site": "cloud-us"})", 409, "jurisdiction"},
      {R"({"id": "web2", "package": "web1.ova", "site": "mars"})", 404, "mars"},
      {R"({"id": "web2", "package": "web1.ova", "network_map": {"lan": "moon"}})", 400, "moon"},
      {R"({"id": "web1", "package": "web1.ova"})", 409, "exists"},  // the fixture's web1
  };
  for (const auto& c : cases) {
    auto r = call("alice", "post", "/v1/vms", "/v1/vms", c.body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, c.status) << c.body << ": " << r->body;
    EXPECT_NE(r->body.find(c.says), std::string::npos) << c.body << ": " << r->body;
  }
  EXPECT_EQ(call("victor", "post", "/v1/vms", "/v1/vms", R"({"id": "web2", "package": "web1.ova"})")
                ->status,
            403);
  EXPECT_EQ(store_->vm("web2").error().code, ErrorCode::NotFound);
  for (const char* s : {"dc", "cloud-eu", "cloud-us"}) {
    std::lock_guard lock(agents_[s]->mu);
    EXPECT_TRUE(agents_[s]->packages.empty()) << s;
  }
}

}  // namespace
}  // namespace vandra::controller::testing
