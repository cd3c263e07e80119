// Manifest parsing (see manifest.h). Tolerates the padding real tools write; rejects
// unknown algorithms, malformed lines and digests of the wrong length.
#include "manifest.h"

#include <algorithm>
#include <set>
#include <utility>

#include "digest.h"

namespace vandra::ovf {
namespace detail {
namespace {

bool isPad(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\0';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && isPad(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && isPad(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

bool equalsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'a' && x <= 'z' ? x - 32 : x) == (y >= 'a' && y <= 'z' ? y - 32 : y);
         });
}

bool isHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

std::vector<std::pair<int, std::string_view>> paddedLines(std::string_view text) {
  std::vector<std::pair<int, std::string_view>> out;
  int number = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t nl = text.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? text.size() : nl;
    ++number;
    const std::string_view line = trim(text.substr(pos, end - pos));
    if (!line.empty()) {
      out.emplace_back(number, line);
    }
    if (nl == std::string_view::npos) {
      break;
    }
    pos = nl + 1;
  }
  return out;
}

Result<DigestLine> parseDigestLine(std::string_view line) {
  const size_t open = line.find('(');
  const size_t close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return fail(ErrorCode::ManifestInvalid, "Manifest line is not 'ALG(file)= digest'");
  }
  const std::string_view alg = trim(line.substr(0, open));
  DigestLine out;
  if (equalsNoCase(alg, "SHA1")) {
    out.algorithm = DigestAlgorithm::Sha1;
  } else if (equalsNoCase(alg, "SHA256")) {
    out.algorithm = DigestAlgorithm::Sha256;
  } else if (equalsNoCase(alg, "SHA512")) {
    out.algorithm = DigestAlgorithm::Sha512;
  } else {
    return fail(ErrorCode::ManifestInvalid,
                "Unknown digest algorithm '" + std::string(alg.substr(0, 32)) + "'");
  }
  out.file = std::string(line.substr(open + 1, close - open - 1));
  if (out.file.empty()) {
    return fail(ErrorCode::ManifestInvalid, "Manifest line names no file");
  }
  std::string_view rest = trim(line.substr(close + 1));
  if (rest.empty() || rest.front() != '=') {
    return fail(ErrorCode::ManifestInvalid, "Manifest line has no '=' after the file name");
  }
  rest = trim(rest.substr(1));
  if (rest.empty() || !std::all_of(rest.begin(), rest.end(), isHex)) {
    return fail(ErrorCode::ManifestInvalid, "Digest for '" + out.file + "' is not hexadecimal");
  }
  out.hex.reserve(rest.size());
  for (const char c : rest) {
    out.hex.push_back(c >= 'A' && c <= 'F' ? static_cast<char>(c + 32) : c);
  }
  return out;
}

ParsedManifest parseManifestLenient(std::string_view text) {
  ParsedManifest out;
  std::set<std::pair<std::string, DigestAlgorithm>> seen;
  for (const auto& [number, line] : paddedLines(text)) {
    auto parsed = parseDigestLine(line);
    if (!parsed) {
      out.errors.push_back(std::move(parsed.error()).atLine(number));
      continue;
    }
    if (parsed->hex.size() != hexDigestLength(parsed->algorithm)) {
      out.errors.push_back(Error(ErrorCode::ManifestInvalid,
                                 std::string(toString(parsed->algorithm)) + " digest for '" +
                                     parsed->file + "' has " + std::to_string(parsed->hex.size()) +
                                     " hex digits, not " +
                                     std::to_string(hexDigestLength(parsed->algorithm)))
                               .atLine(number));
      continue;
    }
    if (!seen.emplace(parsed->file, parsed->algorithm).second) {
      out.errors.push_back(
          Error(ErrorCode::ManifestInvalid, "'" + parsed->file + "' is listed twice")
              .atLine(number));
      continue;
    }
    out.entries.push_back(
        ManifestEntry{parsed->algorithm, std::move(parsed->file), std::move(parsed->hex)});
  }
  return out;
}

}  // namespace detail

Result<std::vector<ManifestEntry>> parseManifest(std::string_view text) {
  auto parsed = detail::parseManifestLenient(text);
  if (!parsed.errors.empty()) {
    return fail(std::move(parsed.errors.front()));
  }
  return std::move(parsed.entries);
}

}  // namespace vandra::ovf
