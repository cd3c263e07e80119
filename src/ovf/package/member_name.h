// Rules for member names shared by reading and extraction: flat, relative, bounded names
// only, so no member can ever address a path outside the package or the extraction folder.
#pragma once

#include <optional>
#include <string_view>

#include "vandra/common/error.h"

namespace vandra::ovf::detail {

/// nullopt when @p name is acceptable; otherwise ArchiveForbiddenMember (absolute, "..",
/// nested folder, empty, control characters) or LimitExceeded (longer than
/// kMaxMemberNameBytes).
std::optional<Error> checkMemberName(std::string_view name);

bool endsWithNoCase(std::string_view s, std::string_view suffix);
/// "a/b/name.ovf" -> "name" (text before the last '.').
std::string_view stem(std::string_view name);

}  // namespace vandra::ovf::detail
