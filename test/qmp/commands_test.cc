// Tests for vandra/qmp/commands.h: the exact command each typed function sends (QEMU 7.2's
// argument shapes) and how it reads the replies, against a client that records and answers.
#include "vandra/qmp/commands.h"

#include <gtest/gtest.h>

#include <deque>

namespace vandra::qmp {
namespace {

using nlohmann::json;

// Records every command; answers each with the next canned reply ({} when none is left).
class RecordingClient : public QmpClient {
 public:
  std::vector<QmpCommand> sent;
  std::deque<Result<json>> replies;

  Result<json> execute(const QmpCommand& cmd) override {
    sent.push_back(cmd);
    if (replies.empty()) {
      return json::object();
    }
    auto r = std::move(replies.front());
    replies.pop_front();
    return r;
  }
  const QmpGreeting& greeting() const override { return greeting_; }
  bool waitDisconnected(std::chrono::milliseconds) override { return true; }
  uint64_t droppedEvents() const override { return 0; }
  void close() override {}

 private:
  QmpGreeting greeting_;
};

TEST(QmpTypedCommandsTest, WriteThrottleSetsTheSixMandatoryRatesOnTheDevicesBackend) {
  RecordingClient c;
  const json devices = json::parse(R"([
    {"device": "", "qdev": "/machine/peripheral/disk-disk2/virtio-backend", "inserted": {}},
    {"device": "", "qdev": "disk-scsi0", "inserted": {}}])");
  c.replies.push_back(devices);
  ASSERT_TRUE(setWriteThrottle(c, "disk-disk2", 1 << 20, 16));
  ASSERT_EQ(c.sent.size(), 2u);
  EXPECT_EQ(c.sent[0].name, "query-block");
  EXPECT_EQ(c.sent[1].name, "block_set_io_throttle");
  // QEMU 7.2 finds no block backend on the virtio-blk-pci proxy itself: its backend's path.
  EXPECT_EQ(c.sent[1].args, json::parse(R"({"id": "/machine/peripheral/disk-disk2/virtio-backend",
      "bps": 0, "bps_rd": 0, "bps_wr": 1048576, "iops": 0, "iops_rd": 0, "iops_wr": 16})"));
  c.replies.push_back(devices);
  ASSERT_TRUE(setWriteThrottle(c, "disk-scsi0", 0, 0));
  EXPECT_EQ(c.sent[3].args["id"], "disk-scsi0");
  c.replies.push_back(devices);
  c.replies.push_back(fail(ErrorCode::QmpError, "block_set_io_throttle: GenericError: no"));
  auto refused = setWriteThrottle(c, "disk-scsi0", 0, 0);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::QmpError);
  c.replies.push_back(devices);
  auto unknown = setWriteThrottle(c, "disk-x", 1, 1);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::NotFound);
  EXPECT_EQ(c.sent.back().name, "query-block");  // nothing sent for a device not there
}

TEST(QmpTypedCommandsTest, QueryWriteThrottleFindsTheDeviceByIdOrQomPath) {
  RecordingClient c;
  const json devices = json::parse(R"([
    {"device": "", "qdev": "/machine/peripheral/disk-disk1/virtio-backend",
     "inserted": {"bps_wr": 0, "iops_wr": 0}},
    {"device": "", "qdev": "/machine/peripheral/disk-disk10/virtio-backend",
     "inserted": {"bps_wr": 7, "iops_wr": 7}},
    {"device": "", "qdev": "/machine/peripheral/disk-disk2/virtio-backend",
     "inserted": {"bps_wr": 262144, "iops_wr": 4}},
    {"device": "", "qdev": "cd0", "inserted": {"bps_wr": 5, "iops_wr": 0}}])");
  for (int i = 0; i < 3; ++i) {
    c.replies.push_back(devices);
  }
  auto d2 = queryWriteThrottle(c, "disk-disk2");
  ASSERT_TRUE(d2) << d2.error().describe();
  EXPECT_EQ(*d2, (std::pair<uint64_t, uint64_t>{262144, 4}));
  auto cd = queryWriteThrottle(c, "cd0");
  ASSERT_TRUE(cd);
  EXPECT_EQ(cd->first, 5u);
  auto none = queryWriteThrottle(c, "disk-disk");  // a prefix of real ids is not one
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::NotFound);
  EXPECT_EQ(c.sent.back().name, "query-block");
}

TEST(QmpTypedCommandsTest, MigrationParametersOnlyCarryWhatIsSet) {
  RecordingClient c;
  MigrationParameters p;
  p.downtime_limit_ms = 120;
  p.multifd_compression = MultifdCompression::Zstd;
  ASSERT_TRUE(setParameters(c, p));
  EXPECT_EQ(c.sent[0].name, "migrate-set-parameters");
  EXPECT_EQ(c.sent[0].args,
            json::parse(R"({"downtime-limit": 120, "multifd-compression": "zstd"})"));
  ASSERT_TRUE(setCapabilities(
      c, {{MigrationCapability::Xbzrle, true}, {MigrationCapability::AutoConverge, false}}));
  EXPECT_EQ(c.sent[1].args, json::parse(R"({"capabilities": [
      {"capability": "xbzrle", "state": true}, {"capability": "auto-converge", "state": false}]})"));
  c.replies.push_back(json::parse(R"({"downtime-limit": 300, "max-bandwidth": 134217728,
      "multifd-channels": 2, "multifd-compression": "none", "xbzrle-cache-size": 67108864})"));
  auto q = queryParameters(c);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->downtime_limit_ms, 300u);
  EXPECT_EQ(q->max_bandwidth, 134217728u);
  EXPECT_EQ(q->multifd_compression, MultifdCompression::None);
  EXPECT_FALSE(q->multifd_zstd_level.has_value());
}

TEST(QmpTypedCommandsTest, AddressesAndJobs) {
  RecordingClient c;
  ASSERT_TRUE(migrate(c, {"10.0.0.2", 4444}));
  EXPECT_EQ(c.sent[0].args, json::parse(R"({"uri": "tcp:10.0.0.2:4444"})"));
  ASSERT_TRUE(nbdServerStart(c, {"10.0.0.2", 10809}));
  EXPECT_EQ(c.sent[1].args, json::parse(R"({"addr": {"type": "inet",
      "data": {"host": "10.0.0.2", "port": "10809"}}})"));
  c.replies.push_back(json::parse(R"([{"device": "m1", "ready": true, "offset": 5, "len": 9}])"));
  auto jobs = queryBlockJobs(c);
  ASSERT_TRUE(jobs);
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_TRUE((*jobs)[0].ready);
  EXPECT_EQ((*jobs)[0].len, 9u);
  c.replies.push_back(json::object());
  auto bad = queryBlockJobs(c);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::QmpProtocol);
}

}  // namespace
}  // namespace vandra::qmp
