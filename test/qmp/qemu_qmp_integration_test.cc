// Real QEMU check for the QMP client: start qemu-system-x86_64 paused (-S, no disk, TCG),
// connect, query-status / query-version, quit, and see the process exit. Skips only when
// qemu-system-x86_64 is not installed (tools/install-deps.sh installs qemu-system-x86).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>

#include "qmp_commands.h"
#include "test/support/require.h"
#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::qmp {
namespace {

using namespace std::chrono_literals;

bool qemuInstalled() {
  const char* path = std::getenv("PATH");
  std::string p = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    const size_t end = std::min(p.find(':', start), p.size());
    const std::string candidate = p.substr(start, end - start) + "/qemu-system-x86_64";
    if (::access(candidate.c_str(), X_OK) == 0) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

TEST(QemuQmpIntegrationTest, PausedQemuAnswersStatusVersionAndQuits) {
  if (!qemuInstalled()) {
    VANDRA_SKIP_OR_FAIL("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)");
  }
  std::array<char, 32> tmpl{};
  std::strncpy(tmpl.data(), "/tmp/vq-XXXXXX", tmpl.size() - 1);
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl.data();
  auto cleanup = defer([&] {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  });
  const std::string sock = dir + "/qmp.sock";
  auto qemu = Subprocess::start(
      {"qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-nodefaults", "-no-user-config",
       "-nographic", "-display", "none", "-qmp", "unix:" + sock + ",server=on,wait=off", "-S"},
      {});
  ASSERT_TRUE(qemu) << qemu.error().describe();

  QmpClientOptions options;
  options.connect_timeout = 30s;  // TCG start-up on a loaded 2-core machine
  auto client = connectQmp(sock, std::move(options));
  ASSERT_TRUE(client) << client.error().describe();
  EXPECT_EQ((*client)->greeting().major, 7);

  auto st = execute<QueryStatus>(**client);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_FALSE(st->running);
  // RunState "prelaunch": -S before any cont (QAPI run-state.json).
  EXPECT_TRUE(st->status == "prelaunch" || st->status == "paused") << st->status;

  auto ver = execute<QueryVersion>(**client);
  ASSERT_TRUE(ver) << ver.error().describe();
  EXPECT_EQ(ver->major, 7);

  auto bad = (*client)->execute(makeCommand("no-such-command"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::QmpError);
  EXPECT_NE(bad.error().message.find("CommandNotFound"), std::string::npos) << bad.error().message;

  auto q = execute<Quit>(**client);
  // QEMU may close the socket right after (or even before flushing) the quit reply.
  if (!q) {
    EXPECT_EQ(q.error().code, ErrorCode::QmpDisconnected) << q.error().describe();
  }
  auto status = qemu->wait();
  ASSERT_TRUE(status) << status.error().describe();
  EXPECT_TRUE(status->ok()) << "exit " << status->code << " signal " << status->signal << ": "
                            << qemu->stderrText();
}

}  // namespace
}  // namespace vandra::qmp
