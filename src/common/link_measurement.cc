#include "vandra/common/link_measurement.h"

namespace vandra {

std::string_view toString(ThroughputMethod m) {
  return m == ThroughputMethod::Probe ? "probe" : "migration";
}

std::optional<ThroughputMethod> throughputMethodFromString(std::string_view s) {
  if (s == "migration") {
    return ThroughputMethod::Migration;
  }
  if (s == "probe") {
    return ThroughputMethod::Probe;
  }
  return std::nullopt;
}

}  // namespace vandra
