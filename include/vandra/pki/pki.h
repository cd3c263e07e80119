// Site PKI: a certificate authority per site and the certificates it issues to agents,
// controllers and operators for mutual TLS. Keys are EC P-256, written 0600, never logged.
// Operators may bring their own CA instead (any PEM CA key + certificate works the same).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::pki {

enum class Role : uint8_t { Server, Client, Both };

struct CaOptions {
  std::string dir;          // created if missing; must not already hold ca.key/ca.crt
  std::string common_name;  // e.g. "vandra site dc CA"
  uint32_t days = 3650;
};

struct IssueOptions {
  std::string ca_dir;  // holds ca.key and ca.crt
  std::string name;    // file stem and CN: <name>.key, <name>.crt in ca_dir
  Role role = Role::Both;
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries
  uint32_t days = 825;
  /// Validity start relative to now, in seconds (negative: in the past). Tests use it to make
  /// expired certificates.
  int64_t not_before_offset_s = 0;
  /// The holder's group, written as the subject's organizationalUnitName: the controller reads
  /// a client's role from it ("operator", "viewer"; "" = no group).
  std::string group;
};

struct Issued {
  std::string key_path;
  std::string cert_path;
};

/// Creates ca.key (0600) and ca.crt in @p options.dir. Errors: AlreadyExists (never
/// overwrites a CA), InvalidArgument (empty CN), Io.
[[nodiscard]] Result<Issued> initCa(const CaOptions& options);

/// Issues a certificate signed by the CA in @p options.ca_dir. Errors: NotFound (no CA),
/// AlreadyExists (name taken), InvalidArgument (name not a plain token, bad IP), Io.
[[nodiscard]] Result<Issued> issue(const IssueOptions& options);

/// Checks that @p cert_path chains to @p ca_path (and, if @p host is not empty, that the
/// certificate names that host). Errors: CertificateUntrusted, CertificateExpired, NotFound.
[[nodiscard]] Result<void> verify(const std::string& cert_path, const std::string& ca_path,
                                  const std::string& host);

/// Revokes @p cert_path (issued by the CA in @p ca_dir): adds its serial to the CA's CRL
/// <ca_dir>/ca.crl (created on first use, kept entries, valid @p days) and returns that
/// path. Sites that load the CRL (--tunnel-crl) refuse the certificate in the handshake.
/// Errors: NotFound (no CA or certificate), InvalidArgument (not this CA's), Io.
[[nodiscard]] Result<std::string> revoke(const std::string& ca_dir, const std::string& cert_path,
                                         uint32_t days = 30);

}  // namespace vandra::pki
