#include "vandra/pki/tls.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

namespace vandra::pki {
namespace {

Unexpected tlsFail(const std::string& what) {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  char buf[256] = "unknown OpenSSL error";
  if (e != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
  }
  return fail(ErrorCode::InvalidArgument, what + ": " + buf);
}

}  // namespace

Result<void> configureMutualTls(SSL_CTX* ctx, const TlsIdentity& id, bool server) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
    return tlsFail("Cannot require TLS 1.3");
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, id.cert_path.c_str()) != 1) {
    return tlsFail("Cannot use certificate '" + id.cert_path + "'");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, id.key_path.c_str(), SSL_FILETYPE_PEM) != 1) {
    return tlsFail("Cannot use key '" + id.key_path + "'");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return tlsFail("Key '" + id.key_path + "' does not match '" + id.cert_path + "'");
  }
  // Only the site CA: the system's public CAs must not be able to vouch for a peer.
  if (SSL_CTX_load_verify_locations(ctx, id.ca_path.c_str(), nullptr) != 1) {
    return tlsFail("Cannot load CA '" + id.ca_path + "'");
  }
  if (!id.crl_path.empty()) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP* lookup =
        store == nullptr ? nullptr : X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (lookup == nullptr ||
        X509_load_crl_file(lookup, id.crl_path.c_str(), X509_FILETYPE_PEM) <= 0) {
      return tlsFail("Cannot load the CRLs in '" + id.crl_path + "'");
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);  // the peer's own certificate
  }
  int mode = SSL_VERIFY_PEER;
  if (server) {
    mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(id.ca_path.c_str());
    if (names != nullptr) {
      SSL_CTX_set_client_CA_list(ctx, names);
    }
    // A server that verifies peers must name its sessions' context, or OpenSSL fails every
    // resumed handshake ("session id context uninitialized"): browsers resume on each new
    // connection, and a page's parallel requests then fail at random.
    static const unsigned char kContext[] = "vandra";
    SSL_CTX_set_session_id_context(ctx, kContext, sizeof kContext - 1);
  }
  SSL_CTX_set_verify(ctx, mode, nullptr);
  return {};
}

}  // namespace vandra::pki
