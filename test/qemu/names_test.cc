// Tests for vandra/qemu/names.h: one name per QEMU object, the same for the builder, the
// agent, the engine and the bench.
#include "vandra/qemu/names.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "vandra/qemu/cmdline_builder.h"

namespace vandra::qemu {
namespace {

std::vector<ovf::DiskSpec> disks(std::initializer_list<const char*> ids) {
  std::vector<ovf::DiskSpec> out;
  for (const char* id : ids) {
    ovf::DiskSpec d;
    d.id = id;
    out.push_back(d);
  }
  return out;
}

TEST(QemuNamesTest, SafeIdsAreKeptOthersGetTheirPosition) {
  auto n = diskNames(disks({"disk1", "Hard disk 2", "x-very-long-disk-identifier-beyond"}));
  ASSERT_TRUE(n) << n.error().describe();
  ASSERT_EQ(n->size(), 3u);
  EXPECT_EQ((*n)[0].format_node, "fmt-disk1");
  EXPECT_EQ((*n)[0].file_node, "file-disk1");
  EXPECT_EQ((*n)[0].device_id, "disk-disk1");
  EXPECT_EQ((*n)[1].disk_id, "Hard disk 2");
  EXPECT_EQ((*n)[1].format_node, "fmt-d1");
  EXPECT_EQ((*n)[2].device_id, "disk-d2");
  for (const auto& d : *n) {
    EXPECT_LE(d.format_node.size(), 31u);  // QEMU's node-name limit
  }
}

TEST(QemuNamesTest, TwoDisksOnOneNameAreRefused) {
  auto n = diskNames(disks({"d1", "Hard disk"}));  // the second would be "d1" too
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(n.error().message.find("'Hard disk'"), std::string::npos) << n.error().message;
}

TEST(QemuNamesTest, TheBuilderUsesTheseNames) {
  ovf::VirtualSystemSpec vs;
  vs.id = "vm";
  vs.vcpus = 1;
  vs.memory_mib = 64;
  vs.disks = disks({"Hard disk 1"});
  vs.disks[0].capacity_bytes = 1 << 20;
  QemuRunConfig rc;
  rc.accel = "tcg";
  const RunFiles files = runFiles("/run/x");
  rc.qmp_socket = files.qmp_socket;
  rc.qmp_event_socket = files.event_socket;
  rc.serial_log = files.serial_log;
  rc.pidfile = "/run/x/qemu.pid";
  rc.disk_overlays["Hard disk 1"] = "/var/x/d.qcow2";
  auto argv = buildCommandLine(vs, rc);
  ASSERT_TRUE(argv) << argv.error().describe();
  auto names = diskNames(vs.disks);
  ASSERT_TRUE(names);
  const auto has = [&](const std::string& part) {
    return std::any_of(argv->begin(), argv->end(),
                       [&](const std::string& a) { return a.find(part) != std::string::npos; });
  };
  EXPECT_TRUE(has("\"node-name\":\"" + (*names)[0].format_node + "\""));
  EXPECT_TRUE(has("drive=" + (*names)[0].format_node + ",id=" + (*names)[0].device_id));
}

TEST(QemuNamesTest, RunFilesLiveInTheRunDirectory) {
  const RunFiles f = runFiles("/var/lib/vandra/run/vm1");
  EXPECT_EQ(f.qmp_socket, "/var/lib/vandra/run/vm1/qmp.sock");
  EXPECT_EQ(f.event_socket, "/var/lib/vandra/run/vm1/events.sock");
  EXPECT_EQ(f.serial_log, "/var/lib/vandra/run/vm1/serial.log");
}

}  // namespace
}  // namespace vandra::qemu
