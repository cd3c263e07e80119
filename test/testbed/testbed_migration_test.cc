// Live migrations between the testbed's sites through their agents and the site tunnel: the
// end-to-end story dc -> cloud-eu -> dc with the verifying workload and a client session, a site
// that holds the base images, and the bandwidth caps. Needs root, network namespaces and a
// built test guest (VANDRA_GUEST_DIR): skipped otherwise, a failure in CI (CI=true).
#include "testbed_migration.h"

#include "vandra/agent/image_store.h"

namespace vandra::testbed {
namespace {

// The end-to-end story: a guest with a disk and a dirtying workload migrates
// dc -> cloud-eu -> dc over the emulated WAN through the site tunnel while a client at dc holds
// a TCP session; afterwards the memory and disk patterns pass, the session lost nothing, the
// guest kept its IP and MAC, and neither site keeps anything of the migrations.
TEST_F(TestbedMigration, DcToCloudToDcKeepsGuestSessionAndData) {
  bringUp("wan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  auto& dc = *dc_;
  auto& cloud = *cloud_;
  auto& conn = conn_;
  const std::string tap = agent::tapName("web1", 0);
  auto mac = learnedMac(tb_.site("dc")->netns, tap);
  ASSERT_TRUE(mac) << mac.error().describe();
  EXPECT_PRED1(exitedZero, execOut(*conn, "vguest-mempat start 32 7"));
  EXPECT_PRED1(exitedZero, execOut(*conn, "vguest-diskpat write /dev/vdb 5 0 16"));
  // Read back through the page cache: 4096 pages of RAM that the disk mirror sends as blocks.
  EXPECT_PRED1(exitedZero, execOut(*conn, "vguest-files cache /dev/vdb 16"));
  WorkloadOptions wo;  // dirtier 16 MiB at 10 MB/s, disk writer 56..64 MiB: both ways
  wo.dirty_wss_mib = 16;
  wo.dirty_rate_mbps = 10;
  ASSERT_NO_FATAL_FAILURE(startWorkload(wo));
  auto probe = SessionProbe::start(tb_.client_netns, "10.10.0.10", 7000, 10ms, Clock::now() + 30s);
  ASSERT_TRUE(probe) << probe.error().describe();

  // dc -> cloud-eu.
  const auto out = migrateAndWait(dc, "web1", "cloud-eu");
  ASSERT_EQ(out.value("phase", ""), "done") << out.dump(2);
  EXPECT_GT(out["report"].value("downtime_ms", 0), 0);
  // The migration stream carried QEMU's RAM (and device state); compressed, the wire may
  // carry less than that (ADR 0026).
  EXPECT_GE(out["report"].value("plain_bytes_migration", uint64_t{0}),
            out["report"].value("ram_bytes", uint64_t{0}));
  EXPECT_GT(out["report"].value("wan_bytes", uint64_t{0}), 0U);
  // cloud-eu held nothing of the VM: the pages the guest had read from its disk went as
  // references to the blocks the disk mirror had just sent (ADR 0030), not a second time.
  const auto& refs = out["report"]["content_refs"];
  EXPECT_FALSE(refs.value("sent_blocks", nlohmann::json::array()).empty()) << refs.dump();
  EXPECT_GT(refs.value("refs", uint64_t{0}), 3500U) << refs.dump();
  std::cout << "content refs: " << refs.dump() << "\n";
  auto there = cloud.get("/v1/vms/web1");
  ASSERT_TRUE(there) << there.error().describe();
  EXPECT_EQ((*there)["state"], "running");
  EXPECT_EQ(dc.get("/v1/vms/web1").error().code, ErrorCode::NotFound);
  EXPECT_EQ(learnedMac(tb_.site("cloud-eu")->netns, tap).value_or("none"), *mac);
  auto theirs = cloud.get("/v1/migrations?vm=web1");
  ASSERT_TRUE(theirs);
  ASSERT_EQ((*theirs)["migrations"].size(), 1U);
  EXPECT_EQ((*theirs)["migrations"][0]["role"], "target");
  EXPECT_EQ((*theirs)["migrations"][0]["phase"], "done");
  // The LAN across the switchover: at the guest's stop dc pointed its bridge at the link,
  // cloud-eu held what the client sent meanwhile and gave it to the guest when it started.
  expectLanSteered(out, (*theirs)["migrations"][0], tb_.site("dc")->netns,
                   tb_.site("cloud-eu")->netns, *mac);
  // The guest at cloud-eu, reached from dc through the stretched LAN: new data for the way back.
  // (A guest that does not answer here is not sent back: its console at cloud-eu tells why.)
  ASSERT_PRED1(exitedZero, execOut(*conn, "vguest-diskpat write /dev/vdb 6 16 8"));

  // cloud-eu -> dc, over the tunnel dc dialled; its mirrors in write-blocking mode.
  const auto back = migrateAndWait(cloud, "web1", "dc", {{"copy_mode", "write-blocking"}});
  ASSERT_EQ(back.value("phase", ""), "done") << back.dump(2);
  EXPECT_EQ(out["report"].value("mirror_copy_mode", ""), "background");
  EXPECT_EQ(back["report"].value("mirror_copy_mode", ""), "write-blocking");
  // The way back mirrors only what changed at cloud-eu: dc kept the disks web1 left there, and
  // cloud-eu wrote over what arrived in an overlay (ADR 0027).
  const auto spec_disks = (*there)["spec"]["virtual_systems"][0]["disks"].size();
  EXPECT_EQ(back["report"].value("overlay_only_disks", nlohmann::json::array()).size(), spec_disks)
      << back["report"].dump();
  EXPECT_LT(back["report"].value("plain_bytes_nbd", uint64_t{0}),
            out["report"].value("plain_bytes_nbd", uint64_t{0}));
  auto home = dc.get("/v1/vms/web1");
  ASSERT_TRUE(home) << home.error().describe();
  EXPECT_EQ((*home)["state"], "running");
  EXPECT_EQ(cloud.get("/v1/vms/web1").error().code, ErrorCode::NotFound);
  EXPECT_EQ(learnedMac(tb_.site("dc")->netns, tap).value_or("none"), *mac);
  auto ours = dc.get("/v1/migrations?vm=web1");
  ASSERT_TRUE(ours);
  const auto incoming = std::find_if((*ours)["migrations"].begin(), (*ours)["migrations"].end(),
                                     [](const nlohmann::json& m) { return m["role"] == "target"; });
  ASSERT_NE(incoming, (*ours)["migrations"].end()) << ours->dump(2);
  expectLanSteered(back, *incoming, tb_.site("cloud-eu")->netns, tb_.site("dc")->netns, *mac);

  const auto session = (*probe)->stop();
  EXPECT_EQ(session.error, "");
  EXPECT_EQ(session.bytes_lost, 0U);
  EXPECT_EQ(session.answers, session.probes_sent);
  EXPECT_GT(session.probes_sent, 100U);
  std::cout << "session: " << session.probes_sent << " probes, longest gap " << session.max_gap_ms
            << " ms; downtime " << out["report"].value("downtime_ms", 0) << " + "
            << back["report"].value("downtime_ms", 0) << " ms; LAN silence "
            << out["report"]["lan_silence_ms"] << " + " << back["report"]["lan_silence_ms"]
            << " ms\n";
  // Each source agent measured the guest's silence on its own LAN around the pause. At dc
  // that is what the client saw: never longer than the client's longest gap.
  for (const auto* m : {&out, &back}) {
    const auto& r = (*m)["report"];
    ASSERT_TRUE(r.contains("lan_silence_ms") && r["lan_silence_ms"].is_number()) << r.dump(2);
    EXPECT_GT(r["lan_silence_ms"].get<double>(), 0.0);
    EXPECT_GT(r.value("lan_frames", uint64_t{0}), 0U);
    // The SLA's downtime budget (the test guest's OVF says 1000 ms) is judged on every
    // migration against that silence, and on this wan link it is met.
    EXPECT_EQ(r.value("downtime_budget_ms", uint64_t{0}), 1000U) << r.dump(2);
    EXPECT_EQ(r.value("interruption_by", ""), "lan_silence") << r.dump(2);
    EXPECT_DOUBLE_EQ(r["interruption_ms"].get<double>(), r["lan_silence_ms"].get<double>());
    ASSERT_TRUE(r["sla_met"].is_boolean()) << r.dump(2);
    EXPECT_TRUE(r["sla_met"].get<bool>()) << r.dump(2);
    // The downtime plan: the link's round trip measured, QEMU's limit within its bounds.
    EXPECT_GE(r["downtime_plan"].value("rtt_ms", 0.0), 40.0) << r.dump(2);  // wan: 50 ms
    EXPECT_LE(r.value("downtime_limit_ms", uint64_t{0}),
              r["downtime_plan"].value("max_limit_ms", uint64_t{0}));
    EXPECT_GE(r.value("downtime_limit_ms", uint64_t{0}),
              r["downtime_plan"].value("initial_limit_ms", uint64_t{1}));
  }
  EXPECT_EQ(out["report"].value("lan_silence_site", ""), "dc");
  EXPECT_LE(out["report"]["lan_silence_ms"].get<double>(), session.max_gap_ms + 50.0);
  auto mem = conn->exec("vguest-mempat check", 120s);
  ASSERT_TRUE(mem) << mem.error().describe();
  EXPECT_EQ(mem->exit_code, 0);
  EXPECT_EQ(mem->out.empty() ? "" : mem->out.back(), "PASS bytes=33554432 seed=7");
  for (const char* region : {"5 0 16", "6 16 8"}) {
    const std::string check =
        execOut(*conn, std::string("vguest-diskpat check /dev/vdb ") + region);
    EXPECT_EQ(check.rfind("PASS", 0), 0U) << region << ": " << check;
  }
  // A wrong seed fails: the checks can fail.
  const std::string wrong = execOut(*conn, "vguest-diskpat check /dev/vdb 99 0 16");
  EXPECT_EQ(wrong.rfind("FAIL", 0), 0U) << wrong;
  // Every page dirtied and every block written through both migrations (pre-copy, mirror,
  // the pauses, and at cloud-eu in between) is at dc.
  expectWorkloadIntact();
  // Nothing of either migration is left: no QEMU at cloud-eu, no sockets, no exports.
  EXPECT_EQ(qemuProcessesIn(tb_.site("cloud-eu")->netns), 0U);
  EXPECT_EQ(qemuProcessesIn(tb_.site("dc")->netns), 1U);
  EXPECT_EQ(migrationRunLeftovers(*tb_.site("dc")), 0U);
  EXPECT_EQ(migrationRunLeftovers(*tb_.site("cloud-eu")), 0U);
}

// A guest that writes its data disk without a pause, as a database would: over the WAN its
// mirror never has the idle moment QEMU needs to call it READY (before disk convergence it
// stayed in mirror_disks for over 7 minutes). The agent throttles that disk's writes until it
// converges; the migration completes, says so in its report, and loses no write.
TEST_F(TestbedMigration, AGuestWritingItsDiskNonstopMigratesOverTheWan) {
  bringUp("wan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  WorkloadOptions wo;
  wo.dirty_wss_mib = 16;
  wo.dirty_rate_mbps = 10;
  wo.disk_rate_kibps = 0;  // as fast as the disk takes the writes
  ASSERT_NO_FATAL_FAILURE(startWorkload(wo));
  const auto out = migrateAndWait(*dc_, "web1", "cloud-eu");
  ASSERT_EQ(out.value("phase", ""), "done") << out.dump(2);
  const auto& r = out["report"];
  ASSERT_TRUE(r.contains("disk_write_throttle")) << r.dump(2);
  const auto& steps = r["disk_write_throttle"];
  ASSERT_FALSE(steps.empty());
  for (const auto& step : steps) {
    EXPECT_EQ(step.value("device", ""), "disk-disk2") << step.dump();  // only the written disk
    EXPECT_GT(step.value("bytes_per_s", uint64_t{0}), 0U) << step.dump();
    std::cout << "throttle: " << step.dump() << "\n";
  }
  std::cout << "phases: " << r["phase_s"].dump() << "; downtime " << r.value("downtime_ms", 0)
            << " ms, mirror completion " << r.value("mirror_complete_ms", 0.0) << " ms\n";
  auto there = cloud_->get("/v1/vms/web1");
  ASSERT_TRUE(there) << there.error().describe();
  EXPECT_EQ((*there)["state"], "running");
  expectWorkloadIntact();
  EXPECT_EQ(migrationRunLeftovers(*tb_.site("dc")), 0U);
}

// A site that imported the same package holds the VM's base images: only the VM's overlays
// cross the WAN, both ways, and the guest's disk reads the same afterwards.
TEST_F(TestbedMigration, ASiteWithTheBaseImagesIsSentOnlyTheOverlays) {
  bringUp("wan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  const std::string ova =
      fs::absolute(fs::path(std::getenv("VANDRA_GUEST_DIR")) / "test-guest.ova").string();
  auto other = importUploaded(*cloud_, "other", ova);
  ASSERT_TRUE(other) << other.error().describe();
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 8"));
  const auto there = migrateAndWait(*dc_, "web1", "cloud-eu");
  ASSERT_EQ(there.value("phase", ""), "done") << there.dump(2);
  const auto& r = there["report"];
  EXPECT_EQ(r["overlay_only_disks"], nlohmann::json::array({"disk1", "disk2"})) << r.dump(2);
  // The 8 MiB written since the import (and NBD's framing), not the 96 MiB of disks.
  EXPECT_GT(r.value("wan_bytes_nbd", uint64_t{0}), 8ULL << 20);
  EXPECT_LT(r.value("wan_bytes_nbd", uint64_t{0}), 12ULL << 20) << r.dump(2);
  // At cloud-eu the disk is an overlay on cloud-eu's own copy of the base.
  const std::string disk = tb_.site("cloud-eu")->site_dir + "/agent/images/vms/web1/disk2.qcow2";
  auto info = runCapture({"qemu-img", "info", "--output=json", "-U", disk});
  ASSERT_TRUE(info) << info.error().describe();
  const auto j = nlohmann::json::parse(*info, nullptr, false);
  ASSERT_TRUE(j.is_object()) << *info;
  EXPECT_EQ(j.value("backing-filename", "")
                .rfind(tb_.site("cloud-eu")->site_dir + "/agent/images/base/", 0),
            0U)
      << *info;
  const std::string check = execOut(*conn_, "vguest-diskpat check /dev/vdb 5 0 8");
  EXPECT_EQ(check.rfind("PASS", 0), 0U) << check;
  // New data at cloud-eu, and home again: dc still holds the base.
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 6 8 4"));
  const auto back = migrateAndWait(*cloud_, "web1", "dc");
  ASSERT_EQ(back.value("phase", ""), "done") << back.dump(2);
  EXPECT_EQ(back["report"]["overlay_only_disks"], nlohmann::json::array({"disk1", "disk2"}));
  EXPECT_LT(back["report"].value("wan_bytes_nbd", uint64_t{0}), 16ULL << 20)
      << back["report"].dump(2);
  for (const char* region : {"5 0 8", "6 8 4"}) {
    const std::string c = execOut(*conn_, std::string("vguest-diskpat check /dev/vdb ") + region);
    EXPECT_EQ(c.rfind("PASS", 0), 0U) << region << ": " << c;
  }
  // The other VM at cloud-eu still has its base: nothing was taken from under it.
  auto still = cloud_->get("/v1/vms/other");
  ASSERT_TRUE(still) << still.error().describe();
}

// A seeded move (ADR 0029, the USB-stick path): the running guest is exported at dc as a
// signed OVA (vandra vm export; the guest writes on), the OVA is imported at cloud-eu as a
// seed (vandra vm seed: base images, no VM), the guest writes more at dc with the verifying
// workload running, and then it moves live: only what it wrote since the export crosses the
// WAN (with the package's base alone, the 24 MiB written before the export would go too).
TEST_F(TestbedMigration, AMoveToASiteSeededWithAnExportSendsOnlyWhatChangedSince) {
  bringUp("wan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 24"));
  StateDir work;
  const std::string ova = work.path() + "/web1-seed.ova";
  const auto exported = runCli(VANDRA_CLI_PATH, {"vm", "export", "web1", "-o", ova, "--site", "dc",
                                                 "--testbed", tb_.state_dir, "--json"});
  ASSERT_EQ(exported.code, 0) << exported.out;
  const auto e = nlohmann::json::parse(exported.out, nullptr, false);
  ASSERT_TRUE(e.is_object()) << exported.out;
  EXPECT_TRUE(e.value("running", false)) << e.dump();
  EXPECT_TRUE(e.value("signed", false)) << e.dump();
  EXPECT_FALSE(e.value("kept_on_agent", true)) << e.dump();
  EXPECT_EQ(e.value("bytes", uint64_t{0}), fs::file_size(ova));
  // The guest ran on: nothing at dc waited for the package to be written.
  ASSERT_TRUE(conn_->ping("exported", 30s));
  auto pkgs = dc_->get("/v1/packages");
  ASSERT_TRUE(pkgs) << pkgs.error().describe();
  for (const auto& p : (*pkgs)["packages"]) {
    EXPECT_NE(p.value("name", ""), e["package"].value("name", "?")) << "left at dc";
  }
  const auto seeded = runCli(VANDRA_CLI_PATH, {"vm", "seed", ova, "--site", "cloud-eu", "--testbed",
                                               tb_.state_dir, "--json"});
  ASSERT_EQ(seeded.code, 0) << seeded.out;
  const auto s = nlohmann::json::parse(seeded.out, nullptr, false);
  ASSERT_TRUE(s.is_object()) << seeded.out;
  // cloud-eu keys the images by the package's content, as dc recorded it at the export.
  EXPECT_EQ(s.value("key", ""), e.value("package_key", "?")) << s.dump() << e.dump();
  EXPECT_EQ(s.value("disks", nlohmann::json::array()).size(), 2U) << s.dump();
  EXPECT_GT(s.value("expires_unix", int64_t{0}), 0) << s.dump();

  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 6 24 4"));
  // The guest reads what it wrote before the export: 24 MiB of its page cache are now blocks
  // of the seed (content references, ADR 0030).
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-files cache /dev/vdb 24"));
  WorkloadOptions wo;  // dirtier 16 MiB at 10 MB/s, disk writer on the last 8 MiB
  wo.dirty_wss_mib = 16;
  wo.dirty_rate_mbps = 10;
  ASSERT_NO_FATAL_FAILURE(startWorkload(wo));
  const auto there = migrateAndWait(*dc_, "web1", "cloud-eu");
  ASSERT_EQ(there.value("phase", ""), "done") << there.dump(2);
  const auto& r = there["report"];
  EXPECT_EQ(r["overlay_only_disks"], nlohmann::json::array({"disk1", "disk2"})) << r.dump(2);
  // The 4 MiB written since the export and the disk writer's 8 MiB region at most, not the
  // 24 MiB written before it.
  EXPECT_GT(r.value("wan_bytes_nbd", uint64_t{0}), 4ULL << 20) << r.dump(2);
  EXPECT_LT(r.value("wan_bytes_nbd", uint64_t{0}), 16ULL << 20) << r.dump(2);
  std::cout << "seeded move: " << r.value("wan_bytes_nbd", uint64_t{0}) << " NBD bytes, "
            << r.value("wan_bytes", uint64_t{0}) << " over the WAN; export "
            << e.value("bytes", uint64_t{0}) << " bytes; content refs " << r["content_refs"].dump()
            << "\n";
  // Most of the 6144 pages the guest read went as references to cloud-eu's seed.
  EXPECT_EQ(r["content_refs"].value("indexed", nlohmann::json::array()).size(), 2U)
      << r.dump(2);  // the seed's two images (and what the mirrors sent)
  EXPECT_GT(r["content_refs"].value("refs", uint64_t{0}), 5000U) << r.dump(2);
  for (const char* region : {"5 0 24", "6 24 4"}) {
    const std::string c = execOut(*conn_, std::string("vguest-diskpat check /dev/vdb ") + region);
    EXPECT_EQ(c.rfind("PASS", 0), 0U) << region << ": " << c;
  }
  expectWorkloadIntact();

  // The way back refers to dc's copy of the disks as they left (ADR 0027). The 24 MiB the
  // guest has in its page cache are spoiled in that copy (whichever of those pages are still
  // cached go as references): the references are refused at dc, the move rolls back, and the
  // guest runs on at cloud-eu with its data whole.
  const std::string kept = tb_.site("dc")->site_dir + "/agent/images/base/" +
                           agent::ImageStore::arrivalKey(there.value("id", ""));
  std::string copy;
  for (const auto& f : fs::directory_iterator(kept)) {
    if (f.path().filename().string().find("disk2") != std::string::npos &&
        f.path().extension() == ".qcow2") {
      copy = f.path().string();
    }
  }
  ASSERT_FALSE(copy.empty()) << "no departed copy of disk2 in " << kept;
  ASSERT_TRUE(runCapture({"qemu-io", "-f", "qcow2", "-c", "write -P 0x99 0 24M", copy}));
  const auto back = migrateAndWait(*cloud_, "web1", "dc");
  ASSERT_EQ(back.value("phase", ""), "rolled_back") << back.dump(2);
  const auto& b = back["report"];
  EXPECT_NE(b.value("migration_stream_error", "").find("the copies differ"), std::string::npos)
      << b.dump(2);
  auto still = cloud_->get("/v1/vms/web1");
  ASSERT_TRUE(still) << still.error().describe();
  EXPECT_EQ((*still)["state"], "running");
  ASSERT_TRUE(conn_->ping("after-refused-copy", 30s));
  for (const char* region : {"5 0 24", "6 24 4"}) {
    const std::string c = execOut(*conn_, std::string("vguest-diskpat check /dev/vdb ") + region);
    EXPECT_EQ(c.rfind("PASS", 0), 0U) << region << ": " << c;
  }
  EXPECT_EQ(migrationRunLeftovers(*tb_.site("dc")), 0U);
}

// The operator's cap for the site pair (vandrad --peer cloud-eu=...,mbps=N at dc, dc=... at
// cloud-eu) holds on both ends of the link, whichever dialled, and bounds a migration's rate.
TEST_F(TestbedMigration, TheSitePairCapBoundsTheMigrationBothWays) {
  peer_mbps_ = 40;
  bringUp("lan");
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 16"));
  // The link can be brought up ahead of the first migration; it carries the pair's cap.
  auto linked = dc_->post("/v1/peers/cloud-eu/connect", nlohmann::json::object());
  ASSERT_TRUE(linked) << linked.error().describe();
  EXPECT_TRUE(linked->value("alive", false)) << linked->dump();
  EXPECT_NEAR(linked->value("bandwidth_mbps", 0.0), 40.0, 0.01) << linked->dump();
  EXPECT_TRUE(linked->contains("lan")) << linked->dump();
  const auto there = migrateAndWait(*dc_, "web1", "cloud-eu");
  ASSERT_EQ(there.value("phase", ""), "done") << there.dump(2);
  for (auto* site : {&*dc_, &*cloud_}) {  // dc dialled, cloud accepted
    auto peers = site->get("/v1/peers");
    ASSERT_TRUE(peers) << peers.error().describe();
    ASSERT_FALSE((*peers)["peers"].empty()) << peers->dump();
    EXPECT_NEAR((*peers)["peers"][0].value("bandwidth_mbps", 0.0), 40.0, 0.01) << peers->dump();
  }
  const auto back = migrateAndWait(*cloud_, "web1", "dc");  // sent by the accepting side
  ASSERT_EQ(back.value("phase", ""), "done") << back.dump(2);
  for (const auto* m : {&there, &back}) {
    const auto& r = (*m)["report"];
    const double secs = r.value("total_s", 0.0);
    const double mbits = static_cast<double>(r.value("wan_bytes", uint64_t{0})) * 8 / 1e6;
    ASSERT_GT(secs, 0.0) << r.dump(2);
    // A token bucket allows one burst (1/50 s of the rate) beyond it: 5 % covers that.
    EXPECT_LE(mbits / secs, 40.0 * 1.05) << mbits << " Mbit in " << secs << " s";
    EXPECT_GT(mbits, 16 * 8.0) << r.dump(2);  // the disk data went through the cap
  }
  const std::string check = execOut(*conn_, "vguest-diskpat check /dev/vdb 5 0 16");
  EXPECT_EQ(check.rfind("PASS", 0), 0U) << check;
}

// The VM's SLA caps its migrations (MaxMigrationMbps 40): an operator asking for more gets the
// SLA's cap, one asking for less gets theirs; the report says which applied, and the bytes
// over the WAN stay under it. (Uncapped, the lan profile carries ten times as much.)
TEST_F(TestbedMigration, TheSlasBandwidthCapIsACeilingForTheOperatorsCap) {
  StateDir work;
  const char* guest = std::getenv("VANDRA_GUEST_DIR");
  const std::string ova = work.path() + "/capped.ova";
  if (guest != nullptr && fs::exists(fs::path(guest) / "test-guest.ova")) {
    fs::copy_file(fs::path(guest) / "test-guest.ova", ova);
    ASSERT_TRUE(runCapture({VANDRA_CLI_PATH, "ovf", "sla", "set", ova, "max-migration-mbps=40"}));
  }
  bringUp("lan", ova);
  if (IsSkipped() || HasFatalFailure()) {
    return;
  }
  ASSERT_PRED1(exitedZero, execOut(*conn_, "vguest-diskpat write /dev/vdb 5 0 16"));
  const auto there = migrateAndWait(*dc_, "web1", "cloud-eu", {{"bandwidth_mbps", 1000}});
  ASSERT_EQ(there.value("phase", ""), "done") << there.dump(2);
  const auto back = migrateAndWait(*cloud_, "web1", "dc", {{"bandwidth_mbps", 30}});
  ASSERT_EQ(back.value("phase", ""), "done") << back.dump(2);
  for (const auto& [m, cap, by] :
       {std::tuple{&there, 40.0, "sla"}, std::tuple{&back, 30.0, "operator"}}) {
    const auto& r = (*m)["report"];
    EXPECT_NEAR(r.value("bandwidth_cap_mbps", 0.0), cap, 0.01) << r.dump(2);
    EXPECT_EQ(r.value("bandwidth_cap_by", ""), by);
    const double secs = r.value("total_s", 0.0);
    const double mbits = static_cast<double>(r.value("wan_bytes", uint64_t{0})) * 8 / 1e6;
    ASSERT_GT(secs, 0.0) << r.dump(2);
    // QEMU's own limiters (the mirror's speed, max-bandwidth) plus the last pages at the
    // switchover, which are sent uncapped: 10 % over the cap at most.
    EXPECT_LE(mbits / secs, cap * 1.10) << mbits << " Mbit in " << secs << " s";
    EXPECT_GT(mbits, 16 * 8.0) << r.dump(2);
    std::cout << "cap " << cap << " Mbit/s (" << by << "): " << mbits << " Mbit in " << secs
              << " s = " << mbits / secs << " Mbit/s\n";
  }
  const std::string check = execOut(*conn_, "vguest-diskpat check /dev/vdb 5 0 16");
  EXPECT_EQ(check.rfind("PASS", 0), 0U) << check;
}

}  // namespace
}  // namespace vandra::testbed
