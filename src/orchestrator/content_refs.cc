// SourceContentRefs and targetDecoders (content_refs.h).
#include "content_refs.h"

#include <chrono>

namespace vandra::orchestrator {

using nlohmann::json;

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
  if (digests.empty() || digests.size() > content::kMaxRefIdentities) {
    return;
  }
  std::lock_guard lock(mu_);
  if (set_) {
    return;
  }
  set_ = std::make_shared<content::RefIndexSet>(digests);
  builder_ = std::thread([this, &host, set = set_, digests = std::move(digests)] {
    for (size_t i = 0; i < digests.size() && !stop_; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      json note = {{"digest", digests[i]}};
      const auto path = host.basePath(digests[i]);
      if (!path) {
        note["error"] = "this site no longer holds the image";
      } else if (auto img = content::ImageBlocks::open(*path); !img) {
        note["error"] = img.error().describe();
      } else if (auto idx = content::BlockIndex::build(*img, content::kMaxIndexBlocks, &stop_);
                 !idx) {
        note["error"] = idx.error().describe();
      } else {
        set->publish(i, *idx);
        note["blocks"] = (*idx)->blocks();
        note["truncated"] = (*idx)->truncated();
      }
      note["index_s"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::lock_guard l(mu_);
      indexed_.push_back(std::move(note));
    }
  });
}

tunnel::TransformFactory SourceContentRefs::factory() {
  return [this]() -> std::unique_ptr<tunnel::ByteTransform> {
    std::lock_guard lock(mu_);
    if (!set_) {
      return nullptr;
    }
    return std::make_unique<content::RefEncoder>(set_, counters_);
  };
}

json SourceContentRefs::report() const {
  std::lock_guard lock(mu_);
  return {{"identities", set_ ? set_->digests().size() : 0},
          {"indexed", indexed_},
          {"pages", counters_->pages.load()},
          {"refs", counters_->refs.load()},
          {"plain_bytes", counters_->plain_bytes.load()},
          {"encoded_bytes", counters_->encoded_bytes.load()}};
}

tunnel::TransformFactory targetDecoders(MigrationHost& host,
                                        const std::vector<std::string>& digests, json& notes) {
  std::map<std::string, std::shared_ptr<const content::BlockSource>> images;
  for (const auto& d : digests) {
    const auto path = host.basePath(d);
    if (!path) {
      notes[d] = "this site does not hold the image";
      continue;
    }
    auto img = content::ImageBlocks::open(*path);
    if (!img) {
      notes[d] = img.error().describe();
      continue;
    }
    images[d] = *img;
  }
  return [images]() -> std::unique_ptr<tunnel::ByteTransform> {
    return std::make_unique<content::RefDecoder>(images, std::make_shared<content::RefCounters>());
  };
}

}  // namespace vandra::orchestrator
