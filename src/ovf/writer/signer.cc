// OVF signing: SHA256 over the manifest bytes with the signer's private key (EVP_DigestSign:
// RSA PKCS#1 v1.5 or ECDSA, as ovftool writes and verifies), then the certificate chain in
// PEM. OpenSSL objects are owned by unique_ptrs; no error escapes as an exception.
#include "signer.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

namespace vandra::ovf::detail {
namespace {

struct Free {
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
template <class T>
using Owned = std::unique_ptr<T, Free>;

std::string opensslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) {
    return "unknown OpenSSL error";
  }
  std::array<char, 256> buf{};
  ERR_error_string_n(e, buf.data(), buf.size());
  return buf.data();
}

Owned<BIO> memBio(const std::string& s) {
  return Owned<BIO>(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

}  // namespace

std::string manifestText(const std::vector<ManifestEntry>& entries) {
  std::string out;
  for (const auto& e : entries) {
    out += std::string(toString(e.algorithm)) + "(" + e.file + ")= " + e.hex_digest + "\n";
  }
  return out;
}

Result<std::string> signManifest(const std::string& mf_name, std::string_view mf_bytes,
                                 const std::string& key_pem, const std::string& cert_pem) {
  if (key_pem.size() > (1U << 20) || cert_pem.size() > (16U << 20)) {
    return fail(ErrorCode::LimitExceeded, "Signing key or certificate is too large");
  }
  ERR_clear_error();
  auto kb = memBio(key_pem);
  Owned<EVP_PKEY> key(kb ? PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) {
    return fail(ErrorCode::InvalidArgument, "Cannot read the signing key: " + opensslError());
  }
  auto cb = memBio(cert_pem);
  Owned<X509> leaf(cb ? PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!leaf) {
    return fail(ErrorCode::InvalidArgument,
                "Cannot read the signing certificate: " + opensslError());
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    return fail(ErrorCode::InvalidArgument, "The signing key does not match the certificate");
  }
  // Re-encode every certificate of the chain so that only PEM certificates are copied.
  std::string chain;
  auto cb2 = memBio(cert_pem);
  for (;;) {
    Owned<X509> c(PEM_read_bio_X509(cb2.get(), nullptr, nullptr, nullptr));
    if (!c) {
      ERR_clear_error();
      break;
    }
    Owned<BIO> out(BIO_new(BIO_s_mem()));
    if (!out || PEM_write_bio_X509(out.get(), c.get()) != 1) {
      return fail(ErrorCode::Internal, "Cannot encode certificate: " + opensslError());
    }
    char* data = nullptr;
    const long n = BIO_get_mem_data(out.get(), &data);
    chain.append(data, static_cast<size_t>(n));
  }

  Owned<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  size_t sig_len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &sig_len,
                     reinterpret_cast<const unsigned char*>(mf_bytes.data()),
                     mf_bytes.size()) != 1) {
    return fail(ErrorCode::Internal, "Signing failed: " + opensslError());
  }
  std::vector<unsigned char> sig(sig_len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &sig_len,
                     reinterpret_cast<const unsigned char*>(mf_bytes.data()),
                     mf_bytes.size()) != 1) {
    return fail(ErrorCode::Internal, "Signing failed: " + opensslError());
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (size_t i = 0; i < sig_len; ++i) {
    hex += kDigits[sig[i] >> 4U];
    hex += kDigits[sig[i] & 0xFU];
  }
  return "SHA256(" + mf_name + ")= " + hex + "\n" + chain;
}

}  // namespace vandra::ovf::detail
