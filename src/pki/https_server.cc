#include "vandra/pki/https_server.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

namespace vandra::pki {

Result<HttpsServer> makeHttpsServer(const TlsIdentity& tls, size_t threads,
                                    size_t requests_per_connection, time_t keep_alive_s,
                                    bool client_cert_optional) {
  std::string tls_error;
  HttpsServer s;
  s.server = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
    auto r = configureMutualTls(&ctx, tls, true);
    if (!r) {
      tls_error = r.error().describe();
    } else if (client_cert_optional) {
      // A browser has no client certificate: it is asked for one, may send none, and signs
      // in instead; a certificate that is sent must still verify against the CA.
      SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, nullptr);
    }
    return r.has_value();
  });
  if (!s.server->is_valid()) {
    return fail(ErrorCode::InvalidArgument, "TLS setup failed: " + tls_error);
  }
  s.server->set_tcp_nodelay(true);
  s.server->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.server->set_keep_alive_max_count(requests_per_connection);
  s.server->set_keep_alive_timeout(keep_alive_s);
  return s;
}

Result<void> bindHttps(HttpsServer& s, const std::string& host, int port) {
  int listen_fd = -1;
  s.server->set_socket_options([&listen_fd](int sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd = sock;
  });
  const int bound = port == 0 ? s.server->bind_to_any_port(host)
                              : (s.server->bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return fail(ErrorCode::Io, "Cannot listen on " + host + ":" + std::to_string(port));
  }
  if (listen_fd >= 0) {
    ::listen(listen_fd, SOMAXCONN);
  }
  s.bound_port = bound;
  return {};
}

void blockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void serveUntilSignal(HttpsServer& s, const std::function<void()>& on_signal) {
  // A client that hangs up mid-answer must not end the process (OpenSSL writes with write(2)).
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::atomic<bool> listen_done{false};
  httplib::SSLServer* server = s.server.get();
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set, &sig);
    if (on_signal) {
      on_signal();
    }
    // cpp-httplib's stop() does nothing to a server whose accept loop has not begun: a signal
    // that came that early stops it as soon as it runs.
    while (!listen_done.load()) {
      if (server->is_running()) {
        server->stop();
        break;
      }
      std::this_thread::yield();
    }
  });
  server->listen_after_bind();
  listen_done.store(true);
  // listen_after_bind returned: a signal stopped it or it failed; make sure the waiter ends.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
}

}  // namespace vandra::pki
