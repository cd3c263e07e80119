// Signature and chain verification with OpenSSL 3 (see signature.h). The label on the
// signature line names the digest used for the signature, which may differ from the
// manifest's own digests (ovftool signs a SHA256 manifest with a line labelled SHA1).
#include "signature.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>

#include <array>
#include <ctime>
#include <memory>
#include <set>

#include "digest.h"
#include "manifest.h"

namespace vandra::ovf {

std::string_view toString(SignatureStatus s) {
  switch (s) {
    case SignatureStatus::Unsigned:
      return "unsigned";
    case SignatureStatus::Trusted:
      return "trusted";
    case SignatureStatus::SelfSigned:
      return "self-signed";
    case SignatureStatus::Untrusted:
      return "untrusted";
    case SignatureStatus::Expired:
      return "expired";
    case SignatureStatus::Invalid:
      return "invalid";
  }
  return "?";
}

namespace detail {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct X509StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

// OpenSSL's error queue as text; cleared so later calls start clean.
std::string opensslErrors() {
  std::string out;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    if (!out.empty()) {
      out += "; ";
    }
    out += buf.data();
  }
  return out;
}

std::string nameText(const X509_NAME* n) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || n == nullptr) {
    return {};
  }
  X509_NAME_print_ex(bio.get(), n, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

std::string isoTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return {};
  }
  std::array<char, 32> buf{};
  const size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf.data(), n);
}

// Our own ex_data slot on the verify context (allocated once, thread-safe static init).
int errorsIndex() {
  static const int idx = X509_STORE_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

// Collects every chain error instead of stopping at the first, so an expired and untrusted
// chain reports both.
int collectErrors(int ok, X509_STORE_CTX* ctx) {
  if (ok == 0) {
    auto* errors = static_cast<std::set<int>*>(X509_STORE_CTX_get_ex_data(ctx, errorsIndex()));
    if (errors != nullptr) {
      errors->insert(X509_STORE_CTX_get_error(ctx));
    }
  }
  return 1;
}

}  // namespace

SignatureCheck verifySignature(std::string_view cert_text, std::string_view manifest_bytes,
                               std::string_view manifest_name, const std::string& trust_store,
                               const std::vector<std::string>& extra_trust) {
  SignatureCheck out;
  out.info.status = SignatureStatus::Invalid;
  auto invalid = [&out](std::string msg) {
    out.info.status = SignatureStatus::Invalid;
    out.problems.emplace_back(ErrorCode::SignatureInvalid, std::move(msg));
    return std::move(out);
  };
  ERR_clear_error();

  // The signature line is the first non-blank line before the PEM blocks.
  const auto lines = paddedLines(cert_text);
  if (lines.empty() || lines.front().second.starts_with("-----")) {
    return invalid("Certificate file has no 'ALG(manifest)= signature' line");
  }
  auto line = parseDigestLine(lines.front().second);
  if (!line) {
    return invalid("Certificate file signature line: " + line.error().message);
  }
  out.info.algorithm = line->algorithm;
  if (line->file != manifest_name) {
    return invalid("Certificate signs '" + line->file + "', not the manifest '" +
                   std::string(manifest_name) + "'");
  }
  std::string signature;
  if (!fromHex(line->hex, signature) || signature.empty()) {
    return invalid("Signature in the certificate file is not hexadecimal");
  }

  // PEM certificates: signer first, then its chain.
  const size_t pem_at = cert_text.find("-----BEGIN");
  if (pem_at == std::string_view::npos) {
    return invalid("Certificate file holds no PEM certificate");
  }
  const std::string_view pem = cert_text.substr(pem_at);
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr signer(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!signer) {
    return invalid("Cannot parse the signer certificate: " + opensslErrors());
  }
  std::unique_ptr<STACK_OF(X509), X509StackFree> chain(sk_X509_new_null());
  for (int i = 0; i < 16; ++i) {  // a chain longer than 16 is not plausible
    X509Ptr more(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!more) {
      break;
    }
    if (sk_X509_push(chain.get(), more.get()) > 0) {
      (void)more.release();
    }
  }
  ERR_clear_error();  // the loop ends on a "no start line" error
  out.info.subject = nameText(X509_get_subject_name(signer.get()));
  out.info.issuer = nameText(X509_get_issuer_name(signer.get()));
  out.info.not_after = isoTime(X509_get0_notAfter(signer.get()));

  // 1. The signature over the exact manifest bytes (padding included).
  EVP_PKEY* key = X509_get0_pubkey(signer.get());
  if (key == nullptr) {
    return invalid("Signer certificate has an unusable public key: " + opensslErrors());
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, evpDigest(line->algorithm), nullptr, key) != 1) {
    return invalid("Cannot verify with the signer's key (" +
                   std::to_string(EVP_PKEY_get_bits(key)) + "-bit " + EVP_PKEY_get0_type_name(key) +
                   "): " + opensslErrors());
  }
  const int verified = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
      reinterpret_cast<const unsigned char*>(manifest_bytes.data()), manifest_bytes.size());
  if (verified != 1) {
    const std::string why = opensslErrors();
    return invalid("Signature does not verify over '" + std::string(manifest_name) + "'" +
                   (why.empty() ? std::string() : " (" + why + ")"));
  }

  // 2. The chain against the trust store.
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  if (!store) {
    return invalid("OpenSSL: out of memory");
  }
  int loaded = 0;
  if (trust_store.empty()) {
    loaded = X509_STORE_set_default_paths(store.get());
  } else {
    struct stat st {};
    const bool is_dir = ::stat(trust_store.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    loaded = is_dir ? X509_STORE_load_path(store.get(), trust_store.c_str())
                    : X509_STORE_load_file(store.get(), trust_store.c_str());
  }
  if (loaded != 1) {
    out.problems.emplace_back(ErrorCode::CertificateUntrusted,
                              "Cannot load trust store '" + trust_store + "': " + opensslErrors());
  }
  for (const auto& extra : extra_trust) {
    if (X509_STORE_load_file(store.get(), extra.c_str()) != 1) {
      out.problems.emplace_back(ErrorCode::CertificateUntrusted,
                                "Cannot load trust store '" + extra + "': " + opensslErrors());
    }
  }
  ERR_clear_error();
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> vctx(X509_STORE_CTX_new());
  std::set<int> errors;
  if (!vctx || X509_STORE_CTX_init(vctx.get(), store.get(), signer.get(), chain.get()) != 1) {
    return invalid("OpenSSL: cannot set up chain verification");
  }
  X509_STORE_CTX_set_ex_data(vctx.get(), errorsIndex(), &errors);
  X509_STORE_CTX_set_verify_cb(vctx.get(), collectErrors);
  const int chain_ok = X509_verify_cert(vctx.get());
  ERR_clear_error();
  if (chain_ok == 1 && errors.empty()) {
    out.info.status = SignatureStatus::Trusted;
    return out;
  }
  if (chain_ok != 1 && errors.empty()) {
    errors.insert(X509_STORE_CTX_get_error(vctx.get()));
  }
  const std::string who = "Signer '" + out.info.subject + "'";
  bool untrusted = false;
  bool self_signed = false;
  bool expired = false;
  std::string other;
  for (const int e : errors) {
    switch (e) {
      case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        self_signed = true;
        break;
      case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
      case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      case X509_V_ERR_CERT_UNTRUSTED:
        untrusted = true;
        break;
      case X509_V_ERR_CERT_HAS_EXPIRED:
      case X509_V_ERR_CERT_NOT_YET_VALID:
        expired = true;
        break;
      default:
        other += std::string(other.empty() ? "" : "; ") + X509_verify_cert_error_string(e);
        break;
    }
  }
  if (self_signed) {
    out.info.status = SignatureStatus::SelfSigned;
    out.problems.emplace_back(ErrorCode::CertificateSelfSigned,
                              who + " is self-signed and not in the trust store");
  } else if (untrusted || !other.empty()) {
    out.info.status = SignatureStatus::Untrusted;
    out.problems.emplace_back(ErrorCode::CertificateUntrusted,
                              who + " does not chain to the trust store" +
                                  (other.empty() ? std::string() : " (" + other + ")"));
  } else {
    out.info.status = SignatureStatus::Expired;
  }
  if (expired) {
    out.problems.emplace_back(ErrorCode::CertificateExpired,
                              who +
                                  ": a certificate in the chain has expired or is not yet "
                                  "valid (signer not after " +
                                  out.info.not_after + ")");
  }
  return out;
}

}  // namespace detail
}  // namespace vandra::ovf
