#include "vandra/controller/console_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <vector>

namespace vandra::controller {
namespace {

// scrypt's cost: 16 MiB and ~50 ms a check on this machine's cores; stored with the hash, so
// raising it later leaves old hashes usable.
constexpr uint64_t kScryptN = 1u << 14;
constexpr uint64_t kScryptR = 8;
constexpr uint64_t kScryptP = 1;
constexpr size_t kHashBytes = 32;

std::string base64(const unsigned char* data, size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  const int len =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<size_t>(std::max(len, 0)));
  return out;
}

std::optional<std::vector<unsigned char>> unbase64(const std::string& text) {
  if (text.empty() || text.size() % 4 != 0 || text.size() > 1024) {
    return std::nullopt;
  }
  std::vector<unsigned char> out(text.size() / 4 * 3);
  const int len = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                                  static_cast<int>(text.size()));
  if (len < 0) {
    return std::nullopt;
  }
  size_t pad = 0;
  for (size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) {
    ++pad;
  }
  out.resize(static_cast<size_t>(len) - std::min<size_t>(pad, static_cast<size_t>(len)));
  return out;
}

bool scrypt(const std::string& password, const std::vector<unsigned char>& salt, uint64_t n,
            uint64_t r, uint64_t p, unsigned char* out, size_t out_len) {
  return EVP_PBE_scrypt(password.data(), password.size(), salt.data(), salt.size(), n, r, p,
                        256ull << 20, out, out_len) == 1;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    parts.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) {
      return parts;
    }
    start = at + 1;
  }
}

std::string sha256(const std::string& text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(md), len);
}

}  // namespace

Result<std::string> hashPassword(const std::string& password) {
  std::vector<unsigned char> salt(16);
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
    return fail(ErrorCode::Internal, "No randomness for a password salt");
  }
  unsigned char hash[kHashBytes];
  if (!scrypt(password, salt, kScryptN, kScryptR, kScryptP, hash, sizeof hash)) {
    return fail(ErrorCode::Internal, "scrypt failed");
  }
  return "scrypt$" + std::to_string(kScryptN) + "$" + std::to_string(kScryptR) + "$" +
         std::to_string(kScryptP) + "$" + base64(salt.data(), salt.size()) + "$" +
         base64(hash, sizeof hash);
}

std::optional<PasswordHash> parsePasswordHash(const std::string& stored) {
  const auto parts = split(stored, '$');
  if (stored.size() > 1024 || parts.size() != 6 || parts[0] != "scrypt") {
    return std::nullopt;
  }
  PasswordHash h;
  for (auto [text, out] : {std::pair{&parts[1], &h.n}, {&parts[2], &h.r}, {&parts[3], &h.p}}) {
    if (text->empty() || text->size() > 10 ||
        text->find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    *out = std::stoull(*text);
  }
  // scrypt needs 128 * r * N bytes: at most 64 MiB here (ours: 16 MiB).
  if (h.n < 2 || (h.n & (h.n - 1)) != 0 || h.r == 0 || h.r > 32 || h.p == 0 || h.p > 16 ||
      128 * h.r * h.n > (64u << 20)) {
    return std::nullopt;
  }
  auto salt = unbase64(parts[4]);
  auto hash = unbase64(parts[5]);
  if (!salt || !hash || hash->empty() || hash->size() > 64) {
    return std::nullopt;
  }
  h.salt = std::move(*salt);
  h.hash = std::move(*hash);
  return h;
}

bool verifyPassword(const std::string& password, const std::string& stored) {
  const auto h = parsePasswordHash(stored);
  if (!h || password.size() > 4096) {
    return false;
  }
  std::vector<unsigned char> got(h->hash.size());
  if (!scrypt(password, h->salt, h->n, h->r, h->p, got.data(), got.size())) {
    return false;
  }
  return CRYPTO_memcmp(got.data(), h->hash.data(), got.size()) == 0;
}

std::string randomToken(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    std::abort();  // no randomness: a guessable session token would be worse than stopping
  }
  std::string out = base64(raw.data(), raw.size());
  std::replace(out.begin(), out.end(), '+', '-');
  std::replace(out.begin(), out.end(), '/', '_');
  out.erase(std::remove(out.begin(), out.end(), '='), out.end());
  return out;
}

std::string cookieValue(const std::string& header, const std::string& name) {
  for (const auto& part : split(header, ';')) {
    const size_t b = part.find_first_not_of(' ');
    if (b == std::string::npos) {
      continue;
    }
    const size_t eq = part.find('=', b);
    if (eq != std::string::npos && part.compare(b, eq - b, name) == 0) {
      return part.substr(eq + 1, 256);
    }
  }
  return "";
}

std::pair<std::string, Session> Sessions::create(const std::string& user, Role role) {
  const auto now = std::chrono::steady_clock::now();
  std::string token = randomToken();
  Session s{user, role, randomToken(),
            std::chrono::duration_cast<std::chrono::milliseconds>(
                (std::chrono::system_clock::now() + limits_.absolute).time_since_epoch())
                .count()};
  std::lock_guard lock(mu_);
  expireLocked(now);
  while (by_hash_.size() >= limits_.max_sessions && !by_hash_.empty()) {
    auto oldest = std::min_element(by_hash_.begin(), by_hash_.end(), [](auto& a, auto& b) {
      return a.second.created < b.second.created;
    });
    by_hash_.erase(oldest);
  }
  by_hash_[sha256(token)] = Entry{s, now, now};
  return {std::move(token), std::move(s)};
}

std::optional<Session> Sessions::find(const std::string& token) {
  if (token.empty() || token.size() > 256) {
    return std::nullopt;
  }
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto it = by_hash_.find(sha256(token));
  if (it == by_hash_.end()) {
    return std::nullopt;
  }
  if (now - it->second.last_used > limits_.idle || now - it->second.created > limits_.absolute) {
    by_hash_.erase(it);
    return std::nullopt;
  }
  it->second.last_used = now;
  return it->second.session;
}

void Sessions::remove(const std::string& token) {
  std::lock_guard lock(mu_);
  by_hash_.erase(sha256(token));
}

void Sessions::removeUser(const std::string& user) {
  std::lock_guard lock(mu_);
  std::erase_if(by_hash_, [&](const auto& kv) { return kv.second.session.user == user; });
}

bool Sessions::mayTry(const std::string& user) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto it = failures_.find(user);
  if (it == failures_.end()) {
    return true;
  }
  if (now - it->second.first > limits_.failure_window) {
    failures_.erase(it);
    return true;
  }
  return it->second.count < limits_.max_failures;
}

void Sessions::noteFailure(const std::string& user) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  if (failures_.size() > 100000) {
    failures_.clear();  // bounded: a flood of made-up names must not grow memory without end
  }
  auto& f = failures_[user.substr(0, 128)];
  if (f.count == 0 || now - f.first > limits_.failure_window) {
    f = Failures{0, now};
  }
  ++f.count;
}

void Sessions::noteSuccess(const std::string& user) {
  std::lock_guard lock(mu_);
  failures_.erase(user);
}

void Sessions::expireLocked(std::chrono::steady_clock::time_point now) {
  std::erase_if(by_hash_, [&](const auto& kv) {
    return now - kv.second.last_used > limits_.idle || now - kv.second.created > limits_.absolute;
  });
}

}  // namespace vandra::controller
