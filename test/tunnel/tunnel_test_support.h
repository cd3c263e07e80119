// Shared by the tunnel transport tests (tunnel_test.cc, tunnel_hostile_test.cc,
// tunnel_tap_test.cc): a throwaway PKI made with vandra::pki, a server side that collects its
// streams, and deterministic data to check streams byte for byte. Test-only; one copy per
// test file (an unnamed namespace).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "test/support/require.h"
#include "vandra/common/subprocess.h"
#include "vandra/common/unique_fd.h"
#include "vandra/pki/pki.h"
#include "vandra/tunnel/forward.h"
#include "vandra/tunnel/tunnel.h"

namespace vandra::tunnel {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The raw TLS client writes to sockets the server may have closed.
[[maybe_unused]] const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

[[maybe_unused]] Deadline in(std::chrono::milliseconds d) {
  return Clock::now() + d;
}

// Polls @p pred until it holds or @p deadline passes (a condition wait with a deadline).
template <class Pred>
bool eventually(Pred pred, Deadline deadline) {
  while (!pred()) {
    if (Clock::now() >= deadline) {
      return pred();
    }
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// ---- certificates ----------------------------------------------------------------------------

class Pki {
 public:
  Pki() {
    std::string t = "/tmp/vandra-tunnel-XXXXXX";
    dir_ = ::mkdtemp(t.data()) != nullptr ? t : "";
    ca("dc-ca");
    ca("cloud-ca");
    ca("rogue-ca");
    site("dc-ca", "dc", {"dc"});
    site("cloud-ca", "cloud", {"cloud"});
    site("cloud-ca", "cloud-old", {"cloud"});
    EXPECT_TRUE(
        pki::revoke(path("cloud-ca"), cert("cloud-ca", "cloud-old")));  // a CRL of cloud's CA
    site("rogue-ca", "dc", {"dc"});                                     // right name, unknown CA
    site("dc-ca", "dc-evil", {"dc-evil"});                              // right CA, wrong name
    site("dc-ca", "dc-expired", {"dc"}, -86400 * 3, 1);  // right CA and name, expired
    site("dc-ca", "dc-revoked", {"dc"});                 // right CA and name, revoked below
    auto crl = pki::revoke(path("dc-ca"), cert("dc-ca", "dc-revoked"));
    EXPECT_TRUE(crl) << crl.error().describe();
    // Bundles: each side trusts the peer sites' CAs.
    bundle("trust-cloud.pem", {"dc-ca"});
    bundle("trust-dc.pem", {"cloud-ca"});
  }
  ~Pki() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& rel) const { return dir_ + "/" + rel; }
  std::string cert(const std::string& ca_dir, const std::string& name) const {
    return path(ca_dir + "/" + name + ".crt");
  }
  std::string key(const std::string& ca_dir, const std::string& name) const {
    return path(ca_dir + "/" + name + ".key");
  }

 private:
  void ca(const std::string& name) {
    auto r = pki::initCa({.dir = path(name), .common_name = "vandra " + name, .days = 30});
    ASSERT_TRUE(r) << r.error().describe();
  }
  void site(const std::string& ca_dir, const std::string& name, std::vector<std::string> dns,
            int64_t offset = 0, uint32_t days = 30) {
    auto r = pki::issue({.ca_dir = path(ca_dir),
                         .name = name,
                         .role = pki::Role::Both,
                         .dns_names = std::move(dns),
                         .ip_addresses = {},
                         .days = days,
                         .not_before_offset_s = offset,
                         .group = ""});
    ASSERT_TRUE(r) << r.error().describe();
  }
  void bundle(const std::string& file, const std::vector<std::string>& cas) {
    std::ofstream out(path(file));
    for (const auto& c : cas) {
      std::ifstream in(path(c + "/ca.crt"));
      out << in.rdbuf();
    }
  }
  std::string dir_;
};

[[maybe_unused]] const Pki& pkiOnce() {
  static const Pki p;
  return p;
}

// ---- streams the server side receives ---------------------------------------------------------

class Inbox {
 public:
  void put(const std::string& label, Stream s) {
    {
      std::lock_guard lk(mu_);
      streams_.emplace(label, std::move(s));
    }
    cv_.notify_all();
  }
  std::optional<Stream> take(const std::string& label, Deadline deadline = in(10s)) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_until(lk, deadline, [&] { return streams_.count(label) != 0; })) {
      return std::nullopt;
    }
    auto it = streams_.find(label);
    Stream s = std::move(it->second);
    streams_.erase(it);
    return s;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<std::string, Stream> streams_;
};

// A listener for site "cloud" accepting site "dc"; tunnels it accepts are kept here.
class Server {
 public:
  explicit Server(std::function<void(ListenerOptions&)> tweak = {}) {
    const Pki& p = pkiOnce();
    ListenerOptions o;
    o.local_site = "cloud";
    o.cert_path = p.cert("cloud-ca", "cloud");
    o.key_path = p.key("cloud-ca", "cloud");
    o.ca_bundle_path = p.path("trust-cloud.pem");
    o.peer_sites = {"dc"};
    o.bind_host = "127.0.0.1";
    o.handshake_timeout = 5s;
    o.on_stream = [this](StreamKind, const std::string& label, Stream s) {
      inbox.put(label, std::move(s));
    };
    o.on_tunnel = [this](std::unique_ptr<Tunnel> t) {
      {
        std::lock_guard lk(mu_);
        tunnels_.push_back(std::move(t));
      }
      cv_.notify_all();
    };
    if (tweak) {
      tweak(o);
    }
    auto l = TunnelListener::listen(o);
    EXPECT_TRUE(l) << l.error().describe();
    if (l) {
      listener = std::move(*l);
    }
  }
  ~Server() {
    listener.reset();
    std::lock_guard lk(mu_);
    tunnels_.clear();
  }
  Tunnel* waitTunnel(size_t n = 1, Deadline deadline = in(10s)) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_until(lk, deadline, [&] { return tunnels_.size() >= n; })) {
      return nullptr;
    }
    return tunnels_[n - 1].get();
  }
  size_t tunnelCount() {
    std::lock_guard lk(mu_);
    return tunnels_.size();
  }

  Inbox inbox;
  std::unique_ptr<TunnelListener> listener;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Tunnel>> tunnels_;
};

[[maybe_unused]] TunnelOptions clientOptions(uint16_t port, const std::string& cert_name = "dc",
                                             const std::string& ca = "dc-ca") {
  const Pki& p = pkiOnce();
  TunnelOptions o;
  o.local_site = "dc";
  o.peer_site = "cloud";
  o.cert_path = p.cert(ca, cert_name);
  o.key_path = p.key(ca, cert_name);
  o.ca_bundle_path = p.path("trust-dc.pem");
  o.host = "127.0.0.1";
  o.port = port;
  o.handshake_timeout = 5s;
  return o;
}

// ---- deterministic pseudo-random data ---------------------------------------------------------

constexpr size_t kBlock = 64 * 1024;

[[maybe_unused]] void makeBlock(uint64_t seed, uint64_t index, std::string& out) {
  out.resize(kBlock);
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + index * 0xD1B54A32D192ED03ULL;
  for (size_t i = 0; i < kBlock; i += 8) {
    x += 0x9E3779B97F4A7C15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    std::memcpy(out.data() + i, &z, 8);
  }
}

[[maybe_unused]] Result<void> sendPattern(Stream& s, uint64_t seed, size_t total,
                                          std::atomic<size_t>* progress = nullptr) {
  std::string block;
  for (size_t off = 0, i = 0; off < total; off += kBlock, ++i) {
    makeBlock(seed, i, block);
    VANDRA_TRY(s.write(std::string_view(block).substr(0, std::min(kBlock, total - off))));
    if (progress != nullptr) {
      progress->store(off + std::min(kBlock, total - off));
    }
  }
  return s.closeWrite();
}

// Reads to the end; "" when exactly @p total bytes of the pattern arrived, else what was wrong.
[[maybe_unused]] std::string checkPattern(Stream& s, uint64_t seed, size_t total) {
  std::string expected;
  std::vector<char> buf(200 * 1024);
  size_t pos = 0;
  uint64_t block_index = UINT64_MAX;
  for (;;) {
    auto r = s.read(buf.data(), buf.size(), in(60s));
    if (!r) {
      return "read failed at " + std::to_string(pos) + ": " + r.error().describe();
    }
    if (*r == 0) {
      return pos == total ? "" : "ended at " + std::to_string(pos) + " of " + std::to_string(total);
    }
    size_t off = 0;
    while (off < *r) {
      const uint64_t bi = pos / kBlock;
      if (bi != block_index) {
        makeBlock(seed, bi, expected);
        block_index = bi;
      }
      const size_t in_block = pos % kBlock;
      const size_t n = std::min(*r - off, kBlock - in_block);
      if (pos + n > total) {
        return "more than " + std::to_string(total) + " bytes";
      }
      if (std::memcmp(buf.data() + off, expected.data() + in_block, n) != 0) {
        return "mismatch in bytes " + std::to_string(pos) + ".." + std::to_string(pos + n);
      }
      pos += n;
      off += n;
    }
  }
}

}  // namespace
}  // namespace vandra::tunnel
