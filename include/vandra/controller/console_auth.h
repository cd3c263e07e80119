// Sign-in for the web console: browsers have no client certificate, so a person signs in with
// a name and password (stored as scrypt hashes in the controller's database) and carries a
// session cookie. Scripts keep using client certificates (http_api.h).
//
//   POST /v1/session {user, password} ──► Users: scrypt check ──► Sessions::create
//        ◄── Set-Cookie: vandra_session=TOKEN (Secure; HttpOnly; SameSite=Strict) + csrf
//   later request ──► cookie ──► Sessions::find (idle and absolute expiry) ──► Caller
//        a change also needs X-CSRF-Token == the session's csrf, and a same-origin Origin
//
// Sessions live in the memory of the controller that made them (a restart signs everyone
// out); only a hash of the token is kept, so a memory dump does not give a usable cookie.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/controller/service.h"

namespace vandra::controller {

/// "scrypt$N$r$p$SALT$HASH" (base64), a fresh 16-byte salt each time. Errors: Internal.
[[nodiscard]] Result<std::string> hashPassword(const std::string& password);
/// Whether @p password matches @p stored (constant-time on the hash). A malformed @p stored
/// never matches.
bool verifyPassword(const std::string& password, const std::string& stored);

/// A stored hash's parts. Costs beyond 64 MiB of scrypt memory are refused (a hash written
/// with them would make every sign-in hold that much).
struct PasswordHash {
  uint64_t n = 0;
  uint64_t r = 0;
  uint64_t p = 0;
  std::vector<unsigned char> salt;
  std::vector<unsigned char> hash;
};
std::optional<PasswordHash> parsePasswordHash(const std::string& stored);

struct Session {
  std::string user;
  Role role = Role::None;
  std::string csrf;
  int64_t expires_at_ms = 0;  // the absolute end (Unix ms)
};

struct SessionLimits {
  std::chrono::seconds idle{30 * 60};
  std::chrono::seconds absolute{12 * 60 * 60};
  size_t max_sessions = 10000;  // the oldest is signed out beyond it
  uint32_t max_failures = 5;    // failed sign-ins per user within failure_window
  std::chrono::seconds failure_window{5 * 60};
};

/// The signed-in sessions. Thread-safe.
class Sessions {
 public:
  explicit Sessions(SessionLimits limits = {}) : limits_(limits) {}
  const SessionLimits& limits() const { return limits_; }

  /// A new session for @p user: the cookie's token and the session.
  std::pair<std::string, Session> create(const std::string& user, Role role);
  /// The live session of @p token (touching its idle timer), or nullopt.
  std::optional<Session> find(const std::string& token);
  void remove(const std::string& token);
  /// Every session of @p user ends (its password or role changed).
  void removeUser(const std::string& user);

  /// Whether another sign-in attempt for @p user is allowed now (too many failures: no).
  bool mayTry(const std::string& user);
  void noteFailure(const std::string& user);
  void noteSuccess(const std::string& user);

 private:
  struct Entry {
    Session session;
    std::chrono::steady_clock::time_point last_used;
    std::chrono::steady_clock::time_point created;
  };
  struct Failures {
    uint32_t count = 0;
    std::chrono::steady_clock::time_point first;
  };
  void expireLocked(std::chrono::steady_clock::time_point now);

  SessionLimits limits_;
  std::mutex mu_;
  std::map<std::string, Entry> by_hash_;  // SHA-256 of the token -> session
  std::map<std::string, Failures> failures_;
};

/// A random token of @p bytes bytes, base64url without padding (for cookies and CSRF).
std::string randomToken(size_t bytes = 32);

/// The value of cookie @p name in a Cookie header, or "".
std::string cookieValue(const std::string& header, const std::string& name);

}  // namespace vandra::controller
