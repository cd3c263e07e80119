// Row accessors: a column read as the type the caller wants, whichever type the database
// returned (SQLite's columns are dynamically typed; PostgreSQL's numeric arrives as double).
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <system_error>
#include <type_traits>

#include "vandra/db/database.h"

namespace vandra::db {
namespace {

// An index past the end reads as NULL: accessors cannot fail (no exceptions), and a NULL is
// what a caller who got the column count wrong would most likely notice.
const Value* at(const Row& row, size_t i) {
  return i < row.columns.size() ? &row.columns[i] : nullptr;
}

std::string formatDouble(double d) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), d);  // shortest that reads back exactly
  return std::string(buf, r.ptr);
}

int64_t clampToInt64(double d) {
  if (std::isnan(d)) {
    return 0;
  }
  // 2^63 as a double; every double below it converts without overflow.
  constexpr double kLimit = 9223372036854775808.0;
  if (d >= kLimit) {
    return std::numeric_limits<int64_t>::max();
  }
  if (d < -kLimit) {
    return std::numeric_limits<int64_t>::min();
  }
  return static_cast<int64_t>(d);
}

}  // namespace

bool Row::isNull(size_t i) const {
  const Value* v = at(*this, i);
  return v == nullptr || std::holds_alternative<std::monostate>(*v);
}

int64_t Row::integer(size_t i) const {
  const Value* v = at(*this, i);
  if (v == nullptr) {
    return 0;
  }
  return std::visit(
      [](const auto& x) -> int64_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          return x;
        } else if constexpr (std::is_same_v<T, double>) {
          return clampToInt64(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          int64_t n = 0;
          const auto r = std::from_chars(x.data(), x.data() + x.size(), n);
          if (r.ec == std::errc() && r.ptr == x.data() + x.size()) {
            return n;
          }
          double d = 0;  // "12.5", "1e3": a number, not an integer
          const auto rd = std::from_chars(x.data(), x.data() + x.size(), d);
          return rd.ec == std::errc() ? clampToInt64(d) : 0;
        } else {
          return 0;
        }
      },
      *v);
}

double Row::real(size_t i) const {
  const Value* v = at(*this, i);
  if (v == nullptr) {
    return 0;
  }
  return std::visit(
      [](const auto& x) -> double {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          return static_cast<double>(x);
        } else if constexpr (std::is_same_v<T, double>) {
          return x;
        } else if constexpr (std::is_same_v<T, std::string>) {
          double d = 0;
          const auto r = std::from_chars(x.data(), x.data() + x.size(), d);
          return r.ec == std::errc() ? d : 0;
        } else {
          return 0;
        }
      },
      *v);
}

std::string Row::text(size_t i) const {
  const Value* v = at(*this, i);
  if (v == nullptr) {
    return {};
  }
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          return std::to_string(x);
        } else if constexpr (std::is_same_v<T, double>) {
          return formatDouble(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return x;
        } else {
          return {};
        }
      },
      *v);
}

}  // namespace vandra::db
