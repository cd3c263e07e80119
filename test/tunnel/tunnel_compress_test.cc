// Compressed bulk streams over a real tunnel (TLS on loopback): what compresses goes
// compressed and arrives byte for byte; what does not goes as it is; control streams, an end
// with compression off and a version-2 peer send plain DATA; the level rises for a link that
// is the limit, not for a slow reader.
#include <random>

#include "tunnel_test_support.h"

namespace vandra::tunnel {
namespace {

// Half text-like (compresses about 5x), half pseudo-random (does not), in 100 KiB writes.
std::string mixedContent(size_t n) {
  static const char* kWords[] = {"page ", "block ", "vandra ", "\n", "migration ", "0x7f3a "};
  std::mt19937_64 rng(42);
  std::string s;
  s.reserve(n);
  while (s.size() < n) {
    const bool text = (s.size() / (1 << 20)) % 2 == 0;  // alternate each MiB
    if (text) {
      s += kWords[rng() % 6];
    } else {
      const uint64_t v = rng();
      s.append(reinterpret_cast<const char*>(&v), 8);
    }
  }
  s.resize(n);
  return s;
}

// Sends @p content on a new @p kind stream from @p from and reads it at @p server; the bytes
// that arrived.
std::string sendThrough(Tunnel& from, Server& server, StreamKind kind, const std::string& label,
                        const std::string& content) {
  auto s = from.openStream(kind, label);
  EXPECT_TRUE(s) << s.error().describe();
  if (!s) {
    return {};
  }
  std::thread writer([&] {
    for (size_t off = 0; off < content.size(); off += 100 * 1024) {
      ASSERT_TRUE(s->write(std::string_view(content).substr(off, 100 * 1024)));
    }
    ASSERT_TRUE(s->closeWrite());
  });
  std::string got;
  auto in_stream = server.inbox.take(label);
  EXPECT_TRUE(in_stream);
  if (in_stream) {
    std::vector<char> buf(70 * 1024);  // not a multiple of anything the writer used
    for (;;) {
      auto r = in_stream->read(buf.data(), buf.size(), in(30s));
      if (!r || *r == 0) {
        EXPECT_TRUE(r) << r.error().describe();
        break;
      }
      got.append(buf.data(), *r);
    }
  }
  writer.join();
  return got;
}

TEST(TunnelCompressTest, BulkStreamsGoCompressedAndArriveByteForByte) {
  Server server;
  ASSERT_TRUE(server.listener);
  auto client = Tunnel::connect(clientOptions(server.listener->port()));
  ASSERT_TRUE(client) << client.error().describe();
  Tunnel& t = **client;
  ASSERT_GE(t.version(), 3);  // compressed DATA from version 3 on
  const std::string content = mixedContent(12 << 20);
  const std::string got = sendThrough(t, server, StreamKind::Migration, "m-z", content);
  EXPECT_EQ(got.size(), content.size());
  EXPECT_TRUE(got == content) << "the bytes differ";

  const TunnelStats st = t.stats();
  const KindCounters& mig = st.of(StreamKind::Migration);
  EXPECT_EQ(mig.plain_bytes_sent, content.size());
  // Half of it compresses about 5x, half not at all: well under 0.75 of the plain size.
  EXPECT_LT(mig.bytes_sent, content.size() * 3 / 4);
  EXPECT_GT(mig.bytes_sent, content.size() / 2);  // the random half went as it was
  EXPECT_EQ(st.compression.plain_bytes, content.size());
  EXPECT_GT(st.compression.chunks_compressed, 0U);
  EXPECT_GT(st.compression.chunks_plain, 0U);  // the random half did not pay
  EXPECT_EQ(st.compression.compressed_bytes + (content.size() - st.compression.compressed_plain),
            mig.bytes_sent);
  Tunnel* peer = server.waitTunnel();
  ASSERT_NE(peer, nullptr);
  EXPECT_EQ(peer->stats().of(StreamKind::Migration).bytes_received, mig.bytes_sent);
  EXPECT_EQ(peer->stats().of(StreamKind::Migration).plain_bytes_received, content.size());
}

TEST(TunnelCompressTest, ControlStreamsCompressionOffAndVersion2PeersSendPlainData) {
  const std::string content = mixedContent(3 << 20);
  {  // A control stream is never compressed; nor is anything from an end with compression off.
    Server server;
    auto opts = clientOptions(server.listener->port());
    opts.compression = Compression::Off;
    auto client = Tunnel::connect(opts);
    ASSERT_TRUE(client) << client.error().describe();
    EXPECT_EQ(sendThrough(**client, server, StreamKind::Nbd, "m-1/d0", content), content);
    EXPECT_EQ(sendThrough(**client, server, StreamKind::Control, "m-1", content), content);
    const TunnelStats st = (*client)->stats();
    EXPECT_EQ(st.of(StreamKind::Nbd).bytes_sent, content.size());
    EXPECT_EQ(st.of(StreamKind::Control).bytes_sent, content.size());
    EXPECT_EQ(st.compression.plain_bytes, 0U);
  }
  {  // A peer that speaks version 2 at most: plain DATA, and the content intact.
    Server server([](ListenerOptions& o) { o.max_version = 2; });
    auto client = Tunnel::connect(clientOptions(server.listener->port()));
    ASSERT_TRUE(client) << client.error().describe();
    EXPECT_EQ((*client)->version(), 2);
    EXPECT_EQ(sendThrough(**client, server, StreamKind::Migration, "m-2", content), content);
    EXPECT_EQ((*client)->stats().of(StreamKind::Migration).bytes_sent, content.size());
  }
  {  // And the other way round: the listener's end compresses what it sends too.
    Server server;
    auto client = Tunnel::connect(clientOptions(server.listener->port()));
    ASSERT_TRUE(client) << client.error().describe();
    Tunnel* peer = server.waitTunnel();
    ASSERT_NE(peer, nullptr);
    std::promise<std::string> done;
    (*client)->addStreamHandler(StreamKind::Nbd, "back",
                                [&](StreamKind, const std::string&, Stream st) {
                                  std::string all;
                                  std::vector<char> buf(64 * 1024);
                                  for (;;) {
                                    auto r = st.read(buf.data(), buf.size(), in(30s));
                                    if (!r || *r == 0) {
                                      break;
                                    }
                                    all.append(buf.data(), *r);
                                  }
                                  done.set_value(std::move(all));
                                });
    auto back = peer->openStream(StreamKind::Nbd, "back");
    ASSERT_TRUE(back);
    for (size_t off = 0; off < content.size(); off += 100 * 1024) {
      ASSERT_TRUE(back->write(std::string_view(content).substr(off, 100 * 1024)));
    }
    ASSERT_TRUE(back->closeWrite());
    auto f = done.get_future();
    ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
    EXPECT_EQ(f.get(), content);
    EXPECT_LT(peer->stats().of(StreamKind::Nbd).bytes_sent, content.size() * 3 / 4);
  }
}

// Text that compresses about 5x, @p n bytes.
std::string textContent(size_t n) {
  static const char* kWords[] = {"page ", "block ", "vandra ", "\n", "migration ", "0x7f3a "};
  std::mt19937_64 rng(7);
  std::string s;
  while (s.size() < n) {
    s += kWords[rng() % 6];
  }
  s.resize(n);
  return s;
}

// The highest level the writer's compressor tried while sending 24 MiB of text (three level
// decisions) to a reader paced to about @p reader_bytes_per_s (0: as fast as it can), the
// writer's tunnel capped at @p cap_bytes_per_s (0: none), the reader granting a 1 MiB window.
int topLevelSending(uint64_t reader_bytes_per_s, uint64_t cap_bytes_per_s) {
  Server server([](ListenerOptions& o) {
    o.receive_window = 1 << 20;
    o.window_follows_reader = false;
  });
  auto opts = clientOptions(server.listener->port());
  opts.bandwidth_bytes_per_s = cap_bytes_per_s;
  auto client = Tunnel::connect(opts);
  EXPECT_TRUE(client) << client.error().describe();
  if (!client) {
    return 0;
  }
  auto out = (*client)->openStream(StreamKind::Migration, "z-level");
  auto in_stream = server.inbox.take("z-level");
  EXPECT_TRUE(out && in_stream);
  if (!out || !in_stream) {
    return 0;
  }
  const std::string content = textContent(24 << 20);
  std::thread writer([&] {
    for (size_t off = 0; off < content.size(); off += 1 << 20) {
      ASSERT_TRUE(out->write(std::string_view(content).substr(off, 1 << 20)));
    }
    ASSERT_TRUE(out->closeWrite());
  });
  std::vector<char> buf(64 * 1024);
  const auto start = Clock::now();
  uint64_t got = 0;
  for (;;) {
    auto r = in_stream->read(buf.data(), buf.size(), in(30s));
    if (!r || *r == 0) {
      EXPECT_TRUE(r) << r.error().describe();
      break;
    }
    got += *r;
    if (reader_bytes_per_s > 0) {  // the reader's own pace (its work), not a synchronisation
      std::this_thread::sleep_until(start +
                                    std::chrono::microseconds(got * 1000000 / reader_bytes_per_s));
    }
  }
  writer.join();
  EXPECT_EQ(got, content.size());
  return (*client)->stats().compression.top_level;
}

TEST(TunnelCompressTest, TheLevelRisesWhenTheLinkIsTheLimitNotWhenThePeersReaderIs) {
  // Behind a reader of 8 MB/s (a peer whose CPU is busy) the writer mostly waits for the
  // window: a higher level would only take CPU, the level stays at the lowest.
  EXPECT_EQ(topLevelSending(8'000'000, 0), 1);
  // Behind a 2 MB/s cap the writer waits for the link: the level climbs at each decision.
  EXPECT_GE(topLevelSending(0, 2'000'000), 3);
}

}  // namespace
}  // namespace vandra::tunnel
