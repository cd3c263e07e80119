// WAN emulation in user space (the kernel here has no netem): LinkShaper is the pure,
// time-injected model of one direction of a link (loss, bounded FIFO queue, serialisation at
// a rate, one-way delay); WanEmulator moves IP packets between two TUN devices through one
// LinkShaper per direction. src/testbed/wan_emulator.cc has the packet-path diagram.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::testbed {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

/// One direction of a link.
struct LinkParams {
  uint64_t rate_bps = 0;              // 0: unlimited (no serialisation time)
  std::chrono::nanoseconds delay{0};  // one-way propagation delay
  double loss = 0.0;                  // probability 0..1 a packet is lost on entry
  size_t queue_packets = 1000;        // tail drop beyond this many queued packets
  size_t queue_bytes = 1U << 20;      // ... or beyond this many queued bytes
};

/// Validates ranges (loss in [0,1], queue limits > 0). Errors: InvalidArgument.
[[nodiscard]] Result<void> validate(const LinkParams& p);

using Packet = std::vector<uint8_t>;

struct LinkStats {
  uint64_t submitted = 0;
  uint64_t dropped_loss = 0;
  uint64_t dropped_queue = 0;
  uint64_t delivered = 0;
  uint64_t delivered_bytes = 0;
  size_t max_queue_packets = 0;
};

/// The model, with no I/O and no clock of its own: every call takes `now`, which must not go
/// backwards. A packet that passes the loss draw joins a FIFO queue (tail drop when the
/// packet or byte limit would be exceeded); the link serialises one packet at a time at
/// rate_bps; a packet leaves the queue when its last bit is sent and is delivered `delay`
/// later. Order is preserved.
class LinkShaper {
 public:
  enum class Verdict { Queued, DroppedLoss, DroppedQueueFull };

  explicit LinkShaper(LinkParams params, uint64_t seed = 1);

  /// A packet arrives at the link at @p now.
  Verdict submit(TimePoint now, Packet packet);

  /// Appends to @p out every packet whose delivery time is <= @p now, in order.
  void release(TimePoint now, std::vector<Packet>& out);

  /// When the next packet is due for delivery (nullopt when nothing is in flight).
  std::optional<TimePoint> nextDelivery() const;

  /// Packets waiting in the queue (not yet fully serialised) at the last call's `now`.
  size_t queuedPackets() const { return queue_.size(); }
  size_t queuedBytes() const { return queue_bytes_; }
  const LinkStats& stats() const { return stats_; }
  const LinkParams& params() const { return params_; }

  /// Time the link needs to send @p bytes at the configured rate.
  std::chrono::nanoseconds serialisationTime(size_t bytes) const;

 private:
  struct Entry {
    TimePoint sent;     // last bit on the wire; leaves the queue
    TimePoint deliver;  // sent + delay
    Packet packet;
  };
  void advance(TimePoint now);

  LinkParams params_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  std::deque<Entry> queue_;  // not yet fully sent (sent > now)
  std::deque<Entry> line_;   // on the wire, waiting for deliver
  size_t queue_bytes_ = 0;
  TimePoint link_free_{};  // when the last scheduled packet finishes serialising
  LinkStats stats_;
};

/// One named link profile (both directions share the parameters).
struct Profile {
  std::string name;
  LinkParams link;
};

/// The reference profiles: lan, metro, wan, ldvm, lossy. RTT = 2 x one-way delay.
const std::vector<Profile>& profiles();
/// Errors: NotFound naming the known profiles.
[[nodiscard]] Result<Profile> findProfile(const std::string& name);

/// Where one side of the emulator attaches: a TUN device created in the emulator's own
/// network namespace under @p device.
struct TunSide {
  std::string device;
};

struct WanEmulatorOptions {
  TunSide a;
  TunSide b;
  LinkParams a_to_b;
  LinkParams b_to_a;
  uint64_t seed = 1;
  int ready_fd = -1;  // when >= 0: "ready\n" is written here once both TUNs exist, then closed
  int nice = -10;     // scheduling priority asked for (best effort); 0 keeps the inherited one
};

/// Creates both TUN devices (IFF_TUN | IFF_NO_PI, not persistent: they vanish with the
/// process) and forwards packets until SIGTERM/SIGINT or until a device disappears (its
/// namespace was deleted). Returns the stats of both directions. Errors: Io.
struct WanEmulatorResult {
  LinkStats a_to_b;
  LinkStats b_to_a;
  std::string reason;  // why it stopped
};
[[nodiscard]] Result<WanEmulatorResult> runWanEmulator(const WanEmulatorOptions& options);

}  // namespace vandra::testbed
