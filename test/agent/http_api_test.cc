// The agent API over real mutual TLS on loopback: import an OVA made by the writer, list,
// show, delete; and every kind of bad request answered with a clear 4xx that changes nothing
// (malformed JSON, unknown fields, oversized body, path-like names, relative paths, a
// duplicate, a VM that does not fit).
#include "vandra/agent/http_api.h"

#include "api_test_fixture.h"
#include "vandra/ovf/disk_image.h"

namespace vandra::agent {
namespace {

using testing::ApiTest;
using testing::json;
namespace fs = std::filesystem;

TEST_F(ApiTest, ImportListShowDelete) {
  const std::string ova = makeOva("small", 256);
  auto c = client();
  auto created =
      c->Post("/v1/vms", json{{"id", "web1"}, {"package", ova}}.dump(), "application/json");
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 201) << created->body;
  EXPECT_EQ(body(created)["state"], "created");
  EXPECT_EQ(body(created)["resources"]["memory_mib"], 256);
  // The VM's disk is an overlay on the shared base image.
  const std::string overlay = tmp_ / "state/images/vms/web1/disk1.qcow2";
  ASSERT_TRUE(fs::exists(overlay));
  auto info = ovf::probeImage(overlay);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->format, "qcow2");

  // A second VM from the same package reuses the base (one base folder).
  auto second =
      c->Post("/v1/vms", json{{"id", "web2"}, {"package", ova}}.dump(), "application/json");
  ASSERT_EQ(second->status, 201) << second->body;
  size_t bases = 0;
  for (const auto& e : fs::directory_iterator(tmp_ / "state/images/base")) {
    bases += e.is_directory() ? 1U : 0U;
  }
  EXPECT_EQ(bases, 1U);

  auto list = c->Get("/v1/vms");
  ASSERT_EQ(list->status, 200);
  EXPECT_EQ(body(list)["vms"].size(), 2U);
  auto host = c->Get("/v1/host");
  ASSERT_EQ(host->status, 200);
  EXPECT_EQ(body(host)["used"]["memory_mib"], 512);
  EXPECT_EQ(body(host)["free"]["memory_mib"], 4096 - 512 - 512);

  auto del = c->Delete("/v1/vms/web1");
  ASSERT_EQ(del->status, 200) << del->body;
  EXPECT_FALSE(fs::exists(tmp_ / "state/images/vms/web1"));
  EXPECT_EQ(c->Get("/v1/vms/web1")->status, 404);
  EXPECT_EQ(c->Delete("/v1/vms/web1")->status, 404);
}

TEST_F(ApiTest, BadRequestsGetAClear4xxAndChangeNothing) {
  const std::string ova = makeOva("small", 256);
  auto c = client();
  struct Case {
    std::string body;
    int status;
    std::string code;
  };
  const std::vector<Case> cases = {
      {"{not json", 400, "invalid_argument"},
      {"[1,2]", 400, "invalid_argument"},
      {json{{"id", "a"}, {"package", ova}, {"colour", "red"}}.dump(), 400, "invalid_argument"},
      {json{{"id", 7}, {"package", ova}}.dump(), 400, "invalid_argument"},
      {json{{"id", "../../etc"}, {"package", ova}}.dump(), 400, "invalid_argument"},
      {json{{"id", "ok"}, {"package", "relative.ova"}}.dump(), 400, "invalid_argument"},
      // Outside the import folders: refused whether or not it exists (docs/agent/api.md).
      {json{{"id", "ok"}, {"package", "/nonexistent/x.ova"}}.dump(), 403, "forbidden"},
      {json{{"id", "ok"}, {"package", tmp_ / "imports/missing.ova"}}.dump(), 404, "not_found"},
  };
  for (const auto& k : cases) {
    auto r = c->Post("/v1/vms", k.body, "application/json");
    ASSERT_TRUE(r) << k.body;
    EXPECT_EQ(r->status, k.status) << k.body << " -> " << r->body;
    EXPECT_EQ(body(r)["error"]["code"], k.code) << r->body;
  }
  auto big = c->Post("/v1/vms", std::string(kMaxRequestBody + 1, ' '), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(c->Get("/v1/vms/bad%20name")->status, 400);
  EXPECT_EQ(c->Get("/v1/vms/..%2Fetc")->status, 404);  // decoded to a path no route serves
  EXPECT_TRUE(body(c->Get("/v1/vms"))["vms"].empty());
  EXPECT_TRUE(fs::is_empty(tmp_ / "state/images/vms"));

  ASSERT_EQ(
      c->Post("/v1/vms", json{{"id", "a"}, {"package", ova}}.dump(), "application/json")->status,
      201);
  auto dup = c->Post("/v1/vms", json{{"id", "a"}, {"package", ova}}.dump(), "application/json");
  EXPECT_EQ(dup->status, 409);
  EXPECT_EQ(body(dup)["error"]["code"], "already_exists");
}

TEST_F(ApiTest, VmThatDoesNotFitIsRefusedWithTheNumbers) {
  const std::string ova = makeOva("huge", 8192);
  auto c = client();
  auto r = c->Post("/v1/vms", json{{"id", "huge"}, {"package", ova}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 507);
  EXPECT_EQ(body(r)["error"]["code"], "capacity_exceeded");
  EXPECT_NE(r->body.find("VM needs 8192 MiB, 3584 MiB free of 4096 MiB"), std::string::npos)
      << r->body;
  EXPECT_TRUE(body(c->Get("/v1/vms"))["vms"].empty());
  EXPECT_TRUE(fs::is_empty(tmp_ / "state/images/base"))
      << "nothing imported for a VM that does not fit";
}

TEST_F(ApiTest, ClientWithoutCertificateIsRefused) {
  httplib::SSLClient anon("127.0.0.1", port_);
  anon.set_ca_cert_path((tmp_ / "pki/ca.crt").c_str());
  anon.enable_server_certificate_verification(true);
  EXPECT_FALSE(anon.Get("/v1/vms"));
}

}  // namespace
}  // namespace vandra::agent
