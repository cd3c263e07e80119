// The source's post-copy (postcopy_src.cc) against fakes of both agents and a real TargetSide,
// every control message through the codec: the source QEMU is released only once QEMU says
// every page was sent; a broken stream is recovered over a new one (recover, recovering,
// then the source resumes), a stalled one is paused first, a refused recovery is tried again;
// an agent that stops mid-way and its settler leave the source QEMU alone. The real QEMU side
// is test/migration/postcopy_test.cc; the whole system test/testbed/postcopy_testbed_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <filesystem>

#include "mock_migration_host.h"
#include "vandra/orchestrator/migrator.h"

namespace vandra::orchestrator {
namespace {

using ::testing::_;
using ::testing::NiceMock;

constexpr char kId[] = "m-pc";
const char* kSpec = R"({"virtual_systems":[{"id":"web1","memory_mib":512,"vcpus":1,
  "disks":[{"id":"disk0","capacity_bytes":1073741824}],"nics":[{"network":"lan"}],
  "sla":{"post_copy_allowed":true}}]})";

migration::MigrationProgress progressOf(const std::string& status, uint64_t bytes) {
  migration::MigrationProgress p;
  p.status = status;
  p.ram_transferred = bytes;
  return p;
}

class PostcopySrcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/vandra-postcopy-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    auto a = openSqliteMigrationStore(dir_ + "/dc.db");
    auto b = openSqliteMigrationStore(dir_ + "/cloud.db");
    ASSERT_TRUE(a && b);
    source_store_ = std::move(*a);
    target_store_ = std::move(*b);
    ON_CALL(source_, vm(_)).WillByDefault([this](const std::string&) -> Result<HostVm> {
      return HostVm{kSpec, 512, 1, !released_, false};
    });
    ON_CALL(source_, diskBases(_))
        .WillByDefault(::testing::Return(std::map<std::string, std::string>{}));
    ON_CALL(source_, migrateOut(_, _))
        .WillByDefault([](const agent::OutgoingRequest& r,
                          migration::SourceMigration&) -> Result<migration::SwitchoverResult> {
          VANDRA_TRY(r.before_step(agent::OutgoingStep::Ram));
          VANDRA_TRY(r.before_step(agent::OutgoingStep::Switchover));
          migration::SwitchoverResult out;
          out.post_copy = true;
          out.post_copy_reason = "the guest dirties 40 MB/s, the link carries 10 MB/s";
          return out;
        });
    // QEMU's word, one answer per poll; the last answer repeats.
    ON_CALL(source_, postcopyProgress(_))
        .WillByDefault([this](const std::string&) -> Result<migration::MigrationProgress> {
          std::lock_guard lock(mu_);
          if (script_.size() > 1) {
            auto p = script_.front();
            script_.pop_front();
            return p;
          }
          return script_.front();
        });
    ON_CALL(source_, releaseMigrated(_, _))
        .WillByDefault([this](const std::string&, const std::string&) -> Result<void> {
          std::lock_guard lock(mu_);
          EXPECT_EQ(script_.front().status, "completed") << "released before every page was sent";
          released_ = true;
          return {};
        });
    ON_CALL(target_, vm(_)).WillByDefault([this](const std::string& id) -> Result<HostVm> {
      if (target_runs_) {
        return HostVm{kSpec, 512, 1, true, true};
      }
      return fail(ErrorCode::NotFound, "No VM '" + id + "'");
    });
    ON_CALL(target_, freeCapacity())
        .WillByDefault(::testing::Return(agent::Resources{8, 16384, 1ULL << 40}));
    ON_CALL(target_, finishIncoming(_, _, _))
        .WillByDefault([this](const std::string&, bool,
                              std::chrono::steady_clock::time_point) -> Result<uint64_t> {
          target_runs_ = true;
          return uint64_t{4242};
        });
    TargetSide::Config c;
    c.site = "cloud";
    c.paths = [this](const std::string&) {
      return StreamPaths{dir_ + "/nbd.sock", dir_ + "/in.sock"};
    };
    c.recover_path = [this](const std::string& id, uint32_t attempt) -> Result<std::string> {
      target_attempts_.push_back(attempt);
      EXPECT_EQ(id, kId);
      return dir_ + "/in-recover.sock";
    };
    target_side_ = std::make_unique<TargetSide>(target_, *target_store_, std::move(c));
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // The codec both ways to the TargetSide; its errors answered as `aborted` (the service's
  // control-stream server does the same).
  class Channel : public PeerChannel {
   public:
    explicit Channel(PostcopySrcTest& t) : t_(t) {}
    Result<tunnel::ControlMessage> exchange(const tunnel::ControlMessage& request,
                                            Clock::time_point) override {
      VANDRA_TRY_ASSIGN(const std::string wire, tunnel::encodeControl(request));
      VANDRA_TRY_ASSIGN(const auto received, tunnel::decodeControl(wire));
      t_.sent_.emplace_back(tunnel::typeName(received));
      auto answer = t_.target_side_->handle(received);
      const tunnel::ControlMessage out =
          answer ? *answer
                 : tunnel::ControlMessage(
                       tunnel::Aborted{kId, false, {answer.error().describe().substr(0, 500)}});
      VANDRA_TRY_ASSIGN(const std::string back, tunnel::encodeControl(out));
      return tunnel::decodeControl(back);
    }

   private:
    PostcopySrcTest& t_;
  };

  MigrateRequest request() {
    MigrateRequest r;
    r.migration_id = kId;
    r.vm_id = "web1";
    r.source_site = "dc";
    r.target_site = "cloud";
    r.source_paths = {dir_ + "/nbd.sock", dir_ + "/mig.sock"};
    r.max_total = std::chrono::seconds(60);
    r.reopen_migration = [this](uint32_t attempt) -> Result<std::string> {
      source_attempts_.push_back(attempt);
      return dir_ + "/mig-r" + std::to_string(attempt) + ".sock";
    };
    return r;
  }
  void script(std::vector<migration::MigrationProgress> answers) {
    std::lock_guard lock(mu_);
    script_.assign(answers.begin(), answers.end());
  }
  // Switches the script once the source resumed: the new stream carries pages.
  void afterResume(std::vector<migration::MigrationProgress> answers) {
    ON_CALL(source_, resumePostcopyOut(_, _, _))
        .WillByDefault([this, answers](const std::string&, const std::string& socket,
                                       std::chrono::steady_clock::time_point) -> Result<void> {
          resumed_on_.push_back(socket);
          script(answers);
          return {};
        });
  }
  MigrationRecord targetRecord() {
    auto r = target_store_->get(kId);
    EXPECT_TRUE(r && *r);
    return r && *r ? **r : MigrationRecord{};
  }

  std::string dir_;
  MigrationStorePtr source_store_;
  MigrationStorePtr target_store_;
  NiceMock<testing::MockMigrationHost> source_;
  NiceMock<testing::MockMigrationHost> target_;
  std::unique_ptr<TargetSide> target_side_;
  std::mutex mu_;
  std::deque<migration::MigrationProgress> script_;
  std::atomic<bool> released_{false};
  std::atomic<bool> target_runs_{false};
  std::vector<uint32_t> source_attempts_;
  std::vector<uint32_t> target_attempts_;
  std::vector<std::string> resumed_on_;
  std::vector<std::string> sent_;
};

TEST_F(PostcopySrcTest, TheSourceIsReleasedOnlyOnceEveryPageIsSent) {
  script({progressOf("postcopy-active", 100), progressOf("postcopy-active", 200),
          progressOf("completed", 300)});
  Channel ch(*this);
  auto rec = runSourceMigration(source_, *source_store_, ch, request());
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Done) << rec->error;
  EXPECT_TRUE(released_);
  EXPECT_EQ(rec->report["post_copy"].value("status", ""), "completed") << rec->report.dump(2);
  EXPECT_EQ(rec->report["post_copy"].value("recoveries", -1), 0);
  EXPECT_EQ(rec->report["post_copy"].value("ram_bytes", 0), 300);
  EXPECT_NE(rec->report.value("post_copy_reason", ""), "");
  EXPECT_EQ(targetRecord().phase, MigrationPhase::Done);
  EXPECT_TRUE(source_attempts_.empty());
  EXPECT_EQ(std::count(sent_.begin(), sent_.end(), "recover"), 0);
}

TEST_F(PostcopySrcTest, ABrokenStreamIsRecoveredOverANewOne) {
  script({progressOf("postcopy-active", 100), progressOf("postcopy-paused", 150)});
  afterResume({progressOf("postcopy-active", 400), progressOf("completed", 600)});
  EXPECT_CALL(target_, recoverPostcopyIn("web1", dir_ + "/in-recover.sock", _))
      .WillOnce(::testing::Return(Result<void>{}));
  Channel ch(*this);
  auto rec = runSourceMigration(source_, *source_store_, ch, request());
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Done) << rec->error;
  EXPECT_EQ(source_attempts_, std::vector<uint32_t>{1});
  EXPECT_EQ(target_attempts_, std::vector<uint32_t>{1});
  EXPECT_EQ(resumed_on_, std::vector<std::string>{dir_ + "/mig-r1.sock"});
  EXPECT_EQ(rec->report["post_copy"].value("recoveries", 0), 1);
  EXPECT_EQ(rec->report["post_copy"].value("status", ""), "completed");
  const auto target = targetRecord();
  EXPECT_EQ(target.phase, MigrationPhase::Done);
  ASSERT_EQ(target.report["post_copy_recoveries"].size(), 1U) << target.report.dump(2);
  EXPECT_EQ(target.report["post_copy_recoveries"][0].value("attempt", 0), 1);
  EXPECT_EQ(target.report["post_copy_recoveries"][0].value("error", "?"), "");
}

TEST_F(PostcopySrcTest, AStalledStreamIsPausedFirst) {
  script({progressOf("postcopy-active", 100)});  // the counter stands still
  EXPECT_CALL(source_, pausePostcopyOut("web1")).WillOnce([this](const std::string&) {
    script({progressOf("postcopy-paused", 100)});
    return Result<void>{};
  });
  afterResume({progressOf("postcopy-active", 400), progressOf("completed", 600)});
  EXPECT_CALL(target_, recoverPostcopyIn(_, _, _)).WillOnce(::testing::Return(Result<void>{}));
  Channel ch(*this);
  MigrateRequest req = request();
  req.postcopy_stall = std::chrono::milliseconds(50);
  auto rec = runSourceMigration(source_, *source_store_, ch, req);
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Done) << rec->error;
  EXPECT_EQ(rec->report["post_copy"].value("recoveries", 0), 1);
}

TEST_F(PostcopySrcTest, ARefusedRecoveryIsTriedAgainWithTheNextAttempt) {
  script({progressOf("postcopy-paused", 100)});
  afterResume({progressOf("completed", 600)});
  EXPECT_CALL(target_, recoverPostcopyIn(_, _, _))
      .WillOnce(::testing::Return(
          Result<void>(fail(ErrorCode::IllegalTransition, "VM 'web1' refuses to listen again"))))
      .WillOnce(::testing::Return(Result<void>{}));
  Channel ch(*this);
  auto rec = runSourceMigration(source_, *source_store_, ch, request());
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Done) << rec->error;
  EXPECT_EQ(source_attempts_, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(resumed_on_, std::vector<std::string>{dir_ + "/mig-r2.sock"});
  const auto target = targetRecord();
  ASSERT_EQ(target.report["post_copy_recoveries"].size(), 2U) << target.report.dump(2);
  EXPECT_NE(target.report["post_copy_recoveries"][0].value("error", "").find("refuses"),
            std::string::npos);
}

TEST_F(PostcopySrcTest, AFailedPostCopyIsNeverReleased) {
  auto failed = progressOf("failed", 100);
  failed.error_desc = "Unable to write to socket";
  script({failed});
  EXPECT_CALL(source_, releaseMigrated(_, _)).Times(0);
  Channel ch(*this);
  auto rec = runSourceMigration(source_, *source_store_, ch, request());
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Confirm);
  EXPECT_NE(rec->error.find("Unable to write to socket"), std::string::npos) << rec->error;
  EXPECT_FALSE(released_);
}

// The agent stops mid post-copy: the record stays in confirm; a settler that cannot open a
// stream waits for QEMU's last page instead of releasing the source, one that can recovers.
TEST_F(PostcopySrcTest, AStopMidPostCopyIsFinishedByTheSettlerNeverByReleasingTheSource) {
  script({progressOf("postcopy-active", 100), progressOf("postcopy-active", 200)});
  EXPECT_CALL(source_, releaseMigrated(_, _)).Times(0);
  Channel ch(*this);
  MigrateRequest req = request();
  std::atomic<int> polls{0};
  req.cancelled = [&]() -> std::optional<std::string> {
    if (polls.load() > 0) {
      return "the agent is stopping";
    }
    return std::nullopt;
  };
  ON_CALL(source_, postcopyProgress(_))
      .WillByDefault([&](const std::string&) -> Result<migration::MigrationProgress> {
        ++polls;
        return progressOf("postcopy-active", 100 + static_cast<uint64_t>(polls.load()));
      });
  auto rec = runSourceMigration(source_, *source_store_, ch, req);
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, MigrationPhase::Confirm);
  EXPECT_NE(rec->error.find("post-copy not finished"), std::string::npos) << rec->error;
  auto settled = settleSourceMigration(source_, *source_store_, ch, *rec);
  ASSERT_TRUE(settled) << settled.error().describe();
  EXPECT_EQ(settled->phase, MigrationPhase::Confirm);
  EXPECT_NE(settled->error.find("in post-copy"), std::string::npos) << settled->error;
  EXPECT_FALSE(released_);
  // Settled again by a settler that can open streams (the agent's, after its restart): the
  // stream died with the old agent, so it is recovered, the rest sent, then released.
  ::testing::Mock::VerifyAndClearExpectations(&source_);
  script({progressOf("postcopy-paused", 300)});
  afterResume({progressOf("postcopy-active", 400), progressOf("completed", 600)});
  EXPECT_CALL(target_, recoverPostcopyIn(_, _, _)).WillOnce(::testing::Return(Result<void>{}));
  ON_CALL(source_, postcopyProgress(_))
      .WillByDefault([this](const std::string&) -> Result<migration::MigrationProgress> {
        std::lock_guard lock(mu_);
        auto p = script_.front();
        if (script_.size() > 1) {
          script_.pop_front();
        }
        return p;
      });
  PostcopyRecovery recovery;
  recovery.reopen_migration = request().reopen_migration;
  auto finished = settleSourceMigration(source_, *source_store_, ch, *settled, recovery);
  ASSERT_TRUE(finished) << finished.error().describe();
  EXPECT_EQ(finished->phase, MigrationPhase::Done) << finished->error;
  EXPECT_TRUE(released_);
  EXPECT_EQ(finished->report["post_copy"].value("status", ""), "completed");
  EXPECT_EQ(finished->report["post_copy"].value("recoveries", 0), 1);
  EXPECT_EQ(targetRecord().phase, MigrationPhase::Done);
}

TEST_F(PostcopySrcTest, TheTargetRefusesARecoverBeforeTheGuestWasHandedOver) {
  Channel ch(*this);
  ASSERT_TRUE(ch.exchange(tunnel::Preflight{kId,
                                            "web1",
                                            nlohmann::json::parse(kSpec),
                                            "dc",
                                            nlohmann::json::object(),
                                            {},
                                            "q35",
                                            "qemu64",
                                            {},
                                            512,
                                            1,
                                            {}},
                          Clock::now()));
  auto answer = target_side_->handle(tunnel::Recover{kId, 1});
  ASSERT_FALSE(answer);
  EXPECT_EQ(answer.error().code, ErrorCode::IllegalTransition);
  EXPECT_NE(answer.error().message.find("only a guest handed over in post-copy"), std::string::npos)
      << answer.error().message;
  EXPECT_TRUE(target_attempts_.empty());
  auto unknown = target_side_->handle(tunnel::Recover{"m-other", 1});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::NotFound);
}

}  // namespace
}  // namespace vandra::orchestrator
