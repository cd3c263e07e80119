// Manifest text and OVF signature (.cert) creation. Internal to the writer. Signs exactly the
// manifest bytes given; never reads key material from anywhere but its arguments.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf::detail {

/// "SHA256(name)= hex\n" lines in the given order.
std::string manifestText(const std::vector<ManifestEntry>& entries);

/// The .cert content: "SHA256(<mf_name>)= <hex signature of mf_bytes>\n" followed by the
/// PEM certificate(s) of @p cert_pem. Errors: InvalidArgument (unparsable key/certificate,
/// key does not match the certificate), Internal (OpenSSL failure).
Result<std::string> signManifest(const std::string& mf_name, std::string_view mf_bytes,
                                 const std::string& key_pem, const std::string& cert_pem);

}  // namespace vandra::ovf::detail
