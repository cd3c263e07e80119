// Internal to src/placement: reading one JSON object's members, each type-checked and
// bounded, errors naming the path ("fleet.vms[3].vcpus must be ..."). Shared by the fleet
// and mobility decoders.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/placement/fleet_json.h"

namespace vandra::placement::detail {

using nlohmann::json;

inline Unexpected bad(const std::string& path, const std::string& what) {
  return fail(ErrorCode::InvalidArgument, "Fleet: " + path + " " + what);
}

// Reads the members of one object, each checked and bounded; absent optional members keep
// their defaults.
class Fields {
 public:
  Fields(const json& j, std::string path) : j_(j), path_(std::move(path)) {}

  Result<void> object() const {
    if (!j_.is_object()) {
      return bad(path_, "must be an object");
    }
    return {};
  }
  const json* find(const char* key) const {
    const auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  std::string at(const char* key) const { return path_ + "." + key; }

  Result<void> name(const char* key, std::string& out, bool required) const {
    const json* v = find(key);
    if (v == nullptr) {
      return required ? Result<void>(bad(at(key), "is missing")) : Result<void>();
    }
    if (!v->is_string() || v->get_ref<const std::string&>().empty() ||
        v->get_ref<const std::string&>().size() > kMaxName) {
      return bad(at(key), "must be a name of 1 to " + std::to_string(kMaxName) + " characters");
    }
    out = v->get<std::string>();
    return {};
  }
  template <class T>
  Result<void> whole(const char* key, T& out, uint64_t min, uint64_t max, bool required) const {
    const json* v = find(key);
    if (v == nullptr) {
      return required ? Result<void>(bad(at(key), "is missing")) : Result<void>();
    }
    if (!v->is_number_unsigned() || v->get<uint64_t>() < min || v->get<uint64_t>() > max) {
      return bad(at(key), "must be a whole number from " + std::to_string(min) + " to " +
                              std::to_string(max));
    }
    out = static_cast<T>(v->get<uint64_t>());
    return {};
  }
  Result<void> real(const char* key, double& out, double min, double max, bool required) const {
    const json* v = find(key);
    if (v == nullptr) {
      return required ? Result<void>(bad(at(key), "is missing")) : Result<void>();
    }
    if (!v->is_number() || !std::isfinite(v->get<double>()) || v->get<double>() < min ||
        v->get<double>() > max) {
      return bad(at(key),
                 "must be a number from " + std::to_string(min) + " to " + std::to_string(max));
    }
    out = v->get<double>();
    return {};
  }
  // An array of at most @p max objects; @p each gets every element and its path.
  template <class F>
  Result<void> list(const char* key, size_t max, F&& each) const {
    const json* v = find(key);
    if (v == nullptr) {
      return {};
    }
    if (!v->is_array() || v->size() > max) {
      return bad(at(key), "must be a list of at most " + std::to_string(max) + " items");
    }
    for (size_t i = 0; i < v->size(); ++i) {
      VANDRA_TRY(each((*v)[i], at(key) + "[" + std::to_string(i) + "]"));
    }
    return {};
  }
  Result<void> names(const char* key, std::vector<std::string>& out) const {
    return list(key, 64, [&](const json& e, const std::string& path) -> Result<void> {
      if (!e.is_string() || e.get_ref<const std::string&>().empty() ||
          e.get_ref<const std::string&>().size() > kMaxName) {
        return bad(path, "must be a name of 1 to " + std::to_string(kMaxName) + " characters");
      }
      out.push_back(e.get<std::string>());
      return {};
    });
  }

 private:
  const json& j_;
  std::string path_;
};

}  // namespace vandra::placement::detail
