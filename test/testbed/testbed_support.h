// Helpers shared by the testbed test files: whether the testbed can run here, a state folder
// that is brought down whatever happens, a client for a site's agent, the CLI, and what runs
// in a site's namespace.
#pragma once

#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "vandra/agent/agent_client.h"
#include "vandra/common/subprocess.h"
#include "vandra/testbed/guest_client.h"
#include "vandra/testbed/testbed.h"

namespace vandra::testbed::support {

// Why the testbed cannot run here, or empty.
inline std::string cannotRun() {
  if (::geteuid() != 0) {
    return "needs root (network namespaces)";
  }
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
    return "no /dev/net/tun";
  }
  if (!runCapture({"ip", "-V"})) {
    return "no iproute2 (ip)";
  }
  std::string why;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      why = std::string("cannot create a network namespace: ") + std::strerror(errno);
    }
  });
  t.join();
  return why;
}

// A temporary state dir whose testbed is brought down (and the dir removed) whatever happens.
class StateDir {
 public:
  StateDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vandra-tb-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
    }
  }
  ~StateDir() {
    if (!path_.empty()) {
      if (auto d = down(path_); !d) {
        ADD_FAILURE() << "testbed down failed: " << d.error().describe();
        for (const auto& e : d.error().secondary) {
          ADD_FAILURE() << "  " << e.describe();
        }
      }
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A client of @p site's agent with the operator credentials of @p credentials_of.
inline agent::AgentClient clientFor(const SiteInfo& site, const SiteInfo& credentials_of) {
  agent::AgentEndpoint ep{.host = "",
                          .port = 0,
                          .ca = credentials_of.ca_cert,
                          .cert = credentials_of.operator_cert,
                          .key = credentials_of.operator_key,
                          .netns = site.netns};
  EXPECT_TRUE(agent::parseHostPort(site.agent_endpoint, ep));
  return agent::AgentClient(ep);
}

// As an operator imports a local package: upload it (PUT /v1/packages/{file name}; kept when
// the agent holds it already), then import the upload as VM @p id.
inline Result<nlohmann::json> importUploaded(agent::AgentClient& agent, const std::string& id,
                                             const std::string& ova) {
  const std::string name = std::filesystem::path(ova).filename().string();
  VANDRA_TRY(agent.uploadPackage(ova, name));
  return agent.post("/v1/vms", {{"id", id}, {"upload", name}});
}

// QEMU processes inside a site's namespace (the agent runs there too).
inline size_t qemuProcessesIn(const std::string& netns) {
  auto pids = runCapture({"ip", "netns", "pids", netns});
  size_t n = 0;
  std::istringstream in(pids ? *pids : std::string());
  std::string pid;
  while (in >> pid) {
    std::ifstream cmd("/proc/" + pid + "/cmdline");
    std::string argv0;
    std::getline(cmd, argv0, '\0');
    n += argv0.find("qemu-system") != std::string::npos ? 1U : 0U;
  }
  return n;
}

inline bool exitedZero(const std::string& exec_out) {
  return exec_out.size() >= 7 && exec_out.compare(exec_out.size() - 7, 7, " exit 0") == 0;
}

// The last line a guest program printed and its exit code ("... exit 0").
inline std::string execOut(GuestConnection& c, const std::string& cmd) {
  auto r = c.exec(cmd, std::chrono::seconds(120));
  if (!r) {
    return "error: " + r.error().describe();
  }
  return (r->out.empty() ? std::string("(no output)") : r->out.back()) + " exit " +
         std::to_string(r->exit_code);
}

// The agent's log of @p site.
inline std::string agentLog(const SiteInfo& site) {
  std::ifstream in(site.site_dir + "/agent.log", std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The first event named @p name (and, when given, whose data has @p key == @p value) after
// @p since in @p agent's event log, waiting for it (long polls) until @p deadline.
inline std::optional<nlohmann::json> waitForEvent(agent::AgentClient& agent,
                                                  const std::string& name, uint64_t since,
                                                  std::chrono::steady_clock::time_point deadline,
                                                  const std::string& key = "",
                                                  const std::string& value = "") {
  while (std::chrono::steady_clock::now() < deadline) {
    auto page = agent.get("/v1/events?wait_ms=5000&since=" + std::to_string(since));
    if (!page) {
      ADD_FAILURE() << page.error().describe();
      return std::nullopt;
    }
    for (const auto& e : (*page)["events"]) {
      since = e.value("seq", since);
      if (e.value("name", "") == name &&
          (key.empty() || (e.contains("data") && e["data"].value(key, "") == value))) {
        return e;
      }
    }
  }
  return std::nullopt;
}

struct CliRun {
  int code = -1;
  std::string out;
};

// The vandra CLI (@p cli) with @p args; its stdout and stderr.
inline CliRun runCli(const std::string& cli, std::vector<std::string> args) {
  args.insert(args.begin(), cli);
  CliRun r;
  auto p = Subprocess::start(args, {.capture_stdout = true, .capture_stderr = true});
  if (!p) {
    return r;
  }
  (void)p->drainStdout([&](std::string_view c) { r.out.append(c); });
  auto st = p->wait();
  r.code = st ? (st->signal != 0 ? 128 + st->signal : st->code) : -1;
  return r;
}

// A testbed of @p profile in state folder @p dir with the WAN emulator built here: sites dc
// and cloud-eu only (one link; what most tests need), no controller.
inline TestbedOptions optionsFor(const std::string& profile, const std::string& dir) {
  TestbedOptions o;
  o.profile = profile;
  o.state_dir = dir;
  o.sites = {"dc", "cloud-eu"};
  o.wanem_path = VANDRA_WANEM_PATH;
  o.controller = false;
#ifdef VANDRA_CONTROLLER_PATH
  o.controller_path = VANDRA_CONTROLLER_PATH;
#endif
  return o;
}

// The same with one agent per site, built here, that stops its VMs' QEMU within 3 s.
inline TestbedOptions agentOptionsFor(const std::string& profile, const std::string& dir) {
  TestbedOptions o = optionsFor(profile, dir);
  o.agents = true;
  o.agent_path = VANDRA_AGENT_PATH;
  o.agent_args = {"--stop-timeout", "3"};
  return o;
}

// Site @p name of @p tb; a test failure (and an empty site) when it has none.
inline const SiteInfo& siteOf(const TestbedInfo& tb, const std::string& name) {
  static const SiteInfo none;
  const SiteInfo* s = tb.site(name);
  if (s == nullptr) {
    ADD_FAILURE() << "the testbed has no site " << name;
    return none;
  }
  return *s;
}

// /proc/<pid>/stat field 22, or 0 when the process is gone (zombies count as gone).
inline uint64_t processStartTimeForTest(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) {
    return 0;
  }
  const auto close = line.rfind(')');
  std::istringstream f(line.substr(close + 1));
  std::string state;
  f >> state;
  if (state == "Z" || state == "X") {
    return 0;
  }
  std::string skip;
  for (int field = 4; field < 22; ++field) {
    f >> skip;
  }
  uint64_t st = 0;
  f >> st;
  return st;
}

// Entries left in a site agent's per-migration run folder (sockets of past migrations).
inline size_t migrationRunLeftovers(const SiteInfo& site) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir = fs::path(site.site_dir) / "agent" / "run" / "m";
  size_t n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++n;
  }
  return n;
}

}  // namespace vandra::testbed::support
