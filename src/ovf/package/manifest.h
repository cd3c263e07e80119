// Manifest (.mf) and certificate-line parsing: `SHA256(file)= hex` and `SHA256 (file) = hex`,
// blank lines and space/NUL padding (ovftool pads to a block size). Pure text handling: it
// never opens the files a manifest names.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf::detail {

struct DigestLine {
  DigestAlgorithm algorithm = DigestAlgorithm::Sha256;
  std::string file;
  std::string hex;  // lower case, length not checked
};

/// Parses one `ALG(file)= hex` line (already trimmed). Errors: ManifestInvalid.
[[nodiscard]] Result<DigestLine> parseDigestLine(std::string_view line);

/// Every valid entry plus one ManifestInvalid error per bad line, so a single bad line does
/// not hide the checks of the others.
struct ParsedManifest {
  std::vector<ManifestEntry> entries;
  std::vector<Error> errors;
};
ParsedManifest parseManifestLenient(std::string_view text);

/// Splits @p text into lines with padding (spaces, tabs, CR, NUL) trimmed; blank lines are
/// dropped. Each element is (1-based line number, text).
std::vector<std::pair<int, std::string_view>> paddedLines(std::string_view text);

}  // namespace vandra::ovf::detail
