// The test guest (guest/) as the agent will use it: built by guest/build.sh, its OVA
// imported with the vandra CLI, booted under QEMU TCG with a tap NIC inside a network
// namespace this test creates, and driven over TCP through vguest-seqd.
//   GuestBoot.ServicesAnswerAndCheckersCatchCorruption: direct kernel boot (-kernel/-initrd
//     next to the OVA, so the test can add vandra.mempat); echo, the counter stream, probes,
//     and the memory and disk pattern checkers, which must report PASS on intact data and
//     FAIL at the exact offset of a byte corrupted from inside or outside the guest; the
//     migration workload's dirtier and disk writer PASS, and FAIL naming the page or block
//     when one write is lost on purpose (-L) or a byte of the image is flipped.
//   GuestBoot.OvaBootsFromItsOwnDisk: the user's path, no kernel given: the imported disks as
//     qcow2 overlays, argv from vandra::qemu::buildCommandLine, SeaBIOS -> SYSLINUX on disk1.
// Both attach the disks in the OVA's order: disk1 (boot) is /dev/vda, disk2 (data) /dev/vdb.
// Set VANDRA_GUEST_DIR to a folder guest/build.sh filled to skip the build.
#include "guest_test_support.h"

namespace vandra {
namespace {

TEST(GuestBoot, ServicesAnswerAndCheckersCatchCorruption) {
  if (std::string why = missingForBoot(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  TempDir tmp;
  ASSERT_FALSE(tmp.path.empty());
  ImportedGuest g;
  ASSERT_EQ(importGuest(tmp.path, g), "");

  // The VmSpec and SLA the OVA carries: disk1 the boot disk first, disk2 the data disk.
  const auto& vs = g.spec["virtual_systems"][0];
  EXPECT_EQ(vs["vcpus"], 1);
  const int memory_mib = vs["memory_mib"].get<int>();
  EXPECT_GE(memory_mib, 128);
  EXPECT_EQ(vs["firmware"], "bios");
  EXPECT_EQ(vs["sla"]["downtime_budget_ms"], 1000);
  EXPECT_EQ(vs["sla"]["jurisdictions"], nlohmann::json::array({"EU"}));
  EXPECT_EQ(vs["sla"]["mobility"], "automatic");
  ASSERT_EQ(vs["disks"].size(), 2u);
  EXPECT_EQ(vs["disks"][0]["id"], "disk1");
  EXPECT_EQ(vs["disks"][0]["unit"], 0);
  EXPECT_EQ(vs["disks"][1]["id"], "disk2");
  EXPECT_EQ(vs["disks"][1]["unit"], 1);
  fs::path boot_qcow = g.import / vs["disks"][0]["file"].get<std::string>();
  fs::path data_qcow = g.import / vs["disks"][1]["file"].get<std::string>();
  // The data disk as raw, so that the test can corrupt it from the host.
  fs::path disk = tmp.path / "disk2.raw";
  Outcome conv = run({"qemu-img", "convert", "-O", "raw", data_qcow.string(), disk.string()});
  ASSERT_EQ(conv.code, 0) << conv.err;

  TapNetns netns("vandra-gt-" + std::to_string(::getpid()));
  bool cannot = false;
  if (std::string e = netns.create(cannot); !e.empty()) {
    if (cannot) {
      VANDRA_SKIP_OR_FAIL(e);
    }
    FAIL() << e;
  }
  const std::string& ns = netns.name();

  // QEMU, TCG only; `ip netns exec` execs it, so the pid is QEMU's own. The kernel is given
  // (to add vandra.mempat); the disks are attached in the OVA's order, the boot disk
  // read-only, so the data disk is /dev/vdb as when the VM boots from disk1.
  fs::path log = tmp.path / "serial.log";
  const auto t0 = Clock::now();
  auto qemu =
      Subprocess::start({"ip",
                         "netns",
                         "exec",
                         ns,
                         "qemu-system-x86_64",
                         "-accel",
                         "tcg",
                         "-m",
                         std::to_string(memory_mib),
                         "-smp",
                         "1",
                         "-nographic",
                         "-nodefaults",
                         "-monitor",
                         "none",
                         "-serial",
                         "file:" + log.string(),
                         "-no-reboot",
                         "-kernel",
                         g.vmlinuz.string(),
                         "-initrd",
                         g.initrd.string(),
                         "-append",
                         std::string("console=ttyS0 quiet panic=-1 vandra.ip=") + kGuestIp +
                             "/24 vandra.port=" + std::to_string(kPort) + " vandra.mempat=16:99",
                         "-drive",
                         "file=" + boot_qcow.string() + ",if=virtio,format=qcow2,readonly=on",
                         "-drive",
                         "file=" + disk.string() + ",if=virtio,format=raw,cache=writeback",
                         "-netdev",
                         std::string("tap,id=n0,ifname=") + kTap + ",script=no,downscript=no",
                         "-device",
                         "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:0a:0a:0a"},
                        {.capture_stdout = false, .capture_stderr = true});
  ASSERT_TRUE(qemu) << qemu.error().describe();

  // Readiness: poll the serial log for the init's verdict, with a deadline.
  Boot boot = waitForReady(log, qemu->pid(), t0);
  ASSERT_TRUE(boot.ready) << "guest not ready after " << boot.seconds << " s; serial log:\n"
                          << boot.serial;
  std::cout << "[ boot ] TCG direct kernel boot to VANDRA-GUEST-READY: " << boot.seconds << " s\n";
  RecordProperty("tcg_boot_to_ready_ms", static_cast<int>(boot.seconds * 1000));

  std::string err;
  auto ctl = Conn::open(ns, err);
  ASSERT_TRUE(ctl) << err;

  // PING / INFO.
  auto pong = ctl->command("PING 424242");
  ASSERT_EQ(pong.size(), 1u);
  EXPECT_EQ(pong[0].rfind("PONG 424242 ", 0), 0u) << pong[0];
  auto info = ctl->command("INFO");
  ASSERT_EQ(info.size(), 1u);
  EXPECT_NE(info[0].find("mem_total_kib="), std::string::npos) << info[0];

  // Only the guest's own programs may run.
  auto refused = ctl->command("EXEC sh -c reboot");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].rfind("ERR ", 0), 0u) << refused[0];

  {  // ECHO: random bytes come back unchanged.
    auto e = Conn::open(ns, err);
    ASSERT_TRUE(e) << err;
    ASSERT_TRUE(e->send("ECHO\n"));
    EXPECT_EQ(e->line(), "OK ECHO");
    std::mt19937_64 rng(7);
    for (int round = 0; round < 8; ++round) {
      std::string chunk(32768, '\0');
      for (auto& ch : chunk) {
        ch = static_cast<char>(rng() & 0xFF);
      }
      ASSERT_TRUE(e->send(chunk));
      std::string back(chunk.size(), '\0');
      ASSERT_TRUE(e->exact(back.data(), back.size()));
      ASSERT_EQ(back, chunk) << "echo round " << round;
    }
  }

  {  // SEQ: 65536 consecutive records, counters +1 each, guest clock never going back.
    auto s = Conn::open(ns, err);
    ASSERT_TRUE(s) << err;
    ASSERT_TRUE(s->send("SEQ 1000000\n"));
    EXPECT_EQ(s->line(), "OK SEQ");
    std::vector<unsigned char> recs(16 * 65536);
    ASSERT_TRUE(s->exact(recs.data(), recs.size()));
    uint64_t last_ns = 0;
    for (size_t i = 0; i < 65536; ++i) {
      ASSERT_EQ(be64(&recs[16 * i]), 1000000 + i) << "record " << i;
      uint64_t t = be64(&recs[16 * i + 8]);
      ASSERT_GE(t, last_ns) << "record " << i;
      last_ns = t;
    }
  }

  {  // SEQ with pacing: one record per millisecond on the guest's absolute clock.
    auto s = Conn::open(ns, err);
    ASSERT_TRUE(s) << err;
    ASSERT_TRUE(s->send("SEQ 5 1000\n"));
    EXPECT_EQ(s->line(), "OK SEQ");
    std::vector<unsigned char> recs(16 * 100);
    ASSERT_TRUE(s->exact(recs.data(), recs.size()));
    for (size_t i = 0; i < 100; ++i) {
      ASSERT_EQ(be64(&recs[16 * i]), 5 + i) << "record " << i;
    }
    const uint64_t span_ns = be64(&recs[16 * 99 + 8]) - be64(&recs[8]);
    // Record k carries a time in [slot k, slot k + 1 ms] and slots are >= 1 ms apart.
    EXPECT_GE(span_ns, 98'000'000u) << "99 intervals of 1 ms took " << span_ns << " ns";
  }

  {  // PROBE: each 8-byte probe answered at once with itself and the guest clock.
    auto p = Conn::open(ns, err);
    ASSERT_TRUE(p) << err;
    ASSERT_TRUE(p->send("PROBE\n"));
    EXPECT_EQ(p->line(), "OK PROBE");
    uint64_t last_ns = 0;
    for (uint64_t v = 0xA5A5A5A500000000ULL; v < 0xA5A5A5A500000000ULL + 50; ++v) {
      std::array<unsigned char, 8> q{};
      for (int i = 0; i < 8; ++i) {
        q[static_cast<size_t>(i)] = static_cast<unsigned char>(v >> (56 - 8 * i));
      }
      ASSERT_TRUE(p->send(std::string_view(reinterpret_cast<const char*>(q.data()), q.size())));
      std::array<unsigned char, 16> a{};
      ASSERT_TRUE(p->exact(a.data(), a.size()));
      EXPECT_EQ(be64(a.data()), v);
      EXPECT_GE(be64(a.data() + 8), last_ns);
      last_ns = be64(a.data() + 8);
    }
  }

  // Disk: write, check, wrong seed, host-side check of the image, host-side corruption.
  auto w = ctl->command("EXEC vguest-diskpat write /dev/vdb 7 0 16");
  ASSERT_EQ(w.back(), "EXIT 0") << joined(w);
  EXPECT_EQ(outLine(w, "WROTE"), "WROTE bytes=16777216 seed=7");
  auto c = ctl->command("EXEC vguest-diskpat check /dev/vdb 7 0 16");
  EXPECT_EQ(c.back(), "EXIT 0") << joined(c);
  EXPECT_EQ(outLine(c, "PASS"), "PASS bytes=16777216 seed=7") << joined(c);
  auto wrong = ctl->command("EXEC vguest-diskpat check /dev/vdb 8 0 16");
  EXPECT_EQ(wrong.back(), "EXIT 1") << joined(wrong);
  EXPECT_EQ(outLine(wrong, "FAIL").rfind("FAIL offset=0 ", 0), 0u) << joined(wrong);
  Outcome host = run({g.diskpat.string(), "check", disk.string(), "7", "0", "16"});
  EXPECT_EQ(host.code, 0) << host.out << host.err;
  EXPECT_EQ(host.out, "PASS bytes=16777216 seed=7\n") << "guest writes did not reach the image";
  const off_t bad_disk = 5 * 1048576 + 4321;
  {
    UniqueFd img(::open(disk.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(img.valid());
    unsigned char b = 0;
    ASSERT_EQ(::pread(img.get(), &b, 1, bad_disk), 1);
    b = static_cast<unsigned char>(b ^ 0x40);
    ASSERT_EQ(::pwrite(img.get(), &b, 1, bad_disk), 1);
    ASSERT_EQ(::fsync(img.get()), 0);
  }
  auto corrupted = ctl->command("EXEC vguest-diskpat check /dev/vdb 7 0 16");
  EXPECT_EQ(corrupted.back(), "EXIT 1") << joined(corrupted);
  EXPECT_EQ(outLine(corrupted, "FAIL").rfind("FAIL offset=" + std::to_string(bad_disk) + " ", 0),
            0u)
      << joined(corrupted);

  // Memory: the resident pattern init started (vandra.mempat=16:99) is intact.
  auto boot_status = ctl->command("EXEC vguest-mempat status");
  EXPECT_NE(outLine(boot_status, "STATUS").find(" mib=16 seed=99"), std::string::npos)
      << joined(boot_status);
  auto boot_check = ctl->command("EXEC vguest-mempat check");
  EXPECT_EQ(outLine(boot_check, "PASS"), "PASS bytes=16777216 seed=99") << joined(boot_check);

  // A second resident pattern on its own socket: check, wrong seed, a flipped byte found at
  // its offset.
  auto ms = ctl->command("EXEC vguest-mempat start 32 42 -s /run/m2.sock");
  ASSERT_EQ(ms.back(), "EXIT 0") << joined(ms);
  auto mc = ctl->command("EXEC vguest-mempat check -s /run/m2.sock");
  EXPECT_EQ(mc.back(), "EXIT 0") << joined(mc);
  EXPECT_EQ(outLine(mc, "PASS"), "PASS bytes=33554432 seed=42") << joined(mc);
  auto mw = ctl->command("EXEC vguest-mempat check 43 -s /run/m2.sock");
  EXPECT_EQ(mw.back(), "EXIT 1") << joined(mw);
  EXPECT_EQ(outLine(mw, "FAIL").rfind("FAIL offset=0 ", 0), 0u) << joined(mw);
  auto mx = ctl->command("EXEC vguest-mempat corrupt 1000003 -s /run/m2.sock");
  EXPECT_EQ(mx.back(), "EXIT 0") << joined(mx);
  auto mf = ctl->command("EXEC vguest-mempat check -s /run/m2.sock");
  EXPECT_EQ(mf.back(), "EXIT 1") << joined(mf);
  EXPECT_EQ(outLine(mf, "FAIL").rfind("FAIL offset=1000003 ", 0), 0u) << joined(mf);
  auto mstop = ctl->command("EXEC vguest-mempat stop -s /run/m2.sock");
  EXPECT_EQ(mstop.back(), "EXIT 0") << joined(mstop);
  auto boot_again = ctl->command("EXEC vguest-mempat check");
  EXPECT_EQ(outLine(boot_again, "PASS"), "PASS bytes=16777216 seed=99") << joined(boot_again);

  // Dirtier: 2 s at 40 MB/s over 16 MiB; the token bucket never exceeds the target.
  auto d = ctl->command("EXEC vguest-dirtier 16 40 2");
  ASSERT_EQ(d.back(), "EXIT 0") << joined(d);
  std::string done = outLine(d, "DONE");
  auto pos = done.find("rate_mbps=");
  ASSERT_NE(pos, std::string::npos) << joined(d);
  double rate = std::strtod(done.c_str() + pos + 10, nullptr);
  EXPECT_LE(rate, 41.0) << done;
  EXPECT_GE(rate, 20.0) << done;

  // SPAWN / KILL: a background dirtier, stopped by pid.
  auto sp = ctl->command("SPAWN vguest-dirtier 8 10");
  ASSERT_EQ(sp.size(), 1u);
  ASSERT_EQ(sp[0].rfind("PID ", 0), 0u) << sp[0];
  auto k = ctl->command("KILL " + sp[0].substr(4) + " 15");
  EXPECT_EQ(k, std::vector<std::string>{"OK"});

  // The migration workload (vguest_stamp.h): every page the dirtier and every block the
  // disk writer wrote is verified, and one write lost on purpose (-L N) is found by name.
  auto started = [&](const std::string& cmd) {
    auto r = ctl->command("EXEC " + cmd);
    EXPECT_EQ(r.empty() ? "" : r.back(), "EXIT 0") << cmd << "\n" << joined(r);
    return outLine(r, "STARTED ").rfind("STARTED pid=", 0) == 0;
  };
  // Waits (deadline 120 s) until the writer at @p sock made @p n writes.
  auto waitWrites = [&](const std::string& prog, const std::string& sock, uint64_t n) {
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    std::string st;
    while (Clock::now() < deadline) {
      st = outLine(ctl->command("EXEC " + prog + " status -s " + sock), "STATUS");
      auto p = st.find(" writes=");
      if (p != std::string::npos && std::strtoull(st.c_str() + p + 8, nullptr, 10) >= n) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // poll interval
    }
    ADD_FAILURE() << prog << " made fewer than " << n << " writes: " << st;
    return false;
  };
  auto verdict = [&](const std::string& prog, const std::string& sock, const char* code) {
    auto r = ctl->command("EXEC " + prog + " check -s " + sock);
    EXPECT_EQ(r.empty() ? "" : r.back(), std::string("EXIT ") + code) << joined(r);
    return outLine(r, code[0] == '0' ? "PASS" : "FAIL");
  };
  // Memory: 8 MiB = 2048 pages at 20 MB/s; verified after every page was rewritten.
  ASSERT_TRUE(started("vguest-dirtier start -s /run/d1.sock 8 20"));
  ASSERT_TRUE(waitWrites("vguest-dirtier", "/run/d1.sock", 3000));
  const std::string mem_ok = verdict("vguest-dirtier", "/run/d1.sock", "0");
  EXPECT_EQ(mem_ok.rfind("PASS pages=2048 writes=", 0), 0u) << mem_ok;
  EXPECT_EQ(verdict("vguest-dirtier", "/run/d1.sock", "0"), mem_ok) << "verdict changed";
  // Write 3000 lost: page 2999 % 2048 = 951 stays at generation 1 where 2 is due (found by
  // the final check, or by the writer when it comes back to the page: the same words).
  ASSERT_TRUE(started("vguest-dirtier start -L 3000 -s /run/d2.sock 8 20"));
  EXPECT_EQ(verdict("vguest-dirtier", "/run/d2.sock", "1")
                .rfind("FAIL page=951 want_gen=2 got_gen=1 reason=generation ", 0),
            0u);
  // Disk: 4 MiB from 32 MiB (blocks 8192..9215, away from diskpat's 0..16 MiB), 2 MiB/s.
  ASSERT_TRUE(started("vguest-diskwriter start -s /run/w1.sock /dev/vdb 32 4 2048"));
  ASSERT_TRUE(waitWrites("vguest-diskwriter", "/run/w1.sock", 1100));
  const std::string disk_ok = verdict("vguest-diskwriter", "/run/w1.sock", "0");
  EXPECT_EQ(disk_ok.rfind("PASS blocks=1024 writes=", 0), 0u) << disk_ok;
  {  // The check reads the virtual disk (O_DIRECT): a byte flipped in the image is found.
    UniqueFd img(::open(disk.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(img.valid());
    const off_t off = (32 << 20) + 5 * 4096 + 1000;
    unsigned char b = 0;
    ASSERT_EQ(::pread(img.get(), &b, 1, off), 1);
    b = static_cast<unsigned char>(b ^ 0x01);
    ASSERT_EQ(::pwrite(img.get(), &b, 1, off), 1);
    ASSERT_EQ(::fsync(img.get()), 0);
  }
  const std::string disk_bad = verdict("vguest-diskwriter", "/run/w1.sock", "1");
  EXPECT_EQ(disk_bad.rfind("FAIL block=8197 ", 0), 0u) << disk_bad;
  EXPECT_NE(disk_bad.find(" reason=body "), std::string::npos) << disk_bad;
  // Write 700 lost: block 36 MiB / 4 KiB + 699 = 9915 still holds generation 0.
  ASSERT_TRUE(started("vguest-diskwriter start -L 700 -s /run/w2.sock /dev/vdb 36 4 2048"));
  EXPECT_EQ(verdict("vguest-diskwriter", "/run/w2.sock", "1")
                .rfind("FAIL block=9915 want_gen=1 got_gen=0 reason=generation ", 0),
            0u);
  for (const auto& [prog, sock] : {std::pair{"vguest-dirtier", "/run/d1.sock"},
                                   {"vguest-dirtier", "/run/d2.sock"},
                                   {"vguest-diskwriter", "/run/w1.sock"},
                                   {"vguest-diskwriter", "/run/w2.sock"}}) {
    auto r = ctl->command(std::string("EXEC ") + prog + " stop -s " + sock);
    EXPECT_EQ(outLine(r, "DONE").rfind("DONE writes=", 0), 0u) << joined(r);
  }
}

// The user's path end to end: the OVA imported with the CLI, its disks as qcow2 overlays on
// the imported images (as the agent keeps them), the argv the agent's builder makes from the
// imported VmSpec (no -kernel/-initrd: SeaBIOS boots disk1, bootindex 1, whose SYSLINUX loads
// the kernel), and the service answering on the tap; the data disk is /dev/vdb.
TEST(GuestBoot, OvaBootsFromItsOwnDisk) {
  if (std::string why = missingForBoot(); !why.empty()) {
    VANDRA_SKIP_OR_FAIL(why);
  }
  TempDir tmp;
  ASSERT_FALSE(tmp.path.empty());
  ImportedGuest g;
  ASSERT_EQ(importGuest(tmp.path, g), "");
  auto spec = ovf::vmSpecFromJson(g.spec);
  ASSERT_TRUE(spec) << spec.error().describe();
  ASSERT_EQ(spec->virtual_systems.size(), 1u);
  const ovf::VirtualSystemSpec& vs = spec->virtual_systems[0];
  ASSERT_EQ(vs.disks.size(), 2u);
  EXPECT_EQ(vs.disks[0].id, "disk1");
  EXPECT_EQ(vs.disks[1].id, "disk2");
  EXPECT_EQ(vs.firmware, ovf::Firmware::Bios);
  ASSERT_TRUE(qemu::startupQmpCommands(vs).empty()) << "the test would have to send them and cont";

  qemu::QemuRunConfig cfg;
  cfg.accel = "tcg";
  cfg.qmp_socket = (tmp.path / "qmp.sock").string();
  cfg.qmp_event_socket = (tmp.path / "qmp-ev.sock").string();
  cfg.serial_log = (tmp.path / "serial.log").string();
  cfg.pidfile = (tmp.path / "qemu.pid").string();
  for (const auto& d : vs.disks) {
    ASSERT_TRUE(d.file.has_value()) << d.id;
    const fs::path overlay = tmp.path / (d.id + "-overlay.qcow2");
    Outcome ov = run({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                      (g.import / *d.file).string(), overlay.string()});
    ASSERT_EQ(ov.code, 0) << ov.err;
    cfg.disk_overlays[d.id] = overlay.string();
  }
  cfg.nics.push_back({kTap, std::string("52:54:00:0a:0a:0b")});
  auto argv = qemu::buildCommandLine(vs, cfg);
  ASSERT_TRUE(argv) << argv.error().describe();
  for (const char* direct : {"-kernel", "-initrd", "-append"}) {
    ASSERT_EQ(std::find(argv->begin(), argv->end(), direct), argv->end()) << direct;
  }
  // SeaBIOS must try disk1 (the boot disk) first, not the blank disk2.
  const auto boot_dev = std::find_if(argv->begin(), argv->end(), [](const std::string& a) {
    return a.find("drive=fmt-disk1,") != std::string::npos;
  });
  ASSERT_NE(boot_dev, argv->end());
  EXPECT_NE(boot_dev->find(",bootindex=1"), std::string::npos) << *boot_dev;

  TapNetns netns("vandra-gtd-" + std::to_string(::getpid()));
  bool cannot = false;
  if (std::string e = netns.create(cannot); !e.empty()) {
    if (cannot) {
      VANDRA_SKIP_OR_FAIL(e);
    }
    FAIL() << e;
  }
  std::vector<std::string> cmd{"ip", "netns", "exec", netns.name()};
  cmd.insert(cmd.end(), argv->begin(), argv->end());
  const auto t0 = Clock::now();
  auto qemu = Subprocess::start(cmd, {.capture_stdout = false, .capture_stderr = true});
  ASSERT_TRUE(qemu) << qemu.error().describe();

  Boot boot = waitForReady(cfg.serial_log, qemu->pid(), t0);
  ASSERT_TRUE(boot.ready) << "guest not ready after " << boot.seconds << " s; serial log:\n"
                          << boot.serial;
  std::cout << "[ boot ] TCG boot from disk1 (SeaBIOS, SYSLINUX) to VANDRA-GUEST-READY: "
            << boot.seconds << " s\n";
  RecordProperty("tcg_disk_boot_to_ready_ms", static_cast<int>(boot.seconds * 1000));
  // The boot loader ran: its banner reaches ttyS0 through SERIAL in syslinux.cfg. (The
  // kernel line on the disk is not quiet, so kernel messages share the log with init's.)
  EXPECT_NE(boot.serial.find("SYSLINUX"), std::string::npos) << boot.serial;

  std::string err;
  auto ctl = Conn::open(netns.name(), err);
  ASSERT_TRUE(ctl) << err;
  auto pong = ctl->command("PING disk-boot");
  ASSERT_EQ(pong.size(), 1u);
  EXPECT_EQ(pong[0].rfind("PONG disk-boot ", 0), 0u) << pong[0];

  // The data disk is /dev/vdb: a pattern written there is found by the host in disk2's
  // overlay (read while QEMU holds it: -U), from the first byte.
  auto w = ctl->command("EXEC vguest-diskpat write /dev/vdb 11 0 4");
  ASSERT_EQ(w.back(), "EXIT 0") << joined(w);
  auto c = ctl->command("EXEC vguest-diskpat check /dev/vdb 11 0 4");
  EXPECT_EQ(outLine(c, "PASS"), "PASS bytes=4194304 seed=11") << joined(c);
  const fs::path data = tmp.path / "disk2-after.raw";
  Outcome conv =
      run({"qemu-img", "convert", "-U", "-O", "raw", cfg.disk_overlays["disk2"], data.string()});
  ASSERT_EQ(conv.code, 0) << conv.err;
  Outcome host = run({g.diskpat.string(), "check", data.string(), "11", "0", "4"});
  EXPECT_EQ(host.out, "PASS bytes=4194304 seed=11\n")
      << host.err << "the guest's /dev/vdb is not disk2";
}

}  // namespace
}  // namespace vandra
