// Reads and writes vandra's SLA section (namespace urn:vandra:ovf:sla:1) in a libxml2 tree.
// Schema: docs/ovf/sla-section.md. Values are validated; a bad one is named in the error.
#pragma once

#include <libxml/tree.h>

#include <string_view>

#include "vandra/common/result.h"
#include "vandra/ovf/sla.h"

namespace vandra::ovf {

/// Parses a <vandra:SlaSection> element. Errors: SlaInvalid naming the field and line.
[[nodiscard]] Result<Sla> readSlaSection(xmlNode* section, std::string_view envelope_ns);

/// Builds a <vandra:SlaSection> element for @p sla as the last child of @p virtual_system.
void appendSlaSection(xmlNode* virtual_system, std::string_view envelope_ns, const Sla& sla);

}  // namespace vandra::ovf
