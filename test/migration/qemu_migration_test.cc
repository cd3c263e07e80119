// The migration engine (vandra/migration/qemu_migration.h) against real QEMU 7.2 under TCG:
// the test guest boots from its own disk in a source QEMU, writes a memory pattern and a
// disk pattern, and is migrated with its local disks (NBD mirrors + RAM pre-copy through
// unix sockets) to a destination QEMU started with -incoming defer and empty disks. Both
// NICs are taps on one bridge in a network namespace the test creates, so the test's TCP
// connection to the guest's vguest-seqd outlives the switchover.
//   LiveMigrationWithLocalDisks: full copy, background mirrors, the target's exports hiding
//     FLUSH and FUA (ADR 0033: no flush reaches the target, its own barrier flushes before
//     `cont`), no return path; a disk writer runs before,
//     during the mirror and across the switchover (throttled on the source), the stamped
//     memory dirtier and disk writer (testbed::GuestWorkload's programs) from pre-copy to
//     the pause; the guest runs on the target, patterns PASS there and in the target's
//     image, every page and block of the workload PASSes, the boot disk is identical.
//   OverlayOnlyWithWriteBlockingMirrors: sync=top onto target overlays whose backing file
//     is a copy of the source's base; active (write-blocking) mirroring; the flushes go
//     through to the target, as towards an older agent, and are counted.
//   CancelInEveryPhaseLeavesSourceAsBefore: cancel while mirroring, during RAM pre-copy, in
//     the pre-switchover pause, and after the target died during pre-copy; the source runs
//     on with intact patterns and nothing of the migration left in it; each target is
//     killed and leaves no file behind.
// Skips when QEMU, ip, /dev/net/tun, namespaces or a built guest are missing.
#include "vandra/migration/qemu_migration.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <future>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "migration_fixture.h"
#include "vandra/content/nbd_flags.h"
#include "vandra/content/nbd_stream.h"
#include "vandra/qmp/commands.h"
#include "vandra/testbed/guest_workload.h"

namespace vandra::migtest {
namespace {

using namespace std::chrono_literals;
using migration::Clock;

// Runs mirrors + RAM pre-copy + switchover from src_ to a fresh target and checks the result.
// Used by the two full-migration tests.
struct FullRun {
  migration::MirrorOptions mirror;
  bool overlays = false;  // sync=top: source overlays on bases, target overlays on copies
  // As the agents do (ADR 0033): the target's exports hide FLUSH and FUA from the mirrors
  // (content::NbdServerFlagsFilter on a relay), no return path, finishTarget's flush barrier.
  bool hide_flush = false;
};

// Counts the FLUSH requests (and FUA writes) of the NBD connections it sees, client side.
struct FlushCount {
  std::atomic<uint64_t> flushes{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> unparsed{0};  // connections the scanner gave up on
};
class FlushCounter : public tunnel::ByteTransform {
 public:
  explicit FlushCounter(std::shared_ptr<FlushCount> c) : c_(std::move(c)) { ++c_->connections; }
  Result<void> feed(std::string_view in, std::string& out) override {
    const uint64_t before = scan_.flushes();
    const bool parsed = !scan_.passThrough();
    scan_.scan(in, [](uint64_t, std::string_view) {});
    c_->flushes += scan_.flushes() - before;
    if (parsed && scan_.passThrough()) {
      ++c_->unparsed;
    }
    out.append(in);
    return {};
  }
  Result<void> finish(std::string&) override { return {}; }

 private:
  std::shared_ptr<FlushCount> c_;
  content::NbdWriteScanner scan_;
};

class LiveMigration : public MigrationTest {
 protected:
  void runMigration(const FullRun& how) {
    std::map<std::string, std::string> src_disks, dst_disks;
    if (how.overlays) {
      // The base images exist at both sites (the target's are copies), only the overlays
      // carry this VM's own writes.
      ASSERT_NO_FATAL_FAILURE(
          sourceDisks(tmp_.path / "src-disks", src_disks, tmp_.path / "src-base"));
      fs::create_directories(tmp_.path / "dst-base");
      for (const auto& id : kDisks) {
        fs::copy_file(tmp_.path / "src-base" / (id + "-base.qcow2"),
                      tmp_.path / "dst-base" / (id + "-base.qcow2"));
      }
      ASSERT_NO_FATAL_FAILURE(
          targetDisks(tmp_.path / "dst-disks", dst_disks, tmp_.path / "dst-base"));
    } else {
      ASSERT_NO_FATAL_FAILURE(sourceDisks(tmp_.path / "src-disks", src_disks));
      ASSERT_NO_FATAL_FAILURE(targetDisks(tmp_.path / "dst-disks", dst_disks));
    }
    ASSERT_NO_FATAL_FAILURE(bootSource(src_disks));

    // Patterns: 64 MiB of memory, the first 32 MiB of the data disk.
    auto ms = guest("EXEC vguest-mempat start 64 7");
    ASSERT_EQ(ms.empty() ? "" : ms.back(), "EXIT 0") << joined(ms);
    auto t_w = Clock::now();
    auto dw = guest("EXEC vguest-diskpat write /dev/vdb 7 0 32");
    ASSERT_EQ(dw.empty() ? "" : dw.back(), "EXIT 0") << joined(dw);
    note("guest_disk_write_32mib_before_mirror_s", secondsSince(t_w), "s");

    QemuVm dst;
    ASSERT_NO_FATAL_FAILURE(startTarget("dst", dst_disks, dst));
    const fs::path nbd_sock = tmp_.path / "nbd.sock";
    const fs::path mig_sock = tmp_.path / "mig.sock";
    ASSERT_NO_FATAL_FAILURE(prepareTarget(dst, nbd_sock, mig_sock));
    // The mirrors' NBD connections go through a relay that counts their flushes.
    auto flushes = std::make_shared<FlushCount>();
    auto hidden = std::make_shared<content::NbdFlagCounters>();
    DelayProxy::Transforms tap;
    tap.to_target = [flushes] { return std::make_unique<FlushCounter>(flushes); };
    if (how.hide_flush) {
      tap.from_target = [hidden] {
        return std::make_unique<content::NbdServerFlagsFilter>(
            content::kNbdFlagSendFlush | content::kNbdFlagSendFua, hidden);
      };
    }
    const fs::path nbd_tap = tmp_.path / "nbd-tap.sock";
    DelayProxy nbd_relay(nbd_tap, nbd_sock, 0us, std::move(tap));
    ASSERT_EQ(nbd_relay.start(), "");

    migration::SourceMigration m;
    const auto t0 = Clock::now();
    auto started = migration::startMirrors(*src_.qmp, m, mirrorTargets(nbd_tap), how.mirror);
    ASSERT_TRUE(started) << started.error().describe();
    EXPECT_TRUE(m.vm_was_running);

    // The guest writes the second half of the data disk while the mirrors copy.
    std::string err;
    auto writer_conn = GuestConn::open(netns_->name(), err);
    ASSERT_TRUE(writer_conn) << err;
    auto writer = std::async(std::launch::async, [c = std::move(*writer_conn)]() mutable {
      const auto w0 = Clock::now();
      auto r = c.command("EXEC vguest-diskpat write /dev/vdb 9 32 16");
      return std::make_pair(r, secondsSince(w0));
    });
    auto ready = migration::waitMirrorsReady(*src_.qmp, *src_.events, m, Clock::now() + 300s);
    ASSERT_TRUE(ready) << ready.error().describe();
    note("mirrors_ready_s", secondsSince(t0), "s");
    ASSERT_EQ(writer.wait_for(300s), std::future_status::ready);
    auto [wr, wsec] = writer.get();
    ASSERT_EQ(wr.empty() ? "" : wr.back(), "EXIT 0") << joined(wr);
    note("guest_disk_write_16mib_during_mirror_s", wsec, "s");

    // Memory keeps changing during pre-copy and up to the pause: the dirtier rewrites
    // 16 MiB at 8 MB/s, and the disk writer the last 8 MiB of the data disk at 512 KiB/s
    // (testbed::WorkloadOptions' defaults); every page and block is verified on the target.
    testbed::WorkloadOptions wo;
    wo.dirty_wss_mib = 16;
    wo.dirty_rate_mbps = 8;
    for (const auto& line : {testbed::dirtierStartLine(wo), testbed::diskWriterStartLine(wo)}) {
      auto st = guest("EXEC " + line);
      ASSERT_EQ(st.empty() ? "" : st.back(), "EXIT 0") << line << ":\n" << joined(st);
    }
    // And a diskpat write that spans the switchover: the data disk throttled to 2 MiB/s of
    // writes on the source (I/O limits are host configuration, not migrated: the target
    // writes at full speed), 8 MiB from 48 MiB, on a connection of its own whose reply
    // comes from the target.
    exec(src_, "block_set_io_throttle",
         {{"id", "/machine/peripheral/disk-disk2/virtio-backend"},
          {"bps", 0},
          {"bps_rd", 0},
          {"bps_wr", 2 << 20},
          {"iops", 0},
          {"iops_rd", 0},
          {"iops_wr", 0}});
    auto span_conn = GuestConn::open(netns_->name(), err);
    ASSERT_TRUE(span_conn) << err;
    auto span_writer = std::async(std::launch::async, [c = std::move(*span_conn)]() mutable {
      return c.command("EXEC vguest-diskpat write /dev/vdb 13 48 8");
    });

    migration::RamMigrationOptions ro;
    ro.downtime_limit_ms = 300;
    ro.max_total_time = 300s;
    ro.return_path = !how.hide_flush;  // the target's IncomingOptions keep theirs (default on)
    auto ram = migration::startRamMigration(*src_.qmp, m, "unix:" + mig_sock.string(), ro);
    ASSERT_TRUE(ram) << ram.error().describe();
    auto p = migration::progress(*src_.qmp);
    ASSERT_TRUE(p) << p.error().describe();
    EXPECT_NE(p->status, "none");
    EXPECT_EQ(p->jobs.size(), 2u);

    auto sw = migration::switchover(*src_.qmp, *src_.events, m, Clock::now() + 400s);
    ASSERT_TRUE(sw) << sw.error().describe();
    note("migration_total_s_measured", secondsSince(t0), "s");
    note("qemu_total_time_ms", static_cast<double>(sw->total_time_ms), "ms");
    note("qemu_downtime_ms", static_cast<double>(sw->downtime_ms), "ms");
    note("qemu_setup_time_ms", static_cast<double>(sw->setup_time_ms), "ms");
    note("ram_transferred_bytes", static_cast<double>(sw->ram_transferred), "B");
    note("disk_transferred_bytes", static_cast<double>(sw->disk_transferred), "B");
    note("mirror_complete_in_pause_ms", sw->mirror_complete_ms, "ms");
    note("pause_to_completed_ms", sw->paused_ms, "ms");
    for (const auto& w : sw->warnings) {
      ADD_FAILURE() << "warning: " << w;
    }
    EXPECT_GT(sw->downtime_ms, 0u);
    EXPECT_GT(sw->ram_transferred, 0u);

    const bool spanned = span_writer.wait_for(0s) != std::future_status::ready;
    std::cout << "[ info ] the throttled disk writer " << (spanned ? "spanned" : "finished before")
              << " the switchover\n";
    auto done = migration::waitIncomingDone(*dst.qmp, *dst.events, Clock::now() + 60s);
    ASSERT_TRUE(done) << done.error().describe();
    const auto t_fin = Clock::now();
    auto fin = migration::finishTarget(*dst.qmp);
    ASSERT_TRUE(fin) << fin.error().describe();
    note("finish_target_ms", secondsSince(t_fin) * 1000, "ms");
    note("target_flush_barrier_ms", fin->flush_ms, "ms");
    EXPECT_EQ(fin->status_before, "paused");
    EXPECT_TRUE(fin->resumed);
    EXPECT_GT(fin->flush_ms, 0.0);  // the barrier ran before `cont`
    EXPECT_EQ(flushes->connections.load(), 2u);
    EXPECT_EQ(flushes->unparsed.load(), 0u);
    note("nbd_flushes_from_the_mirrors", static_cast<double>(flushes->flushes.load()), "");
    if (how.hide_flush) {
      EXPECT_EQ(hidden->exports_rewritten.load(), 2u);
      EXPECT_EQ(hidden->passed_through.load(), 0u);
      EXPECT_EQ(flushes->flushes.load(), 0u) << "a flush crossed to the target";
    } else {
      EXPECT_GT(flushes->flushes.load(), 0u);  // the guest's stop and the mirrors' completion
    }
    EXPECT_EQ(dst.status(), "running");
    // The guest's real pause: the source's STOP to the target's RESUME (both QEMUs stamp
    // events with this host's clock).
    auto stop = src_.events->waitFor("STOP", nullptr, Clock::now() + 10s);
    auto resume = dst.events->waitFor("RESUME", nullptr, Clock::now() + 10s);
    ASSERT_TRUE(stop && resume);
    const double stop_to_resume_ms =
        static_cast<double>((resume->seconds - stop->seconds) * 1000000 +
                            (resume->microseconds - stop->microseconds)) /
        1000.0;
    note("guest_pause_stop_to_resume_ms", stop_to_resume_ms, "ms");
    EXPECT_GE(stop_to_resume_ms, static_cast<double>(sw->downtime_ms) * 0.5);
    EXPECT_EQ(src_.status(), "postmigrate");
    // Nothing of the migration left on either side.
    for (const auto& n : nodeNames(src_)) {
      EXPECT_EQ(n.rfind("vandra-nbd-", 0), std::string::npos) << "source still has " << n;
    }
    EXPECT_EQ(exec(dst, "query-block-exports"), nlohmann::json::array());

    // The connection opened before the migration still talks to the guest, now on the
    // target (the bridge relearnt the MAC from announce-self).
    auto t_ping = Clock::now();
    auto pong = guest("PING after");
    if (pong.size() != 1u) {
      for (const std::vector<std::string>& cmd :
           {std::vector<std::string>{"bridge", "-n", netns_->name(), "fdb", "show", "br", "vmbr0"},
            std::vector<std::string>{"ip", "-n", netns_->name(), "neigh"},
            std::vector<std::string>{"ip", "-n", netns_->name(), "-s", "link"},
            std::vector<std::string>{"ip", "netns", "exec", netns_->name(), "ss", "-tnoi"}}) {
        Outcome o = run(cmd);
        std::cout << "[ diag ] " << cmd[3] << ":\n" << o.out << o.err;
      }
      std::cout << "[ diag ] target serial tail:\n"
                << slurp(dst.serial_log).substr(0, 4000) << "\n";
      auto q = dst.qmp->execute(qmp::makeCommand("query-status"));
      std::cout << "[ diag ] target status " << (q ? q->dump() : q.error().describe()) << "\n";
    }
    ASSERT_EQ(pong.size(), 1u);
    EXPECT_EQ(pong[0].rfind("PONG after ", 0), 0u) << pong[0];
    note("first_ping_after_switchover_s", secondsSince(t_ping), "s");
    // The writer finishes (on the target, when it spanned the switchover).
    ASSERT_EQ(span_writer.wait_for(120s), std::future_status::ready);
    auto span = span_writer.get();
    EXPECT_EQ(outLine(span, "WROTE"), "WROTE bytes=8388608 seed=13") << joined(span);
    expectPatterns("target", 7, {"7 0 32", "9 32 16", "13 48 8"});
    // Every page the dirtier and every block the disk writer wrote, before, during and at
    // the pause of the migration, is on the target.
    for (const char* prog : {"vguest-dirtier", "vguest-diskwriter"}) {
      auto c = checkResult(guest(std::string("EXEC ") + prog + " check"));
      ASSERT_TRUE(c) << prog << ": " << c.error().describe();
      EXPECT_TRUE(c->pass) << prog << " on the target: " << c->line;
      std::cout << "[ info ] " << prog << " on the target: " << c->line << "\n";
    }

    // The source is done: quit it. Then stop the target and compare the images on the host.
    EXPECT_TRUE(src_.quit());
    ctl_.reset();
    EXPECT_TRUE(dst.quit());
    EXPECT_EQ(dst.stderr_text.find("Permission conflict"), std::string::npos) << dst.stderr_text;
    // The boot disk is never written: identical. The data disk got the rest of the spanning
    // write on the target only; all three patterns must be complete in its image.
    Outcome cmp = run({"qemu-img", "compare", "-q", src_disks["disk1"], dst_disks["disk1"]});
    EXPECT_EQ(cmp.code, 0) << "boot disks differ: " << cmp.out << cmp.err;
    const fs::path raw = tmp_.path / "dst-disk2.raw";
    Outcome conv = run({"qemu-img", "convert", "-O", "raw", dst_disks["disk2"], raw.string()});
    ASSERT_EQ(conv.code, 0) << conv.err;
    for (const char* range : {"7 0 32", "9 32 16", "13 48 8"}) {
      std::vector<std::string> argv{(guest_ / "bin/vguest-diskpat").string(), "check",
                                    raw.string()};
      std::stringstream ss(range);
      for (std::string a; ss >> a;) {
        argv.push_back(a);
      }
      Outcome c = run(argv);
      EXPECT_EQ(c.code, 0) << range << ": " << c.out << c.err;
    }
    if (how.overlays) {
      // Only the overlays travelled: the target overlay holds the guest's writes, not the
      // base image's content.
      Outcome info = run({"qemu-img", "info", "--output=json", dst_disks["disk1"]});
      EXPECT_NE(info.out.find("backing-filename"), std::string::npos) << info.out;
    }
  }
};

TEST_F(LiveMigration, LiveMigrationWithLocalDisks) {
  FullRun how;
  how.mirror.copy_mode = migration::CopyMode::Background;
  how.mirror.sync = migration::SyncMode::Full;
  how.hide_flush = true;
  runMigration(how);
}

TEST_F(LiveMigration, OverlayOnlyWithWriteBlockingMirrors) {
  FullRun how;
  how.overlays = true;
  how.mirror.copy_mode = migration::CopyMode::WriteBlocking;
  how.mirror.sync = migration::SyncMode::Top;
  runMigration(how);
}

TEST_F(MigrationTest, CancelInEveryPhaseLeavesSourceAsBefore) {
  std::map<std::string, std::string> src_disks;
  ASSERT_NO_FATAL_FAILURE(sourceDisks(tmp_.path / "src-disks", src_disks));
  ASSERT_NO_FATAL_FAILURE(bootSource(src_disks));
  auto ms = guest("EXEC vguest-mempat start 64 5");
  ASSERT_EQ(ms.empty() ? "" : ms.back(), "EXIT 0") << joined(ms);
  auto dw = guest("EXEC vguest-diskpat write /dev/vdb 5 0 64");
  ASSERT_EQ(dw.empty() ? "" : dw.back(), "EXIT 0") << joined(dw);

  const auto nodes_before = nodeNames(src_);
  const auto caps_before = exec(src_, "query-migrate-capabilities");
  const auto params_before = exec(src_, "query-migrate-parameters");

  // After each cancel: the source runs, answers, has no job, node, capability or parameter
  // of the migration left; the target is killed and leaves nothing.
  auto checkSourceAsBefore = [&](const std::string& phase) {
    EXPECT_EQ(src_.status(), "running") << phase;
    EXPECT_EQ(exec(src_, "query-block-jobs"), nlohmann::json::array()) << phase;
    EXPECT_EQ(nodeNames(src_), nodes_before) << phase;
    EXPECT_EQ(exec(src_, "query-migrate-capabilities"), caps_before) << phase;
    EXPECT_EQ(exec(src_, "query-migrate-parameters"), params_before) << phase;
    auto pong = guest("PING " + phase);
    ASSERT_EQ(pong.size(), 1u) << phase;
    EXPECT_EQ(pong[0].rfind("PONG " + phase + " ", 0), 0u) << pong[0];
  };
  auto discardTarget = [&](QemuVm& t, const fs::path& nbd, const fs::path& mig, pid_t pid) {
    ASSERT_GT(pid, 0);
    if (t.process) {
      auto a = migration::abortTarget(*t.qmp);
      EXPECT_TRUE(a) << a.error().describe();
    }
    t.kill();
    EXPECT_EQ(::kill(pid, 0), -1);
    EXPECT_EQ(errno, ESRCH) << "target QEMU " << pid << " still exists";
    std::error_code ec;
    fs::remove_all(t.dir, ec);
    fs::remove(nbd, ec);
    fs::remove(mig, ec);
    EXPECT_FALSE(fs::exists(t.dir));
  };

  int round = 0;
  auto newTarget = [&](QemuVm& t, fs::path& nbd, fs::path& mig) {
    ++round;
    const std::string label = "dst" + std::to_string(round);
    std::map<std::string, std::string> disks;
    ASSERT_NO_FATAL_FAILURE(targetDisks(tmp_.path / label, disks));
    ASSERT_NO_FATAL_FAILURE(startTarget(label, disks, t));
    nbd = tmp_.path / (label + "-nbd.sock");
    mig = tmp_.path / (label + "-mig.sock");
    ASSERT_NO_FATAL_FAILURE(prepareTarget(t, nbd, mig));
  };

  {  // 1. While the mirrors copy (capped at 1 MiB/s, so far from ready).
    QemuVm t;
    fs::path nbd, mig;
    ASSERT_NO_FATAL_FAILURE(newTarget(t, nbd, mig));
    const pid_t target_pid = t.pid();
    migration::SourceMigration m;
    migration::MirrorOptions mo;
    mo.bandwidth_bytes_per_s = 1 << 20;
    auto s = migration::startMirrors(*src_.qmp, m, mirrorTargets(nbd), mo);
    ASSERT_TRUE(s) << s.error().describe();
    auto p = migration::progress(*src_.qmp);
    ASSERT_TRUE(p) << p.error().describe();
    ASSERT_EQ(p->jobs.size(), 2u);
    for (const auto& j : p->jobs) {
      EXPECT_FALSE(j.ready) << j.job_id;
    }
    auto c = migration::cancel(*src_.qmp, *src_.events, m, Clock::now() + 120s);
    ASSERT_TRUE(c) << c.error().describe();
    EXPECT_TRUE(m.mirrors.empty());
    EXPECT_EQ(c->mirrors_cancelled, 2u);
    EXPECT_EQ(c->nbd_nodes_deleted, 2u);
    EXPECT_EQ(c->migration_status, "none");
    EXPECT_FALSE(c->resumed);
    checkSourceAsBefore("mirroring");
    discardTarget(t, nbd, mig, target_pid);
  }

  {  // 2. During RAM pre-copy (capped at 2 MiB/s: 64 MiB of pattern take half a minute).
    QemuVm t;
    fs::path nbd, mig;
    ASSERT_NO_FATAL_FAILURE(newTarget(t, nbd, mig));
    const pid_t target_pid = t.pid();
    migration::SourceMigration m;
    auto s = migration::startMirrors(*src_.qmp, m, mirrorTargets(nbd), {});
    ASSERT_TRUE(s) << s.error().describe();
    auto ready = migration::waitMirrorsReady(*src_.qmp, *src_.events, m, Clock::now() + 300s);
    ASSERT_TRUE(ready) << ready.error().describe();
    migration::RamMigrationOptions ro;
    ro.max_bandwidth_bytes_per_s = 2 << 20;
    auto r = migration::startRamMigration(*src_.qmp, m, "unix:" + mig.string(), ro);
    ASSERT_TRUE(r) << r.error().describe();
    // Wait (bounded) until RAM is really flowing: an `active` MIGRATION event, then bytes.
    auto active = src_.events->waitFor(
        "MIGRATION", [](const qmp::QmpEvent& e) { return e.data.value("status", "") == "active"; },
        Clock::now() + 60s);
    ASSERT_TRUE(active) << active.error().describe();
    auto p = migration::progress(*src_.qmp);
    ASSERT_TRUE(p) << p.error().describe();
    EXPECT_EQ(p->status, "active");
    auto c = migration::cancel(*src_.qmp, *src_.events, m, Clock::now() + 120s);
    ASSERT_TRUE(c) << c.error().describe();
    EXPECT_EQ(c->migration_status, "cancelled");
    EXPECT_EQ(c->mirrors_cancelled, 2u);
    EXPECT_FALSE(c->resumed);
    auto after = migration::progress(*src_.qmp);
    ASSERT_TRUE(after) << after.error().describe();
    EXPECT_EQ(after->status, "cancelled");
    checkSourceAsBefore("precopy");
    discardTarget(t, nbd, mig, target_pid);
  }

  {  // 3. In the pre-switchover pause: vCPUs stopped by QEMU, mirrors still running.
    QemuVm t;
    fs::path nbd, mig;
    ASSERT_NO_FATAL_FAILURE(newTarget(t, nbd, mig));
    const pid_t target_pid = t.pid();
    migration::SourceMigration m;
    auto s = migration::startMirrors(*src_.qmp, m, mirrorTargets(nbd), {});
    ASSERT_TRUE(s) << s.error().describe();
    auto ready = migration::waitMirrorsReady(*src_.qmp, *src_.events, m, Clock::now() + 300s);
    ASSERT_TRUE(ready) << ready.error().describe();
    auto r = migration::startRamMigration(*src_.qmp, m, "unix:" + mig.string(), {});
    ASSERT_TRUE(r) << r.error().describe();
    auto paused = migration::waitPreSwitchover(*src_.qmp, *src_.events, m, Clock::now() + 300s);
    ASSERT_TRUE(paused) << paused.error().describe();
    EXPECT_NE(src_.status(), "running");
    auto c = migration::cancel(*src_.qmp, *src_.events, m, Clock::now() + 120s);
    ASSERT_TRUE(c) << c.error().describe();
    EXPECT_EQ(c->migration_status, "cancelled");
    // QEMU restarts the vCPUs it stopped for the switchover itself once the cancel is
    // through; the engine's `cont` is only the safety net.
    EXPECT_FALSE(c->resumed);
    checkSourceAsBefore("preswitchover");
    discardTarget(t, nbd, mig, target_pid);
  }

  {  // 4. The target dies during pre-copy (its site or the tunnel is lost).
    QemuVm t;
    fs::path nbd, mig;
    ASSERT_NO_FATAL_FAILURE(newTarget(t, nbd, mig));
    const pid_t target_pid = t.pid();
    migration::SourceMigration m;
    auto s = migration::startMirrors(*src_.qmp, m, mirrorTargets(nbd), {});
    ASSERT_TRUE(s) << s.error().describe();
    auto ready = migration::waitMirrorsReady(*src_.qmp, *src_.events, m, Clock::now() + 300s);
    ASSERT_TRUE(ready) << ready.error().describe();
    migration::RamMigrationOptions ro;
    ro.max_bandwidth_bytes_per_s = 2 << 20;
    auto r = migration::startRamMigration(*src_.qmp, m, "unix:" + mig.string(), ro);
    ASSERT_TRUE(r) << r.error().describe();
    auto active = src_.events->waitFor(
        "MIGRATION", [](const qmp::QmpEvent& e) { return e.data.value("status", "") == "active"; },
        Clock::now() + 60s);
    ASSERT_TRUE(active) << active.error().describe();
    t.kill();
    auto sw = migration::switchover(*src_.qmp, *src_.events, m, Clock::now() + 120s);
    ASSERT_FALSE(sw);
    EXPECT_EQ(sw.error().code, ErrorCode::Io) << sw.error().describe();
    std::cout << "[ info ] switchover with the target gone: " << sw.error().describe() << "\n";
    auto c = migration::cancel(*src_.qmp, *src_.events, m, Clock::now() + 120s);
    ASSERT_TRUE(c) << c.error().describe();
    EXPECT_EQ(c->migration_status, "failed");
    checkSourceAsBefore("targetlost");
    discardTarget(t, nbd, mig, target_pid);
  }

  // The guest never noticed: memory and disk patterns intact on the source.
  expectPatterns("source after four cancels", 5, {"5 0 64"});
  EXPECT_TRUE(src_.quit());
}

// A guest that writes its data disk as fast as it can, faster than the mirror copies (its
// speed capped at 4 MiB/s): the mirror would never be READY. The engine throttles the
// guest's writes to that disk until it is; a cancel lifts the throttle; no write is lost.
TEST_F(MigrationTest, MirrorsConvergeByThrottlingAGuestThatOutwritesThem) {
  std::map<std::string, std::string> src_disks;
  ASSERT_NO_FATAL_FAILURE(sourceDisks(tmp_.path / "src-disks", src_disks));
  ASSERT_NO_FATAL_FAILURE(bootSource(src_disks));
  auto w = guest("EXEC vguest-diskwriter start /dev/vdb 48 8 0");  // 0: no rate limit
  ASSERT_EQ(w.empty() ? "" : w.back(), "EXIT 0") << joined(w);

  QemuVm t;
  std::map<std::string, std::string> dst_disks;
  ASSERT_NO_FATAL_FAILURE(targetDisks(tmp_.path / "dst", dst_disks));
  ASSERT_NO_FATAL_FAILURE(startTarget("dst", dst_disks, t));
  const fs::path nbd = tmp_.path / "dst-nbd.sock";
  ASSERT_NO_FATAL_FAILURE(prepareTarget(t, nbd, tmp_.path / "dst-mig.sock"));
  migration::SourceMigration m;
  migration::MirrorOptions mo;
  mo.bandwidth_bytes_per_s = 4 << 20;
  mo.converge.window_s = 2;
  auto started = migration::startMirrors(*src_.qmp, m, mirrorTargets(nbd), mo);
  ASSERT_TRUE(started) << started.error().describe();
  const auto t0 = Clock::now();
  auto ready = migration::waitMirrorsReady(*src_.qmp, *src_.events, m, Clock::now() + 240s);
  std::cout << "[ info ] mirrors ready after " << secondsSince(t0) << " s\n";
  const auto& data = m.mirrors.at(1);
  for (const auto& step : data.throttle_steps) {
    std::cout << "[ info ] at " << step.at_s << " s level " << step.level << ": "
              << step.throttle.bytes_per_s << " B/s, " << step.throttle.writes_per_s
              << " writes/s (" << step.why << ")\n";
  }
  ASSERT_TRUE(ready) << ready.error().describe();
  ASSERT_EQ(data.device_id, "disk-disk2");
  ASSERT_FALSE(data.throttle_steps.empty()) << "the writer never outran the copy";
  EXPECT_TRUE(m.mirrors.at(0).throttle_steps.empty()) << "the boot disk is not written";
  auto on = qmp::queryWriteThrottle(*src_.qmp, "disk-disk2");
  ASSERT_TRUE(on) << on.error().describe();
  EXPECT_EQ(on->first, data.convergence.throttle().bytes_per_s);
  EXPECT_GT(on->first, 0u);

  auto c = migration::cancel(*src_.qmp, *src_.events, m, Clock::now() + 120s);
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_EQ(c->throttles_lifted, 1u);
  auto off = qmp::queryWriteThrottle(*src_.qmp, "disk-disk2");
  ASSERT_TRUE(off) << off.error().describe();
  EXPECT_EQ(*off, (std::pair<uint64_t, uint64_t>{0, 0}));
  auto check = checkResult(guest("EXEC vguest-diskwriter check"));
  ASSERT_TRUE(check) << check.error().describe();
  EXPECT_TRUE(check->pass) << check->line;
  auto a = migration::abortTarget(*t.qmp);
  EXPECT_TRUE(a) << a.error().describe();
  t.kill();
  EXPECT_TRUE(src_.quit());
}

// Benchmark for docs/migration/qemu-engine.md (disabled: run with
// --gtest_also_run_disabled_tests): the two copy modes over a link with a 10 ms one-way
// delay (20 ms round trip) for NBD and the migration stream alike. The guest hops source ->
// A with background mirrors, then A -> B with write-blocking mirrors; in each hop it writes
// 16 MiB to its data disk while the mirrors are ready (what active mirroring costs the
// guest) and 16 MiB more across the switchover (what background mirroring costs the
// downtime).
TEST_F(MigrationTest, DISABLED_CopyModesOverDelayedLink) {
  std::map<std::string, std::string> src_disks;
  ASSERT_NO_FATAL_FAILURE(sourceDisks(tmp_.path / "src-disks", src_disks));
  ASSERT_NO_FATAL_FAILURE(bootSource(src_disks));
  auto ms = guest("EXEC vguest-mempat start 64 3");
  ASSERT_EQ(ms.empty() ? "" : ms.back(), "EXIT 0") << joined(ms);
  auto dw = guest("EXEC vguest-diskpat write /dev/vdb 3 0 32");
  ASSERT_EQ(dw.empty() ? "" : dw.back(), "EXIT 0") << joined(dw);
  const auto one_way = std::chrono::microseconds(10000);

  QemuVm a, b;
  QemuVm* from = &src_;
  int hop = 0;
  for (auto mode : {migration::CopyMode::Background, migration::CopyMode::WriteBlocking}) {
    ++hop;
    const std::string name =
        mode == migration::CopyMode::Background ? "background" : "write_blocking";
    QemuVm& to = hop == 1 ? a : b;
    std::map<std::string, std::string> disks;
    const std::string label = hop == 1 ? "hopA" : "hopB";
    ASSERT_NO_FATAL_FAILURE(targetDisks(tmp_.path / (label + "-disks"), disks));
    ASSERT_NO_FATAL_FAILURE(startTarget(label, disks, to, hop == 1 ? "vmtap-d" : "vmtap-e"));
    const fs::path nbd = tmp_.path / (label + "-nbd.sock");
    const fs::path mig = tmp_.path / (label + "-mig.sock");
    ASSERT_NO_FATAL_FAILURE(prepareTarget(to, nbd, mig));
    DelayProxy nbd_wan(tmp_.path / (label + "-nbd-wan.sock"), nbd, one_way);
    ASSERT_EQ(nbd_wan.start(), "");
    DelayProxy mig_wan(tmp_.path / (label + "-mig-wan.sock"), mig, one_way);
    ASSERT_EQ(mig_wan.start(), "");

    migration::SourceMigration m;
    migration::MirrorOptions mo;
    mo.copy_mode = mode;
    const auto t0 = Clock::now();
    auto s = migration::startMirrors(*from->qmp, m,
                                     mirrorTargets(tmp_.path / (label + "-nbd-wan.sock")), mo);
    ASSERT_TRUE(s) << s.error().describe();
    auto ready = migration::waitMirrorsReady(*from->qmp, *from->events, m, Clock::now() + 600s);
    ASSERT_TRUE(ready) << ready.error().describe();
    note(name + "_mirrors_ready_s", secondsSince(t0), "s");
    const auto tw = Clock::now();
    auto w = guest("EXEC vguest-diskpat write /dev/vdb " + std::to_string(10 + hop) + " 32 16");
    ASSERT_EQ(w.empty() ? "" : w.back(), "EXIT 0") << joined(w);
    note(name + "_guest_write_16mib_while_ready_s", secondsSince(tw), "s");

    std::string err;
    auto span_conn = GuestConn::open(netns_->name(), err);
    ASSERT_TRUE(span_conn) << err;
    const std::string span_cmd =
        "EXEC vguest-diskpat write /dev/vdb " + std::to_string(20 + hop) + " 48 16";
    auto span = std::async(std::launch::async, [c = std::move(*span_conn), span_cmd]() mutable {
      return c.command(span_cmd);
    });
    migration::RamMigrationOptions ro;
    ro.max_total_time = 600s;
    auto r = migration::startRamMigration(
        *from->qmp, m, "unix:" + (tmp_.path / (label + "-mig-wan.sock")).string(), ro);
    ASSERT_TRUE(r) << r.error().describe();
    auto sw = migration::switchover(*from->qmp, *from->events, m, Clock::now() + 600s);
    ASSERT_TRUE(sw) << sw.error().describe();
    auto done = migration::waitIncomingDone(*to.qmp, *to.events, Clock::now() + 60s);
    ASSERT_TRUE(done) << done.error().describe();
    auto fin = migration::finishTarget(*to.qmp);
    ASSERT_TRUE(fin) << fin.error().describe();
    note(name + "_total_s", secondsSince(t0), "s");
    note(name + "_qemu_downtime_ms", static_cast<double>(sw->downtime_ms), "ms");
    note(name + "_mirror_complete_in_pause_ms", sw->mirror_complete_ms, "ms");
    note(name + "_ram_transferred_bytes", static_cast<double>(sw->ram_transferred), "B");
    note(name + "_disk_transferred_bytes", static_cast<double>(sw->disk_transferred), "B");
    ASSERT_EQ(span.wait_for(300s), std::future_status::ready);
    auto sr = span.get();
    EXPECT_EQ(sr.empty() ? "" : sr.back(), "EXIT 0") << joined(sr);
    expectPatterns(
        name, 3,
        {"3 0 32", std::to_string(10 + hop) + " 32 16", std::to_string(20 + hop) + " 48 16"});
    EXPECT_TRUE(from->quit());
    from = &to;
  }
}

}  // namespace
}  // namespace vandra::migtest
