// SentBlockIndex, SentBlockCache and the NBD taps (sent_blocks.h).
#include "vandra/content/sent_blocks.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdlib>
#include <cstring>
#include <random>

#include "bytes.h"

namespace vandra::content {
namespace {

uint64_t randomSeed() {
  uint64_t seed = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1) {
    seed = std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32);
  }
  return seed;
}

}  // namespace

// ---- source ------------------------------------------------------------------------------

SentBlockIndex::SentBlockIndex() : seed_(randomSeed()) {}

void SentBlockIndex::add(std::string_view block) {
  std::unique_lock lock(mu_);
  const uint64_t n = next_++;
  if (n >= kMaxSentBlocks || detail::isZero(block)) {
    return;  // numbered all the same: both ends count every block
  }
  lock.unlock();
  const XXH128_hash_t h = XXH3_128bits_withSeed(block.data(), kPageSize, seed_);
  lock.lock();
  by_hash_.emplace(h.low64, Entry{n, h.high64});
}

std::optional<uint64_t> SentBlockIndex::find(const char* page) const {
  const XXH128_hash_t h = XXH3_128bits_withSeed(page, kPageSize, seed_);
  std::lock_guard lock(mu_);
  auto [first, last] = by_hash_.equal_range(h.low64);
  for (auto it = first; it != last; ++it) {
    if (it->second.confirm == h.high64) {
      return it->second.number * kPageSize;
    }
  }
  return std::nullopt;
}

uint64_t SentBlockIndex::blocks() const {
  std::lock_guard lock(mu_);
  return next_;
}

// ---- target ------------------------------------------------------------------------------

Result<std::shared_ptr<SentBlockCache>> SentBlockCache::create(const std::string& dir,
                                                               std::string name) {
  UniqueFd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd.valid()) {  // a file system without O_TMPFILE: a named file, unlinked at once
    std::string path = dir + "/.sent-blocks-XXXXXX";
    fd = UniqueFd(::mkostemp(path.data(), O_CLOEXEC));
    if (!fd.valid()) {
      return fail(Error::fromErrno("Cannot create the sent-block cache in '" + dir + "'"));
    }
    ::unlink(path.c_str());
  }
  return std::make_shared<SentBlockCache>(std::move(fd), std::move(name));
}

void SentBlockCache::add(std::string_view block) {
  std::unique_lock lock(mu_);
  const uint64_t n = next_++;
  if (n >= kMaxSentBlocks || !error_.empty()) {
    return;
  }
  if (!detail::isZero(block)) {  // a hole reads as zeros
    lock.unlock();
    size_t done = 0;
    std::string err;
    while (done < block.size()) {
      const ssize_t w = ::pwrite(fd_.get(), block.data() + done, block.size() - done,
                                 static_cast<off_t>(n * kPageSize + done));
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w <= 0) {
        err = std::string("writing the sent-block cache failed: ") + std::strerror(errno);
        break;
      }
      done += static_cast<size_t>(w);
    }
    lock.lock();
    if (!err.empty()) {
      error_ = err;
      cv_.notify_all();
      return;
    }
  }
  stored_ = n + 1;
  cv_.notify_all();
}

void SentBlockCache::end() {
  std::lock_guard lock(mu_);
  ended_ = true;
  cv_.notify_all();
}

uint64_t SentBlockCache::blocks() const {
  std::lock_guard lock(mu_);
  return next_;
}

Result<void> SentBlockCache::read(uint64_t offset, char* out) const {
  const uint64_t n = offset / kPageSize;
  if (offset % kPageSize != 0 || n >= kMaxSentBlocks) {
    return fail(ErrorCode::InvalidArgument,
                "Offset " + std::to_string(offset) + " is not a block the disk mirror may send");
  }
  {
    std::unique_lock lock(mu_);
    const bool arrived =
        cv_.wait_for(lock, wait, [&] { return stored_ > n || ended_ || !error_.empty(); });
    if (stored_ <= n) {
      return fail(ErrorCode::Io,
                  !error_.empty() ? error_
                  : arrived
                      ? "the disk mirror's stream ended before block " + std::to_string(n)
                      : "block " + std::to_string(n) + " of the disk mirror did not come in " +
                            std::to_string(wait.count()) + " ms");
    }
  }
  const ssize_t r = ::pread(fd_.get(), out, kPageSize, static_cast<off_t>(offset));
  if (r < 0) {
    return fail(Error::fromErrno("Cannot read the sent-block cache"));
  }
  if (static_cast<size_t>(r) < kPageSize) {  // a hole at the end of the file
    std::memset(out + r, 0, kPageSize - static_cast<size_t>(r));
  }
  return {};
}

// ---- taps --------------------------------------------------------------------------------

namespace {

template <class Sink>
class NbdTap : public tunnel::ByteTransform {
 public:
  explicit NbdTap(std::shared_ptr<Sink> sink) : sink_(std::move(sink)) {}
  ~NbdTap() override {
    if constexpr (std::is_same_v<Sink, SentBlockCache>) {
      sink_->end();
    }
  }
  Result<void> feed(std::string_view in, std::string& out) override {
    out.append(in);
    scanner_.scan(in, [this](uint64_t, std::string_view block) { sink_->add(block); });
    return {};
  }
  Result<void> finish(std::string&) override {
    if constexpr (std::is_same_v<Sink, SentBlockCache>) {
      sink_->end();
    }
    return {};
  }

 private:
  std::shared_ptr<Sink> sink_;
  NbdWriteScanner scanner_;
};

}  // namespace

std::unique_ptr<tunnel::ByteTransform> tapIntoIndex(std::shared_ptr<SentBlockIndex> index) {
  return std::make_unique<NbdTap<SentBlockIndex>>(std::move(index));
}

std::unique_ptr<tunnel::ByteTransform> tapIntoCache(std::shared_ptr<SentBlockCache> cache) {
  return std::make_unique<NbdTap<SentBlockCache>>(std::move(cache));
}

}  // namespace vandra::content
