// `vandra bench soak`'s growth judgement (soak_growth.h).
#include "soak_growth.h"

#include <algorithm>

namespace vandra::cli::soak {

using nlohmann::json;

json toJson(const AgentSample& s) {
  return {{"rss_kib", s.rss_kib},         {"fds", s.fds},
          {"threads", s.threads},         {"qemus", s.qemus},
          {"kept_images", s.kept_images}, {"files", s.files},
          {"image_bytes", s.image_bytes}, {"max_chain", s.max_chain}};
}

namespace {

uint64_t medianRss(std::vector<const AgentSample*> v) {
  std::sort(v.begin(), v.end(),
            [](const AgentSample* x, const AgentSample* y) { return x->rss_kib < y->rss_kib; });
  return v[v.size() / 2]->rss_kib;
}

}  // namespace

Growth growthOf(const std::vector<AgentSample>& samples, size_t warm_up) {
  Growth g;
  for (size_t parity = 0; parity < 2; ++parity) {
    std::vector<const AgentSample*> seq;
    for (size_t i = warm_up; i < samples.size(); ++i) {
      if (i % 2 == parity) {
        seq.push_back(&samples[i]);
      }
    }
    if (seq.empty()) {
      continue;
    }
    // Counts: nothing above the first sample after the warm-up.
    const AgentSample& ref = *seq.front();
    auto up = [](uint64_t now, uint64_t then) {
      return static_cast<int64_t>(now) - static_cast<int64_t>(then);
    };
    for (const AgentSample* s : seq) {
      g.fds = std::max(g.fds, up(s->fds, ref.fds));
      g.threads = std::max(g.threads, up(s->threads, ref.threads));
      g.qemus = std::max(g.qemus, up(s->qemus, ref.qemus));
      g.kept_images = std::max(g.kept_images, up(s->kept_images, ref.kept_images));
      g.files = std::max(g.files, up(s->files, ref.files));
      g.max_chain = std::max(g.max_chain, up(s->max_chain, ref.max_chain));
    }
    // Memory: the allocator's arenas fill over the first moves and then stay (measured:
    // docs/benchmarks.md), so the last third's median against the middle third's; a leak of
    // a fixed amount per move shows as a third of its total.
    const size_t third = seq.size() / 3;
    if (third == 0) {
      continue;
    }
    const uint64_t middle = medianRss({seq.begin() + static_cast<std::ptrdiff_t>(third),
                                       seq.begin() + static_cast<std::ptrdiff_t>(2 * third)});
    const uint64_t last = medianRss({seq.end() - static_cast<std::ptrdiff_t>(third), seq.end()});
    g.rss_kib = std::max(g.rss_kib, up(last, middle));
    if (static_cast<double>(last) > static_cast<double>(middle) * 1.05 + 4096) {
      g.memory_ok = false;
    }
  }
  return g;
}

bool grew(const Growth& g) {
  return !g.memory_ok || g.fds > 0 || g.threads > 0 || g.qemus > 0 || g.kept_images > 0 ||
         g.files > 0 || g.max_chain > 0;
}

json toJson(const Growth& g) {
  return {{"rss_kib", g.rss_kib},
          {"fds", g.fds},
          {"threads", g.threads},
          {"qemus", g.qemus},
          {"kept_images", g.kept_images},
          {"files", g.files},
          {"max_chain", g.max_chain},
          {"memory_within_bound", g.memory_ok},
          {"grew", grew(g)}};
}

}  // namespace vandra::cli::soak
