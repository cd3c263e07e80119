// The testbed controller's REST API for tests: a call with the operator's certificate, its
// status and JSON body, and waiting (polling with a deadline) until an answer satisfies a
// condition.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "vandra/testbed/testbed.h"

namespace vandra::testbed::support {

struct ControllerAnswer {
  int status = 0;  // 0: no answer (connection refused, timeout)
  nlohmann::json body;
  std::string text;
};

// @p method @p path on the controller of @p tb as its operator.
inline ControllerAnswer controllerRequest(const TestbedInfo& tb, const std::string& method,
                                          const std::string& path,
                                          const nlohmann::json& body = nullptr) {
  const std::string& endpoint = tb.controller_endpoint;
  const int port = std::stoi(endpoint.substr(endpoint.find(':') + 1));
  httplib::SSLClient cli("127.0.0.1", port, tb.operator_cert, tb.operator_key);
  cli.set_ca_cert_path(tb.controller_ca.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(60);
  const std::string data = body.is_null() ? std::string("{}") : body.dump();
  httplib::Result r = method == "POST"  ? cli.Post(path.c_str(), data, "application/json")
                      : method == "PUT" ? cli.Put(path.c_str(), data, "application/json")
                                        : cli.Get(path.c_str());
  ControllerAnswer a;
  if (!r) {
    a.text = httplib::to_string(r.error());
    return a;
  }
  a.status = r->status;
  a.text = r->body;
  a.body = nlohmann::json::parse(r->body, nullptr, false);
  return a;
}

// GETs @p path until @p ok holds for the answer (a poll of the controller's view, which it
// refreshes from the agents every second) or @p timeout passes. The last answer.
inline ControllerAnswer waitForController(const TestbedInfo& tb, const std::string& path,
                                          const std::function<bool(const ControllerAnswer&)>& ok,
                                          std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  ControllerAnswer a;
  for (;;) {
    a = controllerRequest(tb, "GET", path);
    if (ok(a) || std::chrono::steady_clock::now() > deadline) {
      return a;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // a poll, not a wait for time
  }
}

// GET /v1/vms/@p vm until it is at @p site in @p state.
inline ControllerAnswer waitForVm(const TestbedInfo& tb, const std::string& vm,
                                  const std::string& site, const std::string& state,
                                  std::chrono::seconds timeout = std::chrono::seconds(120)) {
  return waitForController(
      tb, "/v1/vms/" + vm,
      [&](const ControllerAnswer& a) {
        return a.status == 200 && a.body.is_object() && a.body.value("site", "") == site &&
               a.body.value("state", "") == state;
      },
      timeout);
}

}  // namespace vandra::testbed::support
