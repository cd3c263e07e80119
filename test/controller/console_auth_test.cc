// Passwords, sessions and the progress hub, alone (the HTTP side: http_console_test.cc).
#include "vandra/controller/console_auth.h"

#include <gtest/gtest.h>

#include <thread>

#include "vandra/controller/progress_hub.h"

namespace vandra::controller {
namespace {

TEST(Passwords, AHashVerifiesItsPasswordOnlyAndIsSaltedEachTime) {
  auto a = hashPassword("correct horse");
  auto b = hashPassword("correct horse");
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);  // a fresh salt
  EXPECT_EQ(a->rfind("scrypt$16384$8$1$", 0), 0U) << *a;
  EXPECT_TRUE(verifyPassword("correct horse", *a));
  EXPECT_TRUE(verifyPassword("correct horse", *b));
  EXPECT_FALSE(verifyPassword("correct horsE", *a));
  EXPECT_FALSE(verifyPassword("", *a));
}

TEST(Passwords, AMalformedOrTooCostlyStoredHashNeverMatches) {
  auto good = hashPassword("pw");
  ASSERT_TRUE(good);
  const std::string salt_and_hash = good->substr(good->find('$', 17));
  for (const std::string& bad :
       {std::string(""), std::string("plain"), std::string("scrypt$x$8$1") + salt_and_hash,
        std::string("scrypt$1048577$8$1") + salt_and_hash,     // not a power of two
        std::string("scrypt$2147483648$8$1") + salt_and_hash,  // far too costly
        std::string("scrypt$1048576$8$1") + salt_and_hash,     // 1 GiB a sign-in
        std::string("scrypt$16384$8$1$!!!!$????"), std::string("md5$abc")}) {
    EXPECT_FALSE(verifyPassword("pw", bad)) << bad;
    EXPECT_FALSE(parsePasswordHash(bad)) << bad;
  }
  auto parsed = parsePasswordHash(*good);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->n, 16384U);
  EXPECT_EQ(parsed->r, 8U);
  EXPECT_EQ(parsed->salt.size(), 16U);
  EXPECT_EQ(parsed->hash.size(), 32U);
}

TEST(Sessions, ASessionIsFoundByItsTokenUntilRemovedOrIdle) {
  Sessions s;
  auto [token, session] = s.create("olga", Role::Operator);
  EXPECT_GE(token.size(), 40U);
  EXPECT_EQ(token.find_first_of("+/="), std::string::npos);  // cookie-safe
  EXPECT_NE(session.csrf, token);
  auto found = s.find(token);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->user, "olga");
  EXPECT_EQ(found->role, Role::Operator);
  EXPECT_EQ(found->csrf, session.csrf);
  EXPECT_FALSE(s.find(token + "x"));
  EXPECT_FALSE(s.find(""));
  s.remove(token);
  EXPECT_FALSE(s.find(token));

  Sessions idle(SessionLimits{.idle = std::chrono::seconds(0)});
  auto [t2, s2] = idle.create("vera", Role::Viewer);
  std::this_thread::yield();
  EXPECT_FALSE(idle.find(t2));  // idle longer than 0 s: gone
}

TEST(Sessions, TheOldestGoesBeyondTheBoundAndAUsersSessionsEndTogether) {
  Sessions s(SessionLimits{.max_sessions = 2});
  auto [t1, s1] = s.create("a", Role::Viewer);
  auto [t2, s2] = s.create("b", Role::Viewer);
  auto [t3, s3] = s.create("b", Role::Viewer);
  EXPECT_FALSE(s.find(t1));
  EXPECT_TRUE(s.find(t2));
  EXPECT_TRUE(s.find(t3));
  s.removeUser("b");
  EXPECT_FALSE(s.find(t2));
  EXPECT_FALSE(s.find(t3));
}

TEST(Sessions, FailuresPerUserAreBounded) {
  Sessions s(SessionLimits{.max_failures = 3});
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(s.mayTry("olga"));
    s.noteFailure("olga");
  }
  EXPECT_FALSE(s.mayTry("olga"));
  EXPECT_TRUE(s.mayTry("vera"));
  s.noteSuccess("olga");
  EXPECT_TRUE(s.mayTry("olga"));
}

TEST(Cookies, TheNamedValueIsFoundAmongOthers) {
  EXPECT_EQ(cookieValue("a=1; vandra_session=xyz; b=2", "vandra_session"), "xyz");
  EXPECT_EQ(cookieValue("vandra_session=abc", "vandra_session"), "abc");
  EXPECT_EQ(cookieValue("xvandra_session=abc", "vandra_session"), "");
  EXPECT_EQ(cookieValue("", "vandra_session"), "");
  EXPECT_EQ(cookieValue(std::string(1000, 'a') + "=b", "vandra_session"), "");
}

TEST(ProgressHub, WatchersReadFromTheirOwnPlaceAndTheRingIsBounded) {
  ProgressHub hub(3, 2);
  EXPECT_TRUE(hub.after(0, std::chrono::milliseconds(0)).empty());
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(hub.publish("migration", "{\"n\":" + std::to_string(i) + "}"),
              static_cast<uint64_t>(i));
  }
  auto all = hub.after(0, std::chrono::milliseconds(0));
  ASSERT_EQ(all.size(), 3U);  // the oldest two are gone
  EXPECT_EQ(all.front().seq, 3U);
  auto newer = hub.after(4, std::chrono::milliseconds(0));
  ASSERT_EQ(newer.size(), 1U);
  EXPECT_EQ(newer[0].data, "{\"n\":5}");
  EXPECT_EQ(toSse(newer[0]), "id: 5\nevent: migration\ndata: {\"n\":5}\n\n");
  EXPECT_TRUE(hub.join());
  EXPECT_TRUE(hub.join());
  EXPECT_FALSE(hub.join());  // at most 2 watchers
  hub.leave();
  EXPECT_TRUE(hub.join());
}

TEST(ProgressHub, APublishWakesAWaitingWatcherAndCloseWakesItForGood) {
  ProgressHub hub;
  std::vector<StreamEvent> got;
  std::thread watcher([&] { got = hub.after(0, std::chrono::minutes(5)); });
  hub.publish("changed", "{}");
  watcher.join();  // returns on the publish, not after five minutes
  ASSERT_EQ(got.size(), 1U);
  std::thread closed([&] { got = hub.after(1, std::chrono::minutes(5)); });
  hub.close();
  closed.join();
  EXPECT_TRUE(got.empty());
  EXPECT_FALSE(hub.join());
}

}  // namespace
}  // namespace vandra::controller
