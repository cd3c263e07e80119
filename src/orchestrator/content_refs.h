// Content references on this site's migration streams (content/ref_codec.h, ADR 0030): what
// a migration's RAM pages may refer to (the base images both sites hold, indexed while the
// disks mirror; the blocks the disk mirrors sent, content/sent_blocks.h) and the transforms
// the forwarders run: at the source the NBD taps and the encoder, at the target the NBD
// caches and the decoder.
//
//   source: MirrorSrc ─ shared bases ─> SourceContentRefs::start ─ thread: open + index each
//           mirror connects ─> nbdFactory() ─> tap: SentBlockIndex "nbd:<conn>:<stream>"
//           QEMU migrates ─> migrationFactory() ─> RefEncoder (bases, then sent blocks)
//   target: PrepareDst ─ paths(id) ─> TargetContentRefs(bases) ─ nbdFactory() ─> SentBlockCache
//                                                              ─ migrationFactory() ─> RefDecoder
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "vandra/content/ref_codec.h"
#include "vandra/content/sent_blocks.h"
#include "vandra/orchestrator/migration_host.h"
#include "vandra/tunnel/forward.h"

namespace vandra::orchestrator {

/// The tunnel version from which a peer's agent decodes content references.
inline constexpr uint8_t kContentRefsVersion = 4;

/// The name both ends give the blocks one NBD stream carried.
std::string sentBlocksName(const tunnel::Stream& stream);

class SourceContentRefs {
 public:
  SourceContentRefs() = default;
  ~SourceContentRefs();
  SourceContentRefs(const SourceContentRefs&) = delete;
  SourceContentRefs& operator=(const SourceContentRefs&) = delete;

  /// Starts indexing this site's copies of @p digests (base images the target holds too) on a
  /// thread of its own. Once; an empty list does nothing.
  void start(MigrationHost& host, std::vector<std::string> digests);
  /// For the NBD forwarder: each mirror's stream numbered into an index of what it sent.
  tunnel::TransformFactory nbdFactory();
  /// For the migration stream's forwarder: an encoder referring to the base images and the
  /// blocks the mirrors sent (none when there is nothing to refer to).
  tunnel::TransformFactory migrationFactory();
  /// Stops indexing (an index not finished is not used) and waits for the thread.
  void stop();
  /// What was indexed and what the encoders did: identities, indexed, sent_blocks, pages,
  /// refs, plain_bytes, encoded_bytes.
  nlohmann::json report() const;
  /// QEMU's migration bytes the encoders have taken so far (0: no encoder).
  uint64_t plainBytes() const { return counters_->plain_bytes.load(); }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> bases_;
  std::vector<std::shared_ptr<const content::BlockLookup>> base_indexes_;  // built so far
  std::vector<std::pair<std::string, std::shared_ptr<content::SentBlockIndex>>> sent_;
  std::shared_ptr<content::RefIndexSet> set_;  // the encoders' (made at the first)
  std::shared_ptr<content::RefCounters> counters_ = std::make_shared<content::RefCounters>();
  std::thread builder_;
  std::atomic<bool> stop_{false};
  nlohmann::json indexed_ = nlohmann::json::array();
};

/// Target: one per incoming migration, made when it is prepared.
class TargetContentRefs {
 public:
  /// Opens this site's copies of @p digests; a copy that cannot be opened is left out (a
  /// reference to it ends the stream, the decoder saying so). Sent-block caches go in @p dir.
  TargetContentRefs(MigrationHost& host, const std::vector<std::string>& digests, std::string dir);
  tunnel::TransformFactory nbdFactory();
  tunnel::TransformFactory migrationFactory();

 private:
  std::mutex mu_;
  std::string dir_;
  std::map<std::string, std::shared_ptr<const content::BlockSource>> sources_;
};

}  // namespace vandra::orchestrator
