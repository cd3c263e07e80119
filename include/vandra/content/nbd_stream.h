// Finds the data of NBD WRITE requests in the client's side of an NBD connection (QEMU's disk
// mirror writing into the target's export, through the tunnel), and cuts it into the 4 KiB
// blocks both tunnel ends count the same way: the blocks a disk mirror sent, which RAM pages
// can then refer to (sent_blocks.h, ref_codec.h).
//
// Client to server, as QEMU 7.2's NBD client speaks it (newstyle, fixed):
//
//   be32 client flags
//   { "IHAVEOPT" be32 option be32 length data[length] }*       options (STRUCTURED_REPLY,
//                                                              SET_META_CONTEXT, GO, ...)
//   { be32 0x25609513 be16 flags be16 type be64 handle be64 offset be32 length
//     data[length] when type is WRITE (1) }*                   requests
//
// Like the migration stream's scanner it only decides what is worth remembering: anything it
// does not know switches it to pass-through, and a block is only ever used once its SHA-256
// matched at the other end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/content/qemu_stream.h"

namespace vandra::content {

class NbdWriteScanner {
 public:
  /// Each 4 KiB-aligned block of WRITE data in @p data, whole: @p on_block(disk offset, bytes)
  /// is called once per block, in stream order (a block may span calls: it is collected).
  /// Data that does not cover an aligned block whole is not reported.
  template <class F>
  void scan(std::string_view data, F&& on_block) {
    while (!data.empty()) {
      const size_t n = step(data);
      if (block_.size() == kPageSize) {
        on_block(block_offset_, std::string_view(block_));
        block_.clear();
      }
      data.remove_prefix(n);
    }
  }

  bool passThrough() const { return state_ == State::Pass; }
  const std::string& why() const { return why_; }
  uint64_t writes() const { return writes_; }
  /// FLUSH requests seen (and WRITEs with FUA, which a server flushes for), before it passes.
  uint64_t flushes() const { return flushes_; }

 private:
  enum class State : uint8_t {
    ClientFlags,
    OptionOrRequest,
    OptionHead,
    OptionData,
    Request,
    WriteData,
    Pass
  };
  // Consumes what it can of @p data (at least one byte); fills block_ when a block completes.
  size_t step(std::string_view data);
  void giveUp(std::string why);

  State state_ = State::ClientFlags;
  std::string field_;
  size_t want_ = 4;
  uint64_t skip_ = 0;         // option data left
  uint64_t data_left_ = 0;    // WRITE payload left
  uint64_t data_offset_ = 0;  // disk offset of the next payload byte
  std::string block_;         // the aligned block being collected
  uint64_t block_offset_ = 0;
  uint64_t writes_ = 0;
  uint64_t flushes_ = 0;
  std::string why_;
};

}  // namespace vandra::content
