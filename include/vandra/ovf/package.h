// An OVF package as found on disk: a folder with a descriptor (.ovf), its manifest (.mf),
// certificate (.cert) and files, or one OVA tar holding them. Opening a package walks all of
// it: tar structure, forbidden members, manifest digests and signature. Never writes outside
// the folder it is told to extract into.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::ovf {

enum class PackageKind : uint8_t { Directory, Ova };
enum class DigestAlgorithm : uint8_t { Sha1, Sha256, Sha512 };
std::string_view toString(DigestAlgorithm a);  // "SHA1", "SHA256", "SHA512"

/// Bounds on hostile packages (the descriptor bound is kMaxDescriptorBytes in
/// descriptor_reader.h).
inline constexpr size_t kMaxManifestBytes = 1U << 20;     // .mf
inline constexpr size_t kMaxCertificateBytes = 1U << 20;  // .cert
inline constexpr size_t kMaxPackageMembers = 10000;
inline constexpr size_t kMaxMemberNameBytes = 1024;

struct ManifestEntry {
  DigestAlgorithm algorithm = DigestAlgorithm::Sha256;
  std::string file;
  std::string hex_digest;  // lower case
};

/// Parses a manifest (`SHA256(file)= hex` and `SHA256 (file) = hex` forms, blank lines and
/// trailing padding allowed). Errors: ManifestInvalid naming the line.
[[nodiscard]] Result<std::vector<ManifestEntry>> parseManifest(std::string_view text);

enum class SignatureStatus : uint8_t {
  Unsigned,    // no .cert
  Trusted,     // signature verifies, chain leads to the trust store
  SelfSigned,  // signature verifies, certificate is self-signed and not trusted
  Untrusted,   // signature verifies, chain does not lead to the trust store
  Expired,     // signature verifies, a certificate in the chain has expired
  Invalid,     // signature does not verify over the manifest
};
std::string_view toString(SignatureStatus s);

struct SignatureInfo {
  SignatureStatus status = SignatureStatus::Unsigned;
  std::string subject;  // signer certificate subject
  std::string issuer;
  std::string not_after;  // ISO 8601
  DigestAlgorithm algorithm = DigestAlgorithm::Sha256;
};

struct PackageMember {
  std::string name;  // path inside the package (never absolute, never "..")
  uint64_t size = 0;
};

struct OpenOptions {
  bool lax = false;            // problems become warnings (as ovftool --lax)
  bool verify_digests = true;  // stream every member through the manifest digests
  std::string trust_store;     // CA file or hashed directory; "" = OpenSSL default paths
  /// CA files trusted as well (an agent adds its peer sites' CAs: a site's exports).
  std::vector<std::string> extra_trust;
  /// Called while members are read: bytes done, bytes total (for progress bars).
  std::function<void(uint64_t, uint64_t)> progress;
  /// extractPackage: join chunk series NAME.000000000, NAME.000000001, ... into NAME.
  bool reassemble_chunks = true;
};

struct Package {
  PackageKind kind = PackageKind::Directory;
  std::string path;                    // the .ovf/.ova or folder given
  std::string descriptor_name;         // member name of the .ovf
  std::string descriptor;              // its bytes
  std::vector<PackageMember> members;  // in archive / directory order, descriptor first
  std::optional<std::vector<ManifestEntry>> manifest;
  SignatureInfo signature;
  std::vector<Error> problems;  // every fault found (empty = sound)
  std::vector<std::string> warnings;
};

/// Opens @p path (.ova, .ovf, or a folder holding one .ovf), collecting every problem in
/// Package::problems. Fails outright only if the package cannot be read at all (NotFound,
/// Io, ArchiveInvalid before the descriptor, LimitExceeded for the descriptor).
[[nodiscard]] Result<Package> openPackage(const std::string& path, const OpenOptions& options);

/// Same as openPackage for an OVA held in memory (@p bytes must outlive the call only).
/// Package::path is @p display_name. Used by the fuzz target and by callers that already
/// hold the archive.
[[nodiscard]] Result<Package> openPackageFromMemory(std::string_view bytes,
                                                    const std::string& display_name,
                                                    const OpenOptions& options);

/// Copies the members of @p pkg into @p dest_dir (created if missing, must be empty),
/// reassembling chunked files and leaving gzip members compressed. Refuses any name that
/// would leave dest_dir. On error nothing is left in dest_dir.
[[nodiscard]] Result<void> extractPackage(const Package& pkg, const std::string& dest_dir,
                                          const OpenOptions& options);

/// Stream-decompresses the gzip file @p src (ovf:compression="gzip" members, which
/// extraction leaves compressed) into the new file @p dest, writing at most
/// @p max_output bytes (LimitExceeded beyond: gzip bombs). Returns the bytes written.
/// Errors: DiskImageInvalid (not gzip / corrupt), Io, AlreadyExists. On error @p dest is removed.
[[nodiscard]] Result<uint64_t> gunzipFile(const std::string& src, const std::string& dest,
                                          uint64_t max_output);

}  // namespace vandra::ovf
