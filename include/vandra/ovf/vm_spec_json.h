// JSON form of VmSpec (the `vandra ovf inspect --json` output and `ovf export` input).
// Field names are a public contract: docs/ovf/vmspec-json.md.
#pragma once

#include <nlohmann/json.hpp>

#include "vandra/common/result.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::ovf {

nlohmann::json toJson(const VmSpec& spec);
nlohmann::json toJson(const Sla& sla);

/// Reads a VmSpec from JSON (as written by toJson). Unknown fields are refused; the error
/// (InvalidArgument) names the JSON path of the bad field.
[[nodiscard]] Result<VmSpec> vmSpecFromJson(const nlohmann::json& j);
[[nodiscard]] Result<Sla> slaFromJson(const nlohmann::json& j);

}  // namespace vandra::ovf
