// SourceContentRefs and TargetContentRefs (content_refs.h).
#include "content_refs.h"

#include <chrono>

namespace vandra::orchestrator {

using nlohmann::json;

std::string sentBlocksName(const tunnel::Stream& stream) {
  return "nbd:" + std::to_string(stream.connection()) + ":" + std::to_string(stream.id());
}

// ---- source ------------------------------------------------------------------------------

SourceContentRefs::~SourceContentRefs() {
  stop();
}

void SourceContentRefs::stop() {
  stop_ = true;
  if (builder_.joinable()) {
    builder_.join();
  }
}

void SourceContentRefs::start(MigrationHost& host, std::vector<std::string> digests) {
  std::lock_guard lock(mu_);
  if (digests.empty() || !bases_.empty() || set_) {
    return;  // nothing to index, already started, or the encoder was made without them
  }
  digests.resize(std::min(digests.size(), content::kMaxRefIdentities));
  bases_ = digests;
  base_indexes_.resize(bases_.size());
  builder_ = std::thread([this, &host, digests = std::move(digests)] {
    for (size_t i = 0; i < digests.size() && !stop_; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      json note = {{"digest", digests[i]}};
      std::shared_ptr<const content::BlockIndex> built;
      const auto path = host.basePath(digests[i]);
      if (!path) {
        note["error"] = "this site no longer holds the image";
      } else if (auto img = content::ImageBlocks::open(*path); !img) {
        note["error"] = img.error().describe();
      } else if (auto idx = content::BlockIndex::build(*img, content::kMaxIndexBlocks, &stop_);
                 !idx) {
        note["error"] = idx.error().describe();
      } else {
        built = *idx;
        note["blocks"] = built->blocks();
        note["truncated"] = built->truncated();
      }
      note["index_s"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::lock_guard l(mu_);
      indexed_.push_back(std::move(note));
      if (built) {
        base_indexes_[i] = built;
        if (set_) {
          set_->publish(i, built);
        }
      }
    }
  });
}

tunnel::TransformFactory SourceContentRefs::nbdFactory() {
  return [this](const tunnel::Stream& s) -> std::unique_ptr<tunnel::ByteTransform> {
    std::lock_guard lock(mu_);
    if (set_ || bases_.size() + sent_.size() >= content::kMaxRefIdentities) {
      return nullptr;  // the encoder is made already, or no identity is left
    }
    auto index = std::make_shared<content::SentBlockIndex>();
    sent_.emplace_back(sentBlocksName(s), index);
    return content::tapIntoIndex(index);
  };
}

tunnel::TransformFactory SourceContentRefs::migrationFactory() {
  return [this](const tunnel::Stream&) -> std::unique_ptr<tunnel::ByteTransform> {
    std::lock_guard lock(mu_);
    if (!set_) {
      std::vector<std::string> names = bases_;
      for (const auto& [name, index] : sent_) {
        names.push_back(name);
      }
      if (names.empty()) {
        return nullptr;  // nothing to refer to: QEMU's stream as it is
      }
      set_ = std::make_shared<content::RefIndexSet>(std::move(names));
      for (size_t i = 0; i < base_indexes_.size(); ++i) {
        if (base_indexes_[i]) {
          set_->publish(i, base_indexes_[i]);
        }
      }
      for (size_t i = 0; i < sent_.size(); ++i) {
        set_->publish(bases_.size() + i, sent_[i].second);
      }
    }
    return std::make_unique<content::RefEncoder>(set_, counters_);
  };
}

json SourceContentRefs::report() const {
  std::lock_guard lock(mu_);
  json sent = json::array();
  for (const auto& [name, index] : sent_) {
    sent.push_back({{"stream", name}, {"blocks", index->blocks()}});
  }
  return {{"identities", set_ ? set_->digests().size() : 0},
          {"indexed", indexed_},
          {"sent_blocks", sent},
          {"pages", counters_->pages.load()},
          {"refs", counters_->refs.load()},
          {"plain_bytes", counters_->plain_bytes.load()},
          {"encoded_bytes", counters_->encoded_bytes.load()}};
}

// ---- target ------------------------------------------------------------------------------

TargetContentRefs::TargetContentRefs(MigrationHost& host, const std::vector<std::string>& digests,
                                     std::string dir)
    : dir_(std::move(dir)) {
  for (const auto& d : digests) {
    if (const auto path = host.basePath(d)) {
      if (auto img = content::ImageBlocks::open(*path)) {
        sources_[d] = *img;
      }
    }
  }
}

tunnel::TransformFactory TargetContentRefs::nbdFactory() {
  return [this](const tunnel::Stream& s) -> std::unique_ptr<tunnel::ByteTransform> {
    const std::string name = sentBlocksName(s);
    auto cache = content::SentBlockCache::create(dir_, name);
    std::lock_guard lock(mu_);
    if (!cache) {
      return nullptr;  // references to it end the stream: the source cannot know
    }
    sources_[name] = *cache;
    return content::tapIntoCache(*cache);
  };
}

tunnel::TransformFactory TargetContentRefs::migrationFactory() {
  return [this](const tunnel::Stream&) -> std::unique_ptr<tunnel::ByteTransform> {
    std::lock_guard lock(mu_);
    return std::make_unique<content::RefDecoder>(sources_,
                                                 std::make_shared<content::RefCounters>());
  };
}

}  // namespace vandra::orchestrator
