#include "vandra/agent/http_api.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <limits>
#include <map>
#include <set>

namespace vandra::agent {

using nlohmann::json;

void sendError(httplib::Response& res, const Error& e) {
  res.status = httpStatusFor(e.code);
  res.set_content(json{{"error", {{"code", toString(e.code)}, {"message", e.describe()}}}}.dump(),
                  "application/json");
}

void sendJson(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}

Result<json> parseStrictBody(const std::string& body, const std::set<std::string>& known) {
  if (body.size() > kMaxRequestBody) {
    return fail(ErrorCode::LimitExceeded,
                "Request body is larger than " + std::to_string(kMaxRequestBody) + " bytes");
  }
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(ErrorCode::InvalidArgument, "Request body must be a JSON object");
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (known.count(it.key()) == 0) {
      return fail(ErrorCode::InvalidArgument, "Unknown field '" + it.key() + "'");
    }
  }
  return j;
}

std::string clientName(const httplib::Request& req) {
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
  if (req.ssl == nullptr) {
    return "";
  }
  X509* cert = SSL_get_peer_certificate(req.ssl);
  if (cert == nullptr) {
    return "";
  }
  std::string name;
  char buf[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf) > 0) {
    name = buf;
  }
  X509_free(cert);
  return name;
#else
  (void)req;
  return "";
#endif
}

namespace {

// Strict body: an object, only known fields, each of the expected type.
Result<ImportRequest> parseImport(const std::string& body) {
  VANDRA_TRY_ASSIGN(const json j, parseStrictBody(body, {"id", "package", "upload", "vs", "lax",
                                                         "from", "networks"}));
  ImportRequest r;
  if (j.contains("from")) {
    if (!j["from"].is_string() || !j.contains("id") || !j["id"].is_string() || j.size() != 2) {
      return fail(ErrorCode::InvalidArgument,
                  "Create takes exactly {\"id\": string, \"from\": string}");
    }
    r.id = j["id"].get<std::string>();
    r.from = j["from"].get<std::string>();
    if (!validVmId(r.from)) {
      return fail(ErrorCode::InvalidArgument, "Bad VM id '" + r.from + "' in 'from'");
    }
    return r;
  }
  const char* source = j.contains("upload") ? "upload" : "package";
  if (j.contains("upload") && j.contains("package")) {
    return fail(ErrorCode::InvalidArgument, "Give either 'package' or 'upload', not both");
  }
  for (const char* k : {"id", source}) {
    if (!j.contains(k) || !j[k].is_string()) {
      return fail(ErrorCode::InvalidArgument, std::string("Field '") + k + "' must be a string");
    }
  }
  r.id = j["id"].get<std::string>();
  (j.contains("upload") ? r.upload : r.package) = j[source].get<std::string>();
  if (j.contains("upload") && !validUploadName(r.upload)) {
    return fail(ErrorCode::InvalidArgument, "Bad upload name '" + r.upload.substr(0, 200) + "'");
  }
  if (j.contains("vs")) {
    if (!j["vs"].is_string()) {
      return fail(ErrorCode::InvalidArgument, "Field 'vs' must be a string");
    }
    r.vs = j["vs"].get<std::string>();
  }
  if (j.contains("lax")) {
    if (!j["lax"].is_boolean()) {
      return fail(ErrorCode::InvalidArgument, "Field 'lax' must be true or false");
    }
    r.lax = j["lax"].get<bool>();
  }
  if (j.contains("networks")) {
    const json& n = j["networks"];
    if (!n.is_object() || n.size() > 64) {
      return fail(ErrorCode::InvalidArgument,
                  "Field 'networks' must be an object of at most 64 OVF network -> site network");
    }
    for (const auto& [from, to] : n.items()) {
      if (!to.is_string() || from.size() > 256) {
        return fail(ErrorCode::InvalidArgument,
                    "Field 'networks': each value must be a site network name");
      }
      r.networks[from] = to.get<std::string>();
    }
  }
  if (r.upload.empty() && (r.package.empty() || r.package.front() != '/')) {
    return fail(ErrorCode::InvalidArgument,
                "Field 'package' must be an absolute path in one of the agent's import folders");
  }
  return r;
}

// GET /v1/events and /v1/vms/{id}/events: ?since=SEQ&wait_ms=MS&max=N (all optional, all
// bounded; anything else is refused).
void serveEvents(AgentService& service, const httplib::Request& req, httplib::Response& res,
                 const std::string& vm) {
  static const std::set<std::string> kKnown = {"since", "wait_ms", "max"};
  uint64_t since = 0;
  uint64_t wait_ms = 0;
  uint64_t max = 256;
  for (const auto& [key, value] : req.params) {
    if (kKnown.count(key) == 0) {
      return sendError(res,
                       Error(ErrorCode::InvalidArgument, "Unknown query parameter '" + key + "'"));
    }
    if (value.empty() || value.size() > 19 ||
        value.find_first_not_of("0123456789") != std::string::npos) {
      return sendError(res, Error(ErrorCode::InvalidArgument,
                                  "Query parameter '" + key + "' must be a non-negative integer"));
    }
    const uint64_t v = std::stoull(value);
    (key == "since" ? since : key == "wait_ms" ? wait_ms : max) = v;
  }
  if (wait_ms > kMaxEventWaitMs || max == 0 || max > kMaxEventsPerPage) {
    return sendError(res, Error(ErrorCode::InvalidArgument,
                                "wait_ms must be at most " + std::to_string(kMaxEventWaitMs) +
                                    " and max 1.." + std::to_string(kMaxEventsPerPage)));
  }
  if (!vm.empty()) {
    if (auto r = service.get(vm); !r) {
      return sendError(res, r.error());
    }
  }
  const EventPage page = service.events().read(since, vm, max, std::chrono::milliseconds(wait_ms));
  json out = json::array();
  for (const auto& e : page.events) {
    out.push_back(toJson(e));
  }
  sendJson(res, 200,
           json{{"events", out}, {"last_seq", page.last_seq}, {"truncated", page.truncated}});
}

}  // namespace

int httpStatusFor(ErrorCode code) {
  if (code == ErrorCode::Ok) {
    return 200;
  }
  switch (kindOf(code)) {
    case ErrorKind::Failure:
      return 500;
    case ErrorKind::BadRequest:
      return 400;
    case ErrorKind::BadInput:
      return 422;
    case ErrorKind::NotFound:
      return 404;
    case ErrorKind::Forbidden:
      return 403;
    case ErrorKind::Conflict:
    case ErrorKind::Busy:
      return 409;
    case ErrorKind::TooLarge:
      return 413;
    case ErrorKind::NoCapacity:
      return 507;
    case ErrorKind::Timeout:
      return 504;
  }
  return 500;
}

bool refuseUnboundedBody(const httplib::Request& req, httplib::Response& res) {
  if (isUploadRequest(req)) {
    return false;
  }
  const bool chunked =
      req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos;
  const std::string length = req.get_header_value("Content-Length");
  const bool too_long =
      !length.empty() &&
      (length.size() > 19 || length.find_first_not_of("0123456789") != std::string::npos ||
       std::stoull(length) > kMaxRequestBody);
  if (!chunked && !too_long) {
    return false;
  }
  res.set_header("Connection", "close");  // the unread body must not pass for a request
  sendError(res, chunked ? Error(ErrorCode::InvalidArgument,
                                 "Send request bodies with a Content-Length, not chunked")
                         : Error(ErrorCode::LimitExceeded, "Request body is larger than " +
                                                               std::to_string(kMaxRequestBody) +
                                                               " bytes"));
  return true;
}

Result<std::string> scrapeMetrics(AgentService& service, AgentMetrics& metrics) {
  VANDRA_TRY_ASSIGN(const HostUsage host, service.hostUsage());
  VANDRA_TRY_ASSIGN(const auto all, service.list());
  std::map<VmState, uint64_t> vms;
  for (const auto& r : all) {
    ++vms[r.state];
  }
  return metrics.text(host, vms);
}

void registerRoutes(httplib::Server& server, AgentService& service, EpochFence* fence,
                    AgentMetrics* metrics) {
  // Uploads stream far past kMaxRequestBody and bound themselves (package_routes.cc); every
  // other body is refused before it is read when it declares more than kMaxRequestBody, and
  // must declare its length (a chunked body would be buffered whole before any check).
  server.set_payload_max_length(std::numeric_limits<size_t>::max());
  server.set_pre_routing_handler([fence](const httplib::Request& req, httplib::Response& res) {
    if (fence != nullptr && refuseUnfenced(req, res, *fence)) {
      return httplib::Server::HandlerResponse::Handled;
    }
    return refuseUnboundedBody(req, res) ? httplib::Server::HandlerResponse::Handled
                                         : httplib::Server::HandlerResponse::Unhandled;
  });
  registerPackageRoutes(server, service);
  // A new leader announces its epoch to every agent at once (the check above records it), so
  // that an agent it has not commanded yet refuses the old leader too.
  server.Post("/v1/fence", [fence](const httplib::Request&, httplib::Response& res) {
    sendJson(res, 200, {{"epoch", fence != nullptr ? fence->highest() : 0}});
  });
  server.Get("/v1/host", [&](const httplib::Request&, httplib::Response& res) {
    auto h = service.host();
    h ? sendJson(res, 200, *h) : sendError(res, h.error());
  });
  server.Get("/v1/vms", [&](const httplib::Request&, httplib::Response& res) {
    auto all = service.list();
    if (!all) {
      return sendError(res, all.error());
    }
    json out = json::array();
    for (const auto& r : *all) {
      out.push_back(toJson(r));
    }
    sendJson(res, 200, json{{"vms", out}});
  });
  server.Post("/v1/vms", [&](const httplib::Request& req, httplib::Response& res) {
    auto parsed = parseImport(req.body);
    if (!parsed) {
      return sendError(res, parsed.error());
    }
    auto r = parsed->from.empty() ? service.importVm(*parsed)
                                  : service.createVm(parsed->id, parsed->from);
    r ? sendJson(res, 201, toJson(*r)) : sendError(res, r.error());
  });
  server.Get(R"(/v1/vms/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    if (!validVmId(id)) {
      return sendError(res, Error(ErrorCode::InvalidArgument, "Bad VM id '" + id + "'"));
    }
    auto r = service.get(id);
    r ? sendJson(res, 200, toJson(*r)) : sendError(res, r.error());
  });
  server.Delete(R"(/v1/vms/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    if (!validVmId(id)) {
      return sendError(res, Error(ErrorCode::InvalidArgument, "Bad VM id '" + id + "'"));
    }
    auto r = service.deleteVm(id);
    r ? sendJson(res, 200, json{{"deleted", id}}) : sendError(res, r.error());
  });
  auto action = [&](const char* verb, Result<VmRecord> (AgentService::*fn)(const std::string&)) {
    server.Post(std::string(R"(/v1/vms/([^/]+)/)") + verb,
                [&service, fn](const httplib::Request& req, httplib::Response& res) {
                  const std::string id = req.matches[1];
                  if (!validVmId(id)) {
                    return sendError(res,
                                     Error(ErrorCode::InvalidArgument, "Bad VM id '" + id + "'"));
                  }
                  auto r = (service.*fn)(id);
                  r ? sendJson(res, 200, toJson(*r)) : sendError(res, r.error());
                });
  };
  action("start", &AgentService::startVm);
  action("stop", &AgentService::stopVm);
  action("kill", &AgentService::killVm);
  server.Get(
      R"(/v1/vms/([^/]+)/console)", [&](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        if (!validVmId(id)) {
          return sendError(res, Error(ErrorCode::InvalidArgument, "Bad VM id '" + id + "'"));
        }
        auto r = service.console(id, 256 * 1024);
        r ? (res.status = 200, res.set_content(*r, "text/plain")) : sendError(res, r.error());
      });
  server.Get("/v1/events", [&](const httplib::Request& req, httplib::Response& res) {
    serveEvents(service, req, res, "");
  });
  server.Get(R"(/v1/vms/([^/]+)/events)", [&](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    if (!validVmId(id)) {
      return sendError(res, Error(ErrorCode::InvalidArgument, "Bad VM id '" + id + "'"));
    }
    serveEvents(service, req, res, id);
  });
  if (metrics != nullptr) {
    server.Get("/metrics", [&service, metrics](const httplib::Request&, httplib::Response& res) {
      auto text = scrapeMetrics(service, *metrics);
      text ? res.set_content(*text, "text/plain; version=0.0.4") : sendError(res, text.error());
    });
    server.set_logger([metrics](const httplib::Request& req, const httplib::Response& res) {
      metrics->request(req.method, res.status);
    });
  }
  // Anything else: a JSON 404 rather than an empty body.
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) {
      res.set_content(json{{"error",
                            {{"code", res.status == 413 ? "limit_exceeded" : "not_found"},
                             {"message", "HTTP " + std::to_string(res.status)}}}}
                          .dump(),
                      "application/json");
    }
  });
}

}  // namespace vandra::agent
