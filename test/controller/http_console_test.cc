// The console's side of the API over real TLS: a browser without a certificate signs in, its
// cookie stands for it, changes need the CSRF token, the event stream pushes progress and the
// end of a migration, cancel rolls it back, and the built files are served with their headers.
#include <condition_variable>
#include <fstream>
#include <thread>

#include "test/controller/api_fixture.h"
#include "vandra/controller/console_auth.h"

namespace vandra::controller::testing {
namespace {

using nlohmann::json;

class ConsoleApiTest : public ApiTest {
 protected:
  ConsoleOptions consoleOptions() override {
    fs::create_directories(dir_ / "console/assets");
    std::ofstream(dir_ / "console/index.html") << "<!doctype html><title>vandra</title>";
    std::ofstream(dir_ / "console/assets/app.js") << "console.log('vandra');";
    return {(dir_ / "console").string(), true};
  }
  void SetUp() override {
    ApiTest::SetUp();
    for (const auto& [name, role] : {std::pair{"olga", "operator"}, {"vera", "viewer"}}) {
      auto hash = hashPassword(std::string(name) + "-secret");
      ASSERT_TRUE(hash);
      ASSERT_TRUE(store_->putUser({name, role, *hash, 1}));
    }
  }

  // A browser: no client certificate, the cookie and headers it is given.
  httplib::Result browser(const std::string& method, const std::string& path,
                          const std::string& body = "", httplib::Headers headers = {}) {
    httplib::SSLClient c("127.0.0.1", port_);
    c.set_ca_cert_path((dir_ / "pki/ca.crt").c_str());
    c.enable_server_certificate_verification(true);
    if (method == "GET") {
      return c.Get(path, headers);
    }
    if (method == "DELETE") {
      return c.Delete(path, headers);
    }
    return c.Post(path, headers, body, "application/json");
  }

  struct SignedIn {
    std::string cookie;  // "vandra_session=..."
    std::string csrf;
    std::string set_cookie;
  };
  SignedIn signIn(const std::string& user, const std::string& password) {
    auto r = browser("POST", "/v1/session", json{{"user", user}, {"password", password}}.dump());
    EXPECT_TRUE(r);
    if (!r || r->status != 200) {
      ADD_FAILURE() << (r ? r->body : "no answer");
      return {};
    }
    EXPECT_EQ(checkAgainstOpenApi("post", "/v1/session", r->status, r->body), "");
    const std::string sc = r->get_header_value("Set-Cookie");
    return {sc.substr(0, sc.find(';')), json::parse(r->body)["csrf"], sc};
  }
  httplib::Headers as(const SignedIn& s, bool with_csrf = true) {
    httplib::Headers h{{"Cookie", s.cookie}};
    if (with_csrf) {
      h.emplace("X-CSRF-Token", s.csrf);
    }
    return h;
  }
};

TEST_F(ConsoleApiTest, ABrowserSignsInAndItsCookieIsSecureHttpOnlyAndSameSite) {
  auto anon = browser("GET", "/v1/vms");
  ASSERT_TRUE(anon);
  EXPECT_EQ(anon->status, 401);
  EXPECT_EQ(json::parse(anon->body)["error"]["code"], "unauthorized");

  auto wrong = browser("POST", "/v1/session", R"({"user": "olga", "password": "guess"})");
  EXPECT_EQ(wrong->status, 401);
  EXPECT_TRUE(wrong->get_header_value("Set-Cookie").empty());
  auto nobody = browser("POST", "/v1/session", R"({"user": "nobody", "password": "guess"})");
  EXPECT_EQ(nobody->status, 401);
  EXPECT_EQ(json::parse(nobody->body)["error"]["message"],
            json::parse(wrong->body)["error"]["message"]);  // no hint which names exist

  const SignedIn olga = signIn("olga", "olga-secret");
  for (const char* attr : {"Secure", "HttpOnly", "SameSite=Strict", "Path=/"}) {
    EXPECT_NE(olga.set_cookie.find(attr), std::string::npos) << olga.set_cookie;
  }
  EXPECT_EQ(olga.cookie.rfind("vandra_session=", 0), 0U);
  EXPECT_EQ(olga.set_cookie.find(olga.csrf), std::string::npos);  // the token is not the cookie

  auto vms = browser("GET", "/v1/vms", "", as(olga, false));
  ASSERT_EQ(vms->status, 200) << vms->body;
  EXPECT_EQ(json::parse(vms->body)["vms"][0]["name"], "web1");
  auto me = browser("GET", "/v1/session", "", as(olga, false));
  ASSERT_EQ(me->status, 200);
  EXPECT_EQ(checkAgainstOpenApi("get", "/v1/session", me->status, me->body), "");
  EXPECT_EQ(json::parse(me->body)["role"], "operator");
  EXPECT_EQ(json::parse(me->body)["csrf"], olga.csrf);

  // Signed out, the cookie is worth nothing.
  auto out = browser("DELETE", "/v1/session", "", as(olga));
  EXPECT_EQ(out->status, 204);
  EXPECT_NE(out->get_header_value("Set-Cookie").find("Max-Age=0"), std::string::npos);
  EXPECT_EQ(browser("GET", "/v1/vms", "", as(olga, false))->status, 401);

  // Sign-ins are audited under the name given, never with the password.
  auto audit = store_->audit({0, "olga", "", 10});
  ASSERT_TRUE(audit);
  ASSERT_GE(audit->size(), 2U);
  EXPECT_EQ((*audit)[0].action, "POST /v1/session");
  EXPECT_EQ((*audit)[0].status, 401);
  for (const auto& e : *audit) {
    EXPECT_EQ(e.reason.find("secret"), std::string::npos);
    EXPECT_EQ(e.reason.find("guess"), std::string::npos);
  }
}

TEST_F(ConsoleApiTest, AChangeNeedsTheCsrfTokenAndTheSameOriginAndAViewerMayNotChange) {
  const SignedIn olga = signIn("olga", "olga-secret");
  auto no_token = browser("POST", "/v1/mobility/pause", "{}", as(olga, false));
  EXPECT_EQ(no_token->status, 403);
  EXPECT_NE(no_token->body.find("X-CSRF-Token"), std::string::npos);
  auto bad_token = browser("POST", "/v1/mobility/pause", "{}",
                           {{"Cookie", olga.cookie}, {"X-CSRF-Token", olga.csrf + "x"}});
  EXPECT_EQ(bad_token->status, 403);
  auto h = as(olga);
  h.emplace("Origin", "https://evil.example");
  auto cross = browser("POST", "/v1/mobility/pause", "{}", h);
  EXPECT_EQ(cross->status, 403);
  EXPECT_NE(cross->body.find("evil.example"), std::string::npos);
  EXPECT_FALSE(*service_->mobilityPaused());  // nothing changed by any of them

  auto ok = browser("POST", "/v1/mobility/pause", "{}", as(olga));
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_TRUE(*service_->mobilityPaused());
  auto audit = store_->audit({0, "olga", "", 10});
  ASSERT_FALSE(audit->empty());
  EXPECT_EQ(audit->back().action, "POST /v1/mobility/pause");
  EXPECT_EQ(audit->back().role, "operator");

  const SignedIn vera = signIn("vera", "vera-secret");
  auto viewer = browser("POST", "/v1/vms/web1/migrate", R"({"to": "cloud-eu"})", as(vera));
  EXPECT_EQ(viewer->status, 403);
  EXPECT_TRUE(agents_["dc"]->calls.empty());
  EXPECT_EQ(browser("GET", "/v1/vms", "", as(vera, false))->status, 200);

  // A client certificate still works beside the console, without any token.
  EXPECT_EQ(call("alice", "post", "/v1/mobility/resume", "/v1/mobility/resume", "{}")->status, 200);
}

TEST_F(ConsoleApiTest, RepeatedFailedSignInsAreRefusedForAWhile) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(browser("POST", "/v1/session", R"({"user": "olga", "password": "nope"})")->status,
              401);
  }
  auto r = browser("POST", "/v1/session", R"({"user": "olga", "password": "olga-secret"})");
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(checkAgainstOpenApi("post", "/v1/session", r->status, r->body), "");
  EXPECT_TRUE(r->get_header_value("Set-Cookie").empty());
  // Another user is not held back by it.
  EXPECT_FALSE(signIn("vera", "vera-secret").csrf.empty());
}

TEST_F(ConsoleApiTest, TheConsolesFilesAreServedWithoutSignInAndWithASecurityPolicy) {
  auto index = browser("GET", "/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_NE(index->body.find("<title>vandra</title>"), std::string::npos);
  EXPECT_NE(index->get_header_value("Content-Security-Policy").find("default-src 'self'"),
            std::string::npos);
  EXPECT_EQ(index->get_header_value("X-Frame-Options"), "DENY");
  auto js = browser("GET", "/assets/app.js");
  EXPECT_EQ(js->status, 200);
  EXPECT_NE(js->get_header_value("Content-Type").find("javascript"), std::string::npos);
  EXPECT_EQ(browser("GET", "/../controller.db")->status, 404);
  EXPECT_EQ(browser("GET", "/assets/missing.js")->status, 404);
  EXPECT_EQ(browser("POST", "/index.html", "{}")->status, 400);
}

// Reads the event stream on its own thread until told to stop; the test waits on what it
// has read, not on time.
class StreamReader {
 public:
  StreamReader(int port, const fs::path& ca, httplib::Headers headers) {
    thread_ = std::thread([this, port, ca, headers] {
      httplib::SSLClient c("127.0.0.1", port);
      c.set_ca_cert_path(ca.c_str());
      c.enable_server_certificate_verification(true);
      c.set_read_timeout(std::chrono::seconds(30));
      auto r = c.Get("/v1/stream", headers, [this](const char* data, size_t n) {
        std::lock_guard lock(mu_);
        text_.append(data, n);
        cv_.notify_all();
        return !stop_;
      });
      std::lock_guard lock(mu_);
      status_ = r ? r->status : -1;
      done_ = true;
      cv_.notify_all();
    });
  }
  ~StreamReader() { stop(nullptr); }
  // Waits (at most 20 s) until @p pred holds over what was read; returns it then.
  std::string waitFor(const std::function<bool(const std::string&)>& pred) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20), [&] { return done_ || pred(text_); });
    return text_;
  }
  void stop(ProgressHub* hub) {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    if (hub != nullptr) {
      hub->publish("changed", R"({"what":"vms"})");  // the reader returns at the next event
    }
    if (thread_.joinable()) {
      thread_.join();
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  bool stop_ = false;
  bool done_ = false;
  int status_ = 0;
  std::thread thread_;
};

TEST_F(ConsoleApiTest, TheStreamPushesProgressAndTheEndAndCancelRollsTheMoveBack) {
  const SignedIn olga = signIn("olga", "olga-secret");
  StreamReader reader(port_, dir_ / "pki/ca.crt", as(olga, false));
  EXPECT_NE(reader.waitFor([](const std::string& t) { return t.find("event: hello") != t.npos; })
                .find("event: hello"),
            std::string::npos);
  auto started = browser("POST", "/v1/vms/web1/migrate",
                         R"({"to": "cloud-eu", "reason": "console"})", as(olga));
  ASSERT_EQ(started->status, 202) << started->body;
  const int64_t id = json::parse(started->body)["id"];
  {
    std::lock_guard lock(agents_["dc"]->mu);
    agents_["dc"]->migrations.at("m1").report_json =
        R"({"progress": {"ram_transferred": 1000, "ram_remaining": 3000, "wan_bytes": 5000}})";
  }
  service_->progressOnce();
  const std::string with_progress = reader.waitFor(
      [](const std::string& t) { return t.find("\"ram_remaining\":3000") != t.npos; });
  EXPECT_NE(with_progress.find("\"ram_remaining\":3000"), std::string::npos) << with_progress;
  EXPECT_NE(with_progress.find("\"cancellable\":true"), std::string::npos);
  EXPECT_NE(with_progress.find("\"phase\":\"precopy_ram\""), std::string::npos);
  // The sample is kept for the history chart.
  auto samples =
      browser("GET", "/v1/migrations/" + std::to_string(id) + "/samples", "", as(olga, false));
  ASSERT_EQ(samples->status, 200);
  EXPECT_EQ(checkAgainstOpenApi("get", "/v1/migrations/{id}/samples", 200, samples->body), "");
  EXPECT_EQ(json::parse(samples->body)["samples"][0]["wan_bytes"], 5000);

  // A viewer may not cancel; an operator without the token may not either.
  const SignedIn vera = signIn("vera", "vera-secret");
  const std::string cancel = "/v1/migrations/" + std::to_string(id) + "/cancel";
  EXPECT_EQ(browser("POST", cancel, "{}", as(vera))->status, 403);
  EXPECT_EQ(browser("POST", cancel, "{}", as(olga, false))->status, 403);
  auto cancelled = browser("POST", cancel, R"({"reason": "wrong button"})", as(olga));
  ASSERT_EQ(cancelled->status, 202) << cancelled->body;
  EXPECT_EQ(checkAgainstOpenApi("post", "/v1/migrations/{id}/cancel", 202, cancelled->body), "");
  auto ended = service_->waitMigration(id, 10000);
  ASSERT_TRUE(ended);
  EXPECT_EQ(ended->state, MigrationState::Cancelled);
  EXPECT_EQ(service_->store().vm("web1")->site, "dc");
  const std::string at_end = reader.waitFor(
      [](const std::string& t) { return t.find("\"state\":\"cancelled\"") != t.npos; });
  EXPECT_NE(at_end.find("\"state\":\"cancelled\""), std::string::npos) << at_end;
  // The cancel is in the audit log under the VM it was about.
  auto audit = store_->audit({0, "", "web1", 20});
  ASSERT_TRUE(audit);
  EXPECT_TRUE(std::any_of(audit->begin(), audit->end(), [&](const AuditEntry& e) {
    return e.action == "POST " + cancel && e.who == "olga" && e.status == 202 &&
           e.reason == "wrong button";
  }));
  // Too late now: it has ended.
  auto again = browser("POST", cancel, "{}", as(olga));
  EXPECT_EQ(again->status, 409);
  reader.stop(&service_->progress());
  // The server learns that the browser went when a write fails: events until it has.
  bool left = false;
  for (int i = 0; i < 100 && !left; ++i) {
    service_->progress().publish("changed", R"({"what":"vms"})");
    left = service_->progress().waitWatchers(0, std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(left) << service_->progress().watchers() << " watcher(s) still held";
}

TEST_F(ConsoleApiTest, APreflightSaysWhatTheMoveWouldCost) {
  auto r = call("victor", "get", "/v1/vms/web1/preflight?to=cloud-eu", "/v1/vms/{name}/preflight");
  ASSERT_EQ(r->status, 200) << r->body;
  const auto j = json::parse(r->body);
  EXPECT_TRUE(j["ok"].get<bool>());
  ASSERT_TRUE(j["estimate"].is_object()) << j.dump();
  EXPECT_EQ(j["estimate"]["rtt_ms"], 20);  // the fixture's dc ~ cloud-eu link
  EXPECT_EQ(j["estimate"]["basis"], "model");
  EXPECT_GT(j["estimate"]["duration_s"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(j["estimate"]["interruption_ms"].get<double>(), 3 * 20 + 100);
  auto us = call("victor", "get", "/v1/vms/web1/preflight?to=cloud-us", "/v1/vms/{name}/preflight");
  const auto u = json::parse(us->body);
  EXPECT_FALSE(u["ok"].get<bool>());  // EU only: the clause says why
  EXPECT_NE(u["refusals"][0]["clause"].get<std::string>().find("jurisdiction"), std::string::npos)
      << u.dump();
}

}  // namespace
}  // namespace vandra::controller::testing
