// Mutual-TLS settings every vandra endpoint uses (agent API, later the site tunnel): TLS 1.3
// only, the peer must present a certificate that chains to the given CA, and clients check
// the server's name. One place, so that no endpoint can be configured more loosely.
#pragma once

#include <openssl/ssl.h>

#include <string>

#include "vandra/common/result.h"

namespace vandra::pki {

struct TlsIdentity {
  std::string ca_path;    // peers must chain to this CA
  std::string cert_path;  // our certificate
  std::string key_path;   // our key
  /// Optional PEM file of CRLs. When given, a peer certificate must be checked against its
  /// CA's CRL from this file: a revoked one is refused, and so is one whose CA has no CRL
  /// there (a CRL file covers every CA it is used with).
  std::string crl_path;
};

/// Configures @p ctx for a server (or, with @p server false, a client) with mutual
/// authentication: TLS >= 1.3, our certificate and key, peers verified against the CA and
/// refused without a certificate. Errors: InvalidArgument naming the file that failed.
[[nodiscard]] Result<void> configureMutualTls(SSL_CTX* ctx, const TlsIdentity& id, bool server);

}  // namespace vandra::pki
