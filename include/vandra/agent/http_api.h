// The agent's versioned HTTP+JSON API (/v1/...), served over mutual TLS by vandrad. Routes
// translate requests into AgentService calls; bodies are bounded and strictly parsed
// (unknown fields refused); errors map to HTTP statuses in one table (httpStatusFor).
//
//   GET    /v1/host              capacity, used, free
//   GET    /v1/vms               list
//   POST   /v1/vms               {"id","package","vs"?,"lax"?}  import a package as a VM
//                                 (a path in an import folder), or {"id","upload",...}
//                                 {"id","from"}  create: a new VM on the same base images
//   GET    /v1/vms/{id}          show
//   DELETE /v1/vms/{id}          delete (not while running)
//   POST   /v1/vms/{id}/start    launch QEMU; running when QMP says so
//   POST   /v1/vms/{id}/stop     ACPI power-down, forced after a timeout
//   POST   /v1/vms/{id}/kill     SIGKILL
//   GET    /v1/vms/{id}/console  serial console log (last 256 KiB)
//   POST   /v1/fence             a controller's epoch announced (epoch_fence.h): {"epoch"}
//   GET    /v1/events            ?since=SEQ&wait_ms=MS&max=N  the event log (event_log.h);
//   GET    /v1/vms/{id}/events     waits up to wait_ms for something newer than `since`
//   PUT    /v1/packages/{name}   upload an .ova (streamed, bounded, verified before it is kept)
//   GET    /v1/packages          uploads: name, size, sha256; the bound and free space
//   GET    /v1/packages/{name}   one upload
//   DELETE /v1/packages/{name}   remove one (not while an import reads it)
//   GET    /v1/packages/{name}/file  the upload's bytes (a download)
//   POST   /v1/vms/{id}/export  {"name"?,"sign"?}  the VM as a package among the uploads;
//                                 its disks frozen where they stand (ADR 0029)
//   POST   /v1/seeds            {"upload","keep_hours"?,"lax"?}  an upload's disks imported
//                                 as base images only (no VM), for a later live move
//   GET    /metrics              Prometheus text format (metrics.h): migrations, capacity, VMs
//                                 by state, requests. A read: any client the site CA vouches for
//                                 (mutual TLS, as every route), never fenced
#pragma once

#include <httplib.h>

#include <functional>
#include <set>
#include <string>

#include "vandra/agent/agent_service.h"
#include "vandra/agent/epoch_fence.h"
#include "vandra/agent/metrics.h"

namespace vandra::agent {

/// Largest request body accepted (an import request is a few hundred bytes).
inline constexpr size_t kMaxRequestBody = 64 * 1024;
/// Longest a GET .../events may wait for news, and most events in one answer.
inline constexpr uint64_t kMaxEventWaitMs = 30000;
inline constexpr uint64_t kMaxEventsPerPage = 1000;

/// HTTP status for an error, derived from kindOf() (the one table, in common/error.cc).
int httpStatusFor(ErrorCode code);
/// {"error": {"code", "message"}} with the status of httpStatusFor().
void sendError(httplib::Response& res, const Error& e);
void sendJson(httplib::Response& res, int status, const nlohmann::json& j);
/// A request body that must be one JSON object of at most kMaxRequestBody bytes with no
/// member outside @p known. Errors: LimitExceeded, InvalidArgument (naming the member).
[[nodiscard]] Result<nlohmann::json> parseStrictBody(const std::string& body,
                                                     const std::set<std::string>& known);

/// The common name on the client certificate of @p req ("" when there is none): who asked,
/// for the records of operator decisions.
std::string clientName(const httplib::Request& req);

/// Registers every route on @p server. @p service must outlive the server.
/// With @p fence, every change is checked against the controllers' epoch first (epoch_fence.h).
/// With @p metrics, GET /metrics serves them and every answered request is counted (the
/// server's logger); @p fence and @p metrics must outlive the server too.
void registerRoutes(httplib::Server& server, AgentService& service, EpochFence* fence = nullptr,
                    AgentMetrics* metrics = nullptr);

/// The exposition text of @p metrics with the host's capacity and VMs as @p service has them
/// now. Errors: the registry's.
[[nodiscard]] Result<std::string> scrapeMetrics(AgentService& service, AgentMetrics& metrics);

/// PUT /v1/packages/{name}: the one route whose body is not bounded by kMaxRequestBody.
bool isUploadRequest(const httplib::Request& req);
/// The /v1/packages routes (package_routes.cc); registerRoutes() calls it.
void registerPackageRoutes(httplib::Server& server, AgentService& service);

/// Before routing: a body that is chunked, or declares more than kMaxRequestBody, is answered
/// (400/413, connection closed) unread, since it would be buffered whole before any check.
/// Uploads (isUploadRequest) are let through: they bound themselves. True: answered.
bool refuseUnboundedBody(const httplib::Request& req, httplib::Response& res);

/// Verifies a received upload and gives it its name (UploadWriter::commit with the package
/// checks of whoever receives it); @p lax is the request's ?lax=.
using CommitUpload = std::function<Result<UploadInfo>(UploadWriter& writer, bool lax)>;
/// Serves PUT .../{name} into @p store: the body streams to a partial file, bounded by the
/// store and the free space, and is committed by @p commit; any failure leaves nothing.
/// Answers 201 with uploadJson() or the error. Shared by the agent and the controller.
void receiveUpload(const UploadStore& store, const CommitUpload& commit, const std::string& name,
                   const httplib::Request& req, httplib::Response& res,
                   const httplib::ContentReader& reader);
/// {"name", "size", "sha256"} of an upload.
nlohmann::json uploadJson(const UploadInfo& u);

}  // namespace vandra::agent
