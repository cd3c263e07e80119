// The migration routes of the agent API (migration_api.h) against hostile and wrong requests:
// each answered with a clear 4xx naming what was wrong, and nothing started or changed.
// (The real migrations through these routes run in test/testbed/testbed_test.cc.)
#include "vandra/orchestrator/migration_api.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "vandra/agent/http_api.h"

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
         .bridge = ""});
    ASSERT_TRUE(svc) << svc.error().describe();
    agent_ = std::move(*svc);
    auto st = openSqliteMigrationStore(dir_ + "/migrations.db");
    ASSERT_TRUE(st);
    store_ = std::move(*st);
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
    thread_ = std::thread([this] { server_.listen_after_bind(); });
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
  // Status and error code of one request.
  std::pair<int, std::string> call(const std::string& method, const std::string& path,
                                   const std::string& body = "") {
    httplib::Client c("127.0.0.1", port_);
    auto r = method == "GET" ? c.Get(path) : c.Post(path, body, "application/json");
    if (!r) {
      return {0, "no answer"};
    }
    const auto j = json::parse(r->body, nullptr, false);
    return {r->status, j.is_object() && j.contains("error") ? j["error"].value("code", "") : ""};
  }

  std::string dir_;
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
  EXPECT_TRUE(service_->peers().empty());
}

}  // namespace
}  // namespace vandra::orchestrator
