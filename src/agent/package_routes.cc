// The /v1/packages routes: uploads of .ova packages into the agent's upload folder. The body
// streams to a partial file (never held in memory), bounded by --max-upload-mib and the free
// space, and is verified as a package before it gets its name; any failure leaves nothing.
#include <iostream>

#include "vandra/agent/http_api.h"

namespace vandra::agent {
namespace {

using nlohmann::json;

constexpr const char* kPrefix = "/v1/packages/";

// ?lax=true|false, nothing else.
Result<bool> laxParam(const httplib::Request& req) {
  bool lax = false;
  for (const auto& [key, value] : req.params) {
    if (key != "lax" || (value != "true" && value != "false")) {
      return fail(ErrorCode::InvalidArgument,
                  "Unknown query parameter '" + key + "' (only lax=true|false)");
    }
    lax = value == "true";
  }
  return lax;
}

Result<std::optional<uint64_t>> declaredLength(const httplib::Request& req) {
  if (!req.has_header("Content-Length")) {
    return std::optional<uint64_t>{};
  }
  const std::string v = req.get_header_value("Content-Length");
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) {
    return fail(ErrorCode::InvalidArgument, "Bad Content-Length '" + v.substr(0, 40) + "'");
  }
  return std::optional<uint64_t>(std::stoull(v));
}

void refuse(httplib::Response& res, const Error& e) {
  // The body was not (all) read: the connection cannot carry another request.
  res.set_header("Connection", "close");
  sendError(res, e);
}

// Most of a refused body that is read and dropped before the answer: a client that sends a
// small package whole before it reads (as cpp-httplib's does) then gets the answer rather than
// a reset connection; a larger one is cut off (AgentClient::uploadPackage checks first).
constexpr uint64_t kDrainBytes = 1U << 20;

}  // namespace

json uploadJson(const UploadInfo& u) {
  return {
      {"name", u.name}, {"size", u.size}, {"sha256", u.sha256 ? json(*u.sha256) : json(nullptr)}};
}

void receiveUpload(const UploadStore& store, const CommitUpload& commit, const std::string& name,
                   const httplib::Request& req, httplib::Response& res,
                   const httplib::ContentReader& reader) {
  auto refuseUnread = [&](const Error& e) {
    uint64_t dropped = 0;
    (void)reader([&](const char*, size_t n) {
      dropped += n;
      return dropped <= kDrainBytes;
    });
    refuse(res, e);
  };
  auto lax = laxParam(req);
  if (!lax) {
    return refuseUnread(lax.error());
  }
  auto declared = declaredLength(req);
  if (!declared) {
    return refuse(res, declared.error());  // its length cannot be trusted to read by
  }
  auto writer = store.begin(name, *declared);
  if (!writer) {
    return refuseUnread(writer.error());
  }
  std::optional<Error> write_error;
  const bool read = reader([&](const char* data, size_t n) {
    if (auto w = writer->write(data, n); !w) {
      write_error = w.error();
      return false;
    }
    return true;
  });
  if (write_error) {
    return refuse(res, *write_error);  // the writer removes the partial file as it goes
  }
  if (!read || (*declared && writer->written() != **declared)) {
    // The client went away (or sent less than it said): nobody reads this answer.
    std::cerr << "upload of '" << name << "' ended after " << writer->written()
              << " bytes; partial file removed\n";
    return refuse(res, Error(ErrorCode::Io, "Upload of '" + name + "' ended early after " +
                                                std::to_string(writer->written()) + " bytes"));
  }
  auto info = commit(*writer, *lax);
  info ? sendJson(res, 201, uploadJson(*info)) : sendError(res, info.error());
}

bool isUploadRequest(const httplib::Request& req) {
  return req.method == "PUT" && req.path.rfind(kPrefix, 0) == 0;
}

void registerPackageRoutes(httplib::Server& server, AgentService& service) {
  // (.*): a name with '/' in it is answered as a bad name, not as an unknown route.
  const std::string one = std::string(kPrefix) + "(.*)";
  server.Put(one, [&service](const httplib::Request& req, httplib::Response& res,
                             const httplib::ContentReader& reader) {
    receiveUpload(
        service.uploads(),
        [&service](UploadWriter& w, bool lax) { return service.commitUpload(w, lax); },
        req.matches[1], req, res, reader);
  });
  server.Get("/v1/packages", [&service](const httplib::Request&, httplib::Response& res) {
    auto all = service.uploads().list();
    if (!all) {
      return sendError(res, all.error());
    }
    json out = json::array();
    for (const auto& u : *all) {
      out.push_back(uploadJson(u));
    }
    sendJson(res, 200,
             json{{"packages", out},
                  {"upload_dir", service.uploads().dir()},
                  {"import_dirs", service.importDirs()},
                  {"max_upload_bytes", service.uploads().maxBytes()},
                  {"available_bytes", service.uploads().available()}});
  });
  server.Get(one, [&service](const httplib::Request& req, httplib::Response& res) {
    auto u = service.uploads().get(req.matches[1]);
    u ? sendJson(res, 200, uploadJson(*u)) : sendError(res, u.error());
  });
  server.Delete(one, [&service](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    auto r = service.deleteUpload(name);
    r ? sendJson(res, 200, json{{"deleted", name}}) : sendError(res, r.error());
  });
}

}  // namespace vandra::agent
