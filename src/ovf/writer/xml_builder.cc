// XML text building with escaping. Values are validated as UTF-8 and for characters outside
// the XML 1.0 Char production, since a descriptor we write must parse everywhere. It must not
// silently drop or alter characters: a value it cannot carry is an error.
#include "xml_builder.h"

namespace vandra::ovf::detail {
namespace {

// Length of the UTF-8 sequence starting at s[i] if it is valid and an XML Char, else 0.
size_t xmlCharLength(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    return (b0 >= 0x20 || b0 == '\t' || b0 == '\n' || b0 == '\r') ? 1 : 0;
  }
  size_t len = 0;
  uint32_t cp = 0;
  if ((b0 & 0xE0U) == 0xC0U) {
    len = 2;
    cp = b0 & 0x1FU;
  } else if ((b0 & 0xF0U) == 0xE0U) {
    len = 3;
    cp = b0 & 0x0FU;
  } else if ((b0 & 0xF8U) == 0xF0U) {
    len = 4;
    cp = b0 & 0x07U;
  } else {
    return 0;
  }
  if (i + len > s.size()) {
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0U) != 0x80U) {
      return 0;
    }
    cp = (cp << 6U) | (b & 0x3FU);
  }
  // Reject overlong forms, surrogates and the two non-characters XML excludes.
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE ||
      cp == 0xFFFF) {
    return 0;
  }
  return len;
}

}  // namespace

std::optional<std::string> xmlEscape(std::string_view s, bool attribute) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = xmlCharLength(s, i);
    if (n == 0) {
      return std::nullopt;
    }
    const char c = s[i];
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      // A parser normalises raw CR (and, in attributes, TAB/LF) away; character references
      // keep the value exactly as given.
      case '\r':
        out += "&#13;";
        break;
      case '"':
        out += attribute ? "&quot;" : "\"";
        break;
      case '\n':
        out += attribute ? "&#10;" : "\n";
        break;
      case '\t':
        out += attribute ? "&#9;" : "\t";
        break;
      default:
        out.append(s.substr(i, n));
        break;
    }
    i += n;
  }
  return out;
}

XmlBuilder::XmlBuilder() {
  out_ = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
}

void XmlBuilder::indent() {
  out_.append(2 * stack_.size(), ' ');
}

void XmlBuilder::escape(std::string_view s, bool attribute) {
  auto e = xmlEscape(s, attribute);
  if (!e) {
    if (!bad_value_) {
      // Keep the message printable: the offending bytes are shown as '?'.
      std::string shown(s.substr(0, 64));
      for (char& ch : shown) {
        const auto u = static_cast<unsigned char>(ch);
        if (u < 0x20 || u >= 0x7F) {
          ch = '?';
        }
      }
      bad_value_ = std::move(shown);
    }
    return;
  }
  out_ += *e;
}

void XmlBuilder::writeAttrs(const Attrs& attrs) {
  for (const auto& [name, value] : attrs) {
    out_ += ' ';
    out_ += name;
    out_ += "=\"";
    escape(value, true);
    out_ += '"';
  }
}

void XmlBuilder::open(std::string_view name, const Attrs& attrs) {
  indent();
  out_ += '<';
  out_ += name;
  writeAttrs(attrs);
  out_ += ">\n";
  stack_.emplace_back(name);
}

void XmlBuilder::close() {
  std::string name = std::move(stack_.back());
  stack_.pop_back();
  indent();
  out_ += "</" + name + ">\n";
}

void XmlBuilder::leaf(std::string_view name, std::string_view text, const Attrs& attrs) {
  indent();
  out_ += '<';
  out_ += name;
  writeAttrs(attrs);
  out_ += '>';
  escape(text, false);
  out_ += "</";
  out_ += name;
  out_ += ">\n";
}

void XmlBuilder::empty(std::string_view name, const Attrs& attrs) {
  indent();
  out_ += '<';
  out_ += name;
  writeAttrs(attrs);
  out_ += "/>\n";
}

Result<std::string> XmlBuilder::finish() {
  if (bad_value_) {
    return fail(ErrorCode::InvalidArgument,
                "Value '" + *bad_value_ +
                    "' holds a character XML cannot carry (control character or bad UTF-8)");
  }
  if (!stack_.empty()) {
    return fail(ErrorCode::Internal, "Unclosed element " + stack_.back());
  }
  return std::move(out_);
}

}  // namespace vandra::ovf::detail
