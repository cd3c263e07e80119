// The engine's exact QMP commands and arguments, and its refusals and roll-backs, against
// FakeQmpServer (no QEMU): what docs/migration/qemu-engine.md's sequence diagram promises.
#include <gtest/gtest.h>

#include "fake_qmp_server.h"
#include "vandra/migration/qemu_migration.h"

namespace vandra::migration {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::FakeQmpServer;

struct Peer {
  std::unique_ptr<FakeQmpServer> server;
  qmp::QmpClientPtr client;
};

// Builds the script with @p script, starts the server, connects.
template <class F>
Peer peer(F script, bool oob = false) {
  Peer p;
  auto s = FakeQmpServer::create();
  EXPECT_TRUE(s) << s.error().describe();
  if (!s) {
    return p;
  }
  p.server = std::move(*s);
  script(*p.server);
  p.server->start();
  qmp::QmpClientOptions o;
  o.enable_oob = oob;
  auto c = qmp::connectQmp(p.server->socketPath(), o);
  EXPECT_TRUE(c) << c.error().describe();
  if (c) {
    p.client = std::move(*c);
  }
  return p;
}

std::vector<std::string> finish(Peer& p) {
  p.client->close();
  return p.server->finish();
}

TEST(QmpSequence, NbdExportsAreWritableAndRolledBackWhenOneFails) {
  auto p = peer([](FakeQmpServer& s) {
    s.expect("nbd-server-start",
             json{{"addr", {{"type", "unix"}, {"data", {{"path", "/tmp/x/nbd.sock"}}}}}})
        .reply(json::object());
    s.expect("block-export-add", json{{"type", "nbd"},
                                      {"id", "vandra-export-fmt-disk1"},
                                      {"node-name", "fmt-disk1"},
                                      {"name", "fmt-disk1"},
                                      {"writable", true}})
        .reply(json::object());
    s.expect("block-export-add").replyError("GenericError", "Cannot find device=fmt-nope");
    s.expect("nbd-server-stop").reply(json::object());
  });
  ASSERT_TRUE(p.client);
  auto r = startNbdExports(*p.client, "/tmp/x/nbd.sock", {"fmt-disk1", "fmt-nope"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::QmpError) << r.error().describe();
  EXPECT_NE(r.error().describe().find("fmt-nope"), std::string::npos) << r.error().describe();
  EXPECT_EQ(finish(p), std::vector<std::string>{});
}

TEST(QmpSequence, IncomingSetsEventsAndReturnPathThenListens) {
  auto p = peer([](FakeQmpServer& s) {
    s.expect("query-status").reply({{"running", false}, {"status", "inmigrate"}});
    s.expect("migrate-set-capabilities", json{{"capabilities",
                                               {{{"capability", "events"}, {"state", true}},
                                                {{"capability", "return-path"}, {"state", true}}}}})
        .reply(json::object());
    s.expect("migrate-incoming", json{{"uri", "unix:/tmp/x/mig.sock"}}).reply(json::object());
  });
  ASSERT_TRUE(p.client);
  auto r = startIncoming(*p.client, "unix:/tmp/x/mig.sock");
  EXPECT_TRUE(r) << r.error().describe();
  EXPECT_EQ(finish(p), std::vector<std::string>{});
}

TEST(QmpSequence, IncomingRefusesAQemuThatIsNotWaitingForAMigration) {
  auto p = peer([](FakeQmpServer& s) {
    s.expect("query-status").reply({{"running", true}, {"status", "running"}});
  });
  ASSERT_TRUE(p.client);
  auto r = startIncoming(*p.client, "unix:/tmp/x/mig.sock");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::IllegalTransition);
  auto bad = startIncoming(*p.client, "tcp:1.2.3.4:5");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(finish(p), std::vector<std::string>{});
}

TEST(QmpSequence, FinishTargetStopsNbdFlushesBeforeResumingThenAnnounces) {
  auto p = peer([](FakeQmpServer& s) {
    s.expect("query-migrate").reply({{"status", "completed"}});
    s.expect("nbd-server-stop").reply(json::object());
    s.expect("query-status").reply({{"running", false}, {"status", "paused"}});
    s.expect("stop").reply(json::object());  // the barrier: every disk flushed here first
    s.expect("cont").reply(json::object());
    s.expect("announce-self", json{{"initial", 50}, {"max", 550}, {"rounds", 5}, {"step", 100}})
        .reply(json::object());
    // A second call before completion is refused without touching anything.
    s.expect("query-migrate").reply({{"status", "active"}});
  });
  ASSERT_TRUE(p.client);
  auto f = finishTarget(*p.client);
  ASSERT_TRUE(f) << f.error().describe();
  EXPECT_EQ(f->status_before, "paused");
  EXPECT_TRUE(f->resumed);
  auto early = finishTarget(*p.client);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, ErrorCode::IllegalTransition);
  EXPECT_EQ(finish(p), std::vector<std::string>{});
}

TEST(QmpSequence, MirrorsAddAnNbdNodeAndAJobPerDisk) {
  auto p = peer([](FakeQmpServer& s) {
    s.expect("query-status").reply({{"running", true}, {"status", "running"}});
    // A node left by an earlier attempt (its connection hung) goes first.
    s.expect("query-named-block-nodes", json{{"flat", true}})
        .reply(
            json::array({{{"node-name", "fmt-disk1"}}, {{"node-name", "vandra-nbd-fmt-disk2"}}}));
    s.expect("blockdev-del", json{{"node-name", "vandra-nbd-fmt-disk2"}}).reply(json::object());
    s.expect("blockdev-add", json{{"driver", "nbd"},
                                  {"node-name", "vandra-nbd-fmt-disk1"},
                                  {"server", {{"type", "unix"}, {"path", "/tmp/x/nbd.sock"}}},
                                  {"export", "fmt-disk1"}})
        .reply(json::object());
    // Every NBD connection before any mirror copies (qemu-engine.md, "QEMU 7.2 limits").
    s.expect("blockdev-add").reply(json::object());
    s.expect("blockdev-mirror", json{{"job-id", "vandra-mirror-fmt-disk1"},
                                     {"device", "fmt-disk1"},
                                     {"target", "vandra-nbd-fmt-disk1"},
                                     {"sync", "top"},
                                     {"copy-mode", "write-blocking"},
                                     {"on-source-error", "report"},
                                     {"on-target-error", "report"},
                                     {"speed", 1048576}})
        .reply(json::object());
    s.expect("blockdev-mirror").replyError("GenericError", "Cannot find device=fmt-disk2");
  });
  ASSERT_TRUE(p.client);
  SourceMigration m;
  MirrorOptions o;
  o.bandwidth_bytes_per_s = 1 << 20;
  o.copy_mode = CopyMode::WriteBlocking;
  o.sync = SyncMode::Top;
  auto r = startMirrors(*p.client, m,
                        {{"fmt-disk1", "/tmp/x/nbd.sock", "fmt-disk1", false, ""},
                         {"fmt-disk2", "/tmp/x/nbd.sock", "fmt-disk2", false, ""}},
                        o);
  ASSERT_FALSE(r);
  // What QEMU accepted is recorded for cancel(): both NBD nodes, one job.
  ASSERT_EQ(m.mirrors.size(), 2u);
  EXPECT_TRUE(m.mirrors[0].nbd_node_added && m.mirrors[0].job_started);
  EXPECT_TRUE(m.mirrors[1].nbd_node_added);
  EXPECT_FALSE(m.mirrors[1].job_started);
  EXPECT_TRUE(m.vm_was_running);
  EXPECT_EQ(finish(p), std::vector<std::string>{});
}

TEST(QmpSequence, RamMigrationSavesThenSetsCapabilitiesAndParameters) {
  auto p = peer([](FakeQmpServer& s) {
    s.expect("query-migrate").reply(json::object());  // never migrated: no status
    s.expect("query-status").reply({{"running", true}, {"status", "running"}});
    s.expect("query-migrate-capabilities")
        .reply(json::array({{{"capability", "events"}, {"state", false}},
                            {{"capability", "pause-before-switchover"}, {"state", false}},
                            {{"capability", "auto-converge"}, {"state", false}},
                            {{"capability", "return-path"}, {"state", false}},
                            {{"capability", "xbzrle"}, {"state", false}}}));
    s.expect("query-migrate-parameters")
        .reply({{"downtime-limit", 300},
                {"max-bandwidth", 33554432},
                {"xbzrle-cache-size", 67108864},
                {"max-postcopy-bandwidth", 0},
                {"cpu-throttle-initial", 20},
                {"cpu-throttle-increment", 10},
                {"multifd-channels", 2}});
    s.expect("migrate-set-capabilities",
             json{{"capabilities",
                   {{{"capability", "events"}, {"state", true}},
                    {{"capability", "pause-before-switchover"}, {"state", true}},
                    {{"capability", "auto-converge"}, {"state", true}},
                    {{"capability", "return-path"}, {"state", true}},
                    {{"capability", "xbzrle"}, {"state", true}},
                    {{"capability", "postcopy-ram"}, {"state", true}}}}})
        .reply(json::object());
    s.expect("migrate-set-parameters", json{{"downtime-limit", 500},
                                            {"max-bandwidth", 0},
                                            {"xbzrle-cache-size", 33554432},
                                            {"max-postcopy-bandwidth", 4194304}})
        .reply(json::object());
    s.expect("migrate", json{{"uri", "unix:/tmp/x/mig.sock"}}).reply(json::object());
  });
  ASSERT_TRUE(p.client);
  SourceMigration m;
  RamMigrationOptions o;
  o.downtime_limit_ms = 500;
  o.auto_converge = true;
  o.max_total_time = 60s;
  o.xbzrle_cache_bytes = 32 << 20;
  o.post_copy = true;
  o.max_postcopy_bandwidth_bytes_per_s = 4 << 20;
  auto r = startRamMigration(*p.client, m, "unix:/tmp/x/mig.sock", o);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_TRUE(m.ram_started);
  EXPECT_TRUE(m.post_copy_allowed);
  EXPECT_FALSE(m.post_copy);  // allowed, not started
  ASSERT_TRUE(m.ram_deadline.has_value());
  EXPECT_EQ(m.saved_parameters, (json{{"downtime-limit", 300},
                                      {"max-bandwidth", 33554432},
                                      {"xbzrle-cache-size", 67108864},
                                      {"max-postcopy-bandwidth", 0},
                                      {"cpu-throttle-initial", 20},
                                      {"cpu-throttle-increment", 10}}));
  EXPECT_EQ(m.saved_capabilities.size(), 6u);
  EXPECT_EQ(m.downtime_limit_ms, 500U);
  EXPECT_EQ(m.max_downtime_limit_ms, 500U);  // no raise asked for
  EXPECT_EQ(finish(p), std::vector<std::string>{});
}

// QEMU 7.2 would take the migrate_cancel and lose the guest: the running target lacks pages
// only this source holds.
TEST(QmpSequence, CancelInPostCopyIsRefusedAndTouchesNothing) {
  for (const char* status : {"postcopy-active", "postcopy-paused", "postcopy-recover"}) {
    auto p = peer([&](FakeQmpServer& s) { s.expect("query-migrate").reply({{"status", status}}); });
    ASSERT_TRUE(p.client);
    SourceMigration m;
    m.ram_started = true;
    m.post_copy = true;
    EventWaiter events;
    auto r = cancel(*p.client, events, m, Clock::now() + 5s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::IllegalTransition) << r.error().describe();
    EXPECT_NE(r.error().message.find("post-copy"), std::string::npos) << r.error().message;
    EXPECT_TRUE(m.ram_started);  // nothing forgotten either
    EXPECT_EQ(finish(p), std::vector<std::string>{}) << status;
  }
}

// The target's end of a post-copy is read from its events alone (its main loop may be stuck
// on a missing page): the oldest pause or completion counts, other statuses pass by.
TEST(QmpSequence, TheTargetsPostCopyEndComesFromItsEvents) {
  auto migration = [](const char* status) {
    qmp::QmpEvent e;
    e.name = "MIGRATION";
    e.data = {{"status", status}};
    return e;
  };
  EventWaiter events;
  events.push(migration("postcopy-active"));
  events.push(migration("postcopy-paused"));
  events.push(migration("postcopy-recover"));
  events.push(migration("completed"));
  auto paused = waitIncomingPostcopyEnd(events, Clock::now() + 5s);
  ASSERT_TRUE(paused) << paused.error().describe();
  EXPECT_FALSE(*paused);
  auto done = waitIncomingPostcopyEnd(events, Clock::now() + 5s);
  ASSERT_TRUE(done) << done.error().describe();
  EXPECT_TRUE(*done);
  auto none = waitIncomingPostcopyEnd(events, Clock::now() + 50ms);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::Timeout);
  events.push(migration("failed"));
  auto failed = waitIncomingPostcopyEnd(events, Clock::now() + 5s);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ErrorCode::Io) << failed.error().describe();
}

// A paused target's main loop may wait for a page: migrate-recover goes out of band.
TEST(QmpSequence, RecoverIncomingGoesOutOfBandAndNamesARefusal) {
  auto p = peer(
      [](FakeQmpServer& s) {
        s.expectOob("migrate-recover", json{{"uri", "unix:/tmp/x/mig2.sock"}})
            .reply(json::object());
        s.expectOob("migrate-recover", json{{"uri", "unix:/tmp/x/mig3.sock"}})
            .replyError("GenericError", "Migrate recover can only be run when postcopy is paused.");
      },
      /*oob=*/true);
  ASSERT_TRUE(p.client);
  auto ok = recoverIncoming(*p.client, "unix:/tmp/x/mig2.sock");
  ASSERT_TRUE(ok) << ok.error().describe();
  auto refused = recoverIncoming(*p.client, "unix:/tmp/x/mig3.sock");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::IllegalTransition) << refused.error().describe();
  EXPECT_EQ(recoverIncoming(*p.client, "tcp:1.2.3.4:5").error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(finish(p), std::vector<std::string>{});
}

TEST(QmpSequence, CancelAfterCompletionIsRefusedAndTouchesNothing) {
  auto p = peer([](FakeQmpServer& s) {
    s.expect("query-migrate").reply({{"status", "completed"}});
  });
  ASSERT_TRUE(p.client);
  EventWaiter events;
  SourceMigration m;
  m.ram_started = true;
  m.state_known = true;
  m.vm_was_running = true;
  auto r = cancel(*p.client, events, m, Clock::now() + 5s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::IllegalTransition);
  EXPECT_EQ(finish(p), std::vector<std::string>{});
}

}  // namespace
}  // namespace vandra::migration

namespace vandra::migration {
namespace {

MigrationProgress pass(uint64_t syncs, double dirty_pages_per_s, double mbps) {
  MigrationProgress p;
  p.status = "active";
  p.dirty_sync_count = syncs;
  p.dirty_pages_rate = dirty_pages_per_s;
  p.mbps = mbps;
  return p;
}

// A pre-copy with auto-converge whose limit starts at 100 ms and may rise to 300.
SourceMigration autoConverging() {
  SourceMigration m;
  m.downtime_limit_ms = 100;
  m.max_downtime_limit_ms = 300;
  m.auto_converge = true;
  return m;
}

TEST(PrecopyVerdict, RaisesTheLimitEveryFewPassesUpToItsMaximum) {
  SourceMigration m = autoConverging();
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise - 1, 1e6, 1000)).judged);  // too soon
  auto v = judgePrecopy(m, pass(kSyncsPerRaise, 1e6, 1000));
  ASSERT_TRUE(v.judged);
  ASSERT_TRUE(v.raise_to);
  EXPECT_EQ(*v.raise_to, 200U);
  m.downtime_limit_ms = 200;
  m.limit_raised_at_sync = kSyncsPerRaise;
  EXPECT_FALSE(judgePrecopy(m, pass(2 * kSyncsPerRaise - 1, 1e6, 1000)).judged);
  v = judgePrecopy(m, pass(2 * kSyncsPerRaise, 1e6, 1000));
  ASSERT_TRUE(v.raise_to);
  EXPECT_EQ(*v.raise_to, 300U);  // doubled, but not past the maximum
  m.downtime_limit_ms = 300;
  v = judgePrecopy(m, pass(3 * kSyncsPerRaise, 1e6, 1000));
  EXPECT_TRUE(v.judged);
  EXPECT_FALSE(v.raise_to);
  EXPECT_FALSE(v.give_up);  // auto-converge throttles the guest instead
}

// Samples of a pre-copy that sent @p bytes_per_s for the last @p seconds, every 250 ms.
std::vector<PrecopySample> sentAt(double bytes_per_s, double seconds) {
  std::vector<PrecopySample> out;
  for (double t = 0; t <= seconds + 1e-9; t += 0.25) {
    PrecopySample s;
    s.at_s = 10 + t;
    s.transferred = static_cast<uint64_t>(500e6 + bytes_per_s * t);
    out.push_back(s);
  }
  return out;
}

TEST(PrecopyVerdict, AGuestDirtyingNearlyAsFastAsThePrecopySendsIsThrottledMoreSteeply) {
  SourceMigration m = autoConverging();
  m.precopy_samples = sentAt(30e6, 3);  // 30 MB/s sent
  // 7000 pages/s = 28.7 MB/s dirtied: the step doubles, with the limit's raise.
  auto v = judgePrecopy(m, pass(kSyncsPerRaise, 7000, 240));
  ASSERT_TRUE(v.throttle_increment);
  EXPECT_EQ(*v.throttle_increment, 2 * kQemuThrottleIncrement);
  EXPECT_TRUE(v.raise_to);
  m.throttle_increment = *v.throttle_increment;
  m.downtime_limit_ms = m.max_downtime_limit_ms;
  v = judgePrecopy(m, pass(kSyncsPerRaise, 7000, 240));
  ASSERT_TRUE(v.throttle_increment);
  EXPECT_EQ(*v.throttle_increment, kMaxThrottleIncrement);
  m.throttle_increment = kMaxThrottleIncrement;  // and no further
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise, 7000, 240)).throttle_increment);
  m.throttle_increment = kQemuThrottleIncrement;
  // 4000 pages/s = 16.4 MB/s: QEMU's own ramp is enough.
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise, 4000, 240)).throttle_increment);
  // The rate comes from what was sent, not QEMU's estimate: 100 MB/s sent, a burst estimate
  // of 50 Mbit/s changes nothing.
  m.precopy_samples = sentAt(100e6, 3);
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise, 7000, 50)).throttle_increment);
  // Under half a second of samples: not known, no change; nor without auto-converge.
  m.precopy_samples = sentAt(10e6, 0.25);
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise, 7000, 240)).throttle_increment);
  m.precopy_samples = sentAt(10e6, 3);
  EXPECT_TRUE(judgePrecopy(m, pass(kSyncsPerRaise, 7000, 240)).throttle_increment);
  m.auto_converge = false;
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise, 7000, 240)).throttle_increment);
}

TEST(PrecopyVerdict, WithoutAutoConvergeAGuestThatOutpacesTheLinkIsGivenUp) {
  SourceMigration m;
  m.downtime_limit_ms = m.max_downtime_limit_ms = 300;
  m.auto_converge = false;
  // 40000 pages/s = 163.8 MB/s against 1000 Mbit/s = 125 MB/s.
  auto v = judgePrecopy(m, pass(kSyncsPerRaise, 40000, 1000));
  ASSERT_TRUE(v.give_up);
  EXPECT_NE(v.give_up->find("163.8 MB/s"), std::string::npos) << *v.give_up;
  EXPECT_NE(v.give_up->find("125.0 MB/s"), std::string::npos) << *v.give_up;
  EXPECT_NE(v.give_up->find("auto-converge is off"), std::string::npos) << *v.give_up;
  EXPECT_NE(v.give_up->find("does not converge"), std::string::npos) << *v.give_up;
  // Slower than the link: it converges in time...
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise, 20000, 1000)).give_up);
  // ... unless it has not after kGiveUpPasses passes, whatever the rates say.
  EXPECT_FALSE(judgePrecopy(m, pass(kGiveUpPasses - 1, 20000, 1000)).give_up);
  auto late = judgePrecopy(m, pass(kGiveUpPasses, 20000, 1000));
  ASSERT_TRUE(late.give_up);
  EXPECT_NE(late.give_up->find("after 16 passes"), std::string::npos) << *late.give_up;
  // No measure of the link yet: no verdict on it.
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise, 40000, 0)).give_up);
  // While the limit can still rise, it rises first.
  m.downtime_limit_ms = 100;
  v = judgePrecopy(m, pass(kSyncsPerRaise, 40000, 1000));
  EXPECT_TRUE(v.raise_to);
  EXPECT_FALSE(v.give_up);
}

// With post-copy allowed (the SLA opted in), the same verdict switches to post-copy, once.
TEST(PrecopyVerdict, APreCopyThatCannotConvergeSwitchesToPostCopyWhenAllowed) {
  SourceMigration m;
  m.downtime_limit_ms = m.max_downtime_limit_ms = 300;
  m.post_copy_allowed = true;
  auto v = judgePrecopy(m, pass(kSyncsPerRaise, 40000, 1000));
  EXPECT_FALSE(v.give_up);
  ASSERT_TRUE(v.start_post_copy);
  EXPECT_NE(v.start_post_copy->find("does not converge"), std::string::npos) << *v.start_post_copy;
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise, 20000, 1000)).start_post_copy);
  EXPECT_TRUE(judgePrecopy(m, pass(kGiveUpPasses, 20000, 1000)).start_post_copy);
  m.post_copy = true;  // started: nothing more to decide
  v = judgePrecopy(m, pass(kGiveUpPasses, 40000, 1000));
  EXPECT_FALSE(v.start_post_copy);
  EXPECT_FALSE(v.give_up);
  // Never without the opt-in.
  m = SourceMigration{};
  m.downtime_limit_ms = m.max_downtime_limit_ms = 300;
  EXPECT_FALSE(judgePrecopy(m, pass(kSyncsPerRaise, 40000, 1000)).start_post_copy);
  // With auto-converge too, post-copy takes over from the throttle that has not caught up.
  m.auto_converge = true;
  m.post_copy_allowed = true;
  auto p = pass(kSyncsPerRaise, 40000, 1000);
  p.cpu_throttle_percentage = 50;
  v = judgePrecopy(m, p);
  ASSERT_TRUE(v.start_post_copy);
  EXPECT_NE(v.start_post_copy->find("auto-converge is on (the guest's vCPUs throttled 50 %)"),
            std::string::npos)
      << *v.start_post_copy;
  m.post_copy_allowed = false;  // the throttle alone, as before
  EXPECT_FALSE(judgePrecopy(m, p).start_post_copy);
  EXPECT_FALSE(judgePrecopy(m, p).give_up);
}

// Post-copy allowed, and the dirty RAM needs far more than the largest limit: no raise, no
// throttle first; a remainder within reach goes the usual way.
TEST(PrecopyVerdict, AHopelessPreCopySwitchesToPostCopyAtItsFirstJudgement) {
  SourceMigration m;
  m.downtime_limit_ms = 100;
  m.max_downtime_limit_ms = 300;
  m.auto_converge = true;
  m.post_copy_allowed = true;
  // 240 MB dirty at 400 Mbit/s (50 MB/s): 4800 ms, 16x the largest limit of 300 ms.
  auto p = pass(kSyncsPerRaise, 1000, 400);
  p.ram_remaining = 240000000;
  auto v = judgePrecopy(m, p);
  ASSERT_TRUE(v.start_post_copy);
  EXPECT_FALSE(v.raise_to);
  EXPECT_NE(v.start_post_copy->find("240.0 MB are still dirty, 4800 ms at the 50.0 MB/s"),
            std::string::npos)
      << *v.start_post_copy;
  EXPECT_NE(v.start_post_copy->find("at most 300 ms"), std::string::npos) << *v.start_post_copy;
  // Too soon to judge: nothing yet.
  auto early = p;
  early.dirty_sync_count = kSyncsPerRaise - 1;
  EXPECT_FALSE(judgePrecopy(m, early).start_post_copy);
  // 50 MB: 1000 ms, within 4x the limit: the limit rises first.
  p.ram_remaining = 50000000;
  v = judgePrecopy(m, p);
  EXPECT_FALSE(v.start_post_copy);
  EXPECT_TRUE(v.raise_to);
  // Without the opt-in, or once switched, never.
  p.ram_remaining = 240000000;
  m.post_copy_allowed = false;
  EXPECT_FALSE(judgePrecopy(m, p).start_post_copy);
  m.post_copy_allowed = true;
  m.post_copy = true;
  EXPECT_FALSE(judgePrecopy(m, p).start_post_copy);
}

}  // namespace
}  // namespace vandra::migration
