// The migration routes of the agent API (migration_api.h) against hostile and wrong requests:
// each answered with a clear 4xx naming what was wrong, and nothing started or changed.
// (The real migrations through these routes run in test/testbed/testbed_test.cc.)
#include "vandra/orchestrator/migration_api.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "../ovf/writer/writer_test_util.h"
#include "test/support/serve.h"
#include "vandra/agent/http_api.h"
#include "vandra/ovf/writer.h"

namespace vandra::orchestrator {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class MigrationApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "vandra-migapi-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto svc = agent::AgentService::open(
        {.state_dir = dir_ + "/state",
         .capacity = {.total = {4, 4096, 8ULL << 30}, .reserved = {0, 512, 0}},
         .trust_store = "",
         .command_line = {},
         .stop_timeout = std::chrono::seconds(30),
         .bridge = "",
         .import_dirs = {dir_},
         .max_upload_bytes = agent::kDefaultMaxUploadBytes,
         .retain_departed = std::chrono::hours(24)});
    ASSERT_TRUE(svc) << svc.error().describe();
    agent_ = std::move(*svc);
    auto st = openSqliteMigrationStore(dir_ + "/migrations.db");
    ASSERT_TRUE(st);
    store_ = std::move(*st);
    seed(*store_);
    MigrationServiceConfig c;
    c.site = "dc";
    c.run_dir = dir_ + "/run";
    c.listen = false;
    c.peers = {{"cloud", "127.0.0.1", 1}};
    auto ms = MigrationService::start(*agent_, *store_, c);
    ASSERT_TRUE(ms) << ms.error().describe();
    service_ = std::move(*ms);
    agent::registerRoutes(server_, *agent_);
    registerMigrationRoutes(server_, *service_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    ASSERT_TRUE(vandra::testing::serveInBackground(server_, thread_));
  }
  void TearDown() override {
    server_.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
    service_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Records the service finds when it starts (its recovery runs over them).
  virtual void seed(MigrationStore&) {}
  // Status and error code of one request.
  std::pair<int, std::string> call(const std::string& method, const std::string& path,
                                   const std::string& body = "") {
    httplib::Client c("127.0.0.1", port_);
    auto r = method == "GET" ? c.Get(path) : c.Post(path, body, "application/json");
    if (!r) {
      return {0, "no answer"};
    }
    last_body_ = r->body;
    const auto j = json::parse(r->body, nullptr, false);
    return {r->status, j.is_object() && j.contains("error") && j["error"].is_object()
                           ? j["error"].value("code", "")
                           : ""};
  }

  std::string dir_;
  std::string last_body_;  // of the last call()
  std::unique_ptr<agent::AgentService> agent_;
  MigrationStorePtr store_;
  std::unique_ptr<MigrationService> service_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

TEST_F(MigrationApiTest, BadMigrateRequestsAreRefusedWithTheirReason) {
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", "not json"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", "[]"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","evil":1})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":7})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","bandwidth_mbps":-1})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","max_total_s":0})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","downtime_limit_ms":1.5})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","auto_converge":"yes"})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","disk_converge":1})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","copy_mode":"eager"})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","copy_mode":1})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  // A valid copy mode passes the parser (the VM then is not found).
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","copy_mode":"write-blocking"})"),
            (std::pair<int, std::string>{404, "not_found"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", "{\"to\":\"" + std::string(100, 'a') + "\"}"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", std::string(70 * 1024, ' ')).first, 413);
  EXPECT_GE(call("POST", "/v1/vms/..%2Fetc/migrate", R"({"to":"cloud"})").first,
            400);  // 400 or no route
  // Well-formed, but the VM does not exist: nothing starts.
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud"})"),
            (std::pair<int, std::string>{404, "not_found"}));
  auto list = store_->list("");
  ASSERT_TRUE(list);
  EXPECT_TRUE(list->empty());
}

TEST(ParseMigrate, TheNetworkMapIsBoundedAndOptional) {
  auto plain = parseMigrate(R"({"to":"cloud"})");
  ASSERT_TRUE(plain) << plain.error().describe();
  EXPECT_TRUE(plain->networks.empty());
  auto mapped = parseMigrate(R"({"to":"cloud","networks":{"VM Network":"lan","dmz":"dmz-2"}})");
  ASSERT_TRUE(mapped) << mapped.error().describe();
  EXPECT_EQ(mapped->networks,
            (std::map<std::string, std::string>{{"VM Network", "lan"}, {"dmz", "dmz-2"}}));
  json many = {{"to", "cloud"}, {"networks", json::object()}};
  for (size_t i = 0; i <= kMaxMigrateNetworks; ++i) {
    many["networks"]["n" + std::to_string(i)] = "lan";
  }
  for (const std::string& body : {
           std::string(R"({"to":"cloud","networks":["lan"]})"),
           std::string(R"({"to":"cloud","networks":"lan"})"),
           std::string(R"({"to":"cloud","networks":{"VM Network":1}})"),
           std::string(R"({"to":"cloud","networks":{"VM Network":""}})"),
           std::string(R"({"to":"cloud","networks":{"":"lan"}})"),
           std::string(R"({"to":"cloud","networks":{"VM Network":"l\nan"}})"),
           R"({"to":"cloud","networks":{"VM Network":")" + std::string(65, 'n') + R"("}})",
           R"({"to":"cloud","networks":{")" + std::string(65, 'n') + R"(":"lan"}})",
           many.dump(),
       }) {
    SCOPED_TRACE(body.substr(0, 120));
    auto r = parseMigrate(body);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
    EXPECT_NE(r.error().message.find("networks"), std::string::npos) << r.error().message;
  }
  auto longest = parseMigrate(R"({"to":"cloud","networks":{")" + std::string(64, 'n') + R"(":")" +
                              std::string(64, 'm') + R"("}})");
  EXPECT_TRUE(longest) << longest.error().describe();
}

TEST(ParseMigrate, ContentReferencesAreOnUnlessTheRequestSaysFalse) {
  auto plain = parseMigrate(R"({"to":"cloud"})");
  ASSERT_TRUE(plain) << plain.error().describe();
  EXPECT_TRUE(plain->content_refs);
  auto off = parseMigrate(R"({"to":"cloud","content_refs":false})");
  ASSERT_TRUE(off) << off.error().describe();
  EXPECT_FALSE(off->content_refs);
  for (const char* body :
       {R"({"to":"cloud","content_refs":0})", R"({"to":"cloud","content_refs":"off"})"}) {
    auto r = parseMigrate(body);
    ASSERT_FALSE(r) << body;
    EXPECT_NE(r.error().message.find("content_refs"), std::string::npos) << r.error().message;
  }
}

// Each key must be a network one of the VM's NICs is on: a 400 naming it, before anything
// else is looked at (here the VM is not even running).
TEST_F(MigrationApiTest, ANetworkMapRenamesOnlyNetworksOfTheVmsNics) {
  ovf::VmSpec spec;
  ovf::VirtualSystemSpec vs;
  vs.id = "vm";
  vs.vcpus = 1;
  vs.memory_mib = 64;
  vs.controllers.push_back({"virtio0", ovf::ControllerKind::Virtio, ""});
  vs.disks.push_back({.id = "disk1",
                      .capacity_bytes = 1ULL << 20,
                      .populated_bytes = std::nullopt,
                      .format = "vmdk-stream",
                      .format_uri = "",
                      .file = std::nullopt,
                      .parent = std::nullopt,
                      .controller = "virtio0",
                      .unit = 0});
  vs.nics.push_back({"VM Network", "e1000", std::nullopt, true});
  spec.virtual_systems.push_back(vs);
  spec.networks.push_back({"VM Network", ""});
  ovf::testing::makeRawImage(dir_ + "/d.raw", 1ULL << 20);
  ovf::ExportOptions eo;
  eo.disk_images["disk1"] = dir_ + "/d.raw";
  ASSERT_TRUE(ovf::exportPackage(spec, dir_ + "/vm.ova", eo));
  auto imported = agent_->importVm({.id = "web1",
                                    .package = dir_ + "/vm.ova",
                                    .vs = "",
                                    .lax = false,
                                    .from = "",
                                    .upload = "",
                                    .networks = {}});
  ASSERT_TRUE(imported) << imported.error().describe();
  EXPECT_EQ(call("POST", "/v1/vms/web1/migrate",
                 R"({"to":"cloud","networks":{"VM Network":"lan","dmz":"lan"}})"),
            (std::pair<int, std::string>{400, "invalid_argument"}));
  EXPECT_NE(last_body_.find("no NIC of VM 'web1' is on network 'dmz'"), std::string::npos)
      << last_body_;
  // A rename of its own network passes that check (and the VM, created, does not migrate).
  EXPECT_EQ(
      call("POST", "/v1/vms/web1/migrate", R"({"to":"cloud","networks":{"VM Network":"lan"}})"),
      (std::pair<int, std::string>{409, "illegal_transition"}));
  auto list = store_->list("");
  ASSERT_TRUE(list);
  EXPECT_TRUE(list->empty());
}

TEST_F(MigrationApiTest, MigrationQueriesAreBounded) {
  EXPECT_EQ(call("GET", "/v1/migrations"), (std::pair<int, std::string>{200, ""}));
  EXPECT_EQ(call("GET", "/v1/migrations?vm=web1"), (std::pair<int, std::string>{200, ""}));
  EXPECT_EQ(call("GET", "/v1/migrations?evil=1").first, 400);
  EXPECT_EQ(call("GET", "/v1/migrations?vm=../x").first, 400);
  EXPECT_EQ(call("GET", "/v1/migrations/m-1"), (std::pair<int, std::string>{404, "not_found"}));
  EXPECT_EQ(call("GET", "/v1/migrations/m-1?wait_ms=999999").first, 400);
  EXPECT_EQ(call("GET", "/v1/migrations/m-1?wait_ms=-5").first, 400);
  EXPECT_EQ(call("GET", "/v1/migrations/" + std::string(80, 'm')).first, 400);
  EXPECT_EQ(call("POST", "/v1/migrations/m-1/cancel", "{}"),
            (std::pair<int, std::string>{404, "not_found"}));
  EXPECT_EQ(call("GET", "/v1/peers").first, 200);
}

TEST_F(MigrationApiTest, ConnectingAPeerNamesWhatIsWrong) {
  EXPECT_EQ(call("POST", "/v1/peers/nowhere/connect", "{}"),
            (std::pair<int, std::string>{404, "not_found"}));
  EXPECT_EQ(call("POST", "/v1/peers/Bad_Name/connect", "{}").first, 400);
  // 'cloud' is configured, but this agent has no tunnel certificate: the dial's own error
  // (what is missing), and no link.
  const auto [status, code] = call("POST", "/v1/peers/cloud/connect", "{}");
  EXPECT_EQ(status, 400) << code;
  EXPECT_EQ(code, "invalid_argument");
  const auto peers = service_->peers();
  ASSERT_EQ(peers.size(), 1U) << peers.dump();
  EXPECT_EQ(peers[0].value("site", ""), "cloud");
  EXPECT_EQ(peers[0].value("link", ""), "down");  // configured, never linked
}

TEST_F(MigrationApiTest, ResolveRequestsAreStrictlyParsed) {
  const std::string path = "/v1/migrations/m-1/resolve";
  for (const std::string& body :
       {std::string("not json"), std::string("{}"), std::string(R"({"action":"resume-source"})"),
        std::string(R"({"action":"resume","reason":"x"})"),
        std::string(R"({"action":1,"reason":"x"})"),
        std::string(R"({"action":"resume-source","reason":""})"),
        std::string(R"({"action":"resume-source","reason":7})"),
        std::string(R"({"action":"resume-source","reason":"a\nb"})"),
        R"({"action":"abandon-source","reason":")" + std::string(501, 'x') + "\"}",
        std::string(R"({"action":"abandon-source","reason":"x","who":"me"})")}) {
    EXPECT_EQ(call("POST", path, body), (std::pair<int, std::string>{400, "invalid_argument"}))
        << body;
  }
  EXPECT_EQ(call("POST", "/v1/migrations/" + std::string(80, 'm') + "/resolve",
                 R"({"action":"resume-source","reason":"x"})")
                .first,
            400);
  // Well-formed, but no such migration.
  EXPECT_EQ(call("POST", path, R"({"action":"resume-source","reason":"cloud burnt down"})"),
            (std::pair<int, std::string>{404, "not_found"}));
  auto ok = parseResolve(R"J({"action":"abandon-source","reason":"cloud runs it (checked)"})J");
  ASSERT_TRUE(ok) << ok.error().describe();
  EXPECT_EQ(ok->action, ResolveAction::AbandonSource);
  EXPECT_EQ(ok->reason, "cloud runs it (checked)");
  EXPECT_TRUE(ok->who.empty());
}

TEST_F(MigrationApiTest, PeersReportTheListenerOff) {
  httplib::Client c("127.0.0.1", port_);
  auto r = c.Get("/v1/peers");
  ASSERT_TRUE(r);
  const auto j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r->body;
  EXPECT_EQ(j["listener"].value("state", ""), "off") << r->body;
}

// A record of VM @p vm (not on this test's agent: one active migration per VM) in @p phase.
MigrationRecord recordIn(const std::string& id, const std::string& vm, MigrationRole role,
                         MigrationPhase phase) {
  MigrationRecord r = newMigrationRecord(id, vm, role, "cloud", 1);
  r.phase = phase;
  return r;
}

// Migrations the agent found waiting for the peer's word when it started (its recovery hands
// them to the settler, which cannot reach cloud: no tunnel certificate here), and others.
class MigrationResolveTest : public MigrationApiTest {
 protected:
  void seed(MigrationStore& store) override {
    for (const auto& r :
         {recordIn("m-wait", "web1", MigrationRole::Source, MigrationPhase::Switchover),
          recordIn("m-confirm", "web2", MigrationRole::Source, MigrationPhase::Confirm),
          recordIn("m-target", "web3", MigrationRole::Target, MigrationPhase::Switchover),
          recordIn("m-done", "web4", MigrationRole::Source, MigrationPhase::Done)}) {
      auto in = store.insert(r);
      ASSERT_TRUE(in) << in.error().describe();
    }
  }
  json show(const std::string& id) {
    auto m = service_->show(id);
    EXPECT_TRUE(m) << m.error().describe();
    return m ? *m : json::object();
  }
};

TEST_F(MigrationResolveTest, AWaitingSourceSaysWhatItWaitsForAndSinceWhen) {
  const auto m = show("m-wait");
  EXPECT_EQ(m.value("phase", ""), "switchover");
  EXPECT_NE(m.value("waiting_for", "").find("cloud"), std::string::npos) << m.dump(2);
  EXPECT_GT(m.value("waiting_since_us", int64_t{0}), 1);
  EXPECT_EQ(m.value("waiting_since", "").size(), 24U) << m.dump(2);  // 2026-12-06T07:49:34.000Z
  auto all = service_->list("");
  ASSERT_TRUE(all);
  int waiting = 0;
  for (const auto& r : (*all)["migrations"]) {
    waiting += r.contains("waiting_for") ? 1 : 0;
  }
  EXPECT_EQ(waiting, 2) << all->dump(2);  // m-wait and m-confirm; not the target nor m-done
}

TEST_F(MigrationResolveTest, ResolveIsRefusedUnlessASourceWaitsForItsPeer) {
  // Inserted after the start: a source in switchover nobody has handed to the settler (as a
  // runner still talking to the peer).
  ASSERT_TRUE(store_->insert(
      recordIn("m-live", "web5", MigrationRole::Source, MigrationPhase::Switchover)));
  ASSERT_TRUE(
      store_->insert(recordIn("m-ram", "web6", MigrationRole::Source, MigrationPhase::PrecopyRam)));
  const std::string resume = R"({"action":"resume-source","reason":"test"})";
  const std::string abandon = R"({"action":"abandon-source","reason":"test"})";
  for (const auto& [id, body] : std::vector<std::pair<std::string, std::string>>{
           {"m-target", resume},
           {"m-target", abandon},
           {"m-done", abandon},
           {"m-live", resume},
           {"m-ram", abandon},
           {"m-confirm", resume}}) {  // the target started the guest: never resumed here
    auto before = store_->get(id);
    ASSERT_TRUE(before && *before);
    EXPECT_EQ(call("POST", "/v1/migrations/" + id + "/resolve", body),
              (std::pair<int, std::string>{409, "illegal_transition"}))
        << id << " " << body;
    auto after = store_->get(id);
    ASSERT_TRUE(after && *after);
    EXPECT_EQ((*after)->phase, (*before)->phase) << id;
    EXPECT_FALSE((*after)->report.contains("resolution")) << id;
  }
  auto why = service_->resolve("m-confirm", {ResolveAction::ResumeSource, "x", ""});
  ASSERT_FALSE(why);
  EXPECT_NE(why.error().message.find("run it twice"), std::string::npos) << why.error().message;
}

TEST_F(MigrationResolveTest, AnAbandonedSourceEndsDoneWithTheDecisionRecorded) {
  const auto since = agent_->events().read(0, "", 1000, std::chrono::milliseconds(0)).last_seq;
  auto r =
      call("POST", "/v1/migrations/m-confirm/resolve",
           R"J({"action":"abandon-source","reason":"cloud runs web1 (seen on its console)"})J");
  EXPECT_EQ(r, (std::pair<int, std::string>{200, ""}));
  const auto m = show("m-confirm");
  EXPECT_EQ(m.value("phase", ""), "done") << m.dump(2);
  EXPECT_TRUE(m.value("ended", false));
  EXPECT_FALSE(m.contains("waiting_for"));
  const auto& res = m["report"]["resolution"];
  EXPECT_EQ(res.value("action", ""), "abandon-source") << m.dump(2);
  EXPECT_EQ(res.value("reason", ""), "cloud runs web1 (seen on its console)");
  EXPECT_TRUE(res["who"].is_null());  // plain HTTP here: no client certificate
  EXPECT_GT(res.value("at_us", int64_t{0}), 0);
  EXPECT_EQ(m["timeline"].back().value("event", ""), "operator_abandon") << m.dump(2);
  auto page = agent_->events().read(since, "web2", 100, std::chrono::milliseconds(0));
  ASSERT_FALSE(page.events.empty());
  EXPECT_EQ(page.events.back().name, "migration-resolved");
  EXPECT_EQ(page.events.back().data.value("action", ""), "abandon-source");
  // Once is enough: it has ended.
  EXPECT_EQ(call("POST", "/v1/migrations/m-confirm/resolve",
                 R"({"action":"abandon-source","reason":"again"})"),
            (std::pair<int, std::string>{409, "illegal_transition"}));
  auto waited = service_->wait("m-confirm", std::chrono::steady_clock::now());
  ASSERT_TRUE(waited) << waited.error().describe();
  EXPECT_TRUE(waited->value("ended", false));
}

}  // namespace
}  // namespace vandra::orchestrator
