// Content references on the migration stream: pages of the guest's RAM that are blocks of a
// disk image both sites hold go as a reference to that block, not as their bytes.
//
//   source QEMU ─ stream ─> [RefEncoder] ══ tunnel ══> [RefDecoder] ─ stream ─> target QEMU
//                              │  scanner finds PAGE payloads         │ reads the block from
//                              │  BlockIndex: a block with these bytes│ its own copy, checks
//                              └─ yes: REF(identity, offset, SHA-256) └ the SHA-256, writes it
//
// The encoded stream (the tunnel's migration stream between the two forwarders):
//
//   "VCR1" u8 n {u8 len, digest[len]}*n       identities 0..n-1: base images by digest
//   then records:
//     0x01 be32 len bytes[len]                literal: the next len bytes of QEMU's stream
//     0x02 u8 identity be64 offset sha256[32] the 4096 bytes at offset of that image
//
// A stream that starts with QEMU's own magic ("QEVM") is passed as it is, so a source that
// does not encode needs nothing from the target. Everything the decoder reads is hostile:
// identities must be images this site prepared for the migration, records are bounded, and a
// block whose bytes do not have the reference's SHA-256 ends the stream (QEMU's incoming
// migration fails and the migration rolls back): a page is never replaced by other bytes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vandra/content/image_blocks.h"
#include "vandra/content/qemu_stream.h"
#include "vandra/tunnel/forward.h"

namespace vandra::content {

inline constexpr char kRefMagic[4] = {'V', 'C', 'R', '1'};
inline constexpr size_t kMaxRefIdentities = 16;
inline constexpr size_t kMaxRefIdentityName = 128;
inline constexpr uint32_t kMaxLiteral = 1 << 20;
inline constexpr uint8_t kRecordLiteral = 0x01;
inline constexpr uint8_t kRecordRef = 0x02;
inline constexpr size_t kRefRecordBody = 1 + 8 + 32;  // identity, offset, SHA-256

/// What the encoder or decoder did (both ends keep one per migration; read any time).
struct RefCounters {
  std::atomic<uint64_t> plain_bytes{0};  // QEMU's stream: in at the source, out at the target
  std::atomic<uint64_t> encoded_bytes{
      0};                          // the encoded stream: out at the source, in at the target
  std::atomic<uint64_t> pages{0};  // PAGE records the source's scanner found
  std::atomic<uint64_t> refs{0};   // pages sent (source) / resolved (target) as references
};

/// What a source may refer to, in a fixed order (the identity numbers): base images by digest
/// (their index once built: pages go as bytes until then) and the blocks a disk mirror sent.
class RefIndexSet {
 public:
  explicit RefIndexSet(std::vector<std::string> digests);
  const std::vector<std::string>& digests() const { return digests_; }
  void publish(size_t identity, std::shared_ptr<const BlockLookup> index);
  std::shared_ptr<const BlockLookup> get(size_t identity) const;

 private:
  std::vector<std::string> digests_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<const BlockLookup>> indexes_;
};

class RefEncoder : public tunnel::ByteTransform {
 public:
  /// @p set names 1..kMaxRefIdentities identities.
  RefEncoder(std::shared_ptr<const RefIndexSet> set, std::shared_ptr<RefCounters> counters);
  [[nodiscard]] Result<void> feed(std::string_view in, std::string& out) override;
  [[nodiscard]] Result<void> finish(std::string& out) override;
  const QemuStreamScanner& scanner() const { return scanner_; }

 private:
  void onPage(std::string& out, const char* page);
  // Literal bytes go straight into @p out, in a record whose length is written when it closes
  // (before a reference, at the end of each feed, or at kMaxLiteral).
  void appendLiteral(std::string& out, std::string_view bytes);
  void closeLiteral(std::string& out);

  std::shared_ptr<const RefIndexSet> set_;
  std::shared_ptr<RefCounters> counters_;
  QemuStreamScanner scanner_;
  std::vector<StreamPiece> pieces_;
  std::string page_;  // a page split across feeds, being collected
  std::vector<std::pair<size_t, std::shared_ptr<const BlockLookup>>> lookups_;  // this feed's
  bool literal_open_ = false;
  size_t literal_len_at_ = 0;  // where the open record's length goes in the output
  uint32_t literal_len_ = 0;
  bool header_sent_ = false;
};

class RefDecoder : public tunnel::ByteTransform {
 public:
  /// @p images: this site's copies of the images a source may name, by digest.
  RefDecoder(std::map<std::string, std::shared_ptr<const BlockSource>> images,
             std::shared_ptr<RefCounters> counters);
  [[nodiscard]] Result<void> feed(std::string_view in, std::string& out) override;
  [[nodiscard]] Result<void> finish(std::string& out) override;

 private:
  enum class Step : uint8_t { Magic, Count, IdLen, IdName, Type, LiteralLen, Literal, Ref, Plain };
  void expect(Step s, size_t n);
  Result<void> onField(std::string& out);
  Result<void> resolve(std::string& out);

  std::map<std::string, std::shared_ptr<const BlockSource>> images_;
  std::shared_ptr<RefCounters> counters_;
  std::vector<std::shared_ptr<const BlockSource>> identities_;
  size_t count_ = 0;
  Step step_ = Step::Magic;
  size_t want_ = 4;
  std::string field_;
  uint32_t literal_left_ = 0;
  std::array<char, kPageSize> block_{};
};

}  // namespace vandra::content
