// Result<T>: a value or an Error. tl::expected today; std::expected after moving to C++23
// (one line here). No exceptions cross a module boundary.
#pragma once

#include <tl/expected.hpp>

#include "vandra/common/error.h"

namespace vandra {

template <class T>
using Result = tl::expected<T, Error>;

using Unexpected = tl::unexpected<Error>;

inline Unexpected fail(ErrorCode code, std::string message) {
  return Unexpected(Error(code, std::move(message)));
}
inline Unexpected fail(Error e) {
  return Unexpected(std::move(e));
}

}  // namespace vandra

/// Propagates an error from an expression returning Result<...>.
#define VANDRA_CONCAT_INNER_(a, b) a##b
#define VANDRA_CONCAT_(a, b) VANDRA_CONCAT_INNER_(a, b)

// __COUNTER__ keeps names unique when VANDRA_TRY nests (lambdas inside VANDRA_TRY).
#define VANDRA_TRY(expr) VANDRA_TRY_IMPL_(VANDRA_CONCAT_(vandra_try_, __COUNTER__), expr)
#define VANDRA_TRY_IMPL_(tmp, expr)                  \
  do {                                               \
    auto&& tmp = (expr);                             \
    if (!tmp) {                                      \
      return ::vandra::fail(std::move(tmp).error()); \
    }                                                \
  } while (false)

/// `VANDRA_TRY_ASSIGN(auto x, f());` declares x from a successful Result or returns its error.
#define VANDRA_TRY_ASSIGN(decl, expr) \
  VANDRA_TRY_ASSIGN_IMPL_(VANDRA_CONCAT_(vandra_res_, __COUNTER__), decl, expr)
#define VANDRA_TRY_ASSIGN_IMPL_(tmp, decl, expr)   \
  auto tmp = (expr);                               \
  if (!tmp) {                                      \
    return ::vandra::fail(std::move(tmp).error()); \
  }                                                \
  decl = std::move(*tmp)
