// One way to serve an API over mutual TLS (the agent's and the controller's): TLS set up by
// configureMutualTls, answers sent at once (no Nagle wait for the client's delayed ACK, 44 ms a
// request otherwise), a pool of workers larger than cpp-httplib's default 8 (long polls hold
// one each), idle keep-alive connections let go after 2 s, and a listen backlog of SOMAXCONN
// (Debian's cpp-httplib listens with 5: a burst of reconnecting clients then loses SYNs and
// waits 1-3 s for retransmits). SIGTERM/SIGINT stop it cleanly.
#pragma once

#include <httplib.h>

#include <functional>
#include <memory>
#include <string>

#include "vandra/common/result.h"
#include "vandra/pki/tls.h"

namespace vandra::pki {

struct HttpsServer {
  std::unique_ptr<httplib::SSLServer> server;
  int bound_port = 0;
};

/// A server with mutual TLS, @p threads workers (cpp-httplib serves one connection per worker:
/// clients beyond it queue) and at most @p requests_per_connection on one kept-alive
/// connection, idle at most @p keep_alive_s (an idle connection holds its worker). With
/// @p client_cert_optional a client may come without a certificate (browsers: the caller then
/// needs another way to know who asks). Errors: InvalidArgument (TLS files).
[[nodiscard]] Result<HttpsServer> makeHttpsServer(const TlsIdentity& tls, size_t threads = 64,
                                                  size_t requests_per_connection = 20,
                                                  time_t keep_alive_s = 2,
                                                  bool client_cert_optional = false);

/// Binds @p host:@p port (0: any free port) with the backlog above. Errors: Io.
[[nodiscard]] Result<void> bindHttps(HttpsServer& s, const std::string& host, int port);

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later: call it
/// first in main(), before any thread exists, so that the signal waits for serveUntilSignal's
/// waiter instead of ending the process in whichever thread the kernel picks.
void blockStopSignals();

/// Serves until SIGTERM or SIGINT (blocked in every thread from the call on, taken by a
/// waiter thread); @p on_signal runs first (e.g. to wake long polls). Returns when stopped.
void serveUntilSignal(HttpsServer& s, const std::function<void()>& on_signal = {});

}  // namespace vandra::pki
