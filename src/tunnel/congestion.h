// The tunnel's TCP congestion control chosen per link ("auto", the default): every
// connection starts on cubic, the better choice on a loss-free WAN (docs/adr/0018), and a
// connection that loses segments while the path's queue is empty moves to bbr for good:
// that loss is the link's own (radio, a flaky hop), not congestion, and cubic would answer
// each loss by halving its window until the transfer crawls (0.5 % loss held one cubic
// connection to about 2.5 MB/s on the lossy profile).
//
//   every second, per connection, from TCP_INFO since the last judgement:
//     segments sent  >= kMinSegments          (else wait: judge over a longer span)
//     re-sent / sent >= kMinLossRatio         (and at least kMinRetransmits of them)
//     smoothed RTT   <= min RTT x 1.1 + 1 ms  (no standing queue: not congestion loss)
//       true for kSpansToSwitch spans with no standing queue in between:
//       setsockopt(TCP_CONGESTION, "bbr") on the live socket
//
// (Measured: on lossy a collapsed cubic connection sees ~0.5 % re-sent at 51 ms against a
// 50 ms minimum; on wan cubic's queue overflows showed 3 % re-sent at 62 ms, and a looser
// 1.25 x + 2 ms bound moved it to bbr there.)
//
// On the loss-free profiles cubic's own losses come from overflowing the bottleneck's queue,
// with the queue (and the smoothed RTT) full at that moment, so it stays on cubic there.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::tunnel {

/// The setting's value that chooses per link.
inline constexpr const char* kAutoCongestion = "auto";
/// What "auto" starts with and moves to.
inline constexpr const char* kAutoStart = "cubic";
inline constexpr const char* kAutoLossy = "bbr";

/// A connection's TCP_INFO counters that the choice reads.
struct TcpSample {
  uint64_t segs_out = 0;       // tcpi_data_segs_out
  uint64_t total_retrans = 0;  // tcpi_total_retrans
  uint32_t srtt_us = 0;        // tcpi_rtt
  uint32_t min_rtt_us = 0;     // tcpi_min_rtt
};

inline constexpr uint64_t kMinSegments = 1000;
inline constexpr uint64_t kMinRetransmits = 3;
inline constexpr int kSpansToSwitch = 2;
inline constexpr double kMinLossRatio = 0.001;

/// Whether enough segments went out between @p before and @p now to judge (a collapsed
/// cubic connection may send fewer than kMinSegments a second: the watcher then keeps
/// @p before and judges over a longer span).
bool enoughToJudge(const TcpSample& before, const TcpSample& now);
/// Whether the connection lost segments to the link itself between @p before and @p now
/// (see the diagram). Pure; unit-tested.
bool randomLoss(const TcpSample& before, const TcpSample& now);
/// Whether the smoothed RTT shows a standing queue (the bound in the diagram): evidence
/// that losses now are congestion. Resets the watcher's count of lossy spans; a span with
/// too few losses to judge leaves the count as it is.
bool standingQueue(const TcpSample& now);

/// The algorithm to set on a new connection for setting @p configured ("" = leave the
/// host's default: returns "").
std::string initialCongestion(const std::string& configured);

/// Reads TCP_INFO of @p fd. Errors: Io.
[[nodiscard]] Result<TcpSample> sampleTcp(int fd);

/// Watches the connections of one tunnel with setting "auto" and moves each that suffers
/// random loss to bbr (once; it never goes back). The fds must stay open until this is
/// destroyed (the tunnel's Core destroys it before its connections go).
class CongestionWatch {
 public:
  CongestionWatch(std::vector<int> fds, std::string peer_site);
  ~CongestionWatch();
  CongestionWatch(const CongestionWatch&) = delete;
  CongestionWatch& operator=(const CongestionWatch&) = delete;
  /// Connections moved to bbr so far.
  uint32_t switched() const { return switched_.load(); }

 private:
  void run();
  std::vector<int> fds_;
  std::string peer_site_;
  std::atomic<uint32_t> switched_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace vandra::tunnel
