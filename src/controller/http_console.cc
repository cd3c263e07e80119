// The web console's side of the API (docs/console/api.md): sign-in with a session cookie and
// CSRF token, the event stream, cancel, samples, and the built front end's files.
//
//   browser ──GET /──────────────► static files (web/dist), no sign-in needed to load them
//           ──POST /v1/session───► name + password ──► Set-Cookie + csrf
//           ──GET /v1/stream─────► text/event-stream: hello, migration, changed (held open)
//           ──POST ... + X-CSRF-Token (checked in the pre-routing handler, http_api.cc)
#include <openssl/crypto.h>

#include <chrono>
#include <filesystem>
#include <limits>

#include "http_internal.h"
#include "vandra/controller/http_api.h"
#include "vandra/controller/inventory_json.h"

namespace vandra::controller::internal {
namespace {

using agent::parseStrictBody;
using agent::sendError;
using agent::sendJson;
using nlohmann::json;

constexpr const char* kCookie = "vandra_session";
// A watcher hears at least this often (a comment when nothing happened): a browser that went
// away is noticed by the failed write, and proxies do not close an idle stream.
constexpr auto kKeepAlive = std::chrono::seconds(5);

json sessionJson(const Session& s) {
  return {{"user", s.user},
          {"role", std::string(toString(s.role))},
          {"csrf", s.csrf},
          {"expires_at_ms", s.expires_at_ms}};
}

std::string setCookie(const std::string& value, int64_t max_age_s) {
  return std::string(kCookie) + "=" + value + "; Path=/; Secure; HttpOnly; SameSite=Strict; " +
         "Max-Age=" + std::to_string(max_age_s);
}

Role roleNamed(const std::string& r) {
  return r == "operator" ? Role::Operator : r == "viewer" ? Role::Viewer : Role::None;
}

void sessionRoutes(httplib::Server& server, ControllerService& svc,
                   const std::shared_ptr<Auth>& auth) {
  server.Post("/v1/session", [&svc, auth](const httplib::Request& req, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    auto body = parseStrictBody(req.body, {"user", "password"});
    if (!body) {
      return sendError(res, body.error());
    }
    if (!(*body)["user"].is_string() || !(*body)["password"].is_string()) {
      return sendError(
          res, Error(ErrorCode::InvalidArgument, "user and password: strings are required"));
    }
    const std::string user = (*body)["user"].get<std::string>();
    const std::string password = (*body)["password"].get<std::string>();
    if (user.empty() || user.size() > 64 || password.size() > 1024) {
      return sendError(res, Error(ErrorCode::InvalidArgument,
                                  "user: 1 to 64 characters; password: at most 1024"));
    }
    if (!auth->sessions().mayTry(user)) {
      res.set_header("Retry-After", "300");
      return sendJson(
          res, 429,
          {{"error",
            {{"code", "too_many_attempts"},
             {"message", "Too many failed sign-ins for '" + user + "': wait a few minutes"}}}});
    }
    auto stored = svc.store().user(user);
    if (!stored) {
      return sendError(res, stored.error());
    }
    // An unknown name costs the same scrypt as a known one: timing tells no names.
    static const std::string kDummy = hashPassword("not a password").value_or("");
    const bool ok = verifyPassword(password, *stored ? (*stored)->password_hash : kDummy) &&
                    *stored && roleNamed((*stored)->role) != Role::None;
    if (!ok) {
      auth->sessions().noteFailure(user);
      return sendUnauthorized(res, "Wrong user name or password");
    }
    auth->sessions().noteSuccess(user);
    auto [token, session] = auth->sessions().create(user, roleNamed((*stored)->role));
    res.set_header("Set-Cookie", setCookie(token, std::chrono::duration_cast<std::chrono::seconds>(
                                                      auth->sessions().limits().absolute)
                                                      .count()));
    sendJson(res, 200, sessionJson(session));
  });
  server.Get("/v1/session", [auth](const httplib::Request& req, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    auto s = auth->session(req);
    s ? sendJson(res, 200, sessionJson(*s)) : sendUnauthorized(res, "Not signed in");
  });
  server.Delete("/v1/session", [auth](const httplib::Request& req, httplib::Response& res) {
    auto s = auth->session(req);
    if (!s) {
      return sendUnauthorized(res, "Not signed in");
    }
    if (const std::string why = auth->csrfProblem(req, *s); !why.empty()) {
      return sendError(res, Error(ErrorCode::Forbidden, why));
    }
    auth->sessions().remove(cookieValue(req.get_header_value("Cookie"), kCookie));
    res.set_header("Set-Cookie", setCookie("", 0));
    res.status = 204;
  });
}

void streamRoute(httplib::Server& server, ControllerService& svc) {
  server.Get("/v1/stream", [&svc](const httplib::Request& req, httplib::Response& res) {
    ProgressHub& hub = svc.progress();
    if (!hub.join()) {
      res.set_header("Retry-After", "5");
      return sendJson(
          res, 503,
          {{"error",
            {{"code", "busy"}, {"message", "Too many event streams are open: try again later"}}}});
    }
    // A browser that reconnects says where it was; otherwise it starts with what comes next.
    uint64_t from = hub.last();
    if (const std::string last = req.get_header_value("Last-Event-ID");
        !last.empty() && last.size() < 20 && last.find_first_not_of("0123456789") == last.npos) {
      from = std::min<uint64_t>(std::stoull(last), from);
    }
    auto seq = std::make_shared<uint64_t>(from);
    auto hello = std::make_shared<bool>(true);
    res.set_header("Cache-Control", "no-store");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [&hub, seq, hello](size_t, httplib::DataSink& sink) {
          std::string out;
          if (*hello) {
            *hello = false;
            const auto at = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
            out = "retry: 2000\n" + toSse({*seq, "hello", json{{"at_ms", at}}.dump()});
          } else {
            const auto events = hub.after(*seq, kKeepAlive);
            if (hub.closed()) {
              sink.done();
              return true;
            }
            for (const auto& e : events) {
              out += toSse(e);
              *seq = e.seq;
            }
            if (out.empty()) {
              out = ": keep-alive\n\n";
            }
          }
          return sink.write(out.data(), out.size());  // false: the browser went away
        },
        [&hub](bool) { hub.leave(); });
  });
}

void migrationRoutes(httplib::Server& server, ControllerService& svc,
                     const std::shared_ptr<Auth>& auth) {
  server.Post(R"(/v1/migrations/([0-9]{1,18})/cancel)", [&svc, auth](const httplib::Request& req,
                                                                     httplib::Response& res) {
    if (auto body = parseStrictBody(req.body.empty() ? "{}" : req.body, {"reason"}); !body) {
      return sendError(res, body.error());
    }
    answer(
        res, svc.cancelMigration(std::stoll(req.matches[1]), auth->callerOf(req)),
        [](const Migration& m) { return toJson(m); }, 202);
  });
  server.Get(R"(/v1/migrations/([0-9]{1,18})/samples)", [&svc](const httplib::Request& req,
                                                               httplib::Response& res) {
    const int64_t id = std::stoll(req.matches[1]);
    if (auto m = svc.store().migration(id); !m) {
      return sendError(res, m.error());
    }
    answer(res, svc.store().samples(id, 100000), [](const std::vector<MigrationSample>& ss) {
      json out = json::array();
      for (const auto& s : ss) {
        out.push_back({{"t_s", static_cast<double>(s.t_ms) / 1000.0},
                       {"phase", s.phase},
                       {"mbps", s.mbps},
                       {"dirty_rate_bps", s.dirty_rate_bps},
                       {"wan_bytes", s.wan_bytes}});
      }
      return json{{"samples", out}};
    });
  });
}

}  // namespace

void sendUnauthorized(httplib::Response& res, const std::string& message) {
  sendJson(res, 401, {{"error", {{"code", "unauthorized"}, {"message", message}}}});
}

Auth::Auth(bool console) : console_(console) {}

std::optional<Session> Auth::session(const httplib::Request& req) const {
  if (!console_) {
    return std::nullopt;
  }
  const std::string token = cookieValue(req.get_header_value("Cookie"), kCookie);
  return token.empty() ? std::nullopt : sessions_.find(token);
}

Caller Auth::callerOf(const httplib::Request& req) const {
  Caller c = controller::callerOf(req);
  if (!c.who.empty() || c.role != Role::None) {
    return c;  // a client certificate says who it is; a cookie beside it is not looked at
  }
  if (auto s = session(req); s) {
    return Caller{s->user, s->role};
  }
  return c;
}

bool Auth::viaSession(const httplib::Request& req) const {
  const Caller c = controller::callerOf(req);
  return c.who.empty() && c.role == Role::None && session(req).has_value();
}

std::string Auth::csrfProblem(const httplib::Request& req, const Session& s) const {
  const std::string token = req.get_header_value("X-CSRF-Token");
  if (token.empty() || token.size() != s.csrf.size() ||
      CRYPTO_memcmp(token.data(), s.csrf.data(), token.size()) != 0) {
    return "A change made with a console session needs its X-CSRF-Token header";
  }
  // A browser says where the page that asks came from: only this origin may change things.
  const std::string origin = req.get_header_value("Origin");
  if (!origin.empty()) {
    const std::string host = req.get_header_value("Host");
    if (origin != "https://" + host) {
      return "Cross-origin request from '" + origin.substr(0, 100) + "' refused";
    }
  }
  return "";
}

void consoleRoutes(httplib::Server& server, ControllerService& svc,
                   const std::shared_ptr<Auth>& auth) {
  if (auth->console()) {
    sessionRoutes(server, svc, auth);
  }
  streamRoute(server, svc);
  migrationRoutes(server, svc, auth);
}

bool isStaticPath(const std::string& path) {
  return path.rfind("/v1/", 0) != 0 && path != "/v1" && path != "/metrics";
}

}  // namespace vandra::controller::internal

namespace vandra::controller {

std::string consoleDirProblem(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return "The console folder '" + dir + "' does not exist (build it: npm run build in web/)";
  }
  if (!std::filesystem::is_regular_file(std::filesystem::path(dir) / "index.html", ec)) {
    return "The console folder '" + dir + "' has no index.html (build it: npm run build in web/)";
  }
  return "";
}

}  // namespace vandra::controller
