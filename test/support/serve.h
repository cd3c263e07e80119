// Runs a cpp-httplib server's accept loop on a thread and returns once it accepts.
// cpp-httplib's stop() does nothing to a server whose loop has not begun yet, so a test that
// stopped one at once (a short test) would hang joining its thread.
#pragma once

#include <chrono>
#include <thread>

namespace vandra::testing {

/// Starts @p server (bound already: bind_to_any_port) on @p thread; returns true once it is
/// running, false if it did not start within 10 s (listen_after_bind failed).
template <class Server>
bool serveInBackground(Server& server, std::thread& thread) {
  thread = std::thread([&server] { server.listen_after_bind(); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server.is_running()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::yield();
  }
  return true;
}

}  // namespace vandra::testing
