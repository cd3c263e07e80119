// Checks an OVF certificate file (.cert): the `ALG(name.mf)= hex` signature line over the
// manifest bytes, then the PEM chain (signer first) against a trust store. Reports what it
// finds as SignatureInfo plus problems; never throws, never touches the network.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf::detail {

struct SignatureCheck {
  SignatureInfo info;
  std::vector<Error> problems;  // SignatureInvalid, Certificate{SelfSigned,Untrusted,Expired}
};

/// @p trust_store: a CA file or a hashed directory; "" = OpenSSL default paths. @p extra_trust:
/// CA files trusted as well.
SignatureCheck verifySignature(std::string_view cert_text, std::string_view manifest_bytes,
                               std::string_view manifest_name, const std::string& trust_store,
                               const std::vector<std::string>& extra_trust = {});

}  // namespace vandra::ovf::detail
