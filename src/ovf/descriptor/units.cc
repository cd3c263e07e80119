#include "units.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>

namespace vandra::ovf {
namespace {

std::string squash(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  return out;
}

std::optional<uint64_t> power(uint64_t base, uint64_t exp) {
  uint64_t v = 1;
  for (uint64_t i = 0; i < exp; ++i) {
    auto m = checkedMul(v, base);
    if (!m) {
      return std::nullopt;
    }
    v = *m;
  }
  return v;
}

}  // namespace

std::optional<uint64_t> parseUint(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  if (s.empty()) {
    return std::nullopt;
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

std::optional<uint64_t> checkedMul(uint64_t value, uint64_t multiplier) {
  uint64_t r = 0;
  if (__builtin_mul_overflow(value, multiplier, &r)) {
    return std::nullopt;
  }
  return r;
}

std::optional<uint64_t> bytesPerUnit(std::string_view units) {
  const std::string u = squash(units);
  struct Named {
    std::string_view name;
    uint64_t bytes;
  };
  // Names seen in real descriptors (VirtualBox 0.9 "MegaBytes", older VMware "MB").
  static constexpr Named kNamed[] = {
      {"byte", 1},
      {"bytes", 1},
      {"b", 1},
      {"kilobytes", 1ULL << 10},
      {"kb", 1ULL << 10},
      {"kib", 1ULL << 10},
      {"megabytes", 1ULL << 20},
      {"mb", 1ULL << 20},
      {"mib", 1ULL << 20},
      {"gigabytes", 1ULL << 30},
      {"gb", 1ULL << 30},
      {"gib", 1ULL << 30},
      {"terabytes", 1ULL << 40},
      {"tb", 1ULL << 40},
      {"tib", 1ULL << 40},
  };
  for (const auto& n : kNamed) {
    if (u == n.name) {
      return n.bytes;
    }
  }
  // Programmatic form: byte[s] followed by "*factor" terms, each N, B^E.
  std::string_view rest = u;
  if (rest.starts_with("bytes")) {
    rest.remove_prefix(5);
  } else if (rest.starts_with("byte")) {
    rest.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  uint64_t total = 1;
  while (!rest.empty()) {
    if (rest.front() != '*') {
      return std::nullopt;
    }
    rest.remove_prefix(1);
    const size_t next = rest.find('*');
    const std::string_view term = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view{} : rest.substr(next);
    std::optional<uint64_t> factor;
    const size_t caret = term.find('^');
    if (caret == std::string_view::npos) {
      factor = parseUint(term);
    } else {
      auto base = parseUint(term.substr(0, caret));
      auto exp = parseUint(term.substr(caret + 1));
      if (base && exp && *exp <= 64) {
        factor = power(*base, *exp);
      }
    }
    if (!factor || *factor == 0) {
      return std::nullopt;
    }
    auto t = checkedMul(total, *factor);
    if (!t) {
      return std::nullopt;
    }
    total = *t;
  }
  return total;
}

}  // namespace vandra::ovf
