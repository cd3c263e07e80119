// What the controller's route files share (http_api.cc, http_packages.cc); not an interface.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "vandra/agent/http_api.h"
#include "vandra/controller/service.h"

namespace vandra::controller::internal {

/// A path segment that names something (a VM, site, network...).
inline constexpr const char* kName = "([A-Za-z0-9._-]{1,64})";

/// Answers with @p r's value as JSON (through @p to) or its error.
template <class T, class F>
void answer(httplib::Response& res, const Result<T>& r, F to, int status = 200) {
  r ? agent::sendJson(res, status, to(*r)) : agent::sendError(res, r.error());
}

nlohmann::json toJson(const NewVmPlacement& p);

/// PUT/GET/DELETE /v1/packages[/{name}] and POST /v1/vms (an import).
void packageRoutes(httplib::Server& server, ControllerService& svc);

}  // namespace vandra::controller::internal
