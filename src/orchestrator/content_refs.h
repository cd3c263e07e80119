// Content references on this site's migration streams (content/ref_codec.h, ADR 0030): at the
// source, the indexes of the base images both sites hold, built while the disks mirror, and
// the encoder the migration stream's forwarder runs; at the target, the decoder reading this
// site's copies.
//
//   source: MirrorSrc ─ shared bases ─> SourceContentRefs::start ─ thread: open + index each
//           QEMU connects ─> forwarder ─> factory() ─> RefEncoder (indexes as they become ready)
//   target: PrepareDst ─ paths(id) ─> targetDecoders(bases) ─> forwarder ─> RefDecoder
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "vandra/content/ref_codec.h"
#include "vandra/orchestrator/migration_host.h"
#include "vandra/tunnel/forward.h"

namespace vandra::orchestrator {

/// The tunnel version from which a peer's agent decodes content references.
inline constexpr uint8_t kContentRefsVersion = 4;

class SourceContentRefs {
 public:
  SourceContentRefs() = default;
  ~SourceContentRefs();
  SourceContentRefs(const SourceContentRefs&) = delete;
  SourceContentRefs& operator=(const SourceContentRefs&) = delete;

  /// Starts indexing this site's copies of @p digests (base images the target holds too) on a
  /// thread of its own. Once; an empty list does nothing.
  void start(MigrationHost& host, std::vector<std::string> digests);
  /// For the migration stream's forwarder: an encoder once start() named images, else none
  /// (QEMU's stream then passes as it is).
  tunnel::TransformFactory factory();
  /// Stops indexing (an index not finished is not used) and waits for the thread.
  void stop();
  /// What was indexed and what the encoders did: identities, blocks, index_s, pages, refs,
  /// plain_bytes, encoded_bytes, notes.
  nlohmann::json report() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<content::RefIndexSet> set_;
  std::shared_ptr<content::RefCounters> counters_ = std::make_shared<content::RefCounters>();
  std::thread builder_;
  std::atomic<bool> stop_{false};
  nlohmann::json indexed_ = nlohmann::json::array();  // guarded by mu_
};

/// Target: decoders reading this site's copies of @p digests; a copy that cannot be opened is
/// left out (a reference to it then ends the stream) and @p notes says why.
tunnel::TransformFactory targetDecoders(MigrationHost& host,
                                        const std::vector<std::string>& digests,
                                        nlohmann::json& notes);

}  // namespace vandra::orchestrator
