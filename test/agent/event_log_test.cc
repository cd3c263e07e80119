// EventLog: ordering, per-VM filter, bounded memory with truncation reported, and a waiting
// reader woken by an append from another thread.
#include "vandra/agent/event_log.h"

#include <gtest/gtest.h>

#include <future>

namespace vandra::agent {
namespace {

TEST(EventLog, SequencesGrowAndReadersFilterByVm) {
  EventLog log(16);
  EXPECT_EQ(log.append("a", "state", "running", {{"from", "starting"}}), 1U);
  EXPECT_EQ(log.append("b", "qmp", "STOP", {}), 2U);
  EXPECT_EQ(log.append("a", "qmp", "RESUME", nlohmann::json::array()), 3U);  // non-object -> {}
  auto all = log.read(0, "", 100, std::chrono::milliseconds(0));
  ASSERT_EQ(all.events.size(), 3U);
  EXPECT_EQ(all.last_seq, 3U);
  EXPECT_FALSE(all.truncated);
  EXPECT_TRUE(all.events[2].data.is_object());
  auto a = log.read(0, "a", 100, std::chrono::milliseconds(0));
  ASSERT_EQ(a.events.size(), 2U);
  EXPECT_EQ(a.events[0].name, "running");
  EXPECT_EQ(a.events[1].name, "RESUME");
  auto after = log.read(1, "", 1, std::chrono::milliseconds(0));
  ASSERT_EQ(after.events.size(), 1U);
  EXPECT_EQ(after.events[0].seq, 2U);
  EXPECT_GT(after.events[0].time_us, 0);
}

TEST(EventLog, KeepsTheNewestAndSaysWhenAReaderMissedSome) {
  EventLog log(4);
  for (int i = 0; i < 10; ++i) {
    log.append("vm", "qmp", "E" + std::to_string(i), {});
  }
  auto page = log.read(0, "", 100, std::chrono::milliseconds(0));
  ASSERT_EQ(page.events.size(), 4U);
  EXPECT_EQ(page.events.front().seq, 7U);
  EXPECT_TRUE(page.truncated);
  auto current = log.read(6, "", 100, std::chrono::milliseconds(0));
  EXPECT_FALSE(current.truncated);  // 7.. are all there
  EXPECT_EQ(current.events.size(), 4U);
}

TEST(EventLog, WaitingReaderIsWokenByAnAppend) {
  EventLog log;
  const auto t0 = std::chrono::steady_clock::now();
  auto reader = std::async(std::launch::async,
                           [&] { return log.read(0, "x", 10, std::chrono::seconds(20)); });
  log.append("other", "state", "running", {});  // not for this reader: it keeps waiting
  log.append("x", "state", "running", {});
  auto page = reader.get();
  ASSERT_EQ(page.events.size(), 1U);
  EXPECT_EQ(page.events[0].vm, "x");
  // Woken, not timed out (a missing notify would hold it the full 20 s).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
}

TEST(EventLog, EmptyReadWithoutWaitReturnsAtOnce) {
  EventLog log;
  auto page = log.read(0, "", 10, std::chrono::milliseconds(0));
  EXPECT_TRUE(page.events.empty());
  EXPECT_EQ(page.last_seq, 0U);
  EXPECT_FALSE(page.truncated);
}

}  // namespace
}  // namespace vandra::agent
