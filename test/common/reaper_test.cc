// Reaper: references handed over end on the reaper's thread, never the caller's.
#include "vandra/common/reaper.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace vandra {
namespace {

// Reports the thread its destructor ran on.
struct Tracked {
  std::promise<std::thread::id>* ended = nullptr;
  std::atomic<int>* count = nullptr;
  ~Tracked() {
    if (ended) {
      ended->set_value(std::this_thread::get_id());
    }
    if (count) {
      ++*count;
    }
  }
};

TEST(ReaperTest, TheLastReferenceEndsOnTheReapersThread) {
  Reaper<Tracked> reaper;
  std::promise<std::thread::id> ended;
  auto future = ended.get_future();
  std::thread::id dropper;
  std::thread([&] {
    dropper = std::this_thread::get_id();
    auto t = std::make_shared<Tracked>();
    t->ended = &ended;
    reaper.drop(std::move(t));
  }).join();
  const auto where = future.get();
  EXPECT_NE(where, dropper);
  EXPECT_NE(where, std::this_thread::get_id());
}

TEST(ReaperTest, AReferenceThatIsNotTheLastLeavesTheObjectAlive) {
  std::atomic<int> count{0};
  auto kept = std::make_shared<Tracked>();
  kept->count = &count;
  {
    Reaper<Tracked> reaper;
    reaper.drop(kept);
    reaper.drop(nullptr);  // nothing to do
  }                        // the reaper has let go of its copy
  EXPECT_EQ(kept.use_count(), 1);
  EXPECT_EQ(count.load(), 0);
  kept.reset();
  EXPECT_EQ(count.load(), 1);
}

TEST(ReaperTest, ItsDestructorEndsEverythingQueued) {
  std::atomic<int> count{0};
  constexpr int kObjects = 1000;
  {
    Reaper<Tracked> reaper;
    for (int i = 0; i < kObjects; ++i) {
      auto t = std::make_shared<Tracked>();
      t->count = &count;
      reaper.drop(std::move(t));
    }
  }
  EXPECT_EQ(count.load(), kObjects);
}

// A destructor that drops another object into the same reaper (a link whose servers let go
// of it while it ends) neither deadlocks nor loses the second one.
struct Chained {
  Reaper<Chained>* reaper = nullptr;
  std::shared_ptr<Chained> next;
  std::atomic<int>* count = nullptr;
  ~Chained() {
    ++*count;
    if (next) {
      reaper->drop(std::move(next));
    }
  }
};

TEST(ReaperTest, ADestructorMayDropMoreIntoTheSameReaper) {
  std::atomic<int> count{0};
  {
    Reaper<Chained> reaper;
    auto second = std::make_shared<Chained>();
    second->count = &count;
    auto first = std::make_shared<Chained>();
    first->count = &count;
    first->reaper = &reaper;
    first->next = std::move(second);
    reaper.drop(std::move(first));
  }
  EXPECT_EQ(count.load(), 2);
}

}  // namespace
}  // namespace vandra
