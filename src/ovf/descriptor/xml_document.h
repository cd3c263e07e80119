// Hostile-input-safe XML parsing for OVF descriptors, and namespace-aware helpers over
// libxml2's tree. Refuses DTDs (so no entity declarations, no external entities, no
// billion laughs), never touches the network, bounds size, depth and element count.
// Must not: resolve any entity or URI, or match namespaces by prefix.
#pragma once

#include <libxml/tree.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vandra/common/result.h"

namespace vandra::ovf::xml {

struct DocDeleter {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using DocPtr = std::unique_ptr<xmlDoc, DocDeleter>;

/// Parses @p bytes. Errors: LimitExceeded (size, depth, element count), XmlForbidden
/// (DOCTYPE / entity declarations), XmlMalformed (with the line libxml2 reported).
[[nodiscard]] Result<DocPtr> parse(std::string_view bytes);

/// Serialises @p doc back to UTF-8 text with an XML declaration.
std::string serialise(xmlDoc* doc);

/// Namespace URI of a node ("" when unqualified).
std::string_view nsOf(const xmlNode* n);
std::string_view nameOf(const xmlNode* n);
inline bool isElement(const xmlNode* n) {
  return n != nullptr && n->type == XML_ELEMENT_NODE;
}
int lineOf(const xmlNode* n);

/// Element children of @p n.
std::vector<xmlNode*> children(const xmlNode* n);

/// Attribute by namespace URI and local name; @p ns "" means an unqualified attribute.
std::optional<std::string> attr(const xmlNode* n, std::string_view ns, std::string_view local);

/// Text content of @p n (concatenated, entities already decoded), trimmed of surrounding
/// whitespace.
std::string text(const xmlNode* n);

/// Resolves a QName value (as in xsi:type="ovf:DiskSection_Type") against the namespaces in
/// scope at @p n; returns {namespace URI, local name}, or nullopt for an unbound prefix.
std::optional<std::pair<std::string, std::string>> resolveQName(xmlNode* n, std::string_view qname);

}  // namespace vandra::ovf::xml
