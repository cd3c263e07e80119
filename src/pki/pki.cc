// Site PKI with the OpenSSL 3 API: EC P-256 keys, X.509 v3 certificates with the extensions
// TLS peers check (basicConstraints, keyUsage, extendedKeyUsage, subjectAltName, key ids).
// Files are created exclusively (O_EXCL): an existing CA or certificate is never replaced.
#include "vandra/pki/pki.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <ctime>
#include <filesystem>
#include <memory>

#include "vandra/common/unique_fd.h"

namespace vandra::pki {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
  void operator()(X509_REVOKED* p) const { X509_REVOKED_free(p); }
  void operator()(ASN1_TIME* p) const { ASN1_TIME_free(p); }
};
template <class T>
using Owned = std::unique_ptr<T, Free>;

std::string sslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) {
    return "unknown OpenSSL error";
  }
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Unexpected sslFail(const std::string& what) {
  return fail(ErrorCode::Internal, what + ": " + sslError());
}

bool plainToken(const std::string& s) {
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
  return s.front() != '.';
}

// Writes PEM produced by @p write into a new file with @p mode; never replaces a file.
template <class F>
Result<void> writePem(const std::string& path, int mode, F&& write) {
  Owned<BIO> mem(BIO_new(BIO_s_mem()));
  if (!mem || write(mem.get()) != 1) {
    return sslFail("Cannot encode '" + path + "'");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(mem.get(), &data);
  VANDRA_TRY_ASSIGN(UniqueFd fd, UniqueFd::open(path, O_WRONLY | O_CREAT | O_EXCL, mode));
  VANDRA_TRY(writeAll(fd.get(), data, static_cast<size_t>(len), path));
  return fd.close();
}

Result<Owned<EVP_PKEY>> newKey() {
  Owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) {
    return sslFail("Cannot generate an EC key");
  }
  return key;
}

Result<void> addExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  Owned<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return sslFail("Cannot add certificate extension " + value);
  }
  return {};
}

Result<Owned<X509>> newCert(EVP_PKEY* key, const std::string& cn, uint32_t days, int64_t offset_s,
                            const std::string& group = "") {
  Owned<X509> cert(X509_new());
  if (!cert) {
    return sslFail("Cannot create a certificate");
  }
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) {
    return sslFail("No randomness for a serial number");
  }
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(offset_s));
  X509_gmtime_adj(X509_getm_notAfter(cert.get()),
                  static_cast<long>(offset_s + int64_t{days} * 86400));
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("vandra"), -1, -1, 0);
  if (!group.empty()) {
    X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(group.c_str()), -1, -1, 0);
  }
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

// Reads one PEM object of type T from @p path with @p read (PEM_read_bio_X509, ...).
// Errors: NotFound (unreadable file), InvalidArgument (not that kind of PEM).
template <class T, class F>
Result<Owned<T>> readPem(const std::string& path, const char* what, F read) {
  Owned<BIO> bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    return fail(ErrorCode::NotFound, std::string("Cannot read ") + what + " '" + path + "'");
  }
  Owned<T> obj(read(bio.get(), nullptr, nullptr, nullptr));
  if (!obj) {
    return fail(ErrorCode::InvalidArgument,
                "'" + path + "' is not a PEM " + what + ": " + sslError());
  }
  return obj;
}

Result<Owned<X509>> readCert(const std::string& path) {
  return readPem<X509>(path, "certificate", PEM_read_bio_X509);
}

Result<Owned<EVP_PKEY>> readKey(const std::string& path) {
  return readPem<EVP_PKEY>(path, "private key", PEM_read_bio_PrivateKey);
}

}  // namespace

Result<Issued> initCa(const CaOptions& o) {
  if (o.common_name.empty()) {
    return fail(ErrorCode::InvalidArgument, "A CA needs a common name");
  }
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot create '" + o.dir + "': " + ec.message());
  }
  Issued out{o.dir + "/ca.key", o.dir + "/ca.crt"};
  if (std::filesystem::exists(out.key_path) || std::filesystem::exists(out.cert_path)) {
    return fail(ErrorCode::AlreadyExists,
                "'" + o.dir + "' already holds a CA; it is never replaced");
  }
  VANDRA_TRY_ASSIGN(auto key, newKey());
  VANDRA_TRY_ASSIGN(auto cert, newCert(key.get(), o.common_name, o.days, 0));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  VANDRA_TRY(addExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  VANDRA_TRY(addExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  VANDRA_TRY(addExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return sslFail("Cannot sign the CA certificate");
  }
  VANDRA_TRY(writePem(out.key_path, 0600, [&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  }));
  auto written =
      writePem(out.cert_path, 0644, [&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
  if (!written) {
    ::unlink(out.key_path.c_str());
    return fail(written.error());
  }
  return out;
}

Result<Issued> issue(const IssueOptions& o) {
  if (!plainToken(o.name) || o.name == "ca") {
    return fail(ErrorCode::InvalidArgument,
                "Certificate name '" + o.name +
                    "' must be 1..64 characters of A-Z a-z 0-9 - _ . (and not 'ca')");
  }
  VANDRA_TRY_ASSIGN(auto ca_key, readKey(o.ca_dir + "/ca.key"));
  VANDRA_TRY_ASSIGN(auto ca_cert, readCert(o.ca_dir + "/ca.crt"));
  Issued out{o.ca_dir + "/" + o.name + ".key", o.ca_dir + "/" + o.name + ".crt"};
  if (std::filesystem::exists(out.key_path) || std::filesystem::exists(out.cert_path)) {
    return fail(ErrorCode::AlreadyExists, "A certificate named '" + o.name + "' already exists");
  }
  VANDRA_TRY_ASSIGN(auto key, newKey());
  if (!o.group.empty() && !plainToken(o.group)) {
    return fail(ErrorCode::InvalidArgument, "Group '" + o.group + "' is not a plain token");
  }
  VANDRA_TRY_ASSIGN(auto cert, newCert(key.get(), o.name, o.days, o.not_before_offset_s, o.group));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  VANDRA_TRY(addExt(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  VANDRA_TRY(
      addExt(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature,keyAgreement"));
  const char* eku = o.role == Role::Server   ? "serverAuth"
                    : o.role == Role::Client ? "clientAuth"
                                             : "serverAuth,clientAuth";
  VANDRA_TRY(addExt(cert.get(), ca_cert.get(), NID_ext_key_usage, eku));
  VANDRA_TRY(addExt(cert.get(), ca_cert.get(), NID_subject_key_identifier, "hash"));
  VANDRA_TRY(addExt(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid:always"));
  std::string san;
  for (const auto& d : o.dns_names) {
    if (!plainToken(d)) {
      return fail(ErrorCode::InvalidArgument, "DNS name '" + d + "' is not a plain host name");
    }
    san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  }
  for (const auto& ip : o.ip_addresses) {
    if (ip.find_first_not_of("0123456789.:abcdefABCDEF") != std::string::npos || ip.empty()) {
      return fail(ErrorCode::InvalidArgument, "'" + ip + "' is not an IP address");
    }
    san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  }
  if (!san.empty()) {
    auto r = addExt(cert.get(), ca_cert.get(), NID_subject_alt_name, san);
    if (!r) {
      return fail(ErrorCode::InvalidArgument, "Bad subjectAltName '" + san + "'");
    }
  }
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) {
    return sslFail("Cannot sign the certificate");
  }
  VANDRA_TRY(writePem(out.key_path, 0600, [&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  }));
  auto written =
      writePem(out.cert_path, 0644, [&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
  if (!written) {
    ::unlink(out.key_path.c_str());
    return fail(written.error());
  }
  return out;
}

Result<void> verify(const std::string& cert_path, const std::string& ca_path,
                    const std::string& host) {
  VANDRA_TRY_ASSIGN(auto cert, readCert(cert_path));
  VANDRA_TRY_ASSIGN(auto ca, readCert(ca_path));
  Owned<X509_STORE> store(X509_STORE_new());
  Owned<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1) {
    return sslFail("Cannot set up verification");
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    const ErrorCode code =
        err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID
            ? ErrorCode::CertificateExpired
            : ErrorCode::CertificateUntrusted;
    return fail(code, "'" + cert_path + "' does not verify against '" + ca_path +
                          "': " + X509_verify_cert_error_string(err));
  }
  if (!host.empty() && X509_check_host(cert.get(), host.c_str(), host.size(), 0, nullptr) != 1 &&
      X509_check_ip_asc(cert.get(), host.c_str(), 0) != 1) {
    return fail(ErrorCode::CertificateUntrusted,
                "'" + cert_path + "' is not valid for host '" + host + "'");
  }
  return {};
}

Result<std::string> revoke(const std::string& ca_dir, const std::string& cert_path, uint32_t days) {
  VANDRA_TRY_ASSIGN(Owned<X509> ca, readCert(ca_dir + "/ca.crt"));
  VANDRA_TRY_ASSIGN(Owned<EVP_PKEY> ca_key, readKey(ca_dir + "/ca.key"));
  VANDRA_TRY_ASSIGN(Owned<X509> cert, readCert(cert_path));
  if (X509_check_issued(ca.get(), cert.get()) != X509_V_OK) {
    return fail(ErrorCode::InvalidArgument,
                "'" + cert_path + "' was not issued by the CA in '" + ca_dir + "'");
  }
  const std::string crl_path = ca_dir + "/ca.crl";
  Owned<X509_CRL> crl;
  std::error_code ec;
  if (std::filesystem::exists(crl_path, ec)) {
    // Keep what was revoked before (only CRLs this CA signed count).
    VANDRA_TRY_ASSIGN(crl, readPem<X509_CRL>(crl_path, "CRL", PEM_read_bio_X509_CRL));
    if (X509_CRL_verify(crl.get(), X509_get0_pubkey(ca.get())) != 1) {
      return fail(ErrorCode::InvalidArgument,
                  "'" + crl_path + "' is not signed by the CA in '" + ca_dir + "'");
    }
  } else {
    crl.reset(X509_CRL_new());
    if (!crl || X509_CRL_set_version(crl.get(), 1) != 1 ||
        X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.get())) != 1) {
      return sslFail("Cannot make a CRL");
    }
  }
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
  bool listed = false;
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; revoked != nullptr && i < sk_X509_REVOKED_num(revoked); ++i) {
    listed = listed ||
             ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i)),
                              serial) == 0;
  }
  Owned<ASN1_TIME> now(ASN1_TIME_set(nullptr, std::time(nullptr)));
  Owned<ASN1_TIME> next(X509_time_adj_ex(nullptr, static_cast<int>(days), 0, nullptr));
  if (!now || !next) {
    return sslFail("Cannot make the CRL's times");
  }
  if (!listed) {
    Owned<X509_REVOKED> entry(X509_REVOKED_new());
    if (!entry ||
        X509_REVOKED_set_serialNumber(entry.get(), const_cast<ASN1_INTEGER*>(serial)) != 1 ||
        X509_REVOKED_set_revocationDate(entry.get(), now.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), entry.get()) != 1) {
      return sslFail("Cannot add the certificate to the CRL");
    }
    (void)entry.release();  // the CRL owns it now
  }
  if (X509_CRL_set1_lastUpdate(crl.get(), now.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1 || X509_CRL_sort(crl.get()) != 1 ||
      X509_CRL_sign(crl.get(), ca_key.get(), EVP_sha256()) == 0) {
    return sslFail("Cannot sign the CRL");
  }
  // Replaced whole: written next to it, then renamed over it.
  const std::string tmp = crl_path + ".new";
  std::filesystem::remove(tmp, ec);
  VANDRA_TRY(writePem(tmp, 0644, [&](BIO* b) { return PEM_write_bio_X509_CRL(b, crl.get()); }));
  std::filesystem::rename(tmp, crl_path, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot write '" + crl_path + "': " + ec.message());
  }
  return crl_path;
}

}  // namespace vandra::pki
