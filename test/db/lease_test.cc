// The leader lease: epochs only grow, one holder at a time, time from the database's clock.
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "test/db/db_fixture.h"

namespace vandra::db::testing {
namespace {

class LeaseTest : public DbTest {
 protected:
  void SetUp() override {
    DbTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    auto v = migrate(*db_, {{1, "leases", leaseTableSql(), ""}});
    ASSERT_TRUE(v) << v.error().describe();
  }

  // Polls until @p holder gets the lease (at most 10 s): waiting for an expiry by the
  // database's clock, not by ours.
  Result<Lease> acquireWhenFree(Database& db, const std::string& holder, int64_t ttl_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      VANDRA_TRY_ASSIGN(Lease l, acquireOrRenewLease(db, "controller", holder, ttl_ms));
      if (l.leader || std::chrono::steady_clock::now() > deadline) {
        return l;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling interval
    }
  }
};
VANDRA_DB_TEST_SUITE(LeaseTest);

constexpr int64_t kLong = 60'000;

TEST_P(LeaseTest, FirstHolderGetsEpochOneAndRenewalsKeepIt) {
  auto a = acquireOrRenewLease(*db_, "controller", "a", kLong);
  ASSERT_TRUE(a) << a.error().describe();
  EXPECT_TRUE(a->leader);
  EXPECT_EQ(a->epoch, 1);
  EXPECT_EQ(a->holder, "a");
  EXPECT_EQ(a->expires_in_ms, kLong);
  for (int i = 0; i < 3; ++i) {
    auto renewed = acquireOrRenewLease(*db_, "controller", "a", kLong);
    ASSERT_TRUE(renewed) << renewed.error().describe();
    EXPECT_TRUE(renewed->leader);
    EXPECT_EQ(renewed->epoch, 1);
  }
  // Another name is another lease.
  auto other = acquireOrRenewLease(*db_, "scheduler", "b", kLong);
  ASSERT_TRUE(other);
  EXPECT_TRUE(other->leader);
  EXPECT_EQ(other->epoch, 1);
}

TEST_P(LeaseTest, AnotherHolderIsRefusedWhileTheLeaseRuns) {
  ASSERT_TRUE(acquireOrRenewLease(*db_, "controller", "a", kLong).value_or(Lease{}).leader);
  auto b = acquireOrRenewLease(*db_, "controller", "b", kLong);
  ASSERT_TRUE(b) << b.error().describe();
  EXPECT_FALSE(b->leader);
  EXPECT_EQ(b->holder, "a");
  EXPECT_EQ(b->epoch, 1);
  EXPECT_GT(b->expires_in_ms, 0);
  EXPECT_LE(b->expires_in_ms, kLong);
  EXPECT_TRUE(releaseLease(*db_, "controller", "b"));  // not b's: a no-op
  EXPECT_FALSE(acquireOrRenewLease(*db_, "controller", "b", kLong).value_or(Lease{}).leader);
}

TEST_P(LeaseTest, AfterExpiryAnotherTakesItWithTheNextEpoch) {
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(acquireOrRenewLease(*db_, "controller", "a", 200).value_or(Lease{}).leader);
  auto b = acquireWhenFree(*db_, "b", kLong);
  ASSERT_TRUE(b) << b.error().describe();
  EXPECT_TRUE(b->leader);
  EXPECT_EQ(b->epoch, 2);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(190));
  // The old holder's renewal is refused now: it lost the lease.
  auto a = acquireOrRenewLease(*db_, "controller", "a", 200);
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->leader);
  EXPECT_EQ(a->holder, "b");
  EXPECT_EQ(a->epoch, 2);
}

TEST_P(LeaseTest, ItsOwnExpiredLeaseIsANewTerm) {
  ASSERT_TRUE(acquireOrRenewLease(*db_, "controller", "a", 100).value_or(Lease{}).leader);
  // Wait until the database says it ran out (another holder is refused until then).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  Lease seen;
  do {
    auto r = acquireOrRenewLease(*db_, "controller", "probe", kLong);
    ASSERT_TRUE(r);
    seen = *r;
    if (!seen.leader) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  } while (!seen.leader && std::chrono::steady_clock::now() < deadline);
  ASSERT_TRUE(seen.leader);
  EXPECT_EQ(seen.epoch, 2);
  ASSERT_TRUE(releaseLease(*db_, "controller", "probe"));
  auto a = acquireOrRenewLease(*db_, "controller", "a", kLong);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->leader);
  EXPECT_EQ(a->epoch, 3);
}

TEST_P(LeaseTest, ReleaseLetsAnotherTakeItAtOnce) {
  ASSERT_TRUE(acquireOrRenewLease(*db_, "controller", "a", kLong).value_or(Lease{}).leader);
  ASSERT_TRUE(releaseLease(*db_, "controller", "a"));
  auto b = acquireOrRenewLease(*db_, "controller", "b", kLong);
  ASSERT_TRUE(b) << b.error().describe();
  EXPECT_TRUE(b->leader);
  EXPECT_EQ(b->epoch, 2);
  ASSERT_TRUE(releaseLease(*db_, "controller", "b"));
  auto a = acquireOrRenewLease(*db_, "controller", "a", kLong);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->leader);
  EXPECT_EQ(a->epoch, 3);
}

TEST_P(LeaseTest, BadArgumentsAreRefused) {
  EXPECT_EQ(acquireOrRenewLease(*db_, "controller", "", kLong).error().code,
            ErrorCode::InvalidArgument);
  EXPECT_EQ(acquireOrRenewLease(*db_, "controller", "a", 0).error().code,
            ErrorCode::InvalidArgument);
}

// Two controllers (two Database objects) contend for one lease, releasing it now and then:
// each epoch has exactly one holder, and epochs never go back.
TEST_P(LeaseTest, TwoControllersNeverShareAnEpoch) {
  auto second = openAnother();
  ASSERT_NE(second, nullptr);
  std::mutex mu;
  std::map<int64_t, std::set<std::string>> holders_by_epoch;
  std::vector<std::string> errors;
  auto run = [&](Database& db, const std::string& me) {
    int64_t last_epoch = 0;
    for (int i = 0; i < 60; ++i) {
      auto l = acquireOrRenewLease(db, "controller", me, kLong);
      std::lock_guard lock(mu);
      if (!l) {
        errors.push_back(l.error().describe());
        continue;
      }
      if (l->epoch < last_epoch) {
        errors.push_back(me + " saw epoch go back from " + std::to_string(last_epoch));
      }
      last_epoch = l->epoch;
      if (l->leader) {
        holders_by_epoch[l->epoch].insert(me);
        if (i % 5 == 4) {
          auto rel = releaseLease(db, "controller", me);
          if (!rel) {
            errors.push_back(rel.error().describe());
          }
        }
      }
    }
  };
  std::thread t1(run, std::ref(*db_), "a");
  std::thread t2(run, std::ref(*second), "b");
  t1.join();
  t2.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  ASSERT_FALSE(holders_by_epoch.empty());
  for (const auto& [epoch, holders] : holders_by_epoch) {
    EXPECT_EQ(holders.size(), 1U) << "epoch " << epoch;
  }
  // Each release hands on a new epoch: at least as many epochs as releases by a leader.
  EXPECT_GE(holders_by_epoch.size(), 2U);
}

}  // namespace
}  // namespace vandra::db::testing
