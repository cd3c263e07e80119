// Fencing of controllers: a change carrying an epoch lower than one the agent has seen is
// refused before any route runs (and nothing changes), the highest epoch survives a restart,
// reads and requests without the header are not fenced, a malformed header is a 400.
#include "vandra/agent/epoch_fence.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "test/support/serve.h"

namespace vandra::agent {
namespace {

namespace fs = std::filesystem;

class EpochFenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vandra-fence-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(EpochFenceTest, ALowerEpochIsRefusedAndTheHighestSurvivesARestart) {
  auto fence = EpochFence::open(dir_ / "epoch");
  ASSERT_TRUE(fence);
  EXPECT_TRUE(fence->admit(std::nullopt));  // an operator, not a controller
  EXPECT_TRUE(fence->admit(3));
  EXPECT_TRUE(fence->admit(3));
  auto stale = fence->admit(2);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::StaleEpoch);
  EXPECT_NE(stale.error().message.find("older than epoch 3"), std::string::npos);

  auto again = EpochFence::open(dir_ / "epoch");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->highest(), 3);
  EXPECT_FALSE(again->admit(1));
  EXPECT_TRUE(again->admit(4));
}

TEST_F(EpochFenceTest, AGarbledFileIsAnErrorNotEpochZero) {
  std::ofstream(dir_ / "epoch") << "seven\n";
  auto fence = EpochFence::open(dir_ / "epoch");
  ASSERT_FALSE(fence);
  EXPECT_EQ(fence.error().code, ErrorCode::InvalidArgument);
}

TEST_F(EpochFenceTest, OnlyChangesAreFencedBeforeAnyRouteRuns) {
  auto fence = EpochFence::open(dir_ / "epoch");
  ASSERT_TRUE(fence);
  httplib::Server server;
  std::atomic<int> changes{0};
  server.Post("/change", [&](const httplib::Request&, httplib::Response& res) {
    ++changes;
    res.set_content("{}", "application/json");
  });
  server.Get("/read", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{}", "application/json");
  });
  installEpochFence(server, *fence);
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread t;
  ASSERT_TRUE(vandra::testing::serveInBackground(server, t));
  httplib::Client c("127.0.0.1", port);
  auto post = [&](const std::string& epoch) {
    httplib::Headers h;
    if (!epoch.empty()) {
      h.emplace("X-Vandra-Epoch", epoch);
    }
    return c.Post("/change", h, "{}", "application/json");
  };
  EXPECT_EQ(post("5")->status, 200);
  auto stale = post("4");
  EXPECT_EQ(stale->status, 409);
  EXPECT_NE(stale->body.find("stale_epoch"), std::string::npos);
  EXPECT_EQ(post("")->status, 200);
  EXPECT_EQ(post("5x")->status, 400);
  EXPECT_EQ(post("-1")->status, 400);
  EXPECT_EQ(changes.load(), 2);  // the refused ones never reached the route
  EXPECT_EQ(c.Get("/read", httplib::Headers{{"X-Vandra-Epoch", "1"}})->status, 200);
  server.stop();
  t.join();
}

}  // namespace
}  // namespace vandra::agent
