// ImageBlocks and BlockIndex (image_blocks.h).
#include "vandra/content/image_blocks.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "bytes.h"
#include "vandra/common/subprocess.h"

namespace vandra::content {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr size_t kMaxChain = 16;
constexpr size_t kIndexRead = 1 << 20;  // bytes per read while indexing

Unexpected invalid(const std::string& path, const std::string& what) {
  return fail(ErrorCode::DiskImageInvalid, "qemu-img's map of '" + path + "' " + what);
}

uint64_t u64(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

bool flag(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string text(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<json> qemuImgJson(const std::vector<std::string>& argv) {
  VANDRA_TRY_ASSIGN(const std::string out, runCapture(argv));
  json j = json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array()) {
    return fail(ErrorCode::Subprocess, argv[0] + " " + argv[1] + " did not print a JSON array");
  }
  return j;
}

}  // namespace

uint64_t blockHash(const char* page) {
  return XXH3_64bits(page, kPageSize);
}

std::array<unsigned char, 32> detail::blockSha256(const char* block) {
  // Fetched once: EVP_sha256() looks the implementation up again on every call (~15 % of a
  // 4 KiB digest). Never freed: it lives as long as the process.
  static const EVP_MD* const md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  EVP_Digest(block, kPageSize, out.data(), &len, md, nullptr);
  return out;
}

Result<std::shared_ptr<const ImageBlocks>> ImageBlocks::open(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return fail(ErrorCode::NotFound, "Image '" + path + "' does not exist");
  }
  VANDRA_TRY_ASSIGN(const json chain, qemuImgJson({"qemu-img", "info", "--backing-chain",
                                                   "--output=json", "-U", path}));
  if (chain.empty() || chain.size() > kMaxChain) {
    return fail(ErrorCode::Unsupported, "Image '" + path + "' has a chain of " +
                                            std::to_string(chain.size()) + " files (1.." +
                                            std::to_string(kMaxChain) + " are read)");
  }
  auto img = std::make_shared<ImageBlocks>();
  img->path_ = path;
  img->size_ = u64(chain[0], "virtual-size");
  std::string file = path;
  for (size_t depth = 0; depth < chain.size(); ++depth) {
    const json& e = chain[depth];
    if (!e.is_object()) {
      return invalid(path, "has a chain entry that is not an object");
    }
    if (flag(e, "encrypted")) {
      return fail(ErrorCode::Unsupported, "Image '" + file + "' is encrypted");
    }
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      return fail(Error::fromErrno("Cannot open image '" + file + "'"));
    }
    img->files_.push_back(std::move(fd));
    std::string next = text(e, "full-backing-filename");
    if (next.empty()) {
      next = text(e, "backing-filename");
      if (!next.empty() && fs::path(next).is_relative()) {  // relative to its overlay's folder
        next = (fs::path(file).parent_path() / next).string();
      }
    }
    if (next.empty() && depth + 1 < chain.size()) {
      return invalid(path, "names no file for depth " + std::to_string(depth + 1));
    }
    file = next;
  }
  VANDRA_TRY_ASSIGN(const json map, qemuImgJson({"qemu-img", "map", "--output=json", "-U", path}));
  uint64_t at = 0;
  for (const json& m : map) {
    if (!m.is_object()) {
      return invalid(path, "has an entry that is not an object");
    }
    Extent x;
    x.start = u64(m, "start");
    x.length = u64(m, "length");
    if (x.start != at || x.length == 0 || x.length > img->size_ - at) {
      return invalid(path, "is not one run of extents from 0 to the virtual size");
    }
    x.data = flag(m, "data");
    if (x.data) {
      x.file = static_cast<size_t>(u64(m, "depth"));
      if (x.file >= img->files_.size()) {
        return invalid(path, "names depth " + std::to_string(x.file) + " of a chain of " +
                                 std::to_string(img->files_.size()));
      }
      x.readable = m.contains("offset") && m["offset"].is_number_unsigned();
      x.file_offset = x.readable ? m["offset"].get<uint64_t>() : 0;
    }
    at += x.length;
    img->extents_.push_back(x);
  }
  if (at != img->size_) {
    return invalid(path, "ends at " + std::to_string(at) + ", not at the virtual size " +
                             std::to_string(img->size_));
  }
  return std::shared_ptr<const ImageBlocks>(std::move(img));
}

Result<void> ImageBlocks::readExtent(const Extent& e, uint64_t offset, size_t length,
                                     char* out) const {
  if (!e.data) {
    std::memset(out, 0, length);
    return {};
  }
  if (!e.readable) {
    return fail(ErrorCode::Unsupported, "Image '" + path_ + "' holds offset " +
                                            std::to_string(offset) +
                                            " in a compressed cluster, which is not read here");
  }
  const uint64_t pos = e.file_offset + (offset - e.start);
  size_t done = 0;
  while (done < length) {
    const ssize_t n =
        ::pread(files_[e.file].get(), out + done, length - done, static_cast<off_t>(pos + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return fail(n < 0 ? Error::fromErrno("Cannot read image '" + path_ + "'")
                        : Error(ErrorCode::Io, "Image '" + path_ + "' ends before offset " +
                                                   std::to_string(pos + done) + " of its file"));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<void> ImageBlocks::read(uint64_t offset, char* out) const {
  if (offset % kPageSize != 0 || offset >= size_ || size_ - offset < kPageSize) {
    return fail(ErrorCode::InvalidArgument, "Offset " + std::to_string(offset) +
                                                " is not a 4 KiB block of image '" + path_ + "' (" +
                                                std::to_string(size_) + " bytes)");
  }
  // The extent holding offset, then on across extents (clusters smaller than a block).
  auto it = std::upper_bound(extents_.begin(), extents_.end(), offset,
                             [](uint64_t o, const Extent& e) { return o < e.start; });
  --it;
  size_t done = 0;
  while (done < kPageSize) {
    const uint64_t at = offset + done;
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(kPageSize - done, it->start + it->length - at));
    VANDRA_TRY(readExtent(*it, at, n, out + done));
    done += n;
    ++it;
  }
  return {};
}

Result<std::shared_ptr<const BlockIndex>> BlockIndex::build(
    std::shared_ptr<const ImageBlocks> image, size_t max_blocks, const std::atomic<bool>* stop) {
  auto idx = std::make_shared<BlockIndex>();
  std::vector<char> buf(kIndexRead);
  for (const auto& e : image->extents()) {
    if (!e.data || !e.readable) {
      continue;
    }
    // Whole blocks inside the extent only.
    uint64_t at = (e.start + kPageSize - 1) / kPageSize * kPageSize;
    const uint64_t end = (e.start + e.length) / kPageSize * kPageSize;
    while (at < end) {
      if (stop != nullptr && stop->load()) {
        return fail(ErrorCode::Cancelled, "Indexing '" + image->path() + "' was stopped");
      }
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - at));
      VANDRA_TRY(image->readExtent(e, at, n, buf.data()));
      for (size_t off = 0; off < n; off += kPageSize) {
        const char* block = buf.data() + off;
        if (detail::isZero(std::string_view(block, kPageSize))) {
          continue;  // QEMU sends zero pages as ZERO records already
        }
        if (idx->entries_.size() == max_blocks) {
          idx->truncated_ = true;
          break;
        }
        idx->entries_.push_back({blockHash(block), at + off});
      }
      if (idx->truncated_) {
        break;
      }
      at += n;
    }
    if (idx->truncated_) {
      break;
    }
  }
  std::sort(idx->entries_.begin(), idx->entries_.end(),
            [](const Entry& a, const Entry& b) { return a.hash < b.hash; });
  idx->image_ = std::move(image);
  return std::shared_ptr<const BlockIndex>(std::move(idx));
}

std::optional<uint64_t> BlockIndex::find(const char* page) const {
  const uint64_t h = blockHash(page);
  auto it = std::lower_bound(entries_.begin(), entries_.end(), h,
                             [](const Entry& e, uint64_t v) { return e.hash < v; });
  char block[kPageSize];
  for (; it != entries_.end() && it->hash == h; ++it) {
    if (image_->read(it->offset, block) && std::memcmp(block, page, kPageSize) == 0) {
      return it->offset;
    }
  }
  return std::nullopt;
}

}  // namespace vandra::content
