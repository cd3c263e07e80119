// EventWaiter: events queued before their waiter are found, others stay queued, deadlines
// end waits, the bound drops the oldest.
#include <gtest/gtest.h>

#include <thread>

#include "vandra/migration/qemu_migration.h"

namespace vandra::migration {
namespace {

using namespace std::chrono_literals;

qmp::QmpEvent ev(std::string name, nlohmann::json data = nlohmann::json::object()) {
  qmp::QmpEvent e;
  e.name = std::move(name);
  e.data = std::move(data);
  return e;
}

TEST(EventWaiter, FindsAnEventQueuedBeforeTheWaitAndKeepsTheOthers) {
  EventWaiter w;
  w.push(ev("STOP"));
  w.push(ev("BLOCK_JOB_READY", {{"device", "a"}}));
  w.push(ev("BLOCK_JOB_READY", {{"device", "b"}}));
  auto b = w.waitFor(
      "BLOCK_JOB_READY", [](const qmp::QmpEvent& e) { return e.data["device"] == "b"; },
      Clock::now() + 1s);
  ASSERT_TRUE(b) << b.error().describe();
  EXPECT_EQ(b->data["device"], "b");
  auto q = w.queued();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].name, "STOP");
  EXPECT_EQ(q[1].data["device"], "a");
}

TEST(EventWaiter, WakesWhenTheEventArrives) {
  EventWaiter w;
  std::thread t([&] { w.push(ev("MIGRATION", {{"status", "completed"}})); });
  auto e = w.waitFor("MIGRATION", nullptr, Clock::now() + 30s);
  t.join();
  ASSERT_TRUE(e) << e.error().describe();
  EXPECT_EQ(e->data["status"], "completed");
  EXPECT_TRUE(w.queued().empty());
}

TEST(EventWaiter, InterruptEndsAWaitAtOnceWithCancelledUntilCleared) {
  EventWaiter w;
  std::thread t([&] { w.interrupt("the operator cancelled it"); });
  auto e = w.waitForAny(nullptr, Clock::now() + 600s);  // would wait ten minutes otherwise
  t.join();
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, ErrorCode::Cancelled);
  EXPECT_NE(e.error().describe().find("operator cancelled"), std::string::npos);
  // Sticky: a later wait ends too, even with an event queued...
  w.push(ev("MIGRATION"));
  EXPECT_EQ(w.waitFor("MIGRATION", nullptr, Clock::now() + 600s).error().code,
            ErrorCode::Cancelled);
  // ...but not one that must finish (the engine's own cancel), which still gets the event.
  auto must = w.waitForAny(nullptr, Clock::now() + 30s, /*interruptible=*/false);
  ASSERT_TRUE(must) << must.error().describe();
  EXPECT_EQ(w.interrupted().value_or(""), "the operator cancelled it");
  w.clearInterrupt();
  EXPECT_FALSE(w.interrupted());
  w.push(ev("STOP"));
  EXPECT_TRUE(w.waitFor("STOP", nullptr, Clock::now() + 30s));
}

TEST(EventWaiter, TimesOutAtTheDeadline) {
  EventWaiter w;
  w.push(ev("RESUME"));
  const auto t0 = Clock::now();
  auto e = w.waitFor("STOP", nullptr, t0 + 50ms);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, ErrorCode::Timeout);
  EXPECT_GE(Clock::now() - t0, 50ms);
  EXPECT_EQ(w.queued().size(), 1u);
}

TEST(EventWaiter, DropsTheOldestWhenFullAndDiscardsOnRequest) {
  EventWaiter w(2);
  w.push(ev("A"));
  w.push(ev("B"));
  w.push(ev("C"));
  EXPECT_EQ(w.dropped(), 1u);
  auto q = w.queued();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].name, "B");
  EXPECT_EQ(w.discard([](const qmp::QmpEvent& e) { return e.name == "C"; }), 1u);
  EXPECT_EQ(w.queued().size(), 1u);
  auto any = w.waitForAny(nullptr, Clock::now());
  ASSERT_TRUE(any);
  EXPECT_EQ(any->name, "B");
}

}  // namespace
}  // namespace vandra::migration
