#include "vandra/agent/agent_client.h"

#include <fcntl.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <memory>
#include <optional>
#include <vector>

#include "vandra/agent/package_files.h"
#include "vandra/common/netns.h"
#include "vandra/common/unique_fd.h"

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
  return send(
      [&](httplib::SSLClient& cli) {
        return method == "GET"      ? cli.Get(path.c_str())
               : method == "DELETE" ? cli.Delete(path.c_str())
               : method == "PUT"    ? cli.Put(path.c_str(), body, "application/json")
               : method == "PATCH"  ? cli.Patch(path.c_str(), body, "application/json")
                                    : cli.Post(path.c_str(), body, "application/json");
      },
      timeout);
}

Result<std::string> AgentClient::send(
    const std::function<httplib::Result(httplib::SSLClient&)>& call, std::chrono::seconds timeout) {
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
    r = call(cli);
  }));
  if (!r) {
    return fail(ErrorCode::Io, "Cannot reach the " + ep_.label + " at " + where +
                                   " over mutual TLS (" + httplib::to_string(r.error()) +
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
    std::string who = ep_.label;
    if (!who.empty()) {
      who[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(who[0])));
    }
    return fail(code, who + " " + where + ": " + msg + " (HTTP " + std::to_string(r->status) + ")");
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
Result<nlohmann::json> AgentClient::sendJson(const std::string& method, const std::string& path,
                                             const nlohmann::json& body,
                                             std::chrono::seconds timeout) {
  if (method != "PUT" && method != "PATCH" && method != "POST") {
    return fail(ErrorCode::InvalidArgument, "sendJson: PUT, PATCH or POST, not " + method);
  }
  return parseJson(request(method, path, body.dump(), timeout));
}
Result<nlohmann::json> AgentClient::del(const std::string& path, std::chrono::seconds timeout) {
  return parseJson(request("DELETE", path, "", timeout));
}
Result<nlohmann::json> AgentClient::putFile(const std::string& path, const std::string& local_file,
                                            const UploadProgress& progress,
                                            std::chrono::seconds timeout) {
  VANDRA_TRY_ASSIGN(const UniqueFd fd, UniqueFd::open(local_file, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return fail(ErrorCode::InvalidArgument, "'" + local_file + "' is not a regular file");
  }
  const auto total = static_cast<uint64_t>(st.st_size);
  std::optional<Error> read_error;
  auto provide = [&](size_t offset, size_t length, httplib::DataSink& sink) {
    std::vector<char> buf(std::min<size_t>(length, 1U << 20));
    const ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), static_cast<off_t>(offset));
    if (n <= 0) {  // the file shrank or cannot be read: stop rather than send garbage
      read_error = n < 0 ? Error::fromErrno("Cannot read '" + local_file + "'")
                         : Error(ErrorCode::Io, "'" + local_file + "' shrank while it was sent");
      return false;
    }
    if (!sink.write(buf.data(), static_cast<size_t>(n))) {
      return false;
    }
    if (progress) {
      progress(offset + static_cast<uint64_t>(n), total);
    }
    return true;
  };
  auto body = send(
      [&](httplib::SSLClient& cli) {
        return cli.Put(path.c_str(), static_cast<size_t>(total), provide,
                       "application/octet-stream");
      },
      timeout);
  if (read_error) {
    return fail(*read_error);
  }
  return parseJson(std::move(body));
}

namespace {
// The digest's value in lower-case hex (the context is finished).
std::string finalHex(EVP_MD_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

}  // namespace

Result<nlohmann::json> AgentClient::uploadPackage(const std::string& local_file,
                                                  const std::string& name,
                                                  const UploadProgress& progress, bool lax) {
  if (!validUploadName(name)) {
    return fail(ErrorCode::InvalidArgument,
                "Bad package name '" + name +
                    "': 1..128 characters of A-Z a-z 0-9 . _ -, ending in .ova, not starting "
                    "with '.'");
  }
  struct stat st {};
  if (::stat(local_file.c_str(), &st) != 0) {
    return fail(Error::fromErrno("Cannot open '" + local_file + "'"));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  // What the agent would refuse is said here, before anything is sent: a refusal mid-upload
  // reaches the client as a broken connection at best.
  VANDRA_TRY_ASSIGN(const auto held, get("/v1/packages"));
  if (size > held.value("max_upload_bytes", uint64_t{0})) {
    return fail(ErrorCode::LimitExceeded,
                "'" + local_file + "' (" + std::to_string(size) +
                    " bytes) is larger than the agent's upload bound (" +
                    std::to_string(held.value("max_upload_bytes", uint64_t{0})) + " bytes)");
  }
  for (const auto& p : held.value("packages", nlohmann::json::array())) {
    if (p.value("name", "") != name) {
      continue;
    }
    // Already there with the same content: nothing to send.
    VANDRA_TRY_ASSIGN(const FileDigest d, sha256File(local_file));
    const std::string mine = d.sha256;
    if (p.value("size", uint64_t{0}) == size && p.value("sha256", nlohmann::json()).is_string() &&
        p["sha256"].get<std::string>() == mine) {
      nlohmann::json out = p;
      out["reused"] = true;
      return out;
    }
    return fail(ErrorCode::AlreadyExists,
                "The agent holds another package named '" + name +
                    "' (other content); delete it (vandra vm packages delete) or upload under "
                    "another name");
  }
  if (size > held.value("available_bytes", uint64_t{0})) {
    return fail(ErrorCode::CapacityExceeded,
                "'" + local_file + "' (" + std::to_string(size) +
                    " bytes) does not fit in the agent's free space (" +
                    std::to_string(held.value("available_bytes", uint64_t{0})) + " bytes)");
  }
  VANDRA_TRY_ASSIGN(
      auto up, putFile("/v1/packages/" + name + (lax ? "?lax=true" : ""), local_file, progress));
  up["reused"] = false;
  return up;
}

Result<uint64_t> AgentClient::downloadFile(const std::string& path, const std::string& local_file,
                                           const UploadProgress& progress,
                                           std::chrono::seconds timeout) {
  struct stat st {};
  if (::lstat(local_file.c_str(), &st) == 0) {
    return fail(ErrorCode::AlreadyExists, "'" + local_file + "' already exists");
  }
  const std::string part = local_file + ".part";
  auto opened = UniqueFd::open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (!opened) {
    return fail(opened.error());
  }
  const UniqueFd fd = std::move(*opened);
  auto remove_part = [&] { (void)::unlink(part.c_str()); };
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  int status = 0;
  uint64_t total = 0;
  uint64_t got = 0;
  std::string stated_sha;
  std::string error_body;  // an error's JSON, kept small
  std::optional<Error> write_error;
  auto body = send(
      [&](httplib::SSLClient& cli) {
        return cli.Get(
            path.c_str(),
            [&](const httplib::Response& r) {
              status = r.status;
              stated_sha = r.get_header_value("X-Vandra-Sha256");
              const std::string len = r.get_header_value("Content-Length");
              total = len.empty() ? 0 : std::strtoull(len.c_str(), nullptr, 10);
              return true;
            },
            [&](const char* data, size_t n) {
              if (status >= 400) {
                error_body.append(data, std::min(n, size_t{65536} - error_body.size()));
                return error_body.size() < 65536;
              }
              for (size_t off = 0; off < n;) {
                const ssize_t w = ::write(fd.get(), data + off, n - off);
                if (w < 0 && errno == EINTR) {
                  continue;
                }
                if (w <= 0) {
                  write_error = Error::fromErrno("Cannot write '" + part + "'");
                  return false;
                }
                off += static_cast<size_t>(w);
              }
              EVP_DigestUpdate(ctx.get(), data, n);
              got += n;
              if (progress) {
                progress(got, total);
              }
              return true;
            });
      },
      timeout);
  if (write_error) {
    remove_part();
    return fail(*write_error);
  }
  if (!body) {
    remove_part();
    Error e = body.error();
    const auto j = nlohmann::json::parse(error_body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object()) {
      e.code = errorCodeFromString(j["error"].value("code", "")).value_or(e.code);
      e.message = ep_.label + " " + ep_.host + ": " + j["error"].value("message", e.message);
    }
    return fail(std::move(e));
  }
  if (total != 0 && got != total) {
    remove_part();
    return fail(ErrorCode::Io, "The download of '" + path + "' ended after " + std::to_string(got) +
                                   " of " + std::to_string(total) + " bytes");
  }
  const std::string mine = finalHex(ctx.get());
  if (!stated_sha.empty() && stated_sha != mine) {
    remove_part();
    return fail(ErrorCode::Io, "The download of '" + path + "' does not match the SHA-256 the " +
                                   ep_.label + " stated");
  }
  if (::fsync(fd.get()) != 0 || ::link(part.c_str(), local_file.c_str()) != 0) {
    Error e = Error::fromErrno("Cannot put '" + local_file + "' in place");
    remove_part();
    return fail(errno == EEXIST
                    ? Error(ErrorCode::AlreadyExists, "'" + local_file + "' already exists")
                    : std::move(e));
  }
  remove_part();
  return got;
}

Result<std::string> AgentClient::getText(const std::string& path, std::chrono::seconds timeout) {
  return request("GET", path, "", timeout);
}

}  // namespace vandra::agent
