// Finds the RAM pages in QEMU 7.2's precopy migration stream as it passes through the source's
// tunnel end, so that pages the target already holds can go as references (ref_codec.h).
//
// The stream, as QEMU 7.2 writes it (migration/savevm.c, migration/ram.c):
//
//   "QEVM" be32 3                                        file magic and version
//   0x07 be32 len machine[len] {0x05 subsection}*        configuration (+ known subsections)
//   0x01 START | 0x04 FULL: be32 id, u8 n, idstr[n], be32 instance, be32 version, payload
//   0x02 PART  | 0x03 END : be32 id, payload
//   0x7e be32 id                                         section footer
//   0x08 be16 cmd be16 len data[len]                     command
//   0x00                                                 end of file
//
//   "ram" payload: records until EOS, each be64 (page offset | flags)
//     MEM_SIZE 0x04: {u8 n, block[n], be64 length} until the lengths add up to the size
//     ZERO 0x02: [u8 n, block[n]] u8 fill       PAGE 0x08: [u8 n, block[n]] 4096 bytes
//     XBZRLE 0x40: [u8 n, block[n]] u8 enc, be16 len, data[len]
//     COMPRESS_PAGE 0x100: [u8 n, block[n]] be32 len, data[len]
//     EOS 0x10                                   ([block] is absent when CONTINUE 0x20 is set)
//
// The scanner only decides which bytes are worth looking up: anything it does not know (an
// iterative section other than "ram", device state, a flag it has no rule for) switches it
// to pass-through for the rest of the stream. A scanner that is wrong therefore costs only
// savings: a reference always stands for exactly the bytes it replaces (their SHA-256).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vandra::content {

/// The page size of x86-64 guests, and of the blocks the content index holds.
inline constexpr size_t kPageSize = 4096;

/// A run of the scanned bytes: (part of) a page's contents, or anything else.
struct StreamPiece {
  size_t length = 0;
  bool page = false;        // bytes of a PAGE record's payload
  bool page_start = false;  // the piece starts that payload (its first byte)
  bool operator==(const StreamPiece&) const = default;
};

class QemuStreamScanner {
 public:
  /// Splits @p data, the stream's next bytes, into pieces appended to @p out; their lengths
  /// add up to data.size(). A page's payload may span calls.
  void scan(std::string_view data, std::vector<StreamPiece>& out);

  /// Gave up parsing (every later byte is "not a page"), and why; "" while parsing, and after
  /// the device state or the end of the stream (where no more pages come).
  bool passThrough() const { return step_ == Step::Pass; }
  const std::string& why() const { return why_; }
  /// PAGE records seen (their payloads returned as pages), ZERO records, XBZRLE records.
  uint64_t pages() const { return pages_; }
  uint64_t zeroPages() const { return zero_pages_; }
  uint64_t xbzrlePages() const { return xbzrle_pages_; }

 private:
  enum class Step : uint8_t {
    Magic,
    SectionType,
    ConfigLen,
    ConfigName,
    AfterConfig,
    SubLen,
    SubName,
    SubVersion,
    CapCount,
    CapLen,
    SectionId,
    IdstrLen,
    Idstr,
    InstanceVersion,
    PartId,
    FooterId,
    CommandHead,
    RamHeader,
    BlockLen,
    BlockName,
    MemBlockLen,
    MemBlockName,
    MemBlockSize,
    XbzrleHead,
    CompressLen,
    Skip,  // skip_ bytes, then next_
    Page,  // page_left_ bytes of a page, then RamHeader
    Pass,
  };

  // Collect `n` bytes into field_ for step @p s (0: the step acts without bytes).
  void expect(Step s, size_t n);
  void skip(size_t n, Step then);
  void giveUp(std::string why);
  // The field for step_ is complete: decide the next step.
  void onField();
  void onSectionType(uint8_t type);
  void onRamHeader(uint64_t header);
  void ramBody();

  Step step_ = Step::Magic;
  size_t want_ = 8;
  std::string field_;
  uint64_t skip_ = 0;
  Step next_ = Step::SectionType;
  size_t page_left_ = 0;

  uint8_t section_type_ = 0;
  uint32_t section_id_ = 0;
  bool ram_known_ = false;
  uint32_t ram_section_ = 0;
  std::string subsection_;
  uint32_t caps_left_ = 0;
  uint64_t ram_flags_ = 0;
  uint64_t mem_total_ = 0;
  uint64_t mem_seen_ = 0;

  uint64_t pages_ = 0;
  uint64_t zero_pages_ = 0;
  uint64_t xbzrle_pages_ = 0;
  std::string why_;
};

}  // namespace vandra::content
