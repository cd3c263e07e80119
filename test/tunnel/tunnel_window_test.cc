// The receive window that follows its reader (TunnelSettings::window_follows_reader): behind a
// slow reader the writer gets only a few round trips of the reader's work ahead, where the
// fixed window lets it queue the whole configured window (what a migration's pause then has
// to drain). Real TLS tunnel on loopback; the reader is paced to about 20 MB/s.
#include "tunnel_test_support.h"

namespace vandra::tunnel {
namespace {

// The most the writer was ahead of the reader (bytes written minus bytes read) over the last
// 1.5 s of a 4 s run, with a 16 MiB configured window (the first 16 MiB are granted at the
// stream's start either way: the reader drains them in about a second, two on a busy host).
size_t mostAheadOfASlowReader(bool follow) {
  Server server([&](ListenerOptions& o) {
    o.receive_window = 16 << 20;
    o.window_follows_reader = follow;
    o.ping_interval = 20ms;  // the round trip the window is sized by
  });
  EXPECT_TRUE(server.listener);
  if (!server.listener) {
    return 0;
  }
  auto client = Tunnel::connect(clientOptions(server.listener->port()));
  EXPECT_TRUE(client) << client.error().describe();
  Tunnel* accepted = server.waitTunnel();
  EXPECT_NE(accepted, nullptr);
  if (!client || accepted == nullptr) {
    return 0;
  }
  EXPECT_TRUE(eventually([&] { return accepted->rtt().has_value(); }, in(5s)));
  auto out = (*client)->openStream(StreamKind::Nbd, "slow");
  EXPECT_TRUE(out) << out.error().describe();
  auto in_stream = server.inbox.take("slow");
  EXPECT_TRUE(in_stream);
  if (!out || !in_stream) {
    return 0;
  }
  std::atomic<uint64_t> written{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::string block;
    for (uint64_t i = 0; !stop.load(); ++i) {
      makeBlock(7, i, block);
      if (!out->write(block)) {
        return;
      }
      written += block.size();
    }
    (void)out->closeWrite();
  });
  uint64_t read = 0;
  size_t most_ahead = 0;
  std::vector<char> buf(kBlock);
  const auto start = Clock::now();
  for (;;) {
    auto r = in_stream->read(buf.data(), buf.size(), in(10s));
    if (!r || *r == 0) {
      EXPECT_TRUE(r) << r.error().describe();
      stop = true;
      out->close();  // wakes a writer waiting for window
      break;
    }
    read += *r;
    const auto t = Clock::now() - start;
    if (t > 2500ms && t < 4000ms) {
      most_ahead = std::max<size_t>(most_ahead, written.load() - read);
    }
    if (t >= 4000ms) {
      stop = true;  // then read on to the end, so that the writer's last write completes
    } else {
      std::this_thread::sleep_for(3ms);  // the slow reader: 64 KiB per ~3 ms
    }
  }
  writer.join();
  return most_ahead;
}

TEST(TunnelWindowTest, AWindowThatFollowsItsReaderKeepsTheQueueBehindASlowReaderShort) {
  const size_t fixed = mostAheadOfASlowReader(false);
  const size_t follow = mostAheadOfASlowReader(true);
  // Fixed: the whole 16 MiB window waits behind the reader. Following: 100 ms of what the
  // reader takes at its peak (~2 MB here), at least 1 MiB, plus what is in the pipes.
  EXPECT_GT(fixed, 12U << 20) << "fixed " << fixed << ", follow " << follow;
  EXPECT_LT(follow, 4U << 20) << "fixed " << fixed << ", follow " << follow;
}

}  // namespace
}  // namespace vandra::tunnel
