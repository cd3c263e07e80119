// A VM record's stored spec, parsed: shared by the agent's migration and export halves.
#pragma once

#include <string>

#include "vandra/common/result.h"
#include "vandra/ovf/vm_spec.h"

namespace vandra::agent::detail {

/// @p spec_json as a VmSpec of exactly one virtual system. Errors: InvalidArgument.
[[nodiscard]] Result<ovf::VmSpec> parseVmSpec(const std::string& spec_json);

}  // namespace vandra::agent::detail
