// The testbed's controller: vandra-controller in the root namespace on 127.0.0.1, over every
// site's agent. It reaches an agent from inside that agent's site namespace (the site file's
// netns field), with a client certificate the agent's own site CA issued (agents trust only
// their site CA). Operators and viewers reach the controller with certificates of the
// controller's own CA, their role in the OU.
//
//   <state>/controller/pki      ca, controller (server, IP 127.0.0.1), operator, viewer
//   <state>/controller/sites.json  sites (jurisdictions, prices, agents), links, a location
//   <state>/controller/port     written by the controller once it listens
//   <state>/cli.json            controller endpoint + the operator's credentials
//   <state>/controller/console-users.json  with a console: its users' names and passwords
#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "testbed_internal.h"
#include "vandra/common/subprocess.h"
#include "vandra/pki/pki.h"

namespace vandra::testbed::internal {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kControllerReadyTimeout = 60s;  // an ASan controller asking three agents

const SiteSpec& specFor(const std::string& name) {
  for (const auto& s : knownSites()) {
    if (name == s.name) {
      return s;
    }
  }
  return knownSites().front();  // unreachable: makeInfo names known sites only
}

Result<void> writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) {
    return fail(ErrorCode::Io, "Cannot write " + path);
  }
  return {};
}

Result<void> makeControllerPki(const std::string& id, const TestbedInfo& info) {
  const std::string pki_dir = info.controller_dir + "/pki";
  VANDRA_TRY(pki::initCa({pki_dir, "vandra testbed " + id + " controller CA", 30}));
  auto issue = [&](const std::string& name, pki::Role role, std::vector<std::string> ips,
                   const std::string& group) {
    return pki::issue({.ca_dir = pki_dir,
                       .name = name,
                       .role = role,
                       .dns_names = {},
                       .ip_addresses = std::move(ips),
                       .days = 30,
                       .not_before_offset_s = -300,
                       .group = group});
  };
  VANDRA_TRY(issue("controller", pki::Role::Server, {"127.0.0.1"}, ""));
  VANDRA_TRY(issue("operator", pki::Role::Client, {}, "operator"));
  VANDRA_TRY(issue("viewer", pki::Role::Client, {}, "viewer"));
  return {};
}

// The site file (include/vandra/controller/config.h): the testbed's sites with the profile's
// links between every pair and the office the operators sit in.
json siteFile(const TestbedInfo& info, const Profile& profile) {
  json sites = json::array();
  json office_rtt = json::object();
  for (const auto& s : info.sites) {
    const SiteSpec& spec = specFor(s.name);
    sites.push_back({{"name", s.name},
                     {"jurisdictions", s.jurisdictions},
                     {"vcpu_overcommit", 1.0},
                     {"price",
                      {{"currency", "EUR"},
                       {"vcpu_hour", spec.vcpu_hour},
                       {"memory_gib_hour", spec.memory_gib_hour}}},
                     {"water_marks", {{"high", 0.85}, {"low", 0.6}}},
                     {"networks", siteNetworks(s.name)},
                     {"agents",
                      {{{"host", s.name + "-h1"},
                        {"endpoint", s.agent_endpoint},
                        {"netns", s.netns},
                        {"ca", s.ca_cert},
                        {"cert", s.site_dir + "/pki/controller.crt"},
                        {"key", s.site_dir + "/pki/controller.key"}}}}});
    office_rtt[s.name] = spec.rtt_from_office_ms;
  }
  json links = json::array();
  const double rtt_ms = std::chrono::duration<double, std::milli>(profile.link.delay).count() * 2;
  for (const auto& l : info.links) {
    links.push_back({{"a", l.a},
                     {"b", l.b},
                     {"rtt_ms", rtt_ms},
                     {"mbps", static_cast<double>(profile.link.rate_bps) / 1e6}});
  }
  return {{"sites", sites},
          {"links", links},
          {"locations", {{{"name", "stockholm-office"}, {"rtt_ms", office_rtt}}}}};
}

// OpenSSL writes with write(2): a controller that hangs up mid-handshake (not ready yet)
// would raise SIGPIPE in the caller of `up`. Blocked on this thread for the request; one that
// became pending meanwhile is taken, the caller's signal dispositions are not touched.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlock() {
    const timespec zero{0, 0};
    while (!was_pending_ && sigtimedwait(&pipe_, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

// GET /v1/health over mutual TLS with the operator's certificate.
bool answers(const TestbedInfo& info, int port) {
  const SigpipeBlock no_sigpipe;
  httplib::SSLClient cli("127.0.0.1", port, info.operator_cert, info.operator_key);
  cli.set_ca_cert_path(info.controller_ca.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(2);
  cli.set_read_timeout(5);
  auto r = cli.Get("/v1/health");
  return r && r->status == 200;
}

// Waits until the controller @p pid has written its port file and answers /v1/health, or
// reports its end. Returns the port.
Result<int> waitControllerReady(pid_t pid, const TestbedInfo& info, const std::string& log) {
  const auto deadline = Clock::now() + kControllerReadyTimeout;
  for (;;) {
    const auto ps = readProcStat(pid);
    if (!ps || ps->state == 'Z') {
      reapIfChild(pid);
      return fail(ErrorCode::Subprocess,
                  "The controller ended before it was ready: " + tailOf(log));
    }
    const std::string endpoint = controllerEndpoint(info);
    if (!endpoint.empty()) {
      const int port = std::atoi(endpoint.substr(endpoint.find(':') + 1).c_str());
      if (answers(info, port)) {
        return port;
      }
    }
    if (Clock::now() > deadline) {
      return fail(ErrorCode::Timeout, "The controller did not answer within " +
                                          std::to_string(kControllerReadyTimeout.count()) +
                                          " s (log: " + log + ")");
    }
    std::this_thread::sleep_for(100ms);  // its port file and then /v1/health are the signal
  }
}

// The console's two users, made with the controller's own command before it starts (the
// same database), with random passwords kept where only root reads them.
Result<void> makeConsoleUsers(Builder& b, const std::string& program, TestbedInfo& info) {
  VANDRA_TRY(b.record({"file", info.console_users, -1, 0, "", {}}));
  json users = json::object();
  for (const char* role : {"operator", "viewer"}) {
    std::string password;
    {
      std::ifstream random("/dev/urandom", std::ios::binary);
      const char* alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
      for (int i = 0; i < 20 && random; ++i) {
        password += alphabet[static_cast<unsigned char>(random.get()) % 56];
      }
    }
    if (password.size() != 20) {
      return fail(ErrorCode::Io, "Cannot read /dev/urandom for a console password");
    }
    const std::string pw_file = info.controller_dir + "/." + role + ".password";
    VANDRA_TRY(writeFile(pw_file, password + "\n"));
    fs::permissions(pw_file, fs::perms::owner_read | fs::perms::owner_write);
    auto added = runCapture({program, "user", "add", role, "--role", role, "--password-file",
                             pw_file, "--state-dir", info.controller_dir});
    fs::remove(pw_file);
    if (!added) {
      return fail(added.error());
    }
    users[role] = {{"user", role}, {"password", password}};
  }
  VANDRA_TRY(writeFile(info.console_users, users.dump(2) + "\n"));
  fs::permissions(info.console_users, fs::perms::owner_read | fs::perms::owner_write);
  return {};
}

}  // namespace

std::string consoleUrl(const TestbedInfo& info) {
  std::error_code ec;
  if (info.controller_endpoint.empty() || !fs::exists(info.console_users, ec)) {
    return "";
  }
  return "https://" + info.controller_endpoint + "/";
}

std::string controllerEndpoint(const TestbedInfo& info) {
  auto text = readSmall(info.controller_dir + "/port", 64);
  if (!text) {
    return {};
  }
  const int port = std::atoi(text->c_str());
  return port > 0 ? "127.0.0.1:" + std::to_string(port) : std::string();
}

Result<void> startController(Builder& b, const TestbedOptions& o, const std::string& program,
                             TestbedInfo& info) {
  VANDRA_TRY(b.record({"tree", info.controller_dir, -1, 0, "", {}}));
  std::error_code ec;
  fs::create_directories(info.controller_dir, ec);
  if (ec) {
    return fail(ErrorCode::Io, "Cannot create " + info.controller_dir + ": " + ec.message());
  }
  VANDRA_TRY(makeControllerPki(info.id, info));
  VANDRA_TRY_ASSIGN(const Profile profile, findProfile(o.profile));
  const std::string config = info.controller_dir + "/sites.json";
  VANDRA_TRY(writeFile(config, siteFile(info, profile).dump(2) + "\n"));
  const std::string pki_dir = info.controller_dir + "/pki";
  std::vector<std::string> argv = {program,
                                   "--listen",
                                   "127.0.0.1",
                                   "--port",
                                   "0",
                                   "--port-file",
                                   info.controller_dir + "/port",
                                   "--tls-ca",
                                   pki_dir + "/ca.crt",
                                   "--tls-cert",
                                   pki_dir + "/controller.crt",
                                   "--tls-key",
                                   pki_dir + "/controller.key",
                                   "--state-dir",
                                   info.controller_dir,
                                   "--config",
                                   config,
                                   "--id",
                                   "testbed-" + info.id,
                                   "--refresh-ms",
                                   "1000"};
  argv.insert(argv.end(), o.controller_args.begin(), o.controller_args.end());
  if (!o.console_dir.empty()) {
    VANDRA_TRY(makeConsoleUsers(b, program, info));
    argv.push_back("--console");
    argv.push_back(fs::absolute(o.console_dir).string());
  }
  const std::string log = info.controller_dir + "/controller.log";
  // Marker: its state folder, unique to this testbed.
  VANDRA_TRY_ASSIGN(
      info.controller_pid,
      startRecorded(b, "controller", argv, "--state-dir " + info.controller_dir, log, -1));
  VANDRA_TRY_ASSIGN(const int port, waitControllerReady(info.controller_pid, info, log));
  info.controller_endpoint = "127.0.0.1:" + std::to_string(port);
  info.console_url = consoleUrl(info);
  VANDRA_TRY(b.record({"file", info.cli_config, -1, 0, "", {}}));
  const json cli = {{"controller", info.controller_endpoint},
                    {"ca", info.controller_ca},
                    {"cert", info.operator_cert},
                    {"key", info.operator_key}};
  VANDRA_TRY(writeFile(info.cli_config, cli.dump(2) + "\n"));
  return {};
}

}  // namespace vandra::testbed::internal

namespace vandra::testbed {

using namespace internal;  // NOLINT: the state file and process helpers

Result<TestbedInfo> restartController(const std::string& state_dir) {
  VANDRA_TRY_ASSIGN(auto state, loadState(state_dir));
  if (!state) {
    return fail(ErrorCode::NotFound, "No testbed recorded in " + state_dir);
  }
  Resource* controller = nullptr;
  for (auto& r : state->resources) {
    if (r.kind == "process" && r.name == "controller") {
      controller = &r;
    }
  }
  if (controller == nullptr || controller->argv.empty()) {
    return fail(ErrorCode::NotFound, "The testbed in " + state_dir + " runs no controller");
  }
  TestbedInfo info = makeInfo(*state, state_dir);
  VANDRA_TRY(stopProcess(*controller));  // a no-op when it is gone (killed by a test)
  reapIfChild(controller->pid);
  // The old port file would name the dead controller's port until the new one writes its own.
  ::unlink((info.controller_dir + "/port").c_str());
  controller->pid = -1;  // recorded as not running before the new one exists
  controller->start_time = 0;
  VANDRA_TRY(saveState(state_dir, *state));
  const std::string log = info.controller_dir + "/controller.log";
  VANDRA_TRY_ASSIGN(const pid_t pid, spawnDetached(controller->argv, log, -1));
  controller->pid = pid;
  controller->start_time = startTimeOf(pid);
  VANDRA_TRY(saveState(state_dir, *state));
  VANDRA_TRY_ASSIGN(const int port, waitControllerReady(pid, info, log));
  info.controller_pid = pid;
  info.controller_endpoint = "127.0.0.1:" + std::to_string(port);
  info.console_url = consoleUrl(info);
  const json cli = {{"controller", info.controller_endpoint},
                    {"ca", info.controller_ca},
                    {"cert", info.operator_cert},
                    {"key", info.operator_key}};
  VANDRA_TRY(writeFile(info.cli_config, cli.dump(2) + "\n"));
  VANDRA_TRY_ASSIGN(auto now, status(state_dir));  // with the agents' pids and endpoints
  return now.info ? *now.info : info;
}

}  // namespace vandra::testbed
