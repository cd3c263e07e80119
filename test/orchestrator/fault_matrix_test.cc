// The migration fault matrix as unit tests: every phase x {peer lost, peer refuses, QEMU
// fails, disk full, agent restarted, cancel}, with GoogleMock fakes of both sites' agents
// (MockMigrationHost) and the real protocol between them: runSourceMigration at "dc", a real
// TargetSide at "cloud", every control message through the codec (encode, decode) both
// ways, and the target's errors answered as `aborted`, as MigrationService's control-stream
// server does. Each case asserts the final record at both sites and what each site's agent
// was left with: the source resumed (or released only once the target runs the guest), the
// target cleaned (or running), never both running. No QEMU, no root; the testbed's fault
// tests remain the real-system check.
//
// A case's fault strikes when the source's record reaches its phase:
//   peer lost        the link goes down for good (mirror/RAM: the NBD or migration stream
//                    breaks, migrateOut fails)
//   peer refuses     the target says no: a VM of that name (preflight), no capacity left
//                    (prepare), NBD/migration stream refused (mirror/RAM), cannot start the
//                    guest (switchover), `aborted` instead of `confirmed` once (confirm)
//   QEMU fails       qemu-img on the source (preflight: tolerated), the target's QEMU
//                    (prepare, switchover), a block job / the migration (mirror, RAM), the
//                    source QEMU's quit (confirm: a warning)
//   disk full        no disk free (preflight), ENOSPC creating disks (prepare), in the mirror
//                    (mirror, RAM), finishing the guest (switchover), the target's record
//                    write of `done` (confirm, once)
//   agent restarted  the target's agent restarts: the message in flight is lost (mirror/RAM:
//                    the streams break) and a new TargetSide on the same store answers after
//   cancel           the operator cancels (from switchover on it is too late: it completes)
// A source left in switchover or confirm is settled once more (settleSourceMigration), as
// the service's settler does, before the final state is checked.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "mock_migration_host.h"
#include "vandra/orchestrator/migrator.h"

namespace vandra::orchestrator {
namespace {

using ::testing::_;
using ::testing::NiceMock;

enum class Fault { PeerLost, PeerRefuses, QemuFails, DiskFull, AgentRestarted, Cancel };

std::string_view toString(Fault f) {
  switch (f) {
    case Fault::PeerLost:
      return "PeerLost";
    case Fault::PeerRefuses:
      return "PeerRefuses";
    case Fault::QemuFails:
      return "QemuFails";
    case Fault::DiskFull:
      return "DiskFull";
    case Fault::AgentRestarted:
      return "AgentRestarted";
    case Fault::Cancel:
      return "Cancel";
  }
  return "?";
}

// The VM at each site, as the fake agents leave it.
enum class SourceVm { Running, Paused, Released };
enum class TargetVm { None, Incoming, Running };

struct Expected {
  MigrationPhase source;
  std::optional<MigrationPhase> target;  // nullopt: the target has no record
  SourceVm source_vm;
  TargetVm target_vm;
};

struct Case {
  MigrationPhase phase;
  Fault fault;
  Expected expected;
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << toString(c.phase) << "/" << toString(c.fault);
}

constexpr auto P = MigrationPhase::Preflight;
constexpr auto PT = MigrationPhase::PrepareTarget;
constexpr auto MD = MigrationPhase::MirrorDisks;
constexpr auto PR = MigrationPhase::PrecopyRam;
constexpr auto SW = MigrationPhase::Switchover;
constexpr auto CF = MigrationPhase::Confirm;
constexpr auto DONE = MigrationPhase::Done;
constexpr auto RB = MigrationPhase::RolledBack;
constexpr auto FAILED = MigrationPhase::Failed;
constexpr std::optional<MigrationPhase> kNoRecord;

// Before the target runs the guest every fault ends with the VM running at the source and
// nothing at the target (rolled back), except that an unreachable target cannot be told:
// the source then says failed (leftovers: "target not reached") and the target keeps its
// record for its own recovery. From switchover on only forward, or wait for the target's word.
const Case kCases[] = {
    {P, Fault::PeerLost, {FAILED, kNoRecord, SourceVm::Running, TargetVm::None}},
    {P, Fault::PeerRefuses, {RB, kNoRecord, SourceVm::Running, TargetVm::None}},
    {P, Fault::QemuFails, {DONE, DONE, SourceVm::Released, TargetVm::Running}},
    {P, Fault::DiskFull, {RB, kNoRecord, SourceVm::Running, TargetVm::None}},
    {P, Fault::AgentRestarted, {RB, kNoRecord, SourceVm::Running, TargetVm::None}},
    {P, Fault::Cancel, {RB, RB, SourceVm::Running, TargetVm::None}},

    {PT, Fault::PeerLost, {FAILED, P, SourceVm::Running, TargetVm::None}},
    {PT, Fault::PeerRefuses, {RB, RB, SourceVm::Running, TargetVm::None}},
    {PT, Fault::QemuFails, {RB, RB, SourceVm::Running, TargetVm::None}},
    {PT, Fault::DiskFull, {RB, RB, SourceVm::Running, TargetVm::None}},
    {PT, Fault::AgentRestarted, {RB, RB, SourceVm::Running, TargetVm::None}},
    {PT, Fault::Cancel, {RB, RB, SourceVm::Running, TargetVm::None}},

    {MD, Fault::PeerLost, {FAILED, MD, SourceVm::Running, TargetVm::Incoming}},
    {MD, Fault::PeerRefuses, {RB, RB, SourceVm::Running, TargetVm::None}},
    {MD, Fault::QemuFails, {RB, RB, SourceVm::Running, TargetVm::None}},
    {MD, Fault::DiskFull, {RB, RB, SourceVm::Running, TargetVm::None}},
    {MD, Fault::AgentRestarted, {RB, RB, SourceVm::Running, TargetVm::None}},
    {MD, Fault::Cancel, {RB, RB, SourceVm::Running, TargetVm::None}},

    {PR, Fault::PeerLost, {FAILED, MD, SourceVm::Running, TargetVm::Incoming}},
    {PR, Fault::PeerRefuses, {RB, RB, SourceVm::Running, TargetVm::None}},
    {PR, Fault::QemuFails, {RB, RB, SourceVm::Running, TargetVm::None}},
    {PR, Fault::DiskFull, {RB, RB, SourceVm::Running, TargetVm::None}},
    {PR, Fault::AgentRestarted, {RB, RB, SourceVm::Running, TargetVm::None}},
    {PR, Fault::Cancel, {RB, RB, SourceVm::Running, TargetVm::None}},

    // No answer to switchover: the source keeps the guest paused until the target can say.
    {SW, Fault::PeerLost, {SW, MD, SourceVm::Paused, TargetVm::Incoming}},
    {SW, Fault::PeerRefuses, {RB, RB, SourceVm::Running, TargetVm::None}},
    {SW, Fault::QemuFails, {RB, RB, SourceVm::Running, TargetVm::None}},
    {SW, Fault::DiskFull, {RB, RB, SourceVm::Running, TargetVm::None}},
    {SW, Fault::AgentRestarted, {RB, RB, SourceVm::Running, TargetVm::None}},
    {SW, Fault::Cancel, {DONE, DONE, SourceVm::Released, TargetVm::Running}},

    // The guest runs at the target: confirm is retried until acknowledged.
    {CF, Fault::PeerLost, {CF, CF, SourceVm::Released, TargetVm::Running}},
    {CF, Fault::PeerRefuses, {DONE, DONE, SourceVm::Released, TargetVm::Running}},
    {CF, Fault::QemuFails, {DONE, DONE, SourceVm::Paused, TargetVm::Running}},
    {CF, Fault::DiskFull, {DONE, DONE, SourceVm::Released, TargetVm::Running}},
    {CF, Fault::AgentRestarted, {DONE, DONE, SourceVm::Released, TargetVm::Running}},
    {CF, Fault::Cancel, {DONE, DONE, SourceVm::Released, TargetVm::Running}},
};

constexpr char kId[] = "m-fault";
constexpr char kVm[] = "web1";

const char* kSpec = R"({"virtual_systems":[{"id":"web1","memory_mib":512,"vcpus":1,
  "disks":[{"id":"disk0","capacity_bytes":1073741824}],"nics":[{"network":"lan"}],
  "sla":{"jurisdictions":["EU"]}}]})";

// The target's store, with a disk that fills up on cue: the next write of @p fail_phase fails.
class FlakyStore : public MigrationStore {
 public:
  explicit FlakyStore(MigrationStorePtr inner) : inner_(std::move(inner)) {}
  Result<MigrationRecord> insert(const MigrationRecord& r) override { return inner_->insert(r); }
  Result<MigrationRecord> update(const MigrationRecord& r) override {
    if (fail_phase && r.phase == *fail_phase) {
      fail_phase.reset();
      return fail(ErrorCode::Io, "No space left on device");
    }
    return inner_->update(r);
  }
  Result<std::optional<MigrationRecord>> get(const std::string& id) override {
    return inner_->get(id);
  }
  Result<std::optional<MigrationRecord>> active(const std::string& vm_id) override {
    return inner_->active(vm_id);
  }
  Result<std::vector<MigrationRecord>> list(const std::string& vm_id) override {
    return inner_->list(vm_id);
  }
  std::optional<MigrationPhase> fail_phase;

 private:
  MigrationStorePtr inner_;
};

class FaultMatrixTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/vandra-fault-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    auto a = openSqliteMigrationStore(dir_ + "/dc.db");
    auto b = openSqliteMigrationStore(dir_ + "/cloud.db");
    ASSERT_TRUE(a && b);
    source_store_ = std::move(*a);
    target_store_ = std::make_unique<FlakyStore>(std::move(*b));
    fakeSource();
    fakeTarget();
    restartTarget();
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // ---- the sites ----

  void setSource(SourceVm v) {
    source_vm_ = v;
    EXPECT_FALSE(source_vm_ == SourceVm::Running && target_vm_ == TargetVm::Running)
        << "the guest runs at both sites";
  }
  void setTarget(TargetVm v) {
    target_vm_ = v;
    EXPECT_FALSE(source_vm_ == SourceVm::Running && target_vm_ == TargetVm::Running)
        << "the guest runs at both sites";
  }

  void fakeSource() {
    ON_CALL(source_, vm(_)).WillByDefault([this](const std::string&) -> Result<HostVm> {
      return HostVm{source_spec_, 512, 1, source_vm_ != SourceVm::Released,
                    source_vm_ == SourceVm::Running};
    });
    ON_CALL(source_, diskBases(_))
        .WillByDefault([this](const std::string&) -> Result<std::map<std::string, std::string>> {
          if (disk_bases_error_) {
            return fail(*disk_bases_error_);
          }
          return std::map<std::string, std::string>{};
        });
    // As the engine: a cancel asked before it registers, then the two hooks; on any failure
    // the guest runs on here; on success it is paused with the migration completed.
    ON_CALL(source_, migrateOut(_, _))
        .WillByDefault([this](const agent::OutgoingRequest& r,
                              migration::SourceMigration&) -> Result<migration::SwitchoverResult> {
          ++migrate_out_calls_;
          if (r.cancelled) {
            if (auto why = r.cancelled()) {
              return fail(ErrorCode::Cancelled, "Cancelled: " + *why);
            }
          }
          if (mirror_error_) {
            streamsBreak();
            return fail(*mirror_error_);
          }
          VANDRA_TRY(r.before_step(agent::OutgoingStep::Ram));
          if (ram_error_) {
            streamsBreak();
            return fail(*ram_error_);
          }
          VANDRA_TRY(r.before_step(agent::OutgoingStep::Switchover));
          setSource(SourceVm::Paused);
          migration::SwitchoverResult out;
          out.downtime_ms = 40;
          out.ram_transferred = 512ULL << 20;
          return out;
        });
    ON_CALL(source_, releaseMigrated(_, _))
        .WillByDefault([this](const std::string&, const std::string&) -> Result<void> {
          if (release_error_) {
            return fail(*release_error_);
          }
          setSource(SourceVm::Released);
          return {};
        });
    ON_CALL(source_, resumeAfterFailedSwitchover(_))
        .WillByDefault([this](const std::string&) -> Result<void> {
          if (source_vm_ == SourceVm::Paused) {
            setSource(SourceVm::Running);
          }
          return {};
        });
    ON_CALL(source_, cancelStrayMigration(_))
        .WillByDefault([this](const std::string&) -> Result<void> {
          if (source_vm_ == SourceVm::Paused) {  // completed: resumeAfterFailedSwitchover
            return fail(ErrorCode::IllegalTransition, "The migration has completed");
          }
          return {};
        });
  }

  void fakeTarget() {
    ON_CALL(target_, vm(_)).WillByDefault([this](const std::string& id) -> Result<HostVm> {
      if (name_taken_ || target_vm_ != TargetVm::None) {
        return HostVm{kSpec, 512, 1, target_vm_ != TargetVm::None, target_vm_ == TargetVm::Running};
      }
      return fail(ErrorCode::NotFound, "No VM '" + id + "'");
    });
    ON_CALL(target_, freeCapacity()).WillByDefault([this]() -> Result<agent::Resources> {
      return agent::Resources{8, 16384, free_disk_};
    });
    ON_CALL(target_, checkFits(_))
        .WillByDefault([this](const agent::Resources& request) -> Result<void> {
          return agent::checkFits({{8, 16384, free_disk_}, {}}, {}, request);
        });
    ON_CALL(target_, hasBase(_)).WillByDefault(::testing::Return(false));
    ON_CALL(target_, prepareIncoming(_))
        .WillByDefault([this](const agent::IncomingRequest&) -> Result<void> {
          if (prepare_error_) {
            return fail(*prepare_error_);  // nothing is left (AgentService's contract)
          }
          setTarget(TargetVm::Incoming);
          return {};
        });
    ON_CALL(target_, finishIncoming(_, _, _))
        .WillByDefault([this](const std::string&, bool,
                              std::chrono::steady_clock::time_point) -> Result<uint64_t> {
          if (finish_error_) {
            return fail(*finish_error_);  // QEMU stays incoming: the target rolls back
          }
          setTarget(TargetVm::Running);
          return uint64_t{4242};
        });
    ON_CALL(target_, abortIncoming(_)).WillByDefault([this](const std::string&) -> Result<void> {
      setTarget(TargetVm::None);
      return {};
    });
  }

  // The target's agent (re)starts: a new TargetSide on the same store and host.
  void restartTarget() {
    TargetSide::Config c;
    c.site = "cloud";
    c.jurisdictions = {"EU"};
    c.paths = [this](const std::string& id) {
      return StreamPaths{dir_ + "/" + id + "-nbd.sock", dir_ + "/" + id + "-mig.sock"};
    };
    target_side_ = std::make_unique<TargetSide>(target_, *target_store_, std::move(c));
    ++target_starts_;
  }

  // ---- the link ----

  MigrationPhase sourcePhase() {
    auto r = source_store_->get(kId);
    return r && *r ? (*r)->phase : MigrationPhase::Invalid;
  }

  // The source's PeerChannel: the codec both ways to the current TargetSide, with the case's
  // fault on the way.
  class Channel : public PeerChannel {
   public:
    explicit Channel(FaultMatrixTest& t) : t_(t) {}
    Result<tunnel::ControlMessage> exchange(const tunnel::ControlMessage& request,
                                            Clock::time_point) override {
      const MigrationPhase now = t_.sourcePhase();
      if (t_.link_down_from_ && now == *t_.link_down_from_) {
        t_.link_down_ = true;
      }
      if (t_.link_down_) {
        return fail(ErrorCode::Io, "The tunnel to cloud is down");
      }
      if (t_.restart_at_ && now == *t_.restart_at_) {
        t_.restart_at_.reset();
        t_.restartTarget();
        return fail(ErrorCode::Io, "The control stream was reset (the peer's agent restarted)");
      }
      VANDRA_TRY_ASSIGN(const std::string wire, tunnel::encodeControl(request));
      VANDRA_TRY_ASSIGN(const auto received, tunnel::decodeControl(wire));
      auto answer = t_.target_side_->handle(received);
      tunnel::ControlMessage out =
          answer ? *answer
                 : tunnel::ControlMessage(
                       tunnel::Aborted{kId, false, {answer.error().describe().substr(0, 500)}});
      if (t_.refuse_confirm_ && std::holds_alternative<tunnel::Confirm>(received)) {
        t_.refuse_confirm_ = false;
        out = tunnel::Aborted{kId, false, {"confirm refused"}};
      }
      VANDRA_TRY_ASSIGN(const std::string back, tunnel::encodeControl(out));
      return tunnel::decodeControl(back);
    }

   private:
    FaultMatrixTest& t_;
  };

  // Mirror or RAM failed: what the case's fault did to the link and the peer.
  void streamsBreak() {
    if (fault_ == Fault::PeerLost) {
      link_down_ = true;
    } else if (fault_ == Fault::AgentRestarted) {
      restartTarget();
    }
  }

  // ---- the case ----

  void inject(MigrationPhase phase, Fault fault) {
    fault_ = fault;
    const bool streaming = phase == MD || phase == PR;
    auto streamError = [&](Error e) { (phase == MD ? mirror_error_ : ram_error_) = std::move(e); };
    switch (fault) {
      case Fault::PeerLost:
        if (streaming) {
          streamError(Error(ErrorCode::Io, "The NBD connection broke"));
        } else {
          link_down_from_ = phase;
        }
        break;
      case Fault::AgentRestarted:
        if (streaming) {
          streamError(Error(ErrorCode::Io, "The migration stream broke"));
        } else {
          restart_at_ = phase;
        }
        break;
      case Fault::Cancel:
        cancel_from_ = phase;
        break;
      case Fault::PeerRefuses:
        if (phase == P) {
          name_taken_ = true;
        } else if (phase == PT) {
          prepare_error_ = Error(ErrorCode::CapacityExceeded, "Not enough memory");
        } else if (streaming) {
          streamError(Error(ErrorCode::Io, "The target refused the connection"));
        } else if (phase == SW) {
          finish_error_ = Error(ErrorCode::IllegalTransition, "VM 'web1' is not incoming");
        } else {
          refuse_confirm_ = true;
        }
        break;
      case Fault::QemuFails:
        if (phase == P) {
          disk_bases_error_ = Error(ErrorCode::Subprocess, "qemu-img info failed");
        } else if (phase == PT) {
          prepare_error_ = Error(ErrorCode::Subprocess, "QEMU exited with status 1");
        } else if (streaming) {
          streamError(Error(ErrorCode::QmpError, "Block job disk0 failed"));
        } else if (phase == SW) {
          finish_error_ = Error(ErrorCode::Io, "The incoming migration failed");
        } else {
          release_error_ = Error(ErrorCode::QmpError, "quit failed");
        }
        break;
      case Fault::DiskFull:
        if (phase == P) {
          free_disk_ = 0;
        } else if (phase == PT) {
          prepare_error_ = Error(ErrorCode::Io, "No space left on device");
        } else if (streaming) {
          streamError(Error(ErrorCode::QmpError, "Block job disk0: No space left"));
        } else if (phase == SW) {
          finish_error_ = Error(ErrorCode::Io, "No space left on device");
        } else {
          target_store_->fail_phase = MigrationPhase::Done;
        }
        break;
    }
  }

  MigrateRequest request() {
    MigrateRequest r;
    r.migration_id = kId;
    r.vm_id = kVm;
    r.source_site = "dc";
    r.target_site = "cloud";
    r.source_paths = {dir_ + "/src-nbd.sock", dir_ + "/src-mig.sock"};
    r.max_total = std::chrono::seconds(60);
    r.cancelled = [this]() -> std::optional<std::string> {
      const auto now = sourcePhase();
      if (cancel_from_ && now != MigrationPhase::Invalid &&
          static_cast<int>(now) >= static_cast<int>(*cancel_from_)) {
        return "the operator asked";
      }
      return std::nullopt;
    };
    return r;
  }

  std::string dir_;
  std::string source_spec_ = kSpec;
  MigrationStorePtr source_store_;
  std::unique_ptr<FlakyStore> target_store_;
  NiceMock<testing::MockMigrationHost> source_;
  NiceMock<testing::MockMigrationHost> target_;
  std::unique_ptr<TargetSide> target_side_;
  int target_starts_ = 0;
  int migrate_out_calls_ = 0;

  SourceVm source_vm_ = SourceVm::Running;
  TargetVm target_vm_ = TargetVm::None;
  Fault fault_ = Fault::Cancel;
  std::optional<MigrationPhase> link_down_from_;
  bool link_down_ = false;
  std::optional<MigrationPhase> restart_at_;
  std::optional<MigrationPhase> cancel_from_;
  bool refuse_confirm_ = false;
  bool name_taken_ = false;
  uint64_t free_disk_ = 1ULL << 40;
  std::optional<Error> disk_bases_error_, mirror_error_, ram_error_, release_error_, prepare_error_,
      finish_error_;
};

TEST_P(FaultMatrixTest, EndsWithBothSitesInTheExpectedState) {
  const Case& c = GetParam();
  inject(c.phase, c.fault);
  Channel channel(*this);
  auto rec = runSourceMigration(source_, *source_store_, channel, request());
  ASSERT_TRUE(rec) << rec.error().describe();
  if (rec->phase == SW || rec->phase == CF) {  // the service's settler asks again
    rec = settleSourceMigration(source_, *source_store_, channel, *rec);
    ASSERT_TRUE(rec) << rec.error().describe();
  }

  // The source's record: as returned and as stored.
  EXPECT_EQ(toString(rec->phase), toString(c.expected.source)) << rec->error;
  const auto stored = source_store_->get(kId);
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->phase, rec->phase);
  if (rec->phase == RB || rec->phase == FAILED) {
    EXPECT_FALSE(rec->error.empty());  // says why
    EXPECT_TRUE(rec->report.contains("leftovers") && rec->report["leftovers"].is_array());
    EXPECT_EQ(rec->report["leftovers"].empty(), rec->phase == RB);
  }
  if (c.phase == P && c.fault == Fault::DiskFull) {  // the agent's capacity check says why
    EXPECT_NE(rec->error.find("Not enough disk"), std::string::npos) << rec->error;
  }
  if (rec->phase == DONE) {  // the typed report, as the record's JSON
    EXPECT_TRUE(rec->report.contains("downtime_plan"));
    EXPECT_EQ(rec->report.value("ram_bytes", uint64_t{0}), 512ULL << 20);
    EXPECT_EQ(rec->report.value("downtime_ms", uint64_t{0}), 40U);
    EXPECT_EQ(rec->report.value("mirror_copy_mode", ""), "background");
    if (!rec->report.contains("settle")) {  // finished by the run, not by a later settle
      EXPECT_GT(rec->report.value("total_s", -1.0), -1.0);
    }
  }
  // The target's record.
  const auto theirs = target_store_->get(kId);
  ASSERT_TRUE(theirs);
  if (c.expected.target) {
    ASSERT_TRUE(theirs->has_value()) << "the target has no record";
    EXPECT_EQ(toString((*theirs)->phase), toString(*c.expected.target)) << (*theirs)->error;
    EXPECT_EQ((*theirs)->role, MigrationRole::Target);
  } else {
    EXPECT_FALSE(theirs->has_value()) << toString((*theirs)->phase);
  }
  // What each site's agent was left with.
  EXPECT_EQ(static_cast<int>(source_vm_), static_cast<int>(c.expected.source_vm))
      << "source VM: 0 running, 1 paused, 2 released";
  EXPECT_EQ(static_cast<int>(target_vm_), static_cast<int>(c.expected.target_vm))
      << "target VM: 0 none, 1 incoming, 2 running";
  EXPECT_FALSE(source_vm_ == SourceVm::Running && target_vm_ == TargetVm::Running);
  // The source lets go of its copy only once the target runs the guest.
  if (source_vm_ == SourceVm::Released) {
    EXPECT_EQ(target_vm_, TargetVm::Running);
  }
  // A migration that ended anywhere but done left the target without the guest.
  if (rec->phase == RB) {
    EXPECT_EQ(target_vm_, TargetVm::None);
    EXPECT_EQ(source_vm_, SourceVm::Running);
  }
  if (c.fault == Fault::AgentRestarted && c.phase != MD && c.phase != PR) {
    EXPECT_EQ(target_starts_, 2);  // the fault struck
  }
}

std::string caseName(const ::testing::TestParamInfo<Case>& info) {
  std::string phase(toString(info.param.phase));
  std::string out;
  bool upper = true;
  for (char ch : phase) {
    if (ch == '_') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(ch))) : ch;
    upper = false;
  }
  return out + "_" + std::string(toString(info.param.fault));
}

INSTANTIATE_TEST_SUITE_P(EveryPhaseAndFault, FaultMatrixTest, ::testing::ValuesIn(kCases),
                         caseName);

// The target checks the SLA as ovf::Sla: one it cannot read (a clause this build does not
// know) is refused at preflight, since its jurisdictions could not be checked.
TEST_F(FaultMatrixTest, AnSlaTheTargetCannotReadIsRefusedAtPreflight) {
  source_spec_ = R"({"virtual_systems":[{"id":"web1","disks":[],
    "sla":{"jurisdictions":["EU"],"clause_from_the_future":1}}]})";
  Channel channel(*this);
  auto rec = runSourceMigration(source_, *source_store_, channel, request());
  ASSERT_TRUE(rec) << rec.error().describe();
  EXPECT_EQ(rec->phase, RB);
  EXPECT_NE(rec->error.find("the SLA cannot be read here"), std::string::npos) << rec->error;
  EXPECT_EQ(source_vm_, SourceVm::Running);
  EXPECT_EQ(target_vm_, TargetVm::None);
  EXPECT_EQ(migrate_out_calls_, 0);
}

// The matrix covers every phase before done with every fault.
TEST(FaultMatrixCoverage, EveryPhaseTimesEveryFault) {
  for (MigrationPhase p : {P, PT, MD, PR, SW, CF}) {
    for (Fault f : {Fault::PeerLost, Fault::PeerRefuses, Fault::QemuFails, Fault::DiskFull,
                    Fault::AgentRestarted, Fault::Cancel}) {
      int n = 0;
      for (const Case& c : kCases) {
        n += c.phase == p && c.fault == f ? 1 : 0;
      }
      EXPECT_EQ(n, 1) << toString(p) << " x " << toString(f);
    }
  }
}

}  // namespace
}  // namespace vandra::orchestrator
