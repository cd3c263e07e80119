// A BlockSource held in memory for the content fuzz targets: block i's bytes come from a
// function, for i below a count; nothing touches the file system.
#pragma once

#include <cstring>
#include <functional>
#include <string>

#include "vandra/content/image_blocks.h"

namespace vandra::content::fuzz {

class MemoryBlocks : public BlockSource {
 public:
  MemoryBlocks(std::function<std::string(uint64_t)> block_of, uint64_t count)
      : block_of_(std::move(block_of)), count_(count) {}
  Result<void> read(uint64_t offset, char* out) const override {
    if (offset % kPageSize != 0 || offset / kPageSize >= count_) {
      return fail(ErrorCode::InvalidArgument, "no such block");
    }
    const std::string b = block_of_(offset / kPageSize);
    std::memcpy(out, b.data(), kPageSize);
    return {};
  }
  const std::string& name() const override { return name_; }

 private:
  std::function<std::string(uint64_t)> block_of_;
  uint64_t count_;
  std::string name_ = "memory";
};

}  // namespace vandra::content::fuzz
