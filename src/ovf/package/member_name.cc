// Member name rules (see member_name.h).
#include "member_name.h"

#include <string>

#include "vandra/ovf/package.h"

namespace vandra::ovf::detail {

std::optional<Error> checkMemberName(std::string_view name) {
  const std::string shown(name.substr(0, 200));
  if (name.size() > kMaxMemberNameBytes) {
    return Error(ErrorCode::LimitExceeded, "Member name longer than " +
                                               std::to_string(kMaxMemberNameBytes) + " bytes: '" +
                                               shown + "...'");
  }
  if (name.empty()) {
    return Error(ErrorCode::ArchiveForbiddenMember, "Member with an empty name");
  }
  if (name.front() == '/') {
    return Error(ErrorCode::ArchiveForbiddenMember, "Absolute member path '" + shown + "'");
  }
  // Any ".." component, wherever it is, could climb out of the destination.
  size_t pos = 0;
  while (pos <= name.size()) {
    const size_t slash = name.find('/', pos);
    const std::string_view part =
        name.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    if (part == "..") {
      return Error(ErrorCode::ArchiveForbiddenMember,
                   "Member path '" + shown + "' climbs out with '..'");
    }
    if (slash == std::string_view::npos) {
      break;
    }
    pos = slash + 1;
  }
  if (name.find('/') != std::string_view::npos) {
    return Error(ErrorCode::ArchiveForbiddenMember,
                 "Member '" + shown + "' is inside a folder (packages are flat)");
  }
  if (name == ".") {
    return Error(ErrorCode::ArchiveForbiddenMember, "Member named '.'");
  }
  for (const char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Error(ErrorCode::ArchiveForbiddenMember,
                   "Member name with a control character: '" + shown + "'");
    }
  }
  return std::nullopt;
}

bool endsWithNoCase(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) {
    return false;
  }
  const std::string_view tail = s.substr(s.size() - suffix.size());
  for (size_t i = 0; i < tail.size(); ++i) {
    const char a = tail[i] >= 'A' && tail[i] <= 'Z' ? static_cast<char>(tail[i] + 32) : tail[i];
    const char b =
        suffix[i] >= 'A' && suffix[i] <= 'Z' ? static_cast<char>(suffix[i] + 32) : suffix[i];
    if (a != b) {
      return false;
    }
  }
  return true;
}

std::string_view stem(std::string_view name) {
  const size_t slash = name.rfind('/');
  if (slash != std::string_view::npos) {
    name.remove_prefix(slash + 1);
  }
  const size_t dot = name.rfind('.');
  return dot == std::string_view::npos ? name : name.substr(0, dot);
}

}  // namespace vandra::ovf::detail
