// Whole numbers from JSON that came from outside (an agent's answer, a stored document): a
// float, a negative or an out-of-range number is refused (std::out_of_range), never converted
// (a float beyond the type's range would be undefined behaviour).
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace vandra::controller::internal {

template <class T>
T whole(const nlohmann::json& j) {
  if (j.is_number_unsigned()) {
    const auto v = j.get<uint64_t>();
    if (v <= static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      return static_cast<T>(v);
    }
  } else if (j.is_number_integer()) {
    const auto v = j.get<int64_t>();
    if (v >= 0 &&
        static_cast<uint64_t>(v) <= static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      return static_cast<T>(v);
    }
  }
  throw std::out_of_range("not a whole number in range: " + j.dump().substr(0, 40));
}

/// @p key of @p j as a whole number, or @p fallback when absent.
template <class T>
T wholeOr(const nlohmann::json& j, const char* key, T fallback) {
  return j.contains(key) ? whole<T>(j.at(key)) : fallback;
}

}  // namespace vandra::controller::internal
