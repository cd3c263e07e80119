// The controller's REST API under /v1 (contract: docs/controller/openapi.json, served at
// /v1/openapi.json), over mutual TLS. The client certificate says who asks (its CN) and in
// which role (its OU, `vandra pki issue --group operator|viewer`):
//
//   request ──► role from the certificate ──► none: 403 ──► viewer + change: 403 (audited)
//           ──► route ──► answer ──► audit (every change, allowed or not) + metrics
//
//   GET   /v1/openapi.json /v1/health /v1/leader
//   GET   /v1/sites  /v1/sites/{name}          PATCH /v1/sites/{name}   (facts)
//   GET   /v1/hosts  /v1/links  /v1/locations  /v1/networks
//   PUT   /v1/links/{a}/{b}  /v1/locations/{name}  /v1/networks/{name}
//   GET   /v1/vms  /v1/vms/{name}  /v1/vms/{name}/preflight?to=SITE
//   POST  /v1/vms/{name}/migrate {"to","reason"?}  /v1/vms/{name}/start  /v1/vms/{name}/stop
//   GET   /v1/migrations?vm=&max=  /v1/migrations/{id}
//   GET   /v1/mobility (paused?, the plan)   POST /v1/mobility/pause  /v1/mobility/resume
//   GET   /v1/sites/{name}/drain (the plan)  POST /v1/sites/{name}/drain (starts it)
//   POST  /v1/placement/vm  where a new VM would go (a question: any role, not audited)
//   PUT   /v1/packages/{name} (an .ova, streamed, bounded, verified)  GET /v1/packages[/{name}]
//   POST  /v1/vms {"id","package","site"?,"network_map"?,"start"?}  import through the controller
//   GET   /v1/sla  /v1/placement  /v1/audit?after=&who=&target=&max=  /v1/events?after=&max=
//   GET   /metrics   (Prometheus text)
//   console (docs/console/api.md): POST/GET/DELETE /v1/session  GET /v1/stream (events)
//   POST  /v1/migrations/{id}/cancel   GET /v1/migrations/{id}/samples   GET / (the console)
#pragma once

#include <httplib.h>

#include <string>

#include "vandra/controller/service.h"

namespace vandra::controller {

/// cpp-httplib serves one connection per worker: consoles and scripts keep connections open,
/// so the controller has workers for a few hundred of them, and lets each carry many requests
/// (docs/benchmarks.md, "Controller API under load").
inline constexpr size_t kServerThreads = 512;
inline constexpr size_t kRequestsPerConnection = 10000;
/// Consoles poll every few seconds: their connection stays open between polls.
inline constexpr time_t kKeepAliveSeconds = 10;

/// The OpenAPI document (docs/controller/openapi.json, compiled in).
const std::string& openApiDocument();

/// Who asks, from the client certificate of @p req: CN and the role its OU names
/// (Role::None without a certificate or a known group).
Caller callerOf(const httplib::Request& req);

/// The body of POST /v1/vms (an import): strict (no unknown member), bounded, names checked.
/// Errors: LimitExceeded, InvalidArgument naming the member. Exposed for the fuzz target.
[[nodiscard]] Result<ImportVmRequest> importRequestFromJson(const std::string& body);

/// The web console (docs/console/): its built files, and sign-in for browsers.
struct ConsoleOptions {
  std::string static_dir;  // served at / ("" = none)
  bool sign_in = false;    // POST /v1/session and session cookies accepted
};

/// Why @p dir cannot be served as the console ("" = it can: a folder with index.html).
std::string consoleDirProblem(const std::string& dir);

/// Registers every route, the role check and the audit on @p server. @p service must outlive
/// the server.
void registerRoutes(httplib::Server& server, ControllerService& service,
                    const ConsoleOptions& console = {});

}  // namespace vandra::controller
