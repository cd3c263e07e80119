// Three sites as the testbed has them (dc: EU/SE, small, the home; cloud-eu: EU/DE;
// cloud-us: US, cheapest), each with one fake agent, and a controller service on a fresh SQLite
// store. Time is the test's (now_ms), so nothing waits on the clock.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "test/controller/fake_agent_link.h"
#include "vandra/controller/service.h"

namespace vandra::controller::testing {

namespace fs = std::filesystem;

inline ovf::Sla euOnly(ovf::Mobility m = ovf::Mobility::Automatic) {
  ovf::Sla s;
  s.jurisdictions = {"EU"};
  s.mobility = m;
  s.downtime_budget_ms = 500;
  return s;
}

inline Site site(const std::string& name, std::vector<std::string> jurisdictions,
                 double vcpu_hour) {
  Site s;
  s.name = name;
  s.jurisdictions = std::move(jurisdictions);
  s.price = {"EUR", vcpu_hour, 0.004};
  s.networks = {"lan"};
  s.default_network = "lan";
  return s;
}

class ControllerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vandra-controller-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    url_ = databaseUrl();
    if (url_.empty()) {
      return;  // skipped (or failed) by databaseUrl()
    }
    for (const char* s : {"dc", "cloud-eu", "cloud-us"}) {
      agents_[s] = std::make_shared<FakeAgentState>();
    }
    auto store = Store::open(url_);
    ASSERT_TRUE(store) << store.error().describe();
    store_ = std::move(*store);
    service_ = makeService(*store_, "c1");
    ASSERT_NE(service_, nullptr);
    // Every pair of sites joined, as the testbed's emulated links are.
    ASSERT_TRUE(store_->putLink({"dc", "cloud-eu", 20, 1000, 0}));
    ASSERT_TRUE(store_->putLink({"dc", "cloud-us", 90, 1000, 0}));
    ASSERT_TRUE(store_->putLink({"cloud-eu", "cloud-us", 80, 1000, 0}));
  }
  void TearDown() override {
    service_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  /// SQLite in the test's folder; a subclass may start another database ("" = skip).
  virtual std::string databaseUrl() { return "sqlite:" + (dir_ / "controller.db").string(); }

  std::vector<SiteConfig> sites() {
    std::vector<SiteConfig> out;
    out.push_back({site("dc", {"EU", "SE"}, 0.03), {}});
    out.push_back({site("cloud-eu", {"EU", "DE"}, 0.025), {}});
    out.push_back({site("cloud-us", {"US"}, 0.01), {}});
    for (auto& sc : out) {
      AgentAccess a;
      a.site = sc.site.name;
      a.host = sc.site.name + "-h1";
      sc.agents.push_back(a);
    }
    return out;
  }

  std::unique_ptr<ControllerService> makeService(Store& store, const std::string& id,
                                                 int64_t ttl_ms = 10000) {
    std::map<std::string, std::unique_ptr<AgentLink>> links;
    for (auto& [name, state] : agents_) {
      links[name + "-h1"] = std::make_unique<FakeAgentLink>(state);
    }
    ServiceOptions o;
    o.controller_id = id;
    o.lease_ttl_ms = ttl_ms;
    o.now_ms = [this] { return now_.load(); };
    o.package_dir = (dir_ / ("packages-" + id)).string();
    o.max_upload_bytes = max_upload_bytes_;
    auto s = ControllerService::create(store, sites(), o, std::move(links));
    EXPECT_TRUE(s) << s.error().describe();
    return s ? std::move(*s) : nullptr;
  }

  /// Polls @p done until it holds or 20 s pass (the follower threads work in the background).
  template <class F>
  bool eventually(F done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a poll of the condition
    }
    return true;
  }

  fs::path dir_;
  std::string url_;
  std::map<std::string, std::shared_ptr<FakeAgentState>> agents_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ControllerService> service_;
  std::atomic<int64_t> now_{1'700'000'000'000};
  uint64_t max_upload_bytes_ = 64ULL << 20;
};

}  // namespace vandra::controller::testing
