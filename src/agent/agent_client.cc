#include "vandra/agent/agent_client.h"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include "vandra/common/netns.h"

namespace vandra::agent {

Result<void> parseHostPort(const std::string& text, AgentEndpoint& ep) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= text.size() ||
      text.size() - colon > 6 ||
      text.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
    return fail(ErrorCode::InvalidArgument, "Expected host:port, got '" + text + "'");
  }
  const int port = std::stoi(text.substr(colon + 1));
  if (port <= 0 || port > 65535) {
    return fail(ErrorCode::InvalidArgument, "Port out of range in '" + text + "'");
  }
  ep.host = text.substr(0, colon);
  ep.port = port;
  return {};
}

namespace {

// OpenSSL writes with write(2): a peer that hangs up (e.g. refusing our certificate) would
// raise SIGPIPE and end the whole process. Block it on this thread for the request, and
// swallow one that became pending, without touching the process's signal dispositions.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~SigpipeBlock() {
    if (!was_pending_) {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t old_{};
  bool was_pending_ = false;
};

}  // namespace

Result<std::string> AgentClient::request(const std::string& method, const std::string& path,
                                         const std::string& body, std::chrono::seconds timeout) {
  const std::string where = ep_.host + ":" + std::to_string(ep_.port);
  httplib::SSLClient cli(ep_.host, ep_.port, ep_.cert, ep_.key);
  cli.set_ca_cert_path(ep_.ca.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(10);
  cli.set_read_timeout(static_cast<time_t>(timeout.count()));
  if (ep_.epoch > 0) {
    cli.set_default_headers({{"X-Vandra-Epoch", std::to_string(ep_.epoch)}});
  }
  httplib::Result r{nullptr, httplib::Error::Unknown};
  VANDRA_TRY(runInNetns(ep_.netns, [&] {
    const SigpipeBlock no_sigpipe;
    r = method == "GET"      ? cli.Get(path.c_str())
        : method == "DELETE" ? cli.Delete(path.c_str())
                             : cli.Post(path.c_str(), body, "application/json");
  }));
  if (!r) {
    return fail(ErrorCode::Io, "Cannot reach the agent at " + where + " over mutual TLS (" +
                                   httplib::to_string(r.error()) +
                                   "): check the address and the CA, certificate and key");
  }
  if (r->status >= 400) {
    const auto j = nlohmann::json::parse(r->body, nullptr, false);
    ErrorCode code = r->status == 404 ? ErrorCode::NotFound : ErrorCode::Internal;
    std::string msg = r->body;
    if (j.is_object() && j.contains("error") && j["error"].is_object()) {
      const auto& e = j["error"];
      code = errorCodeFromString(e.value("code", "")).value_or(code);
      msg = e.value("message", msg);
    }
    return fail(code, "Agent " + where + ": " + msg + " (HTTP " + std::to_string(r->status) + ")");
  }
  return std::move(r->body);
}

namespace {
Result<nlohmann::json> parseJson(Result<std::string> body) {
  if (!body) {
    return fail(std::move(body).error());
  }
  auto j = nlohmann::json::parse(*body, nullptr, false);
  if (j.is_discarded()) {
    return fail(ErrorCode::Internal, "The agent's answer is not JSON");
  }
  return j;
}
}  // namespace

Result<nlohmann::json> AgentClient::get(const std::string& path, std::chrono::seconds timeout) {
  return parseJson(request("GET", path, "", timeout));
}
Result<nlohmann::json> AgentClient::post(const std::string& path, const nlohmann::json& body,
                                         std::chrono::seconds timeout) {
  return parseJson(request("POST", path, body.dump(), timeout));
}
Result<nlohmann::json> AgentClient::del(const std::string& path, std::chrono::seconds timeout) {
  return parseJson(request("DELETE", path, "", timeout));
}
Result<std::string> AgentClient::getText(const std::string& path, std::chrono::seconds timeout) {
  return request("GET", path, "", timeout);
}

}  // namespace vandra::agent
