// Reading one sample out of a Prometheus text exposition (what a scrape of /metrics returns).
#pragma once

#include <optional>
#include <sstream>
#include <string>

namespace vandra::testing {

/// The value of the sample written exactly as @p series (name and labels in the serializer's
/// order: labels sorted by name, a histogram's `le` last, e.g.
/// `x_total{result="done",role="source"}`), or nullopt when @p text has no such line.
inline std::optional<double> sampleOf(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

}  // namespace vandra::testing
