// XmlBuilder: writes indented XML text element by element with correct escaping of text and
// attribute values. Internal to the writer. It does not check names or namespaces: callers
// pass fixed, well-formed names; only values come from the (untrusted) spec.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::ovf::detail {

using Attrs = std::vector<std::pair<std::string, std::string>>;

class XmlBuilder {
 public:
  XmlBuilder();

  void open(std::string_view name, const Attrs& attrs = {});
  void close();
  /// <name attrs>text</name> on one line.
  void leaf(std::string_view name, std::string_view text, const Attrs& attrs = {});
  /// <name attrs/>
  void empty(std::string_view name, const Attrs& attrs = {});

  /// The document, or InvalidArgument if a value held a character XML 1.0 cannot carry
  /// (control characters, invalid UTF-8).
  Result<std::string> finish();

 private:
  void indent();
  void writeAttrs(const Attrs& attrs);
  void escape(std::string_view s, bool attribute);

  std::string out_;
  std::vector<std::string> stack_;
  std::optional<std::string> bad_value_;
};

/// Escapes @p s for text content (attribute=false) or a double-quoted attribute value.
/// Returns nullopt when @p s contains a character XML 1.0 cannot represent.
std::optional<std::string> xmlEscape(std::string_view s, bool attribute);

}  // namespace vandra::ovf::detail
