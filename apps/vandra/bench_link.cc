// `vandra bench link`: what one bulk sender gets of an emulated link, per system, side by side.
//
//   dc namespace                 vandra-wanem (profile)              cloud-eu namespace
//   sender --- 10.255.0.1 ===== rate, delay, loss each way ===== 10.255.0.2 --- receiver
//
// Systems, each sending the same incompressible bytes (a 4 MiB pseudo-random block, over and
// over: beyond zstd's reach, so the tunnel's compression cannot flatter it):
//   tcp-cubic, tcp-bbr  one TCP connection with that congestion control
//   vandra              the site tunnel as vandrad runs it: the sites' certificates, mutual
//                       TLS 1.3, one connection, congestion control "auto" (ADR 0018), 16 MiB
//                       stream windows that follow the reader, compression on; one migration
//                       stream carries the bytes
// The receiver stamps every read. The steady rate is the least-squares slope of bytes over
// time in the second half of the transfer (slow start and the first losses are behind it);
// the share is that rate over the profile's rate. Retransmitted segments: dc's namespace,
// before and after. Systems alternate their order run by run.
#include "bench_link.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "bench_internal.h"
#include "cli_support.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/unique_fd.h"
#include "vandra/testbed/arrival_rate.h"
#include "vandra/testbed/testbed.h"
#include "vandra/testbed/wan_emulator.h"
#include "vandra/tunnel/tunnel.h"

namespace vandra::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using namespace bench;

constexpr uint16_t kTcpPort = 5301;
constexpr size_t kBlock = 4 << 20;
constexpr size_t kChunk = 256 << 10;

struct LinkRun {
  std::string profile;
  std::string system;
  int run = 0;
  bool ok = false;
  std::string error;
  double seconds = 0;  // first byte to last byte at the receiver
  uint64_t bytes = 0;
  double mbit = 0;         // average over the whole transfer
  double steady_mbit = 0;  // slope of its second half
  double share = 0;        // steady_mbit / the profile's rate
  uint64_t retransmitted = 0;
  uint64_t wire_bytes = 0;  // vandra: TLS bytes the tunnel sent (framing and TLS included)
};

json toJson(const LinkRun& r) {
  json j = {{"profile", r.profile},
            {"system", r.system},
            {"run", r.run},
            {"result", r.ok ? "ok" : r.error},
            {"seconds", r.seconds},
            {"bytes", r.bytes},
            {"mbit_s", r.mbit},
            {"steady_mbit_s", r.steady_mbit},
            {"share_of_link", r.share},
            {"retransmitted_segments", r.retransmitted}};
  if (r.wire_bytes > 0) {
    j["wire_bytes"] = r.wire_bytes;
  }
  return j;
}

// Every read the receiver made: when, and the bytes so far.
class Arrivals {
 public:
  void add(size_t n) {
    total_ += n;
    samples_.emplace_back(Clock::now(), total_);
  }
  void fill(LinkRun& r) const {
    if (samples_.size() < 2) {
      return;
    }
    const auto first = samples_.front();
    const auto last = samples_.back();
    r.bytes = last.second;
    r.seconds = std::chrono::duration<double>(last.first - first.first).count();
    r.mbit =
        r.seconds > 0 ? static_cast<double>(last.second - first.second) * 8 / r.seconds / 1e6 : 0;
    r.steady_mbit = testbed::steadyBytesPerSecond(samples_) * 8 / 1e6;
  }

 private:
  uint64_t total_ = 0;
  std::vector<testbed::Arrival> samples_;
};

const std::string& payload() {
  static const std::string block = [] {
    std::string b(kBlock, '\0');
    std::mt19937_64 rng(20261207);
    for (size_t i = 0; i + 8 <= b.size(); i += 8) {
      const uint64_t v = rng();
      std::memcpy(b.data() + i, &v, 8);
    }
    return b;
  }();
  return block;
}

// Sends the payload through @p send for @p seconds, a chunk at a time; @p send returns the
// bytes it took (a TCP send may take fewer than offered).
Result<void> sendFor(int seconds, const std::function<Result<size_t>(std::string_view)>& send) {
  const std::string_view block = payload();
  size_t at = 0;
  const auto end = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < end) {
    VANDRA_TRY_ASSIGN(const size_t n, send(block.substr(at, kChunk)));
    at = (at + n) % (kBlock - kChunk);
  }
  return {};
}

struct Ends {
  const testbed::SiteInfo* dc = nullptr;
  const testbed::SiteInfo* cloud = nullptr;
  std::string cloud_address;  // cloud-eu's end of the dc link
};

Result<Ends> endsOf(const testbed::TestbedInfo& tb) {
  Ends e{tb.site("dc"), tb.site("cloud-eu"), ""};
  const testbed::WanEnd* w = e.dc != nullptr ? e.dc->wanTo("cloud-eu") : nullptr;
  if (e.cloud == nullptr || w == nullptr) {
    return fail(ErrorCode::Internal, "The testbed has no dc - cloud-eu link");
  }
  e.cloud_address = w->peer_address;
  return e;
}

// One TCP connection dc -> cloud-eu with congestion control @p cc for @p seconds.
Result<void> runTcp(const Ends& ends, const std::string& cc, int seconds, LinkRun& r) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(kTcpPort);
  if (::inet_pton(AF_INET, ends.cloud_address.c_str(), &addr.sin_addr) != 1) {
    return fail(ErrorCode::Internal, "Bad address " + ends.cloud_address);
  }
  auto* sa = reinterpret_cast<sockaddr*>(&addr);  // NOLINT: the sockets API
  VANDRA_TRY_ASSIGN(auto listener,
                    testbed::socketInNetns(ends.cloud->netns, AF_INET, SOCK_STREAM | SOCK_CLOEXEC));
  const int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listener.get(), sa, sizeof addr) != 0 || ::listen(listener.get(), 1) != 0) {
    return fail(Error::fromErrno("Cannot listen on " + ends.cloud_address));
  }
  VANDRA_TRY_ASSIGN(auto sender,
                    testbed::socketInNetns(ends.dc->netns, AF_INET, SOCK_STREAM | SOCK_CLOEXEC));
  if (::setsockopt(sender.get(), IPPROTO_TCP, TCP_CONGESTION, cc.data(),
                   static_cast<socklen_t>(cc.size())) != 0) {
    return fail(Error::fromErrno("TCP congestion control " + cc));
  }
  const timeval tv{30, 0};  // a send that cannot go on for 30 s fails the run
  ::setsockopt(sender.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

  Arrivals arrivals;
  std::string receive_error;
  std::thread receiver([&] {
    pollfd p{listener.get(), POLLIN, 0};
    if (::poll(&p, 1, 30'000) != 1) {
      receive_error = "no connection within 30 s";
      return;
    }
    UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) {
      receive_error = std::string("accept: ") + std::strerror(errno);
      return;
    }
    std::vector<char> buf(1 << 20);
    for (;;) {
      pollfd q{conn.get(), POLLIN, 0};
      if (::poll(&q, 1, 30'000) != 1) {
        receive_error = "nothing received for 30 s";
        return;
      }
      const ssize_t n = ::recv(conn.get(), buf.data(), buf.size(), 0);
      if (n <= 0) {
        if (n < 0) {
          receive_error = std::string("recv: ") + std::strerror(errno);
        }
        return;
      }
      arrivals.add(static_cast<size_t>(n));
    }
  });
  auto join = defer([&] {
    ::shutdown(listener.get(), SHUT_RDWR);  // wakes a receiver still waiting to accept
    ::shutdown(sender.get(), SHUT_RDWR);
    receiver.join();
  });
  if (::connect(sender.get(), sa, sizeof addr) != 0) {
    return fail(Error::fromErrno("Cannot connect to " + ends.cloud_address));
  }
  VANDRA_TRY(sendFor(seconds, [&](std::string_view chunk) -> Result<size_t> {
    const ssize_t n = ::send(sender.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n < 0) {
      return fail(Error::fromErrno("send"));
    }
    return static_cast<size_t>(n);
  }));
  tcp_info info{};
  socklen_t len = sizeof info;
  ::shutdown(sender.get(), SHUT_WR);
  join.dismiss();
  receiver.join();
  if (::getsockopt(sender.get(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0) {
    r.retransmitted = info.tcpi_total_retrans;
  }
  if (!receive_error.empty()) {
    return fail(ErrorCode::Io, "Receiver: " + receive_error);
  }
  arrivals.fill(r);
  return {};
}

tunnel::TunnelSettings siteSettings(const testbed::SiteInfo& site) {
  tunnel::TunnelSettings s;
  s.local_site = site.name;
  s.cert_path = site.site_dir + "/pki/site.crt";
  s.key_path = site.site_dir + "/pki/site.key";
  s.ca_bundle_path = site.site_dir + "/pki/peers.pem";
  // As vandrad runs it (apps/vandrad/main.cc defaults).
  s.congestion_control = "auto";
  s.receive_window = 16 << 20;
  s.window_follows_reader = true;
  s.compression = tunnel::Compression::Auto;
  return s;
}

// The site tunnel dc -> cloud-eu, one migration stream for @p seconds.
Result<void> runVandra(const Ends& ends, int seconds, LinkRun& r) {
  std::mutex mu;
  std::unique_ptr<tunnel::Tunnel> accepted;
  Arrivals arrivals;
  std::string receive_error;
  std::thread receiver;
  std::atomic<bool> receiving{false};

  tunnel::ListenerOptions lo;
  static_cast<tunnel::TunnelSettings&>(lo) = siteSettings(*ends.cloud);
  lo.peer_sites = {"dc"};
  lo.bind_host = ends.cloud_address;
  lo.port = 0;
  lo.netns = ends.cloud->netns;
  lo.on_tunnel = [&](std::unique_ptr<tunnel::Tunnel> t) {
    t->addStreamHandler(tunnel::StreamKind::Migration, "",
                        [&](tunnel::StreamKind, const std::string&, tunnel::Stream s) {
                          if (receiving.exchange(true)) {
                            return;  // one stream per run
                          }
                          std::lock_guard lk(mu);
                          receiver = std::thread([&, st = std::move(s)]() mutable {
                            std::vector<char> buf(1 << 20);
                            for (;;) {
                              auto n = st.read(buf.data(), buf.size(),
                                               Clock::now() + std::chrono::seconds(30));
                              if (!n) {
                                receive_error = n.error().describe();
                                return;
                              }
                              if (*n == 0) {
                                return;
                              }
                              arrivals.add(*n);
                            }
                          });
                        });
    std::lock_guard lk(mu);
    accepted = std::move(t);
  };
  VANDRA_TRY_ASSIGN(auto listener, tunnel::TunnelListener::listen(lo));

  tunnel::TunnelOptions to;
  static_cast<tunnel::TunnelSettings&>(to) = siteSettings(*ends.dc);
  to.peer_site = "cloud-eu";
  to.host = ends.cloud_address;
  to.port = listener->port();
  to.connections = 1;  // vandrad's default (--tunnel-connections)
  to.netns = ends.dc->netns;
  VANDRA_TRY_ASSIGN(auto tunnel, tunnel::Tunnel::connect(to));
  // The receiving thread, once the handler started it (under mu: the handler runs on the
  // listener's tunnel's dispatcher thread).
  const auto joinReceiver = [&] {
    std::thread t;
    {
      std::lock_guard lk(mu);
      t = std::move(receiver);
    }
    if (t.joinable()) {
      t.join();
    }
  };
  auto stop = defer([&] {
    tunnel->close("bench over");
    joinReceiver();
  });
  VANDRA_TRY_ASSIGN(auto stream, tunnel->openStream(tunnel::StreamKind::Migration, "bench-link"));
  VANDRA_TRY(sendFor(seconds, [&](std::string_view chunk) -> Result<size_t> {
    VANDRA_TRY(stream.write(chunk, Clock::now() + std::chrono::seconds(30)));
    return chunk.size();
  }));
  VANDRA_TRY(stream.closeWrite());
  stop.dismiss();
  joinReceiver();
  r.wire_bytes = tunnel->stats().wire_bytes_sent;
  tunnel->close("bench over");
  if (!receive_error.empty()) {
    return fail(ErrorCode::Io, "Receiver: " + receive_error);
  }
  if (!receiving) {
    return fail(ErrorCode::Io, "The stream never reached cloud-eu");
  }
  arrivals.fill(r);
  return {};
}

LinkRun runOne(const testbed::TestbedInfo& tb, const Ends& ends, const testbed::Profile& profile,
               const std::string& system, int run, int seconds) {
  LinkRun r;
  r.profile = profile.name;
  r.system = system;
  r.run = run;
  Result<void> done;
  if (system == "vandra") {
    // The tunnel's sockets are not ours to ask: dc's namespace counts for them.
    const uint64_t before = retransmittedSegments(tb);
    done = runVandra(ends, seconds, r);
    r.retransmitted = retransmittedSegments(tb) - before;
  } else {
    done = runTcp(ends, system.substr(4), seconds, r);  // the socket's own count
  }
  r.ok = static_cast<bool>(done);
  if (!done) {
    r.error = done.error().describe();
  }
  const double rate = static_cast<double>(profile.link.rate_bps) / 1e6;
  r.share = rate > 0 ? r.steady_mbit / rate : 0;
  return r;
}

}  // namespace

int benchLink(const BenchLinkOptions& o) {
  for (const auto& s : o.systems) {
    if (s != "vandra" && s != "tcp-cubic" && s != "tcp-bbr") {
      return reportError("bench link",
                         Error(ErrorCode::InvalidArgument,
                               "Unknown system '" + s + "' (systems: tcp-cubic, tcp-bbr, vandra)"));
    }
    if (s.rfind("tcp-", 0) == 0) {
      if (auto ok = tunnel::checkCongestionControl(s.substr(4)); !ok) {
        return reportError("bench link", ok.error());
      }
    }
  }
  std::vector<testbed::Profile> profiles;
  for (const auto& p : o.profiles) {
    auto found = testbed::findProfile(p);
    if (!found) {
      return reportError("bench link", found.error());
    }
    profiles.push_back(*found);
  }
  auto made = makeWorkDir("vandra-benchlink");
  if (!made) {
    return reportError("bench link", made.error());
  }
  const std::string work = *made;
  auto rm = defer([&] {
    std::error_code ec;
    fs::remove_all(work, ec);
  });
  std::vector<LinkRun> all;
  bool all_ok = true;
  for (const auto& profile : profiles) {
    if (!o.json) {
      std::fprintf(stderr, "bench link: building the testbed (%s)...\n", profile.name.c_str());
    }
    testbed::TestbedOptions to = benchTestbed(work, profile.name, "");
    auto tb = testbed::up(to);
    if (!tb) {
      return reportError("bench link", tb.error());
    }
    auto down = defer([&] { (void)testbed::down(to.state_dir); });
    auto ends = endsOf(*tb);
    if (!ends) {
      return reportError("bench link", ends.error());
    }
    for (int run = 0; run < o.runs; ++run) {
      for (size_t k = 0; k < o.systems.size(); ++k) {
        const std::string& system = o.systems[(k + static_cast<size_t>(run)) % o.systems.size()];
        if (!o.json) {
          std::fprintf(stderr, "bench link: %s, run %d, %s (%d s)...\n", profile.name.c_str(),
                       run + 1, system.c_str(), o.seconds);
        }
        LinkRun r = runOne(*tb, *ends, profile, system, run + 1, o.seconds);
        all_ok = all_ok && r.ok;
        if (o.json) {
          std::cout << toJson(r).dump() << "\n" << std::flush;
        }
        all.push_back(std::move(r));
      }
    }
  }
  if (!o.json) {
    std::printf("%-8s %-10s %-4s %8s %9s %10s %7s %8s\n", "profile", "system", "run", "MB",
                "Mbit/s", "steady", "share", "retrans");
    for (const auto& r : all) {
      if (!r.ok) {
        std::printf("%-8s %-10s %-4d FAILED: %s\n", r.profile.c_str(), r.system.c_str(), r.run,
                    r.error.c_str());
        continue;
      }
      std::printf("%-8s %-10s %-4d %8.1f %9.1f %10.1f %6.0f%% %8llu\n", r.profile.c_str(),
                  r.system.c_str(), r.run, static_cast<double>(r.bytes) / 1e6, r.mbit,
                  r.steady_mbit, 100 * r.share, static_cast<unsigned long long>(r.retransmitted));
    }
  }
  return all_ok ? 0 : 1;
}

}  // namespace vandra::cli
