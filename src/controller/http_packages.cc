// The controller's package and import routes (service_import.cc does the work):
//   PUT    /v1/packages/{name}   an .ova, streamed to disk, bounded, verified before it is kept
//   GET    /v1/packages          the uploads, the bound and the free space
//   GET    /v1/packages/{name}   one upload: its virtual systems with their SLA, and where
//                                placement would put the first (?vs=, ?site=)
//   DELETE /v1/packages/{name}
//   POST   /v1/vms               {"id","package","vs"?,"site"?,"network_map"?,"start"?,"lax"?,
//                                 "reason"?}: import through the controller
#include <string>

#include "http_internal.h"
#include "vandra/controller/http_api.h"
#include "vandra/controller/inventory_json.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::controller::internal {

using agent::sendError;
using agent::sendJson;
using nlohmann::json;

json toJson(const NewVmPlacement& p) {
  return {{"site", p.site},
          {"host", p.host},
          {"cost_per_hour", p.cost_per_hour},
          {"networks", p.networks}};
}

namespace {

const std::string kOne = "/v1/packages/(.*)";  // a bad name is answered as such, not 404

json toJson(const PackageVm& v) {
  return {{"vs", v.vs},
          {"name", v.name},
          {"vcpus", v.vcpus},
          {"memory_mib", v.memory_mib},
          {"disk_gib", v.disk_gib},
          {"networks", v.networks},
          {"sla", v.sla ? ovf::toJson(*v.sla) : json(nullptr)}};
}

// ?vs=&site= of GET /v1/packages/{name}, nothing else.
Result<std::pair<std::string, std::string>> placementParams(const httplib::Request& req) {
  std::string vs;
  std::string site;
  for (const auto& [key, value] : req.params) {
    if (key == "vs" && value.size() <= 64) {
      vs = value;
    } else if (key == "site") {
      VANDRA_TRY(checkName(value, "Site"));
      site = value;
    } else {
      return fail(ErrorCode::InvalidArgument,
                  "Unknown or bad query parameter '" + key.substr(0, 40) + "' (vs=, site=)");
    }
  }
  return std::make_pair(vs, site);
}

}  // namespace

void packageRoutes(httplib::Server& server, ControllerService& svc,
                   const std::shared_ptr<Auth>& auth) {
  server.Put(kOne, [&svc](const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& reader) {
    const agent::UploadStore* store = svc.packages();
    if (store == nullptr) {
      res.set_header("Connection", "close");  // the body is not read
      return sendError(res, Error(ErrorCode::Unsupported, "This controller keeps no packages"));
    }
    agent::receiveUpload(
        *store, [&svc](agent::UploadWriter& w, bool lax) { return svc.commitPackage(w, lax); },
        req.matches[1], req, res, reader);
  });
  server.Get("/v1/packages", [&svc](const httplib::Request&, httplib::Response& res) {
    const agent::UploadStore* store = svc.packages();
    if (store == nullptr) {
      return sendJson(res, 200, {{"packages", json::array()}, {"max_upload_bytes", 0}});
    }
    auto all = store->list();
    if (!all) {
      return sendError(res, all.error());
    }
    json out = json::array();
    for (const auto& u : *all) {
      out.push_back(agent::uploadJson(u));
    }
    sendJson(res, 200,
             {{"packages", out},
              {"max_upload_bytes", store->maxBytes()},
              {"available_bytes", store->available()}});
  });
  server.Get(kOne, [&svc](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    auto params = placementParams(req);
    if (!params) {
      return sendError(res, params.error());
    }
    auto info = svc.package(name);
    if (!info) {
      return sendError(res, info.error());
    }
    json out = agent::uploadJson(info->upload);
    out["signature"] = info->signature;
    json vms = json::array();
    for (const auto& v : info->vms) {
      vms.push_back(toJson(v));
    }
    out["vms"] = vms;
    // Where it would go now, and why not elsewhere: what an operator reads before importing.
    // Under a name no VM can have: the question is about the package, not a VM of that name.
    auto vm = svc.newVmOf(name, params->first, "<package " + name + ">");
    Result<NewVmPlacement> placed = vm ? svc.placeNew(*vm, params->second) : fail(vm.error());
    out["placement"] = placed ? internal::toJson(*placed)
                              : json{{"error",
                                      {{"code", std::string(toString(placed.error().code))},
                                       {"message", placed.error().message}}}};
    sendJson(res, 200, out);
  });
  server.Delete(kOne, [&svc](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    auto r = svc.deletePackage(name);
    r ? sendJson(res, 200, {{"deleted", name}}) : sendError(res, r.error());
  });
  server.Post("/v1/vms", [&svc, auth](const httplib::Request& req, httplib::Response& res) {
    auto r = importRequestFromJson(req.body);
    if (!r) {
      return sendError(res, r.error());
    }
    answer(
        res, svc.importVm(*r, auth->callerOf(req)),
        [](const ImportedVm& v) {
          return json{{"vm", controller::toJson(v.vm)},
                      {"placement", internal::toJson(v.placement)}};
        },
        201);
  });
}

}  // namespace vandra::controller::internal

namespace vandra::controller {

using nlohmann::json;

// The body of POST /v1/vms. Errors: InvalidArgument naming the member.
Result<ImportVmRequest> importRequestFromJson(const std::string& body) {
  VANDRA_TRY_ASSIGN(const json j,
                    agent::parseStrictBody(body, {"id", "package", "vs", "site", "network_map",
                                                  "start", "lax", "reason"}));
  ImportVmRequest r;
  for (const char* k : {"id", "package"}) {
    if (!j.contains(k) || !j[k].is_string()) {
      return fail(ErrorCode::InvalidArgument, std::string(k) + ": a string is required");
    }
  }
  r.id = j["id"].get<std::string>();
  VANDRA_TRY(checkName(r.id, "VM"));
  r.package = j["package"].get<std::string>();
  if (!agent::validUploadName(r.package)) {
    return fail(ErrorCode::InvalidArgument,
                "package: '" + r.package.substr(0, 80) + "' is not an upload's name");
  }
  for (const char* k : {"vs", "site", "reason"}) {
    if (j.contains(k) && (!j[k].is_string() || j[k].get<std::string>().size() > 500)) {
      return fail(ErrorCode::InvalidArgument, std::string(k) + ": a short string");
    }
  }
  r.vs = j.value("vs", "");
  r.site = j.value("site", "");
  if (!r.site.empty()) {
    VANDRA_TRY(checkName(r.site, "Site"));
  }
  for (const char* k : {"start", "lax"}) {
    if (j.contains(k) && !j[k].is_boolean()) {
      return fail(ErrorCode::InvalidArgument, std::string(k) + ": true or false");
    }
  }
  r.start = j.value("start", false);
  r.lax = j.value("lax", false);
  if (j.contains("network_map")) {
    const json& m = j["network_map"];
    if (!m.is_object() || m.size() > 64) {
      return fail(ErrorCode::InvalidArgument,
                  "network_map: an object of at most 64 OVF network -> site network");
    }
    for (const auto& [from, to] : m.items()) {
      if (!to.is_string() || from.empty() || from.size() > 256) {
        return fail(ErrorCode::InvalidArgument, "network_map: each value is a network name");
      }
      VANDRA_TRY(checkNetworkName(to.get<std::string>()));
      r.network_map[from] = to.get<std::string>();
    }
  }
  return r;
}

}  // namespace vandra::controller
