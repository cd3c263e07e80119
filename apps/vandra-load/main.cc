// vandra-load: a load generator for the agent API (vandrad) over mutual TLS 1.3. It opens
// --concurrency client connections (one thread each, keep-alive), issues GET requests back to
// back over the --path list (round robin across all requests), records the latency of every
// response and prints count, errors by kind, throughput and latency percentiles.
//
// With --watchers N it also holds N event streams open (GET --watch-path, server-sent events,
// as N consoles watching a migration) for the whole run, each on its own connection and
// thread, opened before the measured window, and reports what they received.
//
// Exit: 0 every request answered 2xx; 1 some requests failed (results still printed);
// 2 bad usage or unreadable certificate files; 3 the agent could not be reached or refused
// the TLS handshake before the load started.
#include <httplib.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <latch>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "load_stats.h"
#include "vandra/pki/tls.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using namespace vandra::load;

struct Options {
  std::string agent = "127.0.0.1:8443";
  std::string ca;
  std::string cert;
  std::string key;
  int concurrency = 200;
  uint64_t requests = 0;
  double duration_s = 0;
  std::vector<std::string> paths;
  int timeout_s = 30;
  bool json = false;
  /// 0: requests back to back (closed loop). N: each client sends one request every N ms, at
  /// times fixed in advance (staggered over the clients); latency is measured from the time a
  /// request was due, so a server that falls behind is charged for the wait it causes.
  int interval_ms = 0;
  /// Each client opens its connection (TLS handshake and one request) before the measured
  /// window; those first requests are reported apart ("connect"), failures counted as errors.
  bool connect_first = false;
  /// Event streams held open during the run (consoles watching), and their path.
  int watchers = 0;
  std::string watch_path = "/v1/stream";
};

// One watcher: a stream held open, what it received.
struct Watcher {
  std::unique_ptr<httplib::SSLClient> client;
  std::thread thread;
  double first_chunk_ms = -1;  // from the request to the first bytes (-1: none)
  uint64_t events = 0;         // "event:" lines received during the measured window
  uint64_t bytes = 0;
  std::string error;
  std::string carry;  // the end of the last chunk: an "event:" split across two
};

struct Target {
  std::string host;
  int port = 0;
};

// A worker stops after this many transport failures in a row (the agent is gone); its
// failures stay counted.
constexpr int kMaxConsecutiveTransportErrors = 20;

struct WorkerResult {
  std::vector<std::vector<double>> latency_ms;  // per path index
  std::vector<double> new_connection_ms;        // requests that opened a connection first
  std::vector<double> reused_connection_ms;     // requests on a kept-alive connection
  double connect_ms = -1;                       // --connect-first: its first request
  ErrorTally errors;
  uint64_t tls_handshakes = 0;
  bool gave_up = false;
  double first_error_s = -1;  // seconds after the start; -1: none
  double last_error_s = -1;
};

std::optional<Target> parseAgent(const std::string& agent) {
  const auto colon = agent.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return std::nullopt;
  }
  Target t;
  t.host = agent.substr(0, colon);
  if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']') {
    t.host = t.host.substr(1, t.host.size() - 2);
  }
  try {
    size_t used = 0;
    t.port = std::stoi(agent.substr(colon + 1), &used);
    if (used != agent.size() - colon - 1 || t.port <= 0 || t.port > 65535) {
      return std::nullopt;
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return t;
}

// One mutual-TLS client as every vandra client is configured (src/pki/tls.cc: TLS 1.3 only,
// our certificate, the site CA and nothing else), plus httplib's own check of the agent's
// certificate chain and name. Keep-alive: one connection reused until the agent closes it.
std::unique_ptr<httplib::SSLClient> makeClient(const Options& o, const Target& t,
                                               std::string& error) {
  auto c = std::make_unique<httplib::SSLClient>(t.host, t.port, o.cert, o.key);
  if (!c->is_valid()) {
    error = "cannot load client certificate '" + o.cert + "' / key '" + o.key + "'";
    return nullptr;
  }
  auto r = vandra::pki::configureMutualTls(c->ssl_context(), {o.ca, o.cert, o.key, ""}, false);
  if (!r) {
    error = r.error().describe();
    return nullptr;
  }
  c->set_ca_cert_path(o.ca.c_str());
  c->enable_server_certificate_verification(true);
  c->set_keep_alive(true);
  c->set_tcp_nodelay(true);  // requests leave at once; any remaining Nagle stall is the server's
  c->set_connection_timeout(o.timeout_s, 0);
  c->set_read_timeout(o.timeout_s, 0);
  c->set_write_timeout(o.timeout_s, 0);
  return c;
}

// What a failed first request means, in words naming the part that failed.
std::string explainProbeFailure(httplib::Error e, const httplib::SSLClient& c, const Options& o) {
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect to " + o.agent +
             " (connection refused or host unreachable): is vandrad running there?";
    case httplib::Error::ConnectionTimeout:
      return "connecting to " + o.agent + " timed out after " + std::to_string(o.timeout_s) + " s";
    case httplib::Error::SSLConnection:
      return "TLS handshake with " + o.agent +
             " failed (the agent refused it, or it does not speak TLS 1.3): check --ca, --cert, "
             "--key";
    case httplib::Error::SSLServerVerification: {
      const long v = c.get_openssl_verify_result();
      return "the agent's certificate is not accepted: " +
             std::string(v != X509_V_OK
                             ? X509_verify_cert_error_string(v)
                             : "it does not name '" + o.agent.substr(0, o.agent.rfind(':')) + "'") +
             " (check --ca and --agent)";
    }
    case httplib::Error::SSLLoadingCerts:
      return "cannot load the CA certificate '" + o.ca + "'";
    case httplib::Error::Read:
    case httplib::Error::Write:
      // TLS 1.3: the server checks our certificate after the client has finished its side of
      // the handshake, so a refusal arrives as an alert on the first read.
      return "the agent closed the connection (" + httplib::to_string(e) +
             "): it probably refused our client certificate (check --cert/--key were issued by the "
             "agent's CA)";
    case httplib::Error::Success:
    case httplib::Error::Unknown:
    case httplib::Error::BindIPAddress:
    case httplib::Error::ExceedRedirectCount:
    case httplib::Error::Canceled:
    case httplib::Error::UnsupportedMultipartBoundaryChars:
    case httplib::Error::Compression:
      break;
  }
  return "request to " + o.agent + " failed: " + httplib::to_string(e);
}

std::string fmt(double v, int decimals) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(decimals) << v;
  return s.str();
}

json toJson(const LatencySummary& s) {
  auto r = [](double v) { return std::round(v * 1000) / 1000; };
  return {{"count", s.count},   {"min", r(s.min_ms)}, {"mean", r(s.mean_ms)}, {"p50", r(s.p50_ms)},
          {"p90", r(s.p90_ms)}, {"p99", r(s.p99_ms)}, {"max", r(s.max_ms)}};
}

void printLatencyLine(const std::string& label, const LatencySummary& s) {
  std::cout << "  " << std::left << std::setw(24) << label << std::right << std::setw(8) << s.count
            << std::setw(10) << fmt(s.p50_ms, 2) << std::setw(10) << fmt(s.p90_ms, 2)
            << std::setw(10) << fmt(s.p99_ms, 2) << std::setw(10) << fmt(s.max_ms, 2)
            << std::setw(10) << fmt(s.mean_ms, 2) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "vandra-load: concurrent GET load on the agent API over mutual TLS, with latency "
      "percentiles"};
  Options o;
  app.add_option("--agent", o.agent, "Agent address host:port")->capture_default_str();
  app.add_option("--ca", o.ca, "Site CA certificate (verifies the agent)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--cert", o.cert, "Client certificate issued by the site CA")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--key", o.key, "Client key")->required()->check(CLI::ExistingFile);
  app.add_option("--concurrency", o.concurrency, "Client connections, one thread each")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  auto* requests = app.add_option("--requests", o.requests,
                                  "Total requests over all connections (default 10000)")
                       ->check(CLI::PositiveNumber);
  app.add_option("--duration-s", o.duration_s, "Run for this long instead of a request count")
      ->check(CLI::PositiveNumber)
      ->excludes(requests);
  app.add_option("--path", o.paths, "Path to GET; repeat for several (used round robin)");
  app.add_option("--timeout-s", o.timeout_s, "Connect, read and write timeout per request")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_flag("--json", o.json, "Print one JSON object");
  app.add_flag("--connect-first", o.connect_first,
               "Open every connection (TLS handshake, one request) before the measured window; "
               "reported apart as \"connect\"");
  app.add_option("--watchers", o.watchers,
                 "Event streams held open during the run (GET --watch-path), one thread each")
      ->check(CLI::Range(0, 10000));
  app.add_option("--watch-path", o.watch_path, "Path of the event stream")->capture_default_str();
  app.add_option("--interval-ms", o.interval_ms,
                 "Each client sends one request every N ms (open loop); 0: back to back")
      ->check(CLI::Range(0, 60000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (o.paths.empty()) {
    o.paths = {"/v1/host"};
  }
  for (const auto& p : o.paths) {
    if (p.empty() || p.front() != '/') {
      std::cerr << "vandra-load: --path must start with '/', got '" << p << "'\n";
      return 2;
    }
  }
  if (o.requests == 0 && o.duration_s == 0) {
    o.requests = 10000;
  }
  const auto target = parseAgent(o.agent);
  if (!target) {
    std::cerr << "vandra-load: --agent: expected host:port, got '" << o.agent << "'\n";
    return 2;
  }

  // One request on each path first, on one connection: a wrong address or certificate ends
  // here with a message rather than as thousands of counted errors.
  {
    std::string error;
    auto probe = makeClient(o, *target, error);
    if (!probe) {
      std::cerr << "vandra-load: " << error << "\n";
      return 2;
    }
    for (const auto& p : o.paths) {
      auto r = probe->Get(p);
      if (!r) {
        std::cerr << "vandra-load: " << explainProbeFailure(r.error(), *probe, o) << "\n";
        return 3;
      }
      if (r->status < 200 || r->status > 299) {
        std::cerr << "vandra-load: warning: GET " << p << " answers HTTP " << r->status
                  << " (counted as errors)\n";
      }
    }
  }

  // The watchers first: each stream open and its first bytes in before any load.
  std::vector<Watcher> watchers(static_cast<size_t>(o.watchers));
  std::atomic<bool> counting{false};
  {
    std::latch opened(static_cast<std::ptrdiff_t>(watchers.size()));
    for (auto& w : watchers) {
      std::string error;
      w.client = makeClient(o, *target, error);
      if (!w.client) {
        std::cerr << "vandra-load: " << error << "\n";
        return 2;
      }
      w.client->set_read_timeout(3600, 0);  // a stream is quiet between events
      w.thread = std::thread([&w, &o, &opened, &counting] {
        bool first = true;
        const auto t0 = Clock::now();
        auto r = w.client->Get(o.watch_path, [&](const char* data, size_t len) {
          if (first) {
            first = false;
            w.first_chunk_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            opened.count_down();
          }
          w.bytes += len;
          const std::string text = w.carry + std::string(data, len);
          if (counting.load(std::memory_order_relaxed)) {
            // The carry holds 5 bytes: no whole "event:" in it is counted twice.
            for (size_t at = text.find("event:"); at != std::string::npos;
                 at = text.find("event:", at + 1)) {
              ++w.events;
            }
          }
          w.carry = text.substr(text.size() > 5 ? text.size() - 5 : 0);
          return true;
        });
        if (first) {
          w.error = r ? "HTTP " + std::to_string(r->status) : httplib::to_string(r.error());
          opened.count_down();
        }
      });
    }
    opened.wait();
  }
  size_t watchers_open = 0;
  for (const auto& w : watchers) {
    watchers_open += w.first_chunk_ms >= 0 ? 1 : 0;
  }
  counting.store(true);

  const size_t n = static_cast<size_t>(o.concurrency);
  std::vector<std::unique_ptr<httplib::SSLClient>> clients(n);
  for (auto& c : clients) {
    std::string error;
    c = makeClient(o, *target, error);
    if (!c) {
      std::cerr << "vandra-load: " << error << "\n";
      return 2;
    }
  }
  std::vector<WorkerResult> results(n);
  std::atomic<uint64_t> next{0};
  std::latch ready(static_cast<std::ptrdiff_t>(n) + 1);
  std::latch start(1);
  Clock::time_point began;
  Clock::time_point deadline = Clock::time_point::max();
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      WorkerResult& res = results[i];
      res.latency_ms.resize(o.paths.size());
      httplib::SSLClient& c = *clients[i];
      if (o.connect_first) {
        const auto c0 = Clock::now();
        auto r = c.Get(o.paths[i % o.paths.size()]);
        if (!r || r->status < 200 || r->status > 299) {
          ++res.errors[r ? "connect: HTTP " + std::to_string(r->status)
                         : "connect: " + httplib::to_string(r.error())];
        } else {
          res.connect_ms = std::chrono::duration<double, std::milli>(Clock::now() - c0).count();
        }
      }
      ready.count_down();
      start.wait();
      int consecutive_transport_errors = 0;
      uint64_t sent = 0;
      for (;;) {
        const uint64_t ticket = next.fetch_add(1, std::memory_order_relaxed);
        if (o.requests != 0 && ticket >= o.requests) {
          break;
        }
        if (Clock::now() >= deadline) {
          break;
        }
        const size_t path_index = ticket % o.paths.size();
        const long handshakes_before = SSL_CTX_sess_connect(c.ssl_context());
        auto t0 = Clock::now();
        if (o.interval_ms > 0) {
          const auto period = std::chrono::milliseconds(o.interval_ms);
          const auto due = began + period * static_cast<int64_t>(i) / static_cast<int64_t>(n) +
                           period * static_cast<int64_t>(sent);
          std::this_thread::sleep_until(due);  // the schedule, not synchronisation
          t0 = due;
        }
        ++sent;
        auto r = c.Get(o.paths[path_index]);
        const auto t1 = Clock::now();
        const bool new_connection = SSL_CTX_sess_connect(c.ssl_context()) != handshakes_before;
        if (!r || r->status < 200 || r->status > 299) {
          const double at = std::chrono::duration<double>(t1 - began).count();
          res.first_error_s = res.first_error_s < 0 ? at : res.first_error_s;
          res.last_error_s = at;
        }
        if (!r) {
          ++res.errors["transport: " + httplib::to_string(r.error())];
          if (++consecutive_transport_errors >= kMaxConsecutiveTransportErrors) {
            res.gave_up = true;
            break;
          }
          continue;
        }
        consecutive_transport_errors = 0;
        const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
        res.latency_ms[path_index].push_back(ms);
        (new_connection ? res.new_connection_ms : res.reused_connection_ms).push_back(ms);
        if (r->status < 200 || r->status > 299) {
          ++res.errors["HTTP " + std::to_string(r->status)];
        }
      }
      // Client-side handshakes started on this connection's context: the first connect plus
      // one per reconnect after the agent closed a keep-alive connection.
      res.tls_handshakes = static_cast<uint64_t>(SSL_CTX_sess_connect(c.ssl_context()));
      // Close now: an idle keep-alive connection left open would hold one of the agent's
      // server threads until its keep-alive timeout while other workers still run.
      clients[i].reset();
    });
  }
  ready.arrive_and_wait();
  began = Clock::now();
  if (o.duration_s > 0) {
    deadline = began + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(o.duration_s));
  }
  start.count_down();
  for (auto& t : threads) {
    t.join();
  }
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - began).count();
  counting.store(false);
  std::vector<double> first_chunks;
  uint64_t watch_events = 0;
  uint64_t watch_events_min = watchers.empty() ? 0 : UINT64_MAX;
  for (auto& w : watchers) {
    w.client->stop();  // ends the held request; the thread returns
    w.thread.join();
    if (w.first_chunk_ms >= 0) {
      first_chunks.push_back(w.first_chunk_ms);
      watch_events += w.events;
      watch_events_min = std::min(watch_events_min, w.events);
    }
  }

  std::vector<double> all;
  std::vector<std::vector<double>> per_path(o.paths.size());
  std::vector<double> on_new;
  std::vector<double> on_reused;
  std::vector<double> connects;
  ErrorTally errors;
  uint64_t handshakes = 0;
  size_t gave_up = 0;
  double first_error_s = -1;
  double last_error_s = -1;
  for (const auto& r : results) {
    for (size_t p = 0; p < r.latency_ms.size(); ++p) {
      per_path[p].insert(per_path[p].end(), r.latency_ms[p].begin(), r.latency_ms[p].end());
      all.insert(all.end(), r.latency_ms[p].begin(), r.latency_ms[p].end());
    }
    on_new.insert(on_new.end(), r.new_connection_ms.begin(), r.new_connection_ms.end());
    on_reused.insert(on_reused.end(), r.reused_connection_ms.begin(), r.reused_connection_ms.end());
    merge(errors, r.errors);
    if (r.connect_ms >= 0) {
      connects.push_back(r.connect_ms);
    }
    handshakes += r.tls_handshakes;
    gave_up += r.gave_up ? 1 : 0;
    if (r.first_error_s >= 0) {
      first_error_s =
          first_error_s < 0 ? r.first_error_s : std::min(first_error_s, r.first_error_s);
      last_error_s = std::max(last_error_s, r.last_error_s);
    }
  }
  const LatencySummary sum = summarize(all);
  const uint64_t failed = total(errors);
  uint64_t transport_failures = 0;
  for (const auto& [kind, count] : errors) {
    transport_failures += kind.rfind("transport:", 0) == 0 ? count : 0;
    transport_failures += kind.rfind("connect:", 0) == 0 ? count : 0;  // not in `sum` either
  }
  const uint64_t attempted = sum.count + transport_failures;
  const uint64_t ok = attempted - failed;

  if (o.json) {
    json j;
    j["agent"] = o.agent;
    j["concurrency"] = o.concurrency;
    j["paths"] = o.paths;
    j["duration_s"] = std::round(elapsed_s * 1000) / 1000;
    j["requests"] = attempted;
    j["ok"] = ok;
    j["errors"] = json::object();
    for (const auto& [kind, count] : errors) {
      j["errors"][kind] = count;
    }
    j["throughput_rps"] = std::round(throughput(sum.count, elapsed_s) * 10) / 10;
    j["latency_ms"] = toJson(sum);
    j["per_path"] = json::object();
    for (size_t p = 0; p < o.paths.size(); ++p) {
      j["per_path"][o.paths[p]] = toJson(summarize(per_path[p]));
    }
    if (failed > 0) {
      j["errors_between_s"] = {std::round(first_error_s * 1000) / 1000,
                               std::round(last_error_s * 1000) / 1000};
    }
    j["by_connection"] = {{"new", toJson(summarize(on_new))},
                          {"reused", toJson(summarize(on_reused))}};
    j["tls_handshakes"] = handshakes;
    if (o.connect_first) {
      j["connect_ms"] = toJson(summarize(connects));  // before the window, not in latency_ms
    }
    j["workers_gave_up"] = gave_up;
    if (!watchers.empty()) {
      j["watchers"] = {{"count", watchers.size()},
                       {"open", watchers_open},
                       {"first_event_ms", toJson(summarize(first_chunks))},
                       {"events", watch_events},
                       {"events_per_watcher_min", watch_events_min},
                       {"events_per_watcher_per_s_min",
                        std::round(static_cast<double>(watch_events_min) / elapsed_s * 100) / 100}};
    }
    std::cout << j.dump() << "\n";
  } else {
    std::cout << "vandra-load: " << o.agent << ", " << o.concurrency << " connections, "
              << fmt(elapsed_s, 2) << " s\n"
              << "requests " << attempted << " (ok " << ok << ", errors " << failed
              << "), throughput " << fmt(throughput(sum.count, elapsed_s), 1)
              << " req/s, TLS handshakes " << handshakes << "\n";
    for (const auto& [kind, count] : errors) {
      std::cout << "  error " << kind << ": " << count << "\n";
    }
    if (failed > 0) {
      std::cout << "  errors between " << fmt(first_error_s, 2) << " s and " << fmt(last_error_s, 2)
                << " s after the start\n";
    }
    if (gave_up > 0) {
      std::cout << "  " << gave_up << " connections stopped after "
                << kMaxConsecutiveTransportErrors << " transport failures in a row\n";
    }
    std::cout
        << "latency (ms)                count       p50       p90       p99       max      mean\n";
    printLatencyLine("all", sum);
    if (o.paths.size() > 1) {
      for (size_t p = 0; p < o.paths.size(); ++p) {
        printLatencyLine("GET " + o.paths[p], summarize(per_path[p]));
      }
    }
    printLatencyLine("on a new connection", summarize(on_new));
    printLatencyLine("on a kept-alive one", summarize(on_reused));
    if (o.connect_first) {
      printLatencyLine("connect (before the window)", summarize(connects));
    }
    if (!watchers.empty()) {
      std::cout << "watchers: " << watchers_open << " of " << watchers.size()
                << " streams open through the run, " << watch_events << " events, at least "
                << watch_events_min << " each ("
                << fmt(static_cast<double>(watch_events_min) / elapsed_s, 2) << "/s)\n";
      printLatencyLine("stream's first bytes", summarize(first_chunks));
    }
  }
  return failed == 0 && watchers_open == watchers.size() ? 0 : 1;
}
