// The controller API over real mutual TLS on loopback, answered by the real service on a real
// SQLite store with fake agents behind it: every answer checked against the OpenAPI document,
// roles from the certificate's OU (a viewer's change is 403 and changes nothing, a certificate
// without a role gets nothing), every change audited, bad requests answered with a 4xx naming
// what was wrong.
#include "vandra/controller/http_api.h"

#include <gtest/gtest.h>

#include "test/controller/api_fixture.h"

namespace vandra::controller::testing {
namespace {

using nlohmann::json;

TEST_F(ApiTest, EveryAnswerIsWhatTheOpenApiDocumentSays) {
  for (const char* p : {"/v1/health", "/v1/leader", "/v1/sites", "/v1/hosts", "/v1/links",
                        "/v1/locations", "/v1/networks", "/v1/vms", "/v1/migrations", "/v1/sla",
                        "/v1/placement", "/v1/audit", "/v1/events"}) {
    auto r = call("victor", "get", p, p);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << p << ": " << r->body;
  }
  EXPECT_EQ(call("victor", "get", "/v1/sites/dc", "/v1/sites/{name}")->status, 200);
  EXPECT_EQ(call("victor", "get", "/v1/vms/web1", "/v1/vms/{name}")->status, 200);
  EXPECT_EQ(call("victor", "get", "/v1/vms/nope", "/v1/vms/{name}")->status, 404);
  auto pre =
      call("victor", "get", "/v1/vms/web1/preflight?to=cloud-us", "/v1/vms/{name}/preflight");
  EXPECT_EQ(pre->status, 200);
  EXPECT_EQ(json::parse(pre->body)["ok"], false);

  EXPECT_EQ(call("alice", "put", "/v1/links/dc/cloud-eu", "/v1/links/{a}/{b}",
                 R"({"rtt_ms": 20, "mbps": 1000})")
                ->status,
            200);
  EXPECT_EQ(call("alice", "put", "/v1/locations/stockholm", "/v1/locations/{name}",
                 R"({"rtt_ms": {"dc": 4, "cloud-eu": 25}})")
                ->status,
            200);
  EXPECT_EQ(call("alice", "put", "/v1/networks/office", "/v1/networks/{name}",
                 R"({"members": {"dc": "lan", "cloud-eu": "lan"}})")
                ->status,
            200);
  EXPECT_EQ(call("alice", "patch", "/v1/sites/cloud-us", "/v1/sites/{name}",
                 R"({"price": {"currency": "EUR", "vcpu_hour": 0.02, "memory_gib_hour": 0.003}})")
                ->status,
            200);
  auto m = call("alice", "post", "/v1/vms/web1/migrate", "/v1/vms/{name}/migrate",
                R"({"to": "cloud-eu", "reason": "rack maintenance"})");
  ASSERT_EQ(m->status, 202) << m->body;
  const auto id = json::parse(m->body)["id"].get<int64_t>();
  EXPECT_EQ(
      call("victor", "get", "/v1/migrations/" + std::to_string(id), "/v1/migrations/{id}")->status,
      200);
  // Refused by the SLA: 409 with the clause.
  auto refused = call("alice", "post", "/v1/vms/web1/migrate", "/v1/vms/{name}/migrate",
                      R"({"to": "cloud-us"})");
  EXPECT_EQ(refused->status, 409);
  auto where = call("victor", "post", "/v1/placement/vm", "/v1/placement/vm",
                    R"({"vcpus": 1, "memory_mib": 256, "sla": {"jurisdictions": ["EU"]},
                        "networks": ["VM Network"]})");
  ASSERT_EQ(where->status, 200) << where->body;  // a viewer may ask; nothing changes
  EXPECT_EQ(json::parse(where->body)["networks"]["VM Network"], "lan");
  auto nowhere = call("victor", "post", "/v1/placement/vm", "/v1/placement/vm",
                      R"({"vcpus": 1, "memory_mib": 256, "sla": {"jurisdictions": ["EU"]},
                          "site": "cloud-us"})");
  EXPECT_EQ(nowhere->status, 409);
  EXPECT_TRUE(store_->audit({0, "victor", "", 10})->empty());
  auto served = call("victor", "get", "/v1/openapi.json", "/v1/openapi.json");
  EXPECT_EQ(json::parse(served->body)["openapi"], "3.1.0");
}

TEST_F(ApiTest, AViewersChangeIsForbiddenChangesNothingAndIsAudited) {
  auto before = store_->site("dc");
  auto r =
      call("victor", "patch", "/v1/sites/dc", "/v1/sites/{name}", R"({"jurisdictions": ["US"]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "forbidden");
  EXPECT_EQ(store_->site("dc")->jurisdictions, before->jurisdictions);
  auto mig = call("victor", "post", "/v1/vms/web1/migrate", "/v1/vms/{name}/migrate",
                  R"({"to": "cloud-eu"})");
  EXPECT_EQ(mig->status, 403);
  EXPECT_TRUE(agents_["dc"]->calls.empty());

  auto audit = store_->audit({0, "victor", "", 10});
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].role, "viewer");
  EXPECT_EQ((*audit)[0].action, "PATCH /v1/sites/dc");
  EXPECT_EQ((*audit)[0].target, "dc");
  EXPECT_EQ((*audit)[0].status, 403);
  EXPECT_EQ((*audit)[0].result, "forbidden");
  // Reads are not audited; an operator's change is, with its reason.
  auto ok = call("alice", "post", "/v1/vms/web1/migrate", "/v1/vms/{name}/migrate",
                 R"({"to": "cloud-eu", "reason": "closer to users"})");
  EXPECT_EQ(ok->status, 202);
  auto by_alice = call("victor", "get", "/v1/audit?who=alice", "/v1/audit");
  const auto entries = json::parse(by_alice->body)["audit"];
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["reason"], "closer to users");
  EXPECT_EQ(entries[0]["target"], "web1");
  EXPECT_EQ(entries[0]["result"], "ok");
}

TEST_F(ApiTest, ACertificateWithoutARoleGetsNothingAndNoCertificateNoConnection) {
  auto r = client("nobody")->Get("/v1/vms");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("names no role"), std::string::npos);
  httplib::SSLClient anon("127.0.0.1", port_);
  anon.set_ca_cert_path((dir_ / "pki/ca.crt").c_str());
  anon.enable_server_certificate_verification(true);
  EXPECT_FALSE(anon.Get("/v1/vms"));
}

TEST_F(ApiTest, BadRequestsNameWhatWasWrongAndChangeNothing) {
  const auto before = store_->site("dc");
  struct Case {
    std::string method, path, tmpl, body;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"patch", "/v1/sites/dc", "/v1/sites/{name}", R"({"jurisdiction": ["EU"]})", 400,
       "'jurisdiction'"},
      {"patch", "/v1/sites/dc", "/v1/sites/{name}", R"({"water_marks": {"high": 0.5, "low": 0.7}})",
       400, "low"},
      {"patch", "/v1/sites/dc", "/v1/sites/{name}", "{not json", 400, "JSON"},
      {"patch", "/v1/sites/nowhere", "/v1/sites/{name}", R"({"jurisdictions": ["EU"]})", 404,
       "nowhere"},
      {"patch", "/v1/sites/dc", "/v1/sites/{name}", R"({"price": {"currency": "EURO"}})", 400,
       "currency"},
      {"put", "/v1/links/dc/dc", "/v1/links/{a}/{b}", R"({"rtt_ms": 1, "mbps": 1})", 400, "itself"},
      {"put", "/v1/links/dc/mars", "/v1/links/{a}/{b}", R"({"rtt_ms": 1, "mbps": 1})", 404, "mars"},
      {"post", "/v1/vms/web1/migrate", "/v1/vms/{name}/migrate", R"({})", 400, "to"},
      {"post", "/v1/vms/web1/migrate", "/v1/vms/{name}/migrate", R"({"to": "mars"})", 404, "mars"},
      {"post", "/v1/vms/ghost/migrate", "/v1/vms/{name}/migrate", R"({"to": "cloud-eu"})", 404,
       "ghost"},
      {"get", "/v1/migrations?max=0", "/v1/migrations", "", 400, "max"},
      {"get", "/v1/audit?since=1", "/v1/audit", "", 400, "since"},
  };
  for (const auto& c : cases) {
    auto r = call("alice", c.method, c.path, c.tmpl, c.body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, c.status) << c.method << " " << c.path << " " << c.body << ": " << r->body;
    EXPECT_NE(r->body.find(c.says), std::string::npos) << r->body;
  }
  auto big =
      client("alice")->Patch("/v1/sites/dc", std::string(100 * 1024, ' '), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(store_->site("dc")->jurisdictions, before->jurisdictions);
  EXPECT_TRUE(agents_["dc"]->calls.empty());
  EXPECT_EQ(store_->links()->size(), 3u);  // the fixture's, no more
}

TEST_F(ApiTest, MetricsAreServedInThePrometheusFormat) {
  ASSERT_EQ(client("victor")->Get("/v1/vms")->status, 200);
  auto r = client("victor")->Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("# TYPE vandra_api_requests_total counter"), std::string::npos);
  EXPECT_NE(r->body.find("vandra_api_requests_total{method=\"GET\",status=\"200\"}"),
            std::string::npos);
  EXPECT_NE(r->body.find("vandra_site_capacity{resource=\"vcpus\",site=\"dc\"} 8"),
            std::string::npos)
      << r->body;
  EXPECT_NE(r->body.find("vandra_sla_violations 0"), std::string::npos);
}

}  // namespace
}  // namespace vandra::controller::testing
