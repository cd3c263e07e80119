// Streaming digests over OpenSSL EVP (see digest.h). No I/O, no buffering of input.
#include "digest.h"

#include <array>

namespace vandra::ovf {

std::string_view toString(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::Sha1:
      return "SHA1";
    case DigestAlgorithm::Sha256:
      return "SHA256";
    case DigestAlgorithm::Sha512:
      return "SHA512";
  }
  return "?";
}

namespace detail {

const EVP_MD* evpDigest(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::Sha1:
      return EVP_sha1();
    case DigestAlgorithm::Sha256:
      return EVP_sha256();
    case DigestAlgorithm::Sha512:
      return EVP_sha512();
  }
  return nullptr;
}

size_t hexDigestLength(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::Sha1:
      return 40;
    case DigestAlgorithm::Sha256:
      return 64;
    case DigestAlgorithm::Sha512:
      return 128;
  }
  return 0;
}

Result<Digest> Digest::create(DigestAlgorithm a) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), evpDigest(a), nullptr) != 1) {
    return fail(ErrorCode::Internal, "OpenSSL cannot compute " + std::string(toString(a)));
  }
  return Digest(a, std::move(ctx));
}

void Digest::update(const void* data, size_t n) {
  if (n > 0) {
    EVP_DigestUpdate(ctx_.get(), data, n);
  }
}

std::string Digest::finishHex() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_.get(), md.data(), &len);
  return toHex(md.data(), len);
}

std::string toHex(const unsigned char* data, size_t n) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[data[i] >> 4U]);
    out.push_back(kDigits[data[i] & 0xFU]);
  }
  return out;
}

namespace {
int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}
}  // namespace

bool fromHex(std::string_view hex, std::string& out) {
  if (hex.size() % 2 != 0) {
    return false;
  }
  out.clear();
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hexValue(hex[i]);
    const int lo = hexValue(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return true;
}

}  // namespace detail
}  // namespace vandra::ovf
