// Tests for src/qmp/qmp_client_impl against FakeQmpServer: handshake, id correlation,
// error mapping, timeouts, events (and back-pressure), and hostile peers.
#include "vandra/qmp/qmp_client.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>

#include "fake_qmp_server.h"
#include "qmp_commands.h"

namespace vandra::qmp {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::FakeQmpServer;

// Collects events delivered to on_event; tests wait on it with a timeout, never sleep.
struct EventSink {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<QmpEvent> events;

  std::function<void(const QmpEvent&)> callback() {
    return [this](const QmpEvent& e) {
      {
        std::lock_guard lock(mu);
        events.push_back(e);
      }
      cv.notify_all();
    };
  }
  bool waitFor(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return events.size() >= n; });
  }
  std::vector<std::string> names() {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (const auto& e : events) {
      out.push_back(e.name);
    }
    return out;
  }
};

std::unique_ptr<FakeQmpServer> makeServer(FakeQmpServer::Options o = {}) {
  auto s = FakeQmpServer::create(std::move(o));
  EXPECT_TRUE(s) << s.error().describe();
  return s ? std::move(*s) : nullptr;
}

QmpClientPtr connectTo(FakeQmpServer& server, QmpClientOptions o = {}) {
  auto c = connectQmp(server.socketPath(), std::move(o));
  EXPECT_TRUE(c) << c.error().describe();
  return c ? std::move(*c) : nullptr;
}

QmpClientOptions withEvents(std::function<void(const QmpEvent&)> f) {
  QmpClientOptions o;
  o.on_event = std::move(f);
  return o;
}

QmpClientOptions withTimeout(std::chrono::milliseconds t) {
  QmpClientOptions o;
  o.connect_timeout = t;
  return o;
}

QmpCommand cmd(std::string name, std::chrono::milliseconds timeout = 5s,
               json args = json::object()) {
  return QmpCommand{std::move(name), std::move(args), timeout};
}

TEST(QmpClientTest, GreetingCapabilitiesAndTypedCommand) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("query-status").reply({{"running", false}, {"status", "prelaunch"}});
  server->expect("blockdev-add", json{{"node-name", "n0"}}).reply(json::object());
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  EXPECT_EQ(client->greeting().major, 7);
  EXPECT_EQ(client->greeting().minor, 2);
  EXPECT_EQ(client->greeting().capabilities, std::vector<std::string>{"oob"});

  auto st = execute<QueryStatus>(*client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_EQ(st->status, "prelaunch");
  EXPECT_FALSE(st->running);
  auto add = client->execute(makeCommand("blockdev-add", {{"node-name", "n0"}}));
  ASSERT_TRUE(add) << add.error().describe();
  EXPECT_EQ(*add, json::object());
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, NoCapabilityIsEnabledUnlessAskedAndOutOfBandNeedsOob) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  EXPECT_EQ(server->handshakeArguments(), json::object());
  QmpCommand c = cmd("migrate-recover");
  c.out_of_band = true;
  auto r = client->execute(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::Unsupported) << r.error().describe();
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, OobIsNegotiatedWhenOfferedAndOutOfBandCommandsGoAsExecOob) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expectOob("migrate-recover", json{{"uri", "unix:/x"}}).reply(json::object());
  server->expect("query-status").reply({{"running", true}, {"status", "running"}});
  server->start();
  QmpClientOptions o;
  o.enable_oob = true;
  auto client = connectTo(*server, o);
  ASSERT_TRUE(client);
  EXPECT_EQ(server->handshakeArguments(), (json{{"enable", json::array({"oob"})}}));
  QmpCommand c = cmd("migrate-recover", 5s, {{"uri", "unix:/x"}});
  c.out_of_band = true;
  auto r = client->execute(c);
  ASSERT_TRUE(r) << r.error().describe();
  auto st = client->execute(cmd("query-status"));  // in-band as before
  ASSERT_TRUE(st) << st.error().describe();
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, OobIsNotAskedOfAQemuThatDoesNotOfferIt) {
  FakeQmpServer::Options so;
  so.greeting = json::parse(R"({"version": {"qemu": {"micro": 0, "minor": 2, "major": 7},
                                "package": "fake"}, "capabilities": []})");
  auto server = makeServer(so);
  ASSERT_TRUE(server);
  server->start();
  QmpClientOptions o;
  o.enable_oob = true;
  auto client = connectTo(*server, o);
  ASSERT_TRUE(client);
  EXPECT_EQ(server->handshakeArguments(), json::object());
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, RepliesAreMatchedByIdWhenOutOfOrder) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("first").expect("second");
  server->reply({{"which", "second"}}, 1).reply({{"which", "first"}}, 0);
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  auto a = std::async(std::launch::async, [&] { return client->execute(cmd("first")); });
  ASSERT_TRUE(server->waitForCommands(1, 5s));  // "first" is on the wire before "second"
  auto b = std::async(std::launch::async, [&] { return client->execute(cmd("second")); });
  auto ra = a.get();
  auto rb = b.get();
  ASSERT_TRUE(ra) << ra.error().describe();
  ASSERT_TRUE(rb) << rb.error().describe();
  EXPECT_EQ((*ra)["which"], "first");
  EXPECT_EQ((*rb)["which"], "second");
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, QmpErrorReplyBecomesQmpErrorWithClassAndDesc) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("blockdev-del")
      .replyError("GenericError", "Failed to find node with node-name='x'");
  server->expect("query-status").reply({{"running", true}, {"status", "running"}});
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  auto r = client->execute(makeCommand("blockdev-del", {{"node-name", "x"}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::QmpError);
  EXPECT_EQ(r.error().message,
            "blockdev-del: GenericError: Failed to find node with node-name='x'");
  // An error reply does not break the connection.
  auto st = execute<QueryStatus>(*client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_TRUE(st->running);
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, NoReplyTimesOutAndLateReplyIsDropped) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("stop").gate("late").reply({{"late", true}}, 0);
  server->expect("query-status").reply({{"running", false}, {"status", "paused"}});
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = client->execute(cmd("stop", 200ms));
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::Timeout);
  EXPECT_NE(r.error().message.find("stop"), std::string::npos) << r.error().message;
  EXPECT_GE(waited, 200ms);
  EXPECT_LT(waited, 3s);
  server->release("late");  // the stale reply arrives now and must not answer query-status
  auto st = execute<QueryStatus>(*client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_EQ(st->status, "paused");
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, EventsAreDeliveredInOrderWithDataAndTimestamp) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->event("STOP").event("BLOCK_JOB_READY", {{"device", "mirror-disk1"}, {"len", 10}});
  server->start();
  EventSink sink;
  auto client = connectTo(*server, withEvents(sink.callback()));
  ASSERT_TRUE(client);
  ASSERT_TRUE(sink.waitFor(2));
  EXPECT_EQ(sink.names(), (std::vector<std::string>{"STOP", "BLOCK_JOB_READY"}));
  {
    std::lock_guard lock(sink.mu);
    EXPECT_EQ(sink.events[1].data["device"], "mirror-disk1");
    EXPECT_EQ(sink.events[0].seconds, 1700000000);
    EXPECT_EQ(sink.events[0].microseconds, 42);
  }
  EXPECT_EQ(client->droppedEvents(), 0u);
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, EventsAreDeliveredWhileACommandWaits) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("block-job-complete").event("BLOCK_JOB_COMPLETED", {{"device", "j1"}});
  server->gate("reply").reply(json::object());
  server->start();
  EventSink sink;
  auto client = connectTo(*server, withEvents(sink.callback()));
  ASSERT_TRUE(client);
  auto pending = std::async(std::launch::async, [&] {
    return client->execute(makeCommand("block-job-complete", {{"device", "j1"}}));
  });
  ASSERT_TRUE(sink.waitFor(1));
  EXPECT_EQ(pending.wait_for(0s), std::future_status::timeout);  // still waiting for its reply
  server->release("reply");
  auto r = pending.get();
  ASSERT_TRUE(r) << r.error().describe();
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, SlowConsumerDropsOldestAndCounts) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->event("E0").gate("rest");  // E0 reaches the callback before the others arrive
  for (int i = 1; i < 10; ++i) {
    server->event("E" + std::to_string(i));
  }
  server->expect("query-status").reply({{"running", true}, {"status", "running"}});
  server->start();

  std::mutex mu;
  std::condition_variable cv;
  bool first_seen = false;
  bool unblock = false;
  std::vector<std::string> seen;
  QmpClientOptions o;
  o.event_queue_capacity = 3;
  o.on_event = [&](const QmpEvent& e) {
    std::unique_lock lock(mu);
    seen.push_back(e.name);
    if (!first_seen) {
      first_seen = true;
      cv.notify_all();
      cv.wait(lock, [&] { return unblock; });  // the consumer is stuck on E0
    }
    cv.notify_all();
  };
  auto client = connectTo(*server, std::move(o));
  ASSERT_TRUE(client);
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return first_seen; }));
  }
  server->release("rest");
  // The reply comes after all ten events on the stream, so once it is here every event has
  // been queued: E0 is in the callback, E1..E9 competed for 3 slots.
  ASSERT_TRUE(execute<QueryStatus>(*client));
  EXPECT_EQ(client->droppedEvents(), 6u);
  {
    std::unique_lock lock(mu);
    unblock = true;
    cv.notify_all();
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return seen.size() == 4; }));
    EXPECT_EQ(seen, (std::vector<std::string>{"E0", "E7", "E8", "E9"}));
  }
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, OversizedLineBreaksTheConnection) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("query-qmp-schema").raw("{\"return\": \"" + std::string(4096, 'x') + "\"}\n");
  server->start();
  QmpClientOptions o;
  o.max_line_bytes = 1024;
  auto client = connectTo(*server, std::move(o));
  ASSERT_TRUE(client);
  auto r = client->execute(cmd("query-qmp-schema"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::LimitExceeded);
  auto again = client->execute(cmd("query-status"));  // never sent: the stream is dead
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::LimitExceeded);
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, ServerClosingMidCommandIsDisconnected) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("migrate").hangUp();
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  auto r = client->execute(cmd("migrate", 5s, {{"uri", "tcp:127.0.0.1:1"}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::QmpDisconnected);
  auto again = client->execute(cmd("query-status"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::QmpDisconnected);
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, GarbageJsonIsProtocolError) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("query-status").raw("this is {not json\n");
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  auto r = client->execute(cmd("query-status"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::QmpProtocol);
  EXPECT_NE(r.error().message.find("not JSON"), std::string::npos) << r.error().message;
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, ReplyWithoutIdIsProtocolError) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("query-status")
      .raw(R"({"error": {"class": "GenericError", "desc": "JSON parse error"}})"
           "\n");
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  auto r = client->execute(cmd("query-status"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::QmpProtocol);
  client->close();
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, GreetingWithoutVersionIsRefused) {
  FakeQmpServer::Options o;
  o.greeting = json{{"capabilities", json::array()}};
  o.handshake = false;
  auto server = makeServer(std::move(o));
  ASSERT_TRUE(server);
  server->start();
  auto c = connectQmp(server->socketPath(), {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::QmpProtocol);
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, SilentPeerTimesOut) {
  FakeQmpServer::Options o;
  o.silent = true;
  o.handshake = false;
  auto server = makeServer(std::move(o));
  ASSERT_TRUE(server);
  server->start();
  auto c = connectQmp(server->socketPath(), withTimeout(300ms));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::Timeout);
  EXPECT_EQ(server->finish(), std::vector<std::string>{});
}

TEST(QmpClientTest, MissingSocketTimesOutAndLongPathIsRefused) {
  auto c = connectQmp("/tmp/vq-does-not-exist/qmp.sock", withTimeout(100ms));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::Timeout);
  auto l = connectQmp("/tmp/" + std::string(200, 'a'), {});
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, ErrorCode::InvalidArgument);
}

TEST(FakeQmpServerTest, UnexpectedCommandIsRecordedAsFailure) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("query-status").reply(json::object());
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  auto r = client->execute(cmd("stop"));
  ASSERT_FALSE(r);  // the fake hangs up on a command its script does not expect
  EXPECT_EQ(r.error().code, ErrorCode::QmpDisconnected);
  client->close();
  auto failures = server->finish();
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].find("unexpected command stop"), std::string::npos) << failures[0];
}

TEST(FakeQmpServerTest, UnreachedStepsAreFailures) {
  auto server = makeServer();
  ASSERT_TRUE(server);
  server->expect("query-status").reply(json::object());
  server->start();
  auto client = connectTo(*server);
  ASSERT_TRUE(client);
  client->close();
  auto failures = server->finish();
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].find("expected query-status"), std::string::npos) << failures[0];
}

}  // namespace
}  // namespace vandra::qmp
