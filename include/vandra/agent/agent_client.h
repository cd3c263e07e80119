// Client of the agent API (http_api.h) over mutual TLS: used by the CLI, the demo, and (next)
// the migration orchestrator. Errors come back as the agent sent them: the JSON error's code
// is mapped back to ErrorCode, so callers branch on codes across the wire too.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "vandra/common/result.h"

namespace vandra::agent {

struct AgentEndpoint {
  std::string host = "127.0.0.1";
  int port = 8443;
  std::string ca;    // site CA: the agent's certificate must chain to it and name `host`
  std::string cert;  // our client certificate (issued by the site CA)
  std::string key;
  std::string netns;  // connect from inside this network namespace ("" = ours)
  /// A controller's leadership epoch, sent as X-Vandra-Epoch with every request (0: none,
  /// an operator talking to the agent directly).
  int64_t epoch = 0;
};

/// "host:port" into @p ep. Errors: InvalidArgument.
[[nodiscard]] Result<void> parseHostPort(const std::string& text, AgentEndpoint& ep);

class AgentClient {
 public:
  explicit AgentClient(AgentEndpoint ep) : ep_(std::move(ep)) {}

  /// JSON answers. Errors: Io (agent unreachable, TLS refused either way), the agent's error
  /// code (NotFound, IllegalTransition, Busy, ...), Internal (answer not JSON).
  [[nodiscard]] Result<nlohmann::json> get(const std::string& path,
                                           std::chrono::seconds timeout = std::chrono::seconds(60));
  [[nodiscard]] Result<nlohmann::json> post(
      const std::string& path, const nlohmann::json& body,
      std::chrono::seconds timeout = std::chrono::seconds(3600));
  [[nodiscard]] Result<nlohmann::json> del(const std::string& path,
                                           std::chrono::seconds timeout = std::chrono::seconds(60));
  /// A text answer (the console log).
  [[nodiscard]] Result<std::string> getText(
      const std::string& path, std::chrono::seconds timeout = std::chrono::seconds(60));

  const AgentEndpoint& endpoint() const { return ep_; }

 private:
  Result<std::string> request(const std::string& method, const std::string& path,
                              const std::string& body, std::chrono::seconds timeout);
  AgentEndpoint ep_;
};

}  // namespace vandra::agent
