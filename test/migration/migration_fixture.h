// The fixture of the migration engine's real-QEMU tests (qemu_migration_test.cc,
// postcopy_test.cc): the test guest booted in a source QEMU from copies of its disks, targets
// started with -incoming defer, a namespace with a bridge both NICs sit on, and the helpers
// that check the guest's patterns and record measurements.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <set>
#include <sstream>

#include "migration_harness.h"
#include "test/support/require.h"
#include "vandra/migration/qemu_migration.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/qemu/names.h"
#include "vandra/testbed/guest_workload.h"

namespace vandra::migtest {

using namespace std::chrono_literals;

inline constexpr auto kBootTimeout = 300s;  // TCG on 2 shared, loaded cores
inline const char* const kMac = "52:54:00:0a:0a:10";
inline const std::vector<std::string> kDisks = {"disk1", "disk2"};

inline double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

inline nlohmann::json exec(QemuVm& vm, const std::string& name,
                           nlohmann::json args = nlohmann::json::object()) {
  auto r = vm.qmp->execute(qmp::makeCommand(name, std::move(args)));
  if (!r) {
    ADD_FAILURE() << vm.label << " " << name << ": " << r.error().describe();
    return nullptr;
  }
  return *r;
}

inline std::set<std::string> nodeNames(QemuVm& vm) {
  std::set<std::string> s;
  auto r = exec(vm, "query-named-block-nodes", {{"flat", true}});
  if (r.is_array()) {
    for (const auto& n : r) {
      s.insert(n.value("node-name", ""));
    }
  }
  return s;
}

// Everything a test needs: the guest, its spec, the namespace with the bridge and taps.
class MigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A guest or relay connection closed by its peer must fail a write, not kill the test.
    ::signal(SIGPIPE, SIG_IGN);
    if (std::string why = missingPrerequisites(); !why.empty()) {
      VANDRA_SKIP_OR_FAIL(why);
    }
    std::string why;
    guest_ = findGuest(why);
    if (guest_.empty()) {
      VANDRA_SKIP_OR_FAIL(why);
    }
    ASSERT_FALSE(tmp_.path.empty());
    auto j = nlohmann::json::parse(slurp(guest_ / "vmspec.json"), nullptr, false);
    ASSERT_FALSE(j.is_discarded());
    auto spec = ovf::vmSpecFromJson(j);
    ASSERT_TRUE(spec) << spec.error().describe();
    ASSERT_EQ(spec->virtual_systems.size(), 1u);
    spec_ = spec->virtual_systems[0];
    ASSERT_EQ(spec_.disks.size(), 2u);
    ASSERT_TRUE(spec_.disks[0].id == "disk1" && spec_.disks[1].id == "disk2");
    netns_ = std::make_unique<BridgeNetns>("vmig-" + std::to_string(::getpid()));
    bool cannot = false;
    if (std::string e = netns_->create({"vmtap-s", "vmtap-d", "vmtap-e"}, cannot); !e.empty()) {
      if (cannot) {
        VANDRA_SKIP_OR_FAIL(e);
      }
      FAIL() << e;
    }
  }

  // Converts the guest's raw disks to qcow2 images in @p dir (sources), optionally as
  // overlays over base images in @p base_dir.
  void sourceDisks(const fs::path& dir, std::map<std::string, std::string>& disks,
                   const fs::path& base_dir = {}) {
    fs::create_directories(dir);
    if (!base_dir.empty()) {
      fs::create_directories(base_dir);
    }
    for (const auto& id : kDisks) {
      const std::string raw = (guest_ / (id == "disk1" ? "boot.raw" : "disk2.raw")).string();
      const fs::path img = dir / (id + ".qcow2");
      if (base_dir.empty()) {
        Outcome c = run({"qemu-img", "convert", "-O", "qcow2", raw, img.string()});
        ASSERT_EQ(c.code, 0) << c.err;
      } else {
        const fs::path base = base_dir / (id + "-base.qcow2");
        Outcome c = run({"qemu-img", "convert", "-O", "qcow2", raw, base.string()});
        ASSERT_EQ(c.code, 0) << c.err;
        Outcome o = run({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                         base.string(), img.string()});
        ASSERT_EQ(o.code, 0) << o.err;
      }
      disks[id] = img.string();
    }
  }

  // Fresh target images of the disks' virtual sizes (or overlays over @p backing_dir's bases).
  void targetDisks(const fs::path& dir, std::map<std::string, std::string>& disks,
                   const fs::path& backing_dir = {}) {
    fs::create_directories(dir);
    for (const auto& d : spec_.disks) {
      const fs::path img = dir / (d.id + ".qcow2");
      std::vector<std::string> argv{"qemu-img", "create", "-q", "-f", "qcow2"};
      if (!backing_dir.empty()) {
        argv.insert(argv.end(),
                    {"-F", "qcow2", "-b", (backing_dir / (d.id + "-base.qcow2")).string()});
      }
      argv.insert(argv.end(), {img.string(), std::to_string(d.capacity_bytes)});
      Outcome c = run(argv);
      ASSERT_EQ(c.code, 0) << c.err;
      disks[d.id] = img.string();
    }
  }

  void bootSource(const std::map<std::string, std::string>& disks) {
    VmConfig c{"source", tmp_.path / "src", netns_->name(), "vmtap-s", kMac, disks, false};
    const auto t0 = Clock::now();
    ASSERT_EQ(startVm(spec_, c, src_), "");
    std::string serial;
    ASSERT_TRUE(waitGuestReady(src_, kBootTimeout, serial))
        << "guest not ready after " << secondsSince(t0) << " s:\n"
        << serial;
    std::cout << "[ boot ] source guest ready after " << secondsSince(t0) << " s\n";
    std::string err;
    auto conn = GuestConn::open(netns_->name(), err);
    ASSERT_TRUE(conn) << err;
    ctl_.emplace(std::move(*conn));
    auto pong = ctl_->command("PING before");
    ASSERT_EQ(pong.size(), 1u);
    ASSERT_EQ(pong[0].rfind("PONG before ", 0), 0u) << pong[0];
  }

  void startTarget(const std::string& label, const std::map<std::string, std::string>& disks,
                   QemuVm& vm, const std::string& tap = "vmtap-d") {
    // -S as well as -incoming defer: the guest must not run on the target before the NBD
    // exports are gone (finishTarget), or QEMU's guest device cannot take back the write
    // permission the exports hold (docs/migration/qemu-engine.md).
    VmConfig c{label, tmp_.path / label, netns_->name(), tap, kMac, disks, true, true};
    ASSERT_EQ(startVm(spec_, c, vm), "");
    EXPECT_EQ(vm.status(), "inmigrate");
  }

  std::vector<std::string> guest(const std::string& cmd) {
    std::vector<std::string> r = ctl_->command(cmd);
    return r;
  }

  void expectPatterns(const std::string& where, int mem_seed,
                      const std::vector<std::string>& disk_checks) {
    auto m = guest("EXEC vguest-mempat check");
    EXPECT_EQ(outLine(m, "PASS"),
              "PASS bytes=" + std::to_string(64u << 20) + " seed=" + std::to_string(mem_seed))
        << where << ":\n"
        << joined(m);
    for (const auto& c : disk_checks) {
      auto d = guest("EXEC vguest-diskpat check /dev/vdb " + c);
      EXPECT_EQ(d.empty() ? "" : d.back(), "EXIT 0") << where << " diskpat " << c << ":\n"
                                                     << joined(d);
      EXPECT_NE(outLine(d, "PASS"), "") << where << " diskpat " << c << ":\n" << joined(d);
    }
  }

  std::vector<migration::DiskMirrorTarget> mirrorTargets(const fs::path& nbd_sock) {
    std::vector<migration::DiskMirrorTarget> v;
    auto names = qemu::diskNames(spec_.disks);
    EXPECT_TRUE(names) << names.error().describe();
    for (const auto& n : names.value_or(std::vector<qemu::DiskNames>{})) {
      v.push_back({n.format_node, nbd_sock.string(), n.format_node, false, n.device_id});
    }
    return v;
  }

  // The whole target side up to listening: exports and migrate-incoming.
  void prepareTarget(QemuVm& t, const fs::path& nbd_sock, const fs::path& mig_sock,
                     const migration::IncomingOptions& incoming = {}) {
    auto exports =
        migration::startNbdExports(*t.qmp, nbd_sock.string(), {"fmt-disk1", "fmt-disk2"});
    ASSERT_TRUE(exports) << exports.error().describe();
    ASSERT_EQ(exports->size(), 2u);
    EXPECT_EQ((*exports)[0].export_name, "fmt-disk1");
    auto inc = migration::startIncoming(*t.qmp, "unix:" + mig_sock.string(), incoming);
    ASSERT_TRUE(inc) << inc.error().describe();
  }

  fs::path guest_;
  TempDir tmp_;
  ovf::VirtualSystemSpec spec_;
  std::unique_ptr<BridgeNetns> netns_;
  QemuVm src_;
  std::optional<GuestConn> ctl_;
};

// The verdict of a workload checker from the raw EXEC reply ("OUT ..." lines, "EXIT N").
inline Result<testbed::CheckResult> checkResult(const std::vector<std::string>& reply) {
  std::vector<std::string> out;
  int code = -1;
  for (const auto& l : reply) {
    if (l.rfind("OUT ", 0) == 0) {
      out.push_back(l.substr(4));
    } else if (l.rfind("EXIT ", 0) == 0) {
      code = std::atoi(l.c_str() + 5);
    }
  }
  return testbed::parseCheck(out, code);
}

// Prints and records one measured number.
inline void note(const std::string& key, double value, const std::string& unit) {
  std::cout << "[ measure ] " << key << " = " << value << " " << unit << "\n";
  ::testing::Test::RecordProperty(key, std::to_string(value));
}

}  // namespace vandra::migtest
