// Streaming message digests (SHA1/SHA256/SHA512) over OpenSSL EVP, plus hex helpers.
// Holds no input: callers feed bytes as they stream them, so members are never copied.
// Internal to the package module; does no I/O.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "vandra/common/result.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf::detail {

const EVP_MD* evpDigest(DigestAlgorithm a);
/// Length of the hex digest for @p a (40, 64, 128).
size_t hexDigestLength(DigestAlgorithm a);

struct EvpMdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxFree>;

class Digest {
 public:
  /// Errors: Internal when OpenSSL cannot provide the algorithm.
  [[nodiscard]] static Result<Digest> create(DigestAlgorithm a);
  void update(const void* data, size_t n);
  /// Lower-case hex; the digest cannot be fed afterwards.
  std::string finishHex();
  DigestAlgorithm algorithm() const { return algorithm_; }

 private:
  Digest(DigestAlgorithm a, EvpMdCtxPtr ctx) : algorithm_(a), ctx_(std::move(ctx)) {}
  DigestAlgorithm algorithm_;
  EvpMdCtxPtr ctx_;
};

std::string toHex(const unsigned char* data, size_t n);
/// Decodes hex (either case); nullopt-like failure as false.
bool fromHex(std::string_view hex, std::string& out);

}  // namespace vandra::ovf::detail
