// QMP wire codec: splits the byte stream into lines (bounded length), classifies each JSON
// object as greeting / return / error / event, and encodes commands. Pure: no sockets, no
// threads, no exceptions (nlohmann::json is used in its non-throwing forms).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "vandra/common/result.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::qmp {

/// Accumulates bytes and hands out complete lines ('\n' terminated; a trailing '\r' is
/// stripped). A line longer than the limit is an error; so is a partial line that grows past
/// it, which is detected as soon as the bytes arrive (nothing unbounded is buffered).
class LineFramer {
 public:
  explicit LineFramer(size_t max_line_bytes) : max_(max_line_bytes) {}

  /// Appends @p bytes. Errors: LimitExceeded when an unfinished line exceeds the limit.
  [[nodiscard]] Result<void> append(std::string_view bytes);

  /// The next complete line, or nullopt when none is buffered.
  std::optional<std::string> next();

  /// Bytes of the unfinished line buffered so far.
  size_t pending() const { return buf_.size() - tail_; }

 private:
  size_t max_;
  std::string buf_;
  size_t start_ = 0;  // first byte not yet handed out
  size_t tail_ = 0;   // first byte of the unfinished line (just past the last newline)
};

enum class MessageKind : uint8_t { Greeting, Return, Error, Event };
std::string_view toString(MessageKind k);

/// One decoded server message. Only the fields of its kind are set.
struct QmpMessage {
  MessageKind kind = MessageKind::Return;
  std::optional<std::string> id;  // Return/Error: the id we sent (vandra always sends strings)
  nlohmann::json value;           // Return: "return"; Greeting: the "QMP" object
  std::string error_class;        // Error: error.class
  std::string error_desc;         // Error: error.desc
  QmpEvent event;                 // Event
  QmpGreeting greeting;           // Greeting
};

/// Decodes one line. Errors: QmpProtocol (not JSON, not an object, or not one of the four
/// message shapes; a greeting without a numeric version.qemu.{major,minor,micro}).
[[nodiscard]] Result<QmpMessage> decodeMessage(std::string_view line);

/// {"execute": name, "arguments": args, "id": id} plus '\n'. Arguments are left out when
/// @p args is an empty object or null. Invalid UTF-8 in strings is replaced, never thrown.
/// @p out_of_band: `exec-oob` instead of `execute`.
std::string encodeCommand(std::string_view name, const nlohmann::json& args, std::string_view id,
                          bool out_of_band = false);

}  // namespace vandra::qmp
