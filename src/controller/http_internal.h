// What the controller's route files share (http_api.cc, http_packages.cc); not an interface.
#pragma once

#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "vandra/agent/http_api.h"
#include "vandra/controller/console_auth.h"
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

/// Who asks: the client certificate, else (console on) the session cookie.
class Auth {
 public:
  explicit Auth(bool console);
  bool console() const { return console_; }
  Sessions& sessions() const { return sessions_; }
  std::optional<Session> session(const httplib::Request& req) const;
  Caller callerOf(const httplib::Request& req) const;
  /// The caller is known by a session cookie (not a certificate).
  bool viaSession(const httplib::Request& req) const;
  /// Why a change made with session @p s is refused (CSRF token, cross origin); "" = fine.
  std::string csrfProblem(const httplib::Request& req, const Session& s) const;

 private:
  bool console_;
  mutable Sessions sessions_;
};

/// PUT/GET/DELETE /v1/packages[/{name}] and POST /v1/vms (an import).
void packageRoutes(httplib::Server& server, ControllerService& svc,
                   const std::shared_ptr<Auth>& auth);

/// http_console.cc: /v1/session (console on), /v1/stream, cancel, samples.
void consoleRoutes(httplib::Server& server, ControllerService& svc,
                   const std::shared_ptr<Auth>& auth);

/// 401 with the API's error shape (code "unauthorized").
void sendUnauthorized(httplib::Response& res, const std::string& message);

/// A path the console's files are served at (not the API's).
bool isStaticPath(const std::string& path);

}  // namespace vandra::controller::internal
