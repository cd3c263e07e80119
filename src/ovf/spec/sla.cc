#include "vandra/ovf/sla.h"

#include <charconv>
#include <cmath>
#include <regex>

namespace vandra::ovf {
namespace {

Unexpected bad(std::string_view field, std::string_view value, std::string_view why) {
  return fail(ErrorCode::SlaInvalid, "SLA field '" + std::string(field) + "' value '" +
                                         std::string(value) + "': " + std::string(why));
}

// Names used for jurisdictions, locations and groups: short, printable, no separators that
// the CLI or the XML list form would split on.
bool validToken(std::string_view s) {
  if (s.empty() || s.size() > 64) {
    return false;
  }
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) {
      return false;
    }
  }
  return true;
}

template <class T>
std::optional<T> parseUnsigned(std::string_view s) {
  T v{};
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty()) {
    return std::nullopt;
  }
  return v;
}

std::optional<double> parseDouble(std::string_view s) {
  double v = 0;
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

}  // namespace

std::string_view toString(Mobility m) {
  switch (m) {
    case Mobility::Pinned:
      return "pinned";
    case Mobility::OnRequest:
      return "on-request";
    case Mobility::Automatic:
      return "automatic";
  }
  return "on-request";
}

std::optional<Mobility> mobilityFromString(std::string_view s) {
  if (s == "pinned") {
    return Mobility::Pinned;
  }
  if (s == "on-request") {
    return Mobility::OnRequest;
  }
  if (s == "automatic") {
    return Mobility::Automatic;
  }
  return std::nullopt;
}

Result<void> validateSla(const Sla& sla) {
  // 10 minutes of downtime is no longer a live migration; refuse it as a budget.
  if (sla.downtime_budget_ms &&
      (*sla.downtime_budget_ms == 0 || *sla.downtime_budget_ms > 600000)) {
    return bad("downtime-budget-ms", std::to_string(*sla.downtime_budget_ms), "must be 1..600000");
  }
  // Below 1 Mbit/s a migration of any real guest never converges; above 1 Tbit/s is a typo.
  if (sla.max_migration_mbps &&
      (*sla.max_migration_mbps == 0 || *sla.max_migration_mbps > 1000000)) {
    return bad("max-migration-mbps", std::to_string(*sla.max_migration_mbps), "must be 1..1000000");
  }
  if (sla.jurisdictions.size() > 64) {
    return bad("jurisdictions", std::to_string(sla.jurisdictions.size()) + " entries",
               "at most 64");
  }
  for (const auto& j : sla.jurisdictions) {
    if (!validToken(j)) {
      return bad("jurisdictions", j, "must be 1..64 characters of A-Z a-z 0-9 - _ .");
    }
  }
  if (sla.max_rtt) {
    if (!validToken(sla.max_rtt->location)) {
      return bad("max-rtt", sla.max_rtt->location, "location must be a plain name");
    }
    if (sla.max_rtt->ms == 0 || sla.max_rtt->ms > 10000) {
      return bad("max-rtt", std::to_string(sla.max_rtt->ms), "must be 1..10000 ms");
    }
  }
  if (sla.anti_affinity_group && !validToken(*sla.anti_affinity_group)) {
    return bad("anti-affinity-group", *sla.anti_affinity_group, "must be a plain name");
  }
  if (sla.max_cost_per_hour && (!std::isfinite(*sla.max_cost_per_hour) ||
                                *sla.max_cost_per_hour < 0 || *sla.max_cost_per_hour > 1e6)) {
    return bad("max-cost-per-hour", std::to_string(*sla.max_cost_per_hour), "must be 0..1000000");
  }
  if (sla.currency.size() != 3 || !std::all_of(sla.currency.begin(), sla.currency.end(),
                                               [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return bad("currency", sla.currency, "must be an ISO 4217 code such as EUR");
  }
  if (sla.availability_percent &&
      (!std::isfinite(*sla.availability_percent) || *sla.availability_percent <= 0 ||
       *sla.availability_percent > 100)) {
    return bad("availability", std::to_string(*sla.availability_percent),
               "must be a percentage in (0, 100]");
  }
  return {};
}

Result<void> applySlaAssignment(Sla& sla, std::string_view field, std::string_view raw) {
  const std::string value = trim(raw);
  const bool clear = value.empty();
  if (field == "downtime-budget-ms") {
    if (clear) {
      sla.downtime_budget_ms.reset();
    } else if (auto v = parseUnsigned<uint32_t>(value)) {
      sla.downtime_budget_ms = *v;
    } else {
      return bad(field, value, "not a whole number of milliseconds");
    }
  } else if (field == "jurisdictions") {
    sla.jurisdictions.clear();
    size_t start = 0;
    while (!clear && start <= value.size()) {
      const size_t comma = value.find(',', start);
      const std::string item = trim(std::string_view(value).substr(
          start, comma == std::string::npos ? std::string::npos : comma - start));
      if (item.empty()) {
        return bad(field, value, "empty jurisdiction in list");
      }
      sla.jurisdictions.push_back(item);
      if (comma == std::string::npos) {
        break;
      }
      start = comma + 1;
    }
  } else if (field == "max-rtt") {
    if (clear) {
      sla.max_rtt.reset();
    } else {
      const size_t colon = value.rfind(':');
      if (colon == std::string::npos) {
        return bad(field, value, "expected LOCATION:MILLISECONDS");
      }
      auto ms = parseUnsigned<uint32_t>(std::string_view(value).substr(colon + 1));
      if (!ms) {
        return bad(field, value, "expected LOCATION:MILLISECONDS");
      }
      sla.max_rtt = MaxRtt{value.substr(0, colon), *ms};
    }
  } else if (field == "encryption") {
    if (value == "required") {
      sla.encryption_in_transit = true;
    } else if (value == "optional") {
      sla.encryption_in_transit = false;
    } else {
      return bad(field, value, "expected 'required' or 'optional'");
    }
  } else if (field == "anti-affinity-group") {
    if (clear) {
      sla.anti_affinity_group.reset();
    } else {
      sla.anti_affinity_group = value;
    }
  } else if (field == "max-cost-per-hour") {
    if (clear) {
      sla.max_cost_per_hour.reset();
    } else if (auto v = parseDouble(value)) {
      sla.max_cost_per_hour = *v;
    } else {
      return bad(field, value, "not a number");
    }
  } else if (field == "currency") {
    sla.currency = value;
  } else if (field == "mobility") {
    auto m = mobilityFromString(value);
    if (!m) {
      return bad(field, value, "expected pinned, on-request or automatic");
    }
    sla.mobility = *m;
  } else if (field == "availability") {
    if (clear) {
      sla.availability_percent.reset();
    } else if (auto v = parseDouble(value)) {
      sla.availability_percent = *v;
    } else {
      return bad(field, value, "not a number");
    }
  } else if (field == "max-migration-mbps") {
    if (clear) {
      sla.max_migration_mbps.reset();
    } else if (auto v = parseUnsigned<uint32_t>(value)) {
      sla.max_migration_mbps = *v;
    } else {
      return bad(field, value, "not a whole number of Mbit/s");
    }
  } else if (field == "post-copy") {
    if (value == "allowed") {
      sla.post_copy_allowed = true;
    } else if (value == "never" || clear) {
      sla.post_copy_allowed = false;
    } else {
      return bad(field, value, "expected 'allowed' or 'never'");
    }
  } else if (field == "required") {
    if (value == "true") {
      sla.required = true;
    } else if (value == "false") {
      sla.required = false;
    } else {
      return bad(field, value, "expected true or false");
    }
  } else {
    return fail(ErrorCode::SlaInvalid,
                "Unknown SLA field '" + std::string(field) +
                    "' (known: downtime-budget-ms, jurisdictions, max-rtt, encryption, "
                    "anti-affinity-group, max-cost-per-hour, currency, mobility, availability, "
                    "max-migration-mbps, post-copy, required)");
  }
  return validateSla(sla);
}

}  // namespace vandra::ovf
