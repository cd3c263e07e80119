// RefEncoder and RefDecoder (ref_codec.h).
#include "vandra/content/ref_codec.h"

#include <algorithm>
#include <cstring>

#include "bytes.h"

namespace vandra::content {
namespace {

constexpr char kQemuMagic[4] = {'Q', 'E', 'V', 'M'};

Unexpected refused(const std::string& what) {
  return fail(ErrorCode::TunnelProtocol, "Content references: " + what);
}

std::string shortDigest(const std::string& d) {
  return d.size() > 16 ? d.substr(0, 16) + "..." : d;
}

}  // namespace

RefIndexSet::RefIndexSet(std::vector<std::string> digests)
    : digests_(std::move(digests)), indexes_(digests_.size()) {}

void RefIndexSet::publish(size_t identity, std::shared_ptr<const BlockLookup> index) {
  std::lock_guard lock(mu_);
  if (identity < indexes_.size()) {
    indexes_[identity] = std::move(index);
  }
}

std::shared_ptr<const BlockLookup> RefIndexSet::get(size_t identity) const {
  std::lock_guard lock(mu_);
  return identity < indexes_.size() ? indexes_[identity] : nullptr;
}

// ---- encoder --------------------------------------------------------------------------

RefEncoder::RefEncoder(std::shared_ptr<const RefIndexSet> set,
                       std::shared_ptr<RefCounters> counters)
    : set_(std::move(set)), counters_(std::move(counters)) {}

void RefEncoder::appendLiteral(std::string& out, std::string_view bytes) {
  while (!bytes.empty()) {
    if (!literal_open_ || literal_len_ == kMaxLiteral) {
      closeLiteral(out);
      out.push_back(static_cast<char>(kRecordLiteral));
      literal_len_at_ = out.size();
      out.append(4, '\0');  // the length, once known (closeLiteral)
      literal_len_ = 0;
      literal_open_ = true;
    }
    const size_t n = std::min<size_t>(bytes.size(), kMaxLiteral - literal_len_);
    out.append(bytes.substr(0, n));
    literal_len_ += static_cast<uint32_t>(n);
    bytes.remove_prefix(n);
  }
}

void RefEncoder::closeLiteral(std::string& out) {
  if (!literal_open_) {
    return;
  }
  for (size_t i = 0; i < 4; ++i) {
    out[literal_len_at_ + i] = static_cast<char>((literal_len_ >> (8 * (3 - i))) & 0xff);
  }
  literal_open_ = false;
}

void RefEncoder::onPage(std::string& out, const char* page) {
  counters_->pages.fetch_add(1, std::memory_order_relaxed);
  for (const auto& [identity, lookup] : lookups_) {
    if (const auto off = lookup->find(page)) {
      const auto hash = detail::blockSha256(page);
      closeLiteral(out);  // the bytes before the page, in order
      out.push_back(static_cast<char>(kRecordRef));
      out.push_back(static_cast<char>(identity));
      detail::putBe(out, *off, 8);
      out.append(reinterpret_cast<const char*>(hash.data()), hash.size());
      counters_->refs.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  appendLiteral(out, std::string_view(page, kPageSize));
}

Result<void> RefEncoder::feed(std::string_view in, std::string& out) {
  const size_t before = out.size();
  counters_->plain_bytes.fetch_add(in.size(), std::memory_order_relaxed);
  if (!header_sent_) {
    const auto& digests = set_->digests();
    if (digests.empty() || digests.size() > kMaxRefIdentities) {
      return fail(ErrorCode::InvalidArgument, "Content references need 1.." +
                                                  std::to_string(kMaxRefIdentities) +
                                                  " images, not " + std::to_string(digests.size()));
    }
    out.append(kRefMagic, sizeof kRefMagic);
    out.push_back(static_cast<char>(digests.size()));
    for (const auto& d : digests) {
      out.push_back(static_cast<char>(std::min(d.size(), kMaxRefIdentityName)));
      out.append(d.substr(0, kMaxRefIdentityName));
    }
    header_sent_ = true;
  }
  // What may be referred to, once per feed (an index that becomes ready joins at the next).
  lookups_.clear();
  for (size_t i = 0; i < set_->digests().size(); ++i) {
    if (auto l = set_->get(i)) {
      lookups_.emplace_back(i, std::move(l));
    }
  }
  pieces_.clear();
  scanner_.scan(in, pieces_);
  size_t pos = 0;
  for (const auto& p : pieces_) {
    const std::string_view bytes = in.substr(pos, p.length);
    pos += p.length;
    if (!p.page) {
      appendLiteral(out, bytes);
    } else if (p.page_start && p.length == kPageSize) {
      onPage(out, bytes.data());  // the whole page in this input: looked at in place
    } else {
      if (p.page_start) {
        page_.clear();
      }
      page_.append(bytes);
      if (page_.size() == kPageSize) {
        onPage(out, page_.data());
        page_.clear();
      }
    }
  }
  closeLiteral(out);  // a page not complete yet waits in page_: nothing else is held back
  counters_->encoded_bytes.fetch_add(out.size() - before, std::memory_order_relaxed);
  return {};
}

Result<void> RefEncoder::finish(std::string& out) {
  const size_t before = out.size();
  if (header_sent_ && !page_.empty()) {
    appendLiteral(out, page_);  // the stream ended inside a page: its bytes as they are
    closeLiteral(out);
  }
  page_.clear();
  counters_->encoded_bytes.fetch_add(out.size() - before, std::memory_order_relaxed);
  return {};
}

// ---- decoder --------------------------------------------------------------------------

RefDecoder::RefDecoder(std::map<std::string, std::shared_ptr<const BlockSource>> images,
                       std::shared_ptr<RefCounters> counters)
    : images_(std::move(images)), counters_(std::move(counters)) {}

void RefDecoder::expect(Step s, size_t n) {
  step_ = s;
  want_ = n;
  field_.clear();
}

Result<void> RefDecoder::resolve(std::string& out) {
  const auto id = static_cast<uint8_t>(field_[0]);
  if (id >= identities_.size()) {
    return refused("a reference names image " + std::to_string(id) + " of " +
                   std::to_string(identities_.size()));
  }
  const uint64_t offset = detail::readBe(std::string_view(field_).substr(1, 8));
  const BlockSource& image = *identities_[id];
  if (auto r = image.read(offset, block_.data()); !r) {
    return refused("a reference to offset " + std::to_string(offset) +
                   " cannot be read: " + r.error().message);
  }
  const auto hash = detail::blockSha256(block_.data());
  if (std::memcmp(hash.data(), field_.data() + 9, hash.size()) != 0) {
    return refused("the block at offset " + std::to_string(offset) + " of this site's copy '" +
                   image.name() +
                   "' does not have the SHA-256 the source sent: the copies differ, the page "
                   "is not used");
  }
  out.append(block_.data(), block_.size());
  counters_->refs.fetch_add(1, std::memory_order_relaxed);
  return {};
}

Result<void> RefDecoder::onField(std::string& out) {
  switch (step_) {
    case Step::Magic:
      if (std::memcmp(field_.data(), kQemuMagic, 4) == 0) {
        out.append(field_);
        step_ = Step::Plain;
        return {};
      }
      if (std::memcmp(field_.data(), kRefMagic, 4) != 0) {
        return refused("the migration stream starts with neither QEMU's magic nor 'VCR1'");
      }
      expect(Step::Count, 1);
      return {};
    case Step::Count:
      count_ = static_cast<uint8_t>(field_[0]);
      if (count_ == 0 || count_ > kMaxRefIdentities) {
        return refused(std::to_string(count_) + " images named (1.." +
                       std::to_string(kMaxRefIdentities) + " are allowed)");
      }
      expect(Step::IdLen, 1);
      return {};
    case Step::IdLen: {
      const size_t n = static_cast<uint8_t>(field_[0]);
      if (n == 0 || n > kMaxRefIdentityName) {
        return refused("an image name of " + std::to_string(n) + " bytes");
      }
      expect(Step::IdName, n);
      return {};
    }
    case Step::IdName: {
      const auto it = images_.find(field_);
      if (it == images_.end()) {
        return refused("image '" + shortDigest(field_) +
                       "' is not one this site prepared for the migration");
      }
      identities_.push_back(it->second);
      if (identities_.size() == count_) {
        expect(Step::Type, 1);
      } else {
        expect(Step::IdLen, 1);
      }
      return {};
    }
    case Step::Type: {
      const auto t = static_cast<uint8_t>(field_[0]);
      if (t == kRecordLiteral) {
        expect(Step::LiteralLen, 4);
      } else if (t == kRecordRef) {
        expect(Step::Ref, kRefRecordBody);
      } else {
        return refused("record type " + std::to_string(t) + " is not known");
      }
      return {};
    }
    case Step::LiteralLen: {
      const uint64_t n = detail::readBe(field_);
      if (n == 0 || n > kMaxLiteral) {
        return refused("a literal of " + std::to_string(n) + " bytes (1.." +
                       std::to_string(kMaxLiteral) + " are allowed)");
      }
      literal_left_ = static_cast<uint32_t>(n);
      step_ = Step::Literal;
      return {};
    }
    case Step::Ref:
      VANDRA_TRY(resolve(out));
      expect(Step::Type, 1);
      return {};
    case Step::Literal:
    case Step::Plain:
      return {};
  }
  return {};
}

Result<void> RefDecoder::feed(std::string_view in, std::string& out) {
  const size_t before = out.size();
  counters_->encoded_bytes.fetch_add(in.size(), std::memory_order_relaxed);
  while (!in.empty()) {
    if (step_ == Step::Plain) {
      out.append(in);
      break;
    }
    if (step_ == Step::Literal) {
      const size_t n = std::min<size_t>(literal_left_, in.size());
      out.append(in.substr(0, n));
      in.remove_prefix(n);
      literal_left_ -= static_cast<uint32_t>(n);
      if (literal_left_ == 0) {
        expect(Step::Type, 1);
      }
      continue;
    }
    const size_t n = std::min(want_ - field_.size(), in.size());
    field_.append(in.substr(0, n));
    in.remove_prefix(n);
    if (field_.size() == want_) {
      VANDRA_TRY(onField(out));
    }
  }
  counters_->plain_bytes.fetch_add(out.size() - before, std::memory_order_relaxed);
  return {};
}

Result<void> RefDecoder::finish(std::string& out) {
  if (step_ == Step::Plain || step_ == Step::Type || (step_ == Step::Magic && field_.empty())) {
    return {};
  }
  if (step_ == Step::Magic) {  // fewer than 4 bytes: not ours to judge, pass them on
    out.append(field_);
    return {};
  }
  return refused("the stream ended inside a record");
}

}  // namespace vandra::content
