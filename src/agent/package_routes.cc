// The /v1/packages routes: uploads of .ova packages into the agent's upload folder. The body
// streams to a partial file (never held in memory), bounded by --max-upload-mib and the free
// space, and is verified as a package before it gets its name; any failure leaves nothing.
#include <fcntl.h>
#include <unistd.h>

#include <iostream>
#include <memory>

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

namespace {

json exportJson(const ExportResult& e) {
  return {{"package", uploadJson(e.package)},
          {"export_id", e.export_id},
          {"package_key", e.package_key},
          {"running", e.running},
          {"signed", e.signed_package},
          {"freeze_ms", e.freeze_ms},
          {"write_s", e.write_s}};
}

json seedJson(const SeedResult& s) {
  return {
      {"key", s.key}, {"reused", s.reused}, {"expires_unix", s.expires_unix}, {"disks", s.disks}};
}

Result<ExportRequest> parseExport(const std::string& id, const std::string& body) {
  ExportRequest r;
  r.id = id;
  if (!validVmId(id)) {
    return fail(ErrorCode::InvalidArgument, "Bad VM id '" + id.substr(0, 200) + "'");
  }
  VANDRA_TRY_ASSIGN(const json j, parseStrictBody(body.empty() ? "{}" : body, {"name", "sign"}));
  if (j.contains("name")) {
    if (!j["name"].is_string() || !validUploadName(j["name"].get<std::string>())) {
      return fail(ErrorCode::InvalidArgument,
                  "Field 'name' must be a package name (A-Z a-z 0-9 . _ -, ending in .ova)");
    }
    r.name = j["name"].get<std::string>();
  }
  if (j.contains("sign")) {
    if (!j["sign"].is_boolean()) {
      return fail(ErrorCode::InvalidArgument, "Field 'sign' must be true or false");
    }
    r.sign = j["sign"].get<bool>();
  }
  return r;
}

struct SeedRequest {
  std::string upload;
  std::chrono::seconds keep{std::chrono::hours(24 * 7)};
  bool lax = false;
};

Result<SeedRequest> parseSeed(const std::string& body) {
  VANDRA_TRY_ASSIGN(const json j, parseStrictBody(body, {"upload", "keep_hours", "lax"}));
  SeedRequest r;
  if (!j.contains("upload") || !j["upload"].is_string() ||
      !validUploadName(j["upload"].get<std::string>())) {
    return fail(ErrorCode::InvalidArgument, "Field 'upload' must name an upload (.ova)");
  }
  r.upload = j["upload"].get<std::string>();
  if (j.contains("keep_hours")) {
    if (!j["keep_hours"].is_number_unsigned() || j["keep_hours"].get<uint64_t>() < 1 ||
        j["keep_hours"].get<uint64_t>() > 24 * 366) {
      return fail(ErrorCode::InvalidArgument, "Field 'keep_hours' must be 1..8784");
    }
    r.keep = std::chrono::hours(j["keep_hours"].get<uint64_t>());
  }
  if (j.contains("lax")) {
    if (!j["lax"].is_boolean()) {
      return fail(ErrorCode::InvalidArgument, "Field 'lax' must be true or false");
    }
    r.lax = j["lax"].get<bool>();
  }
  return r;
}

// The upload's bytes, read from the file opened before the answer starts (a delete meanwhile
// does not cut the download short).
void sendUploadFile(const UploadStore& store, const std::string& name, httplib::Response& res) {
  auto info = store.get(name);
  if (!info) {
    return sendError(res, info.error());
  }
  const std::string path = store.dir() + "/" + name;
  auto fd = std::make_shared<UniqueFd>();
  auto opened = UniqueFd::open(path, O_RDONLY | O_NOFOLLOW);
  if (!opened) {
    return sendError(res, opened.error());
  }
  *fd = std::move(*opened);
  if (info->sha256) {
    res.set_header("X-Vandra-Sha256", *info->sha256);
  }
  res.set_content_provider(static_cast<size_t>(info->size), "application/octet-stream",
                           [fd](size_t offset, size_t length, httplib::DataSink& sink) {
                             std::vector<char> buf(std::min<size_t>(length, 1U << 20));
                             const ssize_t n = ::pread(fd->get(), buf.data(), buf.size(),
                                                       static_cast<off_t>(offset));
                             return n > 0 && sink.write(buf.data(), static_cast<size_t>(n));
                           });
}

}  // namespace

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
  // Before `one`, which would take "<name>/file" for a (bad) name.
  server.Get(std::string(kPrefix) + "([^/]+)/file",
             [&service](const httplib::Request& req, httplib::Response& res) {
               sendUploadFile(service.uploads(), req.matches[1], res);
             });
  server.Get(one, [&service](const httplib::Request& req, httplib::Response& res) {
    auto u = service.uploads().get(req.matches[1]);
    u ? sendJson(res, 200, uploadJson(*u)) : sendError(res, u.error());
  });
  server.Post(R"(/v1/vms/([^/]+)/export)",
              [&service](const httplib::Request& req, httplib::Response& res) {
                auto parsed = parseExport(req.matches[1], req.body);
                if (!parsed) {
                  return sendError(res, parsed.error());
                }
                auto e = service.exportVm(*parsed);
                e ? sendJson(res, 201, exportJson(*e)) : sendError(res, e.error());
              });
  server.Post("/v1/seeds", [&service](const httplib::Request& req, httplib::Response& res) {
    auto parsed = parseSeed(req.body);
    if (!parsed) {
      return sendError(res, parsed.error());
    }
    auto s = service.importSeed(parsed->upload, parsed->keep, parsed->lax);
    s ? sendJson(res, 201, seedJson(*s)) : sendError(res, s.error());
  });
  server.Delete(one, [&service](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    auto r = service.deleteUpload(name);
    r ? sendJson(res, 200, json{{"deleted", name}}) : sendError(res, r.error());
  });
}

}  // namespace vandra::agent
