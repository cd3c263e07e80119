// The blocks a disk mirror's NBD stream carried in this migration, numbered in stream order
// (NbdWriteScanner; both tunnel ends scan the same bytes, so they number the same blocks the
// same way): at the source an index by content, so that RAM pages equal to a block already
// sent go as a reference to its number; at the target the blocks themselves, in an unnamed
// file, to resolve those references. A first move to a site that holds nothing yet then sends
// a guest's page cache of its disks once, with the disks.
//
//   source: QEMU mirror ─ NBD ─> [SentBlockTap] ═════ tunnel ═════> [CacheTap] ─> QEMU NBD server
//                                 └ SentBlockIndex (hash -> n)          └ SentBlockCache (n ->
//                                 block)
//   source: QEMU migration ─> [RefEncoder: page -> n?] ══ REF(nbd:..., n*4096, sha) ══>
//   [RefDecoder]
//
// A reference may reach the target before the NBD bytes of its block (two streams): the cache
// waits for that block, a bounded time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"
#include "vandra/content/image_blocks.h"
#include "vandra/content/nbd_stream.h"
#include "vandra/tunnel/forward.h"

namespace vandra::content {

/// The most blocks either end numbers per NBD stream (4 GiB); later blocks are not kept.
inline constexpr uint64_t kMaxSentBlocks = uint64_t{1} << 20;

/// Source: which numbered blocks hold which content, by a 128-bit XXH3 keyed with a secret
/// drawn for this index (64 bits to find, 64 to confirm; the source keeps no copy of the
/// bytes). A guest cannot aim a collision at a key it never sees, and should one happen
/// anyway the target refuses the reference: it checks the SHA-256 the reference carries
/// against its own copy of the block. Cheap where a SHA-256 per block was not: every block
/// the mirrors carry and every RAM page QEMU sends is hashed here.
class SentBlockIndex : public BlockLookup {
 public:
  SentBlockIndex();
  /// The next block of the stream (numbered from 0).
  void add(std::string_view block);
  std::optional<uint64_t> find(const char* page) const override;
  uint64_t blocks() const;

 private:
  struct Entry {
    uint64_t number = 0;
    uint64_t confirm = 0;  // the other half of the keyed hash
  };
  const uint64_t seed_;
  mutable std::mutex mu_;
  std::unordered_multimap<uint64_t, Entry> by_hash_;
  uint64_t next_ = 0;
};

/// Target: the numbered blocks, in a file nobody else can open (O_TMPFILE), gone with it.
class SentBlockCache : public BlockSource {
 public:
  /// An unnamed file in folder @p dir. Errors: Io.
  [[nodiscard]] static Result<std::shared_ptr<SentBlockCache>> create(const std::string& dir,
                                                                      std::string name);
  void add(std::string_view block);
  /// The stream ended (or failed): references to blocks it never brought fail at once.
  void end();
  /// Block offset / 4096, waiting up to @p wait for the NBD stream to bring it.
  [[nodiscard]] Result<void> read(uint64_t offset, char* out) const override;
  const std::string& name() const override { return name_; }
  uint64_t blocks() const;

  SentBlockCache(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  std::chrono::milliseconds wait{30000};

 private:
  UniqueFd fd_;
  std::string name_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  uint64_t next_ = 0;    // blocks numbered so far
  uint64_t stored_ = 0;  // blocks below this are in the file (or holes: zeros)
  bool ended_ = false;
  std::string error_;  // a write failed: blocks from stored_ on are missing
};

/// Pass-through transforms of an NBD client stream that number its WRITE blocks into an index
/// (source) or a cache (target).
std::unique_ptr<tunnel::ByteTransform> tapIntoIndex(std::shared_ptr<SentBlockIndex> index);
std::unique_ptr<tunnel::ByteTransform> tapIntoCache(std::shared_ptr<SentBlockCache> cache);

}  // namespace vandra::content
