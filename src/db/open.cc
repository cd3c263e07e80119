// open(): which database a URL names. Also the small helpers both implementations share.
#include <algorithm>
#include <random>
#include <string>
#include <string_view>

#include "internal.h"

namespace vandra::db {
namespace internal {

std::string nowMsSql(Dialect dialect) {
  // julianday() counts days from noon, 24 November 4714 BC; 2440587.5 is 1970-01-01.
  return dialect == Dialect::Postgres
             ? "(extract(epoch from clock_timestamp()) * 1000)::bigint"
             : "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
}

int64_t retryDelayUs(int attempt) {
  // Full jitter: losers of a conflict spread out instead of colliding again in step.
  const int64_t cap_us = std::min<int64_t>(int64_t{1000} << std::min(attempt, 8), 200'000);
  thread_local std::minstd_rand rng(std::random_device{}());
  return std::uniform_int_distribution<int64_t>(cap_us / 4, cap_us)(rng);
}

std::string redactUrl(std::string_view url) {
  std::string out;
  const size_t scheme_end = url.find("://");
  const size_t authority = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
  const size_t authority_end = std::min(url.find_first_of("/?", authority), url.size());
  const std::string_view host_part = url.substr(authority, authority_end - authority);
  out.append(url.substr(0, authority));
  // The last '@' ends the user information (a password may itself hold a percent-encoded '@',
  // never a raw one, but take the last to be safe).
  const size_t at = host_part.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = host_part.substr(0, at);
    out.append(userinfo.substr(0, userinfo.find(':')));
    out.append(host_part.substr(at));
  } else {
    out.append(host_part);
  }
  const size_t query = url.find('?', authority_end);
  out.append(url.substr(authority_end, std::min(query, url.size()) - authority_end));
  if (query == std::string_view::npos) {
    return out;
  }
  // Keep every parameter but password=.
  std::string_view rest = url.substr(query + 1);
  char sep = '?';
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view param = rest.substr(0, amp);
    if (!param.starts_with("password=") && !param.empty()) {
      out.push_back(sep);
      out.append(param);
      sep = '&';
    }
    if (amp == std::string_view::npos) {
      break;
    }
    rest = rest.substr(amp + 1);
  }
  return out;
}

}  // namespace internal

Result<std::unique_ptr<Database>> open(const std::string& url, const OpenOptions& options) {
  if (options.pool_size < 1 || options.busy_timeout_ms < 0) {
    return fail(ErrorCode::InvalidArgument,
                "Database pool_size must be at least 1 and busy_timeout_ms not negative (got " +
                    std::to_string(options.pool_size) + " and " +
                    std::to_string(options.busy_timeout_ms) + ")");
  }
  const std::string_view u(url);
  if (u.starts_with("postgresql://") || u.starts_with("postgres://")) {
    return internal::openPostgres(url, options);
  }
  std::string path = u.starts_with("sqlite:") ? url.substr(7) : url;
  // Each pooled connection opens the file again, so an in-memory database would be several.
  if (path.empty() || path == ":memory:" || path.find("://") != std::string::npos ||
      path.starts_with("file:")) {
    return fail(ErrorCode::InvalidArgument,
                "Not a database URL: '" + internal::redactUrl(url) +
                    "' (expected sqlite:PATH, a file path, or postgresql://...)");
  }
  return internal::openSqlite(path, options);
}

}  // namespace vandra::db
