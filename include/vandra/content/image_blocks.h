// A disk image's content by 4 KiB block, and the index of which blocks an image holds: the
// two halves of content references (ref_codec.h). The target reads the block a reference
// names from its own copy of the image; the source finds which of its guest's pages are
// blocks of an image both sites hold.
//
//   qemu-img info --backing-chain ─> files by depth ─┐
//   qemu-img map  --output=json   ─> extents ────────┴─> ImageBlocks::read(offset) = pread
//   ImageBlocks ─> every non-zero data block: XXH3-64 ─> BlockIndex (sorted) ─> find(page)
//
// qemu-img parses the format (qcow2 chains, raw); the bytes are read with pread() from the
// file at the offset it maps. Only images nothing writes are opened this way (base images:
// imported packages, exports, the copies kept for return trips). Encrypted images are
// refused; compressed clusters have no file offset and are neither indexed nor readable.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/common/unique_fd.h"
#include "vandra/content/qemu_stream.h"

namespace vandra::content {

/// Something that holds 4 KiB blocks by offset: what a content reference is resolved from.
class BlockSource {
 public:
  virtual ~BlockSource() = default;
  /// The kPageSize bytes at @p offset into @p out. Errors: InvalidArgument (not a block of
  /// the source), Unsupported, Io.
  [[nodiscard]] virtual Result<void> read(uint64_t offset, char* out) const = 0;
  /// What it is, for messages (a file's path).
  virtual const std::string& name() const = 0;
};

class ImageBlocks : public BlockSource {
 public:
  /// One run of the image's virtual content, as qemu-img maps it.
  struct Extent {
    uint64_t start = 0;
    uint64_t length = 0;
    bool data = false;         // bytes stored in a file (else zeros)
    size_t file = 0;           // index into the chain (depth), when data
    uint64_t file_offset = 0;  // where start is in that file, when data
    bool readable = true;      // false: data with no file offset (a compressed cluster)
  };

  /// Opens @p path and its backing chain read-only and maps its content. Errors: NotFound (a
  /// file of the chain), Unsupported (an encrypted image, more than 16 files), Subprocess
  /// (qemu-img), DiskImageInvalid (a map qemu-img should not give), Io.
  [[nodiscard]] static Result<std::shared_ptr<const ImageBlocks>> open(const std::string& path);

  uint64_t virtualSize() const { return size_; }
  const std::string& path() const { return path_; }
  const std::string& name() const override { return path_; }
  const std::vector<Extent>& extents() const { return extents_; }

  /// The kPageSize bytes at @p offset into @p out. Errors: InvalidArgument (not a multiple of
  /// kPageSize, or past the end), Unsupported (a compressed cluster), Io (a short read).
  [[nodiscard]] Result<void> read(uint64_t offset, char* out) const override;
  /// @p length bytes at @p offset inside one data extent @p e (for indexing in large reads).
  [[nodiscard]] Result<void> readExtent(const Extent& e, uint64_t offset, size_t length,
                                        char* out) const;

 private:
  std::string path_;
  uint64_t size_ = 0;
  std::vector<UniqueFd> files_;  // by depth
  std::vector<Extent> extents_;  // sorted, contiguous from 0 to size_
};

/// The most blocks one index holds (16 bytes each: 32 MiB, 8 GiB of data); the rest of a
/// larger image is left out (its pages go as bytes).
inline constexpr size_t kMaxIndexBlocks = size_t{1} << 21;

/// Where a block with given bytes is: what a page may be referred to by.
class BlockLookup {
 public:
  virtual ~BlockLookup() = default;
  /// The offset (a multiple of kPageSize) of a block whose bytes are @p page (kPageSize).
  virtual std::optional<uint64_t> find(const char* page) const = 0;
};

/// Which 4 KiB blocks an image holds, by content: a sorted table of (XXH3-64 of the block,
/// offset). A lookup confirms a candidate by reading the block and comparing every byte, so
/// a hash collision, or an index that no longer matches the file, costs only a miss.
class BlockIndex : public BlockLookup {
 public:
  /// Indexes every non-zero data block of @p image (at most @p max_blocks). Errors: those of
  /// ImageBlocks::readExtent; Cancelled once @p stop is set (checked every MiB read).
  [[nodiscard]] static Result<std::shared_ptr<const BlockIndex>> build(
      std::shared_ptr<const ImageBlocks> image, size_t max_blocks = kMaxIndexBlocks,
      const std::atomic<bool>* stop = nullptr);

  /// The offset of a block of the image whose bytes are @p page (kPageSize bytes).
  std::optional<uint64_t> find(const char* page) const override;

  size_t blocks() const { return entries_.size(); }
  /// More non-zero blocks than max_blocks: some were left out.
  bool truncated() const { return truncated_; }
  const ImageBlocks& image() const { return *image_; }

 private:
  struct Entry {
    uint64_t hash = 0;
    uint64_t offset = 0;
  };
  std::shared_ptr<const ImageBlocks> image_;
  std::vector<Entry> entries_;  // sorted by hash
  bool truncated_ = false;
};

/// The 64-bit content hash the index uses (XXH3).
uint64_t blockHash(const char* page);

}  // namespace vandra::content
