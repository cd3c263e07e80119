// Client of the agent API (http_api.h) over mutual TLS: used by the CLI, the demo, and (next)
// the migration orchestrator. Errors come back as the agent sent them: the JSON error's code
// is mapped back to ErrorCode, so callers branch on codes across the wire too.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "vandra/common/result.h"

namespace httplib {
class SSLClient;
class Result;
}  // namespace httplib

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
  /// What the peer is called in messages ("agent", "controller").
  std::string label = "agent";
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
  /// PUT or PATCH with a JSON body (the controller's API).
  [[nodiscard]] Result<nlohmann::json> sendJson(
      const std::string& method, const std::string& path, const nlohmann::json& body,
      std::chrono::seconds timeout = std::chrono::seconds(60));
  [[nodiscard]] Result<nlohmann::json> del(const std::string& path,
                                           std::chrono::seconds timeout = std::chrono::seconds(60));
  /// Bytes sent so far and the total, while a file goes up.
  using UploadProgress = std::function<void(uint64_t sent, uint64_t total)>;
  /// PUT @p path with the content of @p local_file, streamed from the file (never held in
  /// memory). Errors: NotFound/Io (the local file), then as post().
  [[nodiscard]] Result<nlohmann::json> putFile(
      const std::string& path, const std::string& local_file, const UploadProgress& progress = {},
      std::chrono::seconds timeout = std::chrono::seconds(3600));
  /// Uploads @p local_file as package @p name (PUT /v1/packages/{name}) unless the agent holds
  /// an upload of that name with the same content already. Answers the upload's JSON (name,
  /// size, sha256) with "reused": whether nothing was sent. Errors: InvalidArgument (name),
  /// AlreadyExists (an upload of that name with other content), as putFile().
  [[nodiscard]] Result<nlohmann::json> uploadPackage(const std::string& local_file,
                                                     const std::string& name,
                                                     const UploadProgress& progress = {},
                                                     bool lax = false);
  /// GET @p path (an upload's bytes) into the new file @p local_file: written beside it as
  /// "<local_file>.part" and renamed when whole, never replacing a file; checked against the
  /// SHA-256 the agent states (X-Vandra-Sha256) when it states one. @p progress gets bytes
  /// received and the total. Returns the bytes written. Errors: AlreadyExists (local_file),
  /// Io (cut short, digest mismatch, local write), the agent's error.
  [[nodiscard]] Result<uint64_t> downloadFile(
      const std::string& path, const std::string& local_file, const UploadProgress& progress = {},
      std::chrono::seconds timeout = std::chrono::seconds(3600));
  /// A text answer (the console log).
  [[nodiscard]] Result<std::string> getText(
      const std::string& path, std::chrono::seconds timeout = std::chrono::seconds(60));

  const AgentEndpoint& endpoint() const { return ep_; }

 private:
  Result<std::string> request(const std::string& method, const std::string& path,
                              const std::string& body, std::chrono::seconds timeout);
  /// Runs @p call on a fresh mutual-TLS client (in the endpoint's namespace) and maps the
  /// answer: errors as request() documents, the body otherwise.
  Result<std::string> send(const std::function<httplib::Result(httplib::SSLClient&)>& call,
                           std::chrono::seconds timeout);
  AgentEndpoint ep_;
};

}  // namespace vandra::agent
