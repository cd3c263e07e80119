#include "vandra/controller/http_api.h"

#include <openssl/x509.h>

#include <charconv>
#include <chrono>
#include <limits>
#include <memory>
#include <mutex>

#include "http_internal.h"
#include "vandra/agent/http_api.h"
#include "vandra/controller/inventory_json.h"
#include "vandra/ovf/vm_spec_json.h"
#include "vandra/placement/fleet_json.h"
#include "vandra/placement/mobility_json.h"

namespace vandra::controller {
namespace {

using agent::parseStrictBody;
using agent::sendError;
using agent::sendJson;
using nlohmann::json;

using internal::answer;
using internal::kName;

constexpr size_t kMaxListAnswer = 1000;

std::string subjectField(X509* cert, int nid) {
  char buf[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), nid, buf, sizeof buf) > 0) {
    return buf;
  }
  return "";
}

// POST /v1/placement/vm asks a question (where would this VM go?) and changes nothing.
bool isChange(const httplib::Request& req) {
  return req.method != "GET" && req.method != "HEAD" && req.path != "/v1/placement/vm";
}

// The body of POST /v1/placement/vm. Errors: InvalidArgument naming the member.
Result<std::pair<NewVm, std::string>> newVmFromJson(const json& j) {
  NewVm vm;
  std::string site;
  try {
    vm.name = j.value("name", "new-vm");
    VANDRA_TRY(checkName(vm.name, "VM"));
    if (!j.contains("vcpus") || !j.contains("memory_mib")) {
      return fail(ErrorCode::InvalidArgument, "vcpus and memory_mib are required");
    }
    vm.vcpus = j.at("vcpus").get<uint32_t>();
    vm.memory_mib = j.at("memory_mib").get<uint64_t>();
    vm.disk_gib = j.value("disk_gib", uint64_t{1});
    if (vm.vcpus > 1024 || vm.memory_mib > (64ull << 20) || vm.disk_gib > (1ull << 20)) {
      return fail(ErrorCode::InvalidArgument, "vcpus, memory_mib or disk_gib out of range");
    }
    if (j.contains("sla")) {
      VANDRA_TRY_ASSIGN(vm.sla, ovf::slaFromJson(j["sla"]));
    }
    const json networks = j.value("networks", json::array());
    const json network_map = j.value("network_map", json::object());
    if (networks.size() > 64 || network_map.size() > 64) {
      return fail(ErrorCode::LimitExceeded, "at most 64 networks");
    }
    for (const auto& n : networks) {
      vm.networks.push_back(n.get<std::string>().substr(0, 256));
    }
    for (const auto& [k, v] : network_map.items()) {
      VANDRA_TRY(checkNetworkName(v.get<std::string>()));
      vm.network_map[k.substr(0, 256)] = v.get<std::string>();
    }
    site = j.value("site", "");
    if (!site.empty()) {
      VANDRA_TRY(checkName(site, "Site"));
    }
  } catch (const json::exception& e) {
    return fail(ErrorCode::InvalidArgument, std::string("placement request: ") + e.what());
  }
  return std::make_pair(std::move(vm), std::move(site));
}

// A bounded integer query parameter; absent gives @p fallback.
Result<int64_t> queryInt(const httplib::Request& req, const char* key, int64_t fallback,
                         int64_t min, int64_t max) {
  if (!req.has_param(key)) {
    return fallback;
  }
  const std::string v = req.get_param_value(key);
  int64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out < min || out > max) {
    return fail(ErrorCode::InvalidArgument, std::string("Query parameter '") + key +
                                                "' must be a whole number in " +
                                                std::to_string(min) + ".." + std::to_string(max));
  }
  return out;
}

Result<void> onlyParams(const httplib::Request& req, std::initializer_list<const char*> known) {
  for (const auto& [k, v] : req.params) {
    bool ok = false;
    for (const char* n : known) {
      ok = ok || k == n;
    }
    if (!ok) {
      return fail(ErrorCode::InvalidArgument, "Unknown query parameter '" + k.substr(0, 64) + "'");
    }
  }
  return {};
}

template <class T>
json list(const std::vector<T>& items) {
  json out = json::array();
  for (const auto& i : items) {
    out.push_back(toJson(i));
  }
  return out;
}

json toJson(const SlaVerdict& v) {
  return {{"vm", v.vm},
          {"site", v.site},
          {"ok", v.ok},
          {"violations", v.violations},
          {"link_violations", v.link_violations}};
}

json toJson(const LeaderState& l) {
  return {{"leader", l.leader},
          {"epoch", l.epoch},
          {"holder", l.holder},
          {"controller", l.controller_id}};
}

json refusalsJson(const std::vector<Refusal>& rs) {
  json out = json::array();
  for (const auto& r : rs) {
    out.push_back({{"code", std::string(toString(r.code))}, {"clause", r.clause}});
  }
  return out;
}

// The VM list is what every console and script polls, and encoding 1 000 VMs costs tens of
// milliseconds: its answer is kept and served while it is younger than kListFreshMs, or while
// the store has not changed VMs since and it is younger than kListMaxMs (another
// controller's writes are not counted by the generation, so the answer must also age). One
// request rebuilds it at a time; the others meanwhile get the previous answer.
constexpr auto kListFreshMs = std::chrono::milliseconds(250);
constexpr auto kListMaxMs = std::chrono::milliseconds(2000);
struct ListCache {
  std::mutex mu;
  std::shared_ptr<const std::string> body;
  uint64_t generation = 0;
  std::chrono::steady_clock::time_point at{};
  bool rebuilding = false;
};

void readRoutes(httplib::Server& server, ControllerService& svc) {
  auto vm_cache = std::make_shared<ListCache>();
  server.Get("/v1/openapi.json", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(openApiDocument(), "application/json");
  });
  server.Get("/v1/health", [&](const httplib::Request&, httplib::Response& res) {
    sendJson(res, 200, {{"status", "ok"}, {"leader", toJson(svc.leader())}});
  });
  server.Get("/v1/leader", [&](const httplib::Request&, httplib::Response& res) {
    sendJson(res, 200, toJson(svc.leader()));
  });
  server.Get("/v1/sites", [&](const httplib::Request&, httplib::Response& res) {
    answer(res, svc.store().sites(), [](const auto& v) { return json{{"sites", list(v)}}; });
  });
  server.Get(std::string("/v1/sites/") + kName,
             [&](const httplib::Request& req, httplib::Response& res) {
               auto site = svc.store().site(req.matches[1]);
               auto hosts = svc.store().hosts();
               if (!site || !hosts) {
                 return sendError(res, !site ? site.error() : hosts.error());
               }
               json j = toJson(*site);
               j["hosts"] = json::array();
               for (const auto& h : *hosts) {
                 if (h.site == site->name) {
                   j["hosts"].push_back(toJson(h));
                 }
               }
               sendJson(res, 200, j);
             });
  server.Get("/v1/hosts", [&](const httplib::Request&, httplib::Response& res) {
    answer(res, svc.store().hosts(), [](const auto& v) { return json{{"hosts", list(v)}}; });
  });
  server.Get("/v1/links", [&](const httplib::Request&, httplib::Response& res) {
    answer(res, svc.store().links(), [](const auto& v) { return json{{"links", list(v)}}; });
  });
  server.Get("/v1/locations", [&](const httplib::Request&, httplib::Response& res) {
    answer(res, svc.store().locations(), [](const auto& v) {
      return json{{"locations", list(v)}};
    });
  });
  server.Get("/v1/networks", [&](const httplib::Request&, httplib::Response& res) {
    answer(res, svc.store().networkMappings(), [](const auto& v) {
      return json{{"networks", list(v)}};
    });
  });
  server.Get("/v1/vms", [&svc, vm_cache](const httplib::Request&, httplib::Response& res) {
    const uint64_t gen = svc.store().generation();
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(vm_cache->mu);
      const auto age = now - vm_cache->at;
      const bool usable = vm_cache->body != nullptr &&
                          (age < kListFreshMs || (vm_cache->generation == gen && age < kListMaxMs));
      if (usable || (vm_cache->rebuilding && vm_cache->body != nullptr)) {
        res.set_content(*vm_cache->body, "application/json");
        return;
      }
      vm_cache->rebuilding = true;
    }
    auto vms = svc.store().vmDocuments();
    std::shared_ptr<const std::string> body;
    if (vms) {
      std::string text = "{\"vms\":[";
      for (size_t i = 0; i < vms->size(); ++i) {
        text += (i ? "," : "") + (*vms)[i];
      }
      text += "]}";
      body = std::make_shared<const std::string>(std::move(text));
    }
    {
      std::lock_guard lock(vm_cache->mu);
      vm_cache->rebuilding = false;
      if (body) {
        vm_cache->body = body;
        vm_cache->generation = gen;
        vm_cache->at = now;
      }
    }
    if (!vms) {
      return sendError(res, vms.error());
    }
    res.set_content(*body, "application/json");
  });
  server.Get(std::string("/v1/vms/") + kName,
             [&](const httplib::Request& req, httplib::Response& res) {
               answer(res, svc.store().vm(req.matches[1]), [](const Vm& v) { return toJson(v); });
             });
  server.Get(std::string("/v1/vms/") + kName + "/preflight", [&](const httplib::Request& req,
                                                                 httplib::Response& res) {
    if (auto ok = onlyParams(req, {"to"}); !ok || !req.has_param("to")) {
      return sendError(res, !ok ? ok.error()
                                : Error(ErrorCode::InvalidArgument,
                                        "Query parameter 'to' (a site) is required"));
    }
    const std::string to = req.get_param_value("to");
    const std::string vm = req.matches[1];
    answer(res, svc.preflight(vm, to, MoveReason::Operator), [&](const std::vector<Refusal>& rs) {
      json estimate = nullptr;
      if (auto e = svc.estimateMove(vm, to); e && *e) {
        estimate = {{"duration_s", (*e)->duration_s},
                    {"interruption_ms", (*e)->interruption_ms},
                    {"rtt_ms", (*e)->rtt_ms},
                    {"mbps", (*e)->mbps},
                    {"basis", (*e)->basis}};
      }
      return json{{"vm", vm},
                  {"to", to},
                  {"ok", rs.empty()},
                  {"refusals", refusalsJson(rs)},
                  {"estimate", estimate}};
    });
  });
  server.Get("/v1/migrations", [&](const httplib::Request& req, httplib::Response& res) {
    if (auto ok = onlyParams(req, {"vm", "max"}); !ok) {
      return sendError(res, ok.error());
    }
    auto max = queryInt(req, "max", 100, 1, kMaxListAnswer);
    if (!max) {
      return sendError(res, max.error());
    }
    const std::string vm = req.get_param_value("vm");
    if (!vm.empty()) {
      if (auto ok = checkName(vm, "VM"); !ok) {
        return sendError(res, ok.error());
      }
    }
    answer(res, svc.store().migrations(vm, static_cast<size_t>(*max)), [](const auto& v) {
      return json{{"migrations", list(v)}};
    });
  });
  server.Get(
      R"(/v1/migrations/([0-9]{1,18}))", [&](const httplib::Request& req, httplib::Response& res) {
        if (auto ok = onlyParams(req, {"wait_ms"}); !ok) {
          return sendError(res, ok.error());
        }
        auto wait = queryInt(req, "wait_ms", 0, 0, 30000);
        if (!wait) {
          return sendError(res, wait.error());
        }
        auto m = svc.waitMigration(std::stoll(req.matches[1]), static_cast<uint64_t>(*wait));
        if (!m) {
          return sendError(res, m.error());
        }
        json j = toJson(*m);
        auto report = json::parse(m->report_json, nullptr, false);
        j["report"] = report.is_discarded() ? json(nullptr) : report;
        j["live"] = nullptr;
        if (m->state == MigrationState::Running) {
          // Where it is now, from the agent that runs it: what the console's progress bar shows.
          if (auto live = svc.liveMigration(*m); live) {
            auto rec = json::parse(live->report_json, nullptr, false);
            j["live"] = {{"phase", std::string(toString(live->phase))},
                         {"progress", rec.is_object() && rec.contains("progress") ? rec["progress"]
                                                                                  : json(nullptr)}};
          }
        }
        sendJson(res, 200, j);
      });
  server.Get("/v1/sla", [&](const httplib::Request&, httplib::Response& res) {
    answer(res, svc.slaStatus(), [](const std::vector<SlaVerdict>& vs) {
      size_t bad = 0;
      json out = json::array();
      for (const auto& v : vs) {
        bad += v.ok ? 0 : 1;
        out.push_back(toJson(v));
      }
      return json{{"vms", out}, {"violations", bad}};
    });
  });
  server.Get("/v1/placement", [&](const httplib::Request&, httplib::Response& res) {
    answer(res, svc.placementNow(),
           [](const placement::Solution& s) { return placement::toJson(s); });
  });
  server.Get("/v1/audit", [&](const httplib::Request& req, httplib::Response& res) {
    if (auto ok = onlyParams(req, {"after", "who", "target", "max"}); !ok) {
      return sendError(res, ok.error());
    }
    auto after = queryInt(req, "after", 0, 0, INT64_MAX);
    auto max = queryInt(req, "max", 100, 1, kMaxListAnswer);
    if (!after || !max) {
      return sendError(res, !after ? after.error() : max.error());
    }
    AuditQuery q{*after, req.get_param_value("who").substr(0, 128),
                 req.get_param_value("target").substr(0, 128), static_cast<size_t>(*max)};
    answer(res, svc.store().audit(q), [](const auto& v) { return json{{"audit", list(v)}}; });
  });
  server.Get("/v1/events", [&](const httplib::Request& req, httplib::Response& res) {
    if (auto ok = onlyParams(req, {"after", "max"}); !ok) {
      return sendError(res, ok.error());
    }
    auto after = queryInt(req, "after", 0, 0, INT64_MAX);
    auto max = queryInt(req, "max", 100, 1, kMaxListAnswer);
    if (!after || !max) {
      return sendError(res, !after ? after.error() : max.error());
    }
    answer(res, svc.store().events(*after, static_cast<size_t>(*max)), [](const auto& v) {
      return json{{"events", list(v)}};
    });
  });
  server.Get("/v1/mobility", [&](const httplib::Request&, httplib::Response& res) {
    auto paused = svc.mobilityPaused();
    if (!paused) {
      return sendError(res, paused.error());
    }
    answer(res, svc.mobilityPlan(), [&](const placement::MobilityPlan& p) {
      return json{{"paused", *paused}, {"plan", placement::toJson(p)}};
    });
  });
  server.Get(std::string("/v1/sites/") + kName + "/drain",
             [&](const httplib::Request& req, httplib::Response& res) {
               answer(res, svc.drainPlan(req.matches[1]), [&](const placement::MobilityPlan& p) {
                 return json{{"site", std::string(req.matches[1])},
                             {"started", false},
                             {"plan", placement::toJson(p)}};
               });
             });
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(svc.metrics().text(), "text/plain; version=0.0.4");
  });
}

void changeRoutes(httplib::Server& server, ControllerService& svc,
                  const std::shared_ptr<internal::Auth>& auth) {
  server.Patch(
      std::string("/v1/sites/") + kName, [&](const httplib::Request& req, httplib::Response& res) {
        auto body = parseStrictBody(req.body, {"jurisdictions", "vcpu_overcommit", "price",
                                               "water_marks", "networks", "default_network"});
        if (!body) {
          return sendError(res, body.error());
        }
        answer(res, svc.patchSite(req.matches[1], *body), [](const Site& s) { return toJson(s); });
      });
  server.Put(std::string("/v1/links/") + kName + "/" + kName,
             [&](const httplib::Request& req, httplib::Response& res) {
               auto body = parseStrictBody(req.body, {"rtt_ms", "mbps"});
               if (!body) {
                 return sendError(res, body.error());
               }
               (*body)["a"] = std::string(req.matches[1]);
               (*body)["b"] = std::string(req.matches[2]);
               auto link = linkFromJson(*body);
               if (!link) {
                 return sendError(res, link.error());
               }
               auto r = svc.putLink(*link);
               r ? sendJson(res, 200, toJson(*link)) : sendError(res, r.error());
             });
  server.Put(std::string("/v1/locations/") + kName,
             [&](const httplib::Request& req, httplib::Response& res) {
               auto body = parseStrictBody(req.body, {"rtt_ms"});
               if (!body) {
                 return sendError(res, body.error());
               }
               (*body)["name"] = std::string(req.matches[1]);
               auto loc = locationFromJson(*body);
               if (!loc) {
                 return sendError(res, loc.error());
               }
               auto r = svc.putLocation(*loc);
               r ? sendJson(res, 200, toJson(*loc)) : sendError(res, r.error());
             });
  server.Put(std::string("/v1/networks/") + kName,
             [&](const httplib::Request& req, httplib::Response& res) {
               auto body = parseStrictBody(req.body, {"members"});
               if (!body) {
                 return sendError(res, body.error());
               }
               (*body)["name"] = std::string(req.matches[1]);
               auto m = networkMappingFromJson(*body);
               if (!m) {
                 return sendError(res, m.error());
               }
               auto r = svc.putNetworkMapping(*m);
               r ? sendJson(res, 200, toJson(*m)) : sendError(res, r.error());
             });
  server.Post(
      std::string("/v1/vms/") + kName + "/migrate",
      [&svc, auth](const httplib::Request& req, httplib::Response& res) {
        auto body = parseStrictBody(req.body, {"to", "reason"});
        if (!body) {
          return sendError(res, body.error());
        }
        if (!body->contains("to") || !(*body)["to"].is_string()) {
          return sendError(res, Error(ErrorCode::InvalidArgument, "to: a site name is required"));
        }
        MigrateRequest mr;
        mr.vm = req.matches[1];
        mr.to = (*body)["to"].get<std::string>();
        if (auto ok = checkName(mr.to, "Site"); !ok) {
          return sendError(res, ok.error());
        }
        if (body->contains("reason")) {
          if (!(*body)["reason"].is_string() || (*body)["reason"].get<std::string>().size() > 500) {
            return sendError(res, Error(ErrorCode::InvalidArgument,
                                        "reason: a string of at most 500 characters"));
          }
          mr.why = (*body)["reason"].get<std::string>();
        }
        answer(
            res, svc.migrate(mr, auth->callerOf(req)), [](const Migration& m) { return toJson(m); },
            202);
      });
  server.Post(std::string("/v1/sites/") + kName + "/drain",
              [&svc, auth](const httplib::Request& req, httplib::Response& res) {
                if (auto body = parseStrictBody(req.body.empty() ? "{}" : req.body, {"reason"});
                    !body) {
                  return sendError(res, body.error());
                }
                answer(
                    res, svc.drain(req.matches[1], auth->callerOf(req)),
                    [&](const placement::MobilityPlan& p) {
                      return json{{"site", std::string(req.matches[1])},
                                  {"started", true},
                                  {"plan", placement::toJson(p)}};
                    },
                    202);
              });
  server.Post("/v1/placement/vm", [&](const httplib::Request& req, httplib::Response& res) {
    auto body = parseStrictBody(req.body, {"name", "vcpus", "memory_mib", "disk_gib", "sla",
                                           "networks", "network_map", "site"});
    if (!body) {
      return sendError(res, body.error());
    }
    auto asked = newVmFromJson(*body);
    if (!asked) {
      return sendError(res, asked.error());
    }
    answer(res, svc.placeNew(asked->first, asked->second),
           [](const NewVmPlacement& p) { return internal::toJson(p); });
  });
  for (const char* action : {"pause", "resume"}) {
    server.Post(std::string("/v1/mobility/") + action,
                [&svc, action, auth](const httplib::Request& req, httplib::Response& res) {
                  if (auto body = parseStrictBody(req.body.empty() ? "{}" : req.body, {"reason"});
                      !body) {
                    return sendError(res, body.error());
                  }
                  const bool pause = std::string(action) == "pause";
                  auto r = svc.setMobilityPaused(pause, auth->callerOf(req));
                  r ? sendJson(res, 200, {{"paused", pause}}) : sendError(res, r.error());
                });
  }
  for (const char* action : {"start", "stop"}) {
    server.Post(
        std::string("/v1/vms/") + kName + "/" + action,
        [&svc, action](const httplib::Request& req, httplib::Response& res) {
          if (auto body = parseStrictBody(req.body.empty() ? "{}" : req.body, {}); !body) {
            return sendError(res, body.error());
          }
          const std::string vm = req.matches[1];
          auto r = std::string(action) == "start" ? svc.startVm(vm) : svc.stopVm(vm);
          r ? sendJson(res, 200, {{"vm", vm}, {"action", action}}) : sendError(res, r.error());
        });
  }
}

// The target an audit entry is about: the name after the collection in the path.
std::string targetOf(const std::string& path) {
  static const std::string prefixes[] = {"/v1/vms/",       "/v1/sites/",    "/v1/links/",
                                         "/v1/locations/", "/v1/networks/", "/v1/packages/"};
  for (const auto& p : prefixes) {
    if (path.rfind(p, 0) == 0) {
      const std::string rest = path.substr(p.size());
      return rest.substr(0, rest.find('/', p == "/v1/links/" ? rest.find('/') + 1 : 0));
    }
  }
  return "";
}

}  // namespace

Caller callerOf(const httplib::Request& req) {
  Caller c;
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
  if (req.ssl == nullptr) {
    return c;
  }
  X509* cert = SSL_get_peer_certificate(req.ssl);
  if (cert == nullptr) {
    return c;
  }
  c.who = subjectField(cert, NID_commonName);
  const std::string group = subjectField(cert, NID_organizationalUnitName);
  X509_free(cert);
  c.role = group == "operator" ? Role::Operator : group == "viewer" ? Role::Viewer : Role::None;
#else
  (void)req;
#endif
  return c;
}

void registerRoutes(httplib::Server& server, ControllerService& svc,
                    const ConsoleOptions& console) {
  auto auth = std::make_shared<internal::Auth>(console.sign_in);
  // Uploads stream far past kMaxRequestBody and bound themselves; every other body is
  // refused unread past it (agent::refuseUnboundedBody).
  server.set_payload_max_length(std::numeric_limits<size_t>::max());
  const bool serve_files = !console.static_dir.empty();
  server.set_pre_routing_handler([auth, serve_files](const httplib::Request& req,
                                                     httplib::Response& res) {
    res.set_header("X-Request-Start-Us",
                   std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                      std::chrono::steady_clock::now().time_since_epoch())
                                      .count()));
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("X-Frame-Options", "DENY");
    res.set_header("Referrer-Policy", "no-referrer");
    if (auth->console()) {
      res.set_header("Strict-Transport-Security", "max-age=31536000");
    }
    if (serve_files && internal::isStaticPath(req.path)) {
      // The console's own files: anyone may load the sign-in page; the API stays guarded.
      res.set_header("Content-Security-Policy",
                     "default-src 'self'; img-src 'self' data:; style-src 'self' "
                     "'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action "
                     "'self'");
      if (req.method != "GET" && req.method != "HEAD") {
        sendError(res, Error(ErrorCode::InvalidArgument, "Only GET serves the console's files"));
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    }
    if (auth->console() && req.path == "/v1/session") {
      return agent::refuseUnboundedBody(req, res) ? httplib::Server::HandlerResponse::Handled
                                                  : httplib::Server::HandlerResponse::Unhandled;
    }
    const Caller c = auth->callerOf(req);
    if (c.role == Role::None) {
      if (c.who.empty() && auth->console()) {
        internal::sendUnauthorized(res, "Sign in (POST /v1/session) or use a client certificate");
      } else {
        sendError(res, Error(ErrorCode::Forbidden,
                             "The client certificate '" + c.who +
                                 "' names no role (its OU must be operator or viewer)"));
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    if (isChange(req) && c.role != Role::Operator) {
      if (agent::isUploadRequest(req)) {
        res.set_header("Connection", "close");  // the upload is not read
      }
      sendError(
          res, Error(ErrorCode::Forbidden, "'" + c.who + "' is a " + std::string(toString(c.role)) +
                                               ": only an operator may change anything"));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (isChange(req) && auth->viaSession(req)) {
      if (const std::string why = auth->csrfProblem(req, *auth->session(req)); !why.empty()) {
        if (agent::isUploadRequest(req)) {
          res.set_header("Connection", "close");
        }
        sendError(res, Error(ErrorCode::Forbidden, why));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return agent::refuseUnboundedBody(req, res) ? httplib::Server::HandlerResponse::Handled
                                                : httplib::Server::HandlerResponse::Unhandled;
  });
  readRoutes(server, svc);
  changeRoutes(server, svc, auth);
  internal::packageRoutes(server, svc, auth);
  internal::consoleRoutes(server, svc, auth);
  if (serve_files && !server.set_mount_point("/", console.static_dir)) {
    // Checked by the caller (consoleDirProblem); a folder that went away serves nothing.
  }
  server.set_logger([&svc, auth](const httplib::Request& req, const httplib::Response& res) {
    double seconds = 0;
    if (res.has_header("X-Request-Start-Us")) {
      const auto start = std::stoll(res.get_header_value("X-Request-Start-Us"));
      const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now().time_since_epoch())
                           .count();
      seconds = static_cast<double>(now - start) / 1e6;
    }
    svc.metrics().request(req.method, res.status, seconds);
    if (!isChange(req) || (res.status == 404 && internal::isStaticPath(req.path))) {
      return;
    }
    Caller c = auth->callerOf(req);
    const auto in = json::parse(req.body, nullptr, false);
    if (req.path == "/v1/session" && req.method == "POST") {
      // A sign-in: who tried is the name given (never the password).
      c.who = in.is_object() && in.contains("user") && in["user"].is_string()
                  ? in["user"].get<std::string>().substr(0, 64)
                  : "";
    }
    AuditEntry e;
    e.at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    e.who = c.who;
    e.role = std::string(toString(c.role));
    e.action = req.method + " " + req.path.substr(0, 300);
    e.target = targetOf(req.path);
    if (e.target.empty() && req.path.rfind("/v1/migrations/", 0) == 0 && req.matches.size() > 1) {
      // A cancel is about the VM that was moving: found by it in the log like its move.
      int64_t id = 0;
      const std::string digits = req.matches[1];
      if (std::from_chars(digits.data(), digits.data() + digits.size(), id).ec == std::errc()) {
        if (auto m = svc.store().migration(id); m) {
          e.target = m->vm;
        }
      }
    }
    if (e.target.empty() && in.is_object() && in.contains("id") && in["id"].is_string()) {
      e.target = in["id"].get<std::string>().substr(0, 64);  // POST /v1/vms: the new VM
    }
    e.status = res.status;
    const auto body = json::parse(res.body, nullptr, false);
    if (res.status < 400) {
      e.result = "ok";
      if (in.is_object() && in.contains("reason") && in["reason"].is_string()) {
        e.reason = in["reason"].get<std::string>().substr(0, 500);
      }
    } else if (body.is_object() && body.contains("error") && body["error"].is_object()) {
      e.result = body["error"].value("code", "error");
      e.reason = body["error"].value("message", "").substr(0, 1000);
    } else {
      e.result = "error";
    }
    (void)svc.store().appendAudit(e);
  });
}

}  // namespace vandra::controller
