// vandrad as a child process for the tests of test/apps/vandrad: started on a free port, ready
// once it has written its port file (a bounded wait, not a sleep), ended by its pid.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "vandra/common/subprocess.h"
#include "vandra/pki/pki.h"

namespace vandra::agent {

class AgentProcess {
 public:
  /// vandrad on a free port with <dir>/state and the certificates of <dir>/pki, plus @p extra.
  AgentProcess(const std::string& dir, const std::vector<std::string>& extra) : dir_(dir) {
    std::filesystem::remove(dir_ + "/port");
    std::vector<std::string> argv = {VANDRAD_BIN,
                                     "--state-dir",
                                     dir_ + "/state",
                                     "--port",
                                     "0",
                                     "--port-file",
                                     dir_ + "/port",
                                     "--tls-ca",
                                     dir_ + "/pki/ca.crt",
                                     "--tls-cert",
                                     dir_ + "/pki/agent.crt",
                                     "--tls-key",
                                     dir_ + "/pki/agent.key",
                                     "--stop-timeout",
                                     "1",
                                     "--accel",
                                     "tcg"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = Subprocess::start(argv, {.capture_stdout = false, .capture_stderr = true});
    EXPECT_TRUE(p) << p.error().describe();
    proc_ = std::make_unique<Subprocess>(std::move(*p));
    // Readiness: the agent writes its port file once it listens (bounded wait, not a sleep
    // standing in for synchronisation).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!std::filesystem::exists(dir_ + "/port") &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::ifstream(dir_ + "/port") >> port_;
  }
  void killHard() {
    ::kill(proc_->pid(), SIGKILL);
    (void)proc_->wait();
  }
  /// SIGTERM, and how the agent ended (with its stderr).
  Result<ExitStatus> terminate() {
    ::kill(proc_->pid(), SIGTERM);
    return proc_->wait();
  }
  const std::string& log() const { return proc_->stderrText(); }
  int port() const { return port_; }

 private:
  std::string dir_;
  std::unique_ptr<Subprocess> proc_;
  int port_ = 0;
};

/// A site CA in <dir>/pki with the agent's certificate (127.0.0.1) and an operator's ("op").
inline void issueAgentPki(const std::string& dir) {
  ASSERT_TRUE(pki::initCa({.dir = dir + "/pki", .common_name = "CA", .days = 2}));
  ASSERT_TRUE(pki::issue({.ca_dir = dir + "/pki",
                          .name = "agent",
                          .role = pki::Role::Server,
                          .dns_names = {},
                          .ip_addresses = {"127.0.0.1"},
                          .days = 2,
                          .not_before_offset_s = 0,
                          .group = ""}));
  ASSERT_TRUE(pki::issue({.ca_dir = dir + "/pki",
                          .name = "op",
                          .role = pki::Role::Client,
                          .dns_names = {},
                          .ip_addresses = {},
                          .days = 2,
                          .not_before_offset_s = 0,
                          .group = ""}));
}

}  // namespace vandra::agent
