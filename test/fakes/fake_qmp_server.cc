// Scripted QMP peer. One server thread: accept (poll with a stop eventfd), greeting,
// handshake, script steps in order, then reads until the client leaves; anything the script
// did not expect becomes a recorded failure. No sleeps: every wait is poll(2) or a condvar.
#include "fake_qmp_server.h"

#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace vandra::testing {

using nlohmann::json;

Result<std::unique_ptr<FakeQmpServer>> FakeQmpServer::create(Options options) {
  auto s = std::make_unique<FakeQmpServer>();
  s->options_ = std::move(options);
  std::array<char, 32> tmpl{};
  std::strncpy(tmpl.data(), "/tmp/vq-XXXXXX", tmpl.size() - 1);
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return fail(Error::fromErrno("mkdtemp failed"));
  }
  s->dir_ = tmpl.data();
  s->socket_path_ = s->dir_ + "/qmp.sock";
  s->listen_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s->listen_.valid()) {
    return fail(Error::fromErrno("socket failed"));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, s->socket_path_.c_str(), sizeof(addr.sun_path) - 1);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): sockaddr API
  if (::bind(s->listen_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(s->listen_.get(), 4) != 0) {
    return fail(Error::fromErrno("bind/listen on " + s->socket_path_ + " failed"));
  }
  s->wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->wake_.valid()) {
    return fail(Error::fromErrno("eventfd failed"));
  }
  return s;
}

FakeQmpServer::~FakeQmpServer() {
  (void)finish();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

FakeQmpServer& FakeQmpServer::expect(std::string name, std::optional<json> args) {
  steps_.push_back({StepKind::Expect, std::move(name), "", std::move(args), std::nullopt});
  return *this;
}
FakeQmpServer& FakeQmpServer::expectOob(std::string name, std::optional<json> args) {
  expect(std::move(name), std::move(args));
  steps_.back().oob = true;
  return *this;
}
json FakeQmpServer::handshakeArguments() {
  std::lock_guard lock(mu_);
  return handshake_args_;
}
FakeQmpServer& FakeQmpServer::reply(json ret, std::optional<size_t> index) {
  steps_.push_back({StepKind::Reply, "", "", std::move(ret), index});
  return *this;
}
FakeQmpServer& FakeQmpServer::replyError(std::string cls, std::string desc,
                                         std::optional<size_t> index) {
  steps_.push_back({StepKind::ReplyError, std::move(cls), std::move(desc), std::nullopt, index});
  return *this;
}
FakeQmpServer& FakeQmpServer::event(std::string name, json data) {
  steps_.push_back({StepKind::Event, std::move(name), "", std::move(data), std::nullopt});
  return *this;
}
FakeQmpServer& FakeQmpServer::raw(std::string bytes) {
  steps_.push_back({StepKind::Raw, "", std::move(bytes), std::nullopt, std::nullopt});
  return *this;
}
FakeQmpServer& FakeQmpServer::gate(std::string name) {
  steps_.push_back({StepKind::Gate, std::move(name), "", std::nullopt, std::nullopt});
  return *this;
}
FakeQmpServer& FakeQmpServer::hangUp() {
  steps_.push_back({StepKind::HangUp, "", "", std::nullopt, std::nullopt});
  return *this;
}

void FakeQmpServer::start() {
  thread_ = std::thread([this] { run(); });
}

void FakeQmpServer::release(const std::string& name) {
  {
    std::lock_guard lock(mu_);
    released_.insert(name);
  }
  cv_.notify_all();
}

bool FakeQmpServer::waitForCommands(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return received_ >= n || stopped_; }) && received_ >= n;
}

bool FakeQmpServer::waitScriptDone(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return script_done_; });
}

std::vector<std::string> FakeQmpServer::finish() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  const uint64_t one = 1;
  (void)::write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) {
    thread_.join();
  }
  std::lock_guard lock(mu_);
  return failures_;
}

void FakeQmpServer::addFailure(std::string f) {
  std::lock_guard lock(mu_);
  failures_.push_back(std::move(f));
}

bool FakeQmpServer::writeAll(int conn, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(conn, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;  // the client went away; a test checks what the client saw
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

std::optional<std::string> FakeQmpServer::readLine(int conn) {
  while (true) {
    const size_t nl = inbuf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = inbuf_.substr(0, nl);
      inbuf_.erase(0, nl + 1);
      return line;
    }
    std::array<pollfd, 2> fds{pollfd{conn, POLLIN, 0}, pollfd{wake_.get(), POLLIN, 0}};
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return std::nullopt;
    }
    if (fds[1].revents != 0) {
      return std::nullopt;
    }
    std::array<char, 4096> buf{};
    const ssize_t n = ::recv(conn, buf.data(), buf.size(), 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) {
        continue;
      }
      return std::nullopt;
    }
    inbuf_.append(buf.data(), static_cast<size_t>(n));
  }
}

void FakeQmpServer::run() {
  std::array<pollfd, 2> fds{pollfd{listen_.get(), POLLIN, 0}, pollfd{wake_.get(), POLLIN, 0}};
  while (::poll(fds.data(), fds.size(), -1) < 0 && errno == EINTR) {
  }
  if (fds[1].revents != 0 || fds[0].revents == 0) {
    std::lock_guard lock(mu_);
    if (!steps_.empty()) {
      failures_.push_back("no client connected");
    }
    return;
  }
  UniqueFd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) {
    addFailure(std::string("accept failed: ") + std::strerror(errno));
    return;
  }
  const bool keep_reading = runScript(conn.get());
  {
    std::lock_guard lock(mu_);
    script_done_ = true;
  }
  cv_.notify_all();
  if (!keep_reading) {
    return;
  }
  // After the script: anything but end-of-file is unexpected.
  while (auto line = readLine(conn.get())) {
    addFailure("unexpected command after the script: " + *line);
  }
}

bool FakeQmpServer::runScript(int conn) {
  if (!options_.silent) {
    json greeting = options_.greeting.value_or(json::parse(
        R"({"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"},
            "capabilities": ["oob"]})"));
    if (!writeAll(conn, json{{"QMP", greeting}}.dump() + "\r\n")) {
      addFailure("client left before the greeting");
      return false;
    }
  }
  if (options_.handshake) {
    auto line = readLine(conn);
    json j = line ? json::parse(*line, nullptr, false) : json();
    if (!j.is_object() || j.value("execute", "") != "qmp_capabilities") {
      addFailure("expected qmp_capabilities, got " + line.value_or("<end of stream>"));
      return false;
    }
    {
      std::lock_guard lock(mu_);
      handshake_args_ = j.contains("arguments") ? j["arguments"] : json::object();
    }
    json r{{"return", json::object()}};
    if (j.contains("id")) {
      r["id"] = j["id"];
    }
    writeAll(conn, r.dump() + "\r\n");
  }
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& st = steps_[i];
    const std::string where = "step " + std::to_string(i) + ": ";
    switch (st.kind) {
      case StepKind::Expect: {
        auto line = readLine(conn);
        if (!line) {
          addFailure(where + "expected " + st.name + ", got end of stream");
          return false;
        }
        json j = json::parse(*line, nullptr, false);
        const char* key = st.oob ? "exec-oob" : "execute";
        if (!j.is_object() || !j.contains(key) || !j[key].is_string()) {
          addFailure(where + "expected " + key + " " + st.name + ", got " + *line);
          return false;
        }
        const std::string got = j[key].get<std::string>();
        if (got != st.name) {
          addFailure(where + "expected " + st.name + ", got unexpected command " + got);
          return false;
        }
        if (st.json) {
          const json args = j.contains("arguments") ? j["arguments"] : json::object();
          if (args != *st.json) {
            addFailure(where + st.name + " arguments " + args.dump() + " != " + st.json->dump());
          }
        }
        ids_.push_back(j.contains("id") ? j["id"] : json());
        answered_.push_back(false);
        {
          std::lock_guard lock(mu_);
          ++received_;
        }
        cv_.notify_all();
        break;
      }
      case StepKind::Reply:
      case StepKind::ReplyError: {
        size_t idx = 0;
        if (st.index) {
          idx = *st.index;
        } else {
          while (idx < answered_.size() && answered_[idx]) {
            ++idx;
          }
        }
        if (idx >= ids_.size()) {
          addFailure(where + "script replies to command " + std::to_string(idx) +
                     " that has not arrived");
          return false;
        }
        answered_[idx] = true;
        json r = st.kind == StepKind::Reply
                     ? json{{"return", *st.json}}
                     : json{{"error", {{"class", st.name}, {"desc", st.text}}}};
        if (!ids_[idx].is_null()) {
          r["id"] = ids_[idx];
        }
        writeAll(conn, r.dump() + "\r\n");
        break;
      }
      case StepKind::Event: {
        json e{{"event", st.name},
               {"data", *st.json},
               {"timestamp",
                {{"seconds", 1700000000 + static_cast<int64_t>(i)}, {"microseconds", 42}}}};
        writeAll(conn, e.dump() + "\r\n");
        break;
      }
      case StepKind::Raw:
        writeAll(conn, st.text);
        break;
      case StepKind::Gate: {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return released_.count(st.name) > 0 || stopped_; });
        if (released_.count(st.name) == 0) {
          failures_.push_back(where + "gate " + st.name + " never released");
          return false;
        }
        break;
      }
      case StepKind::HangUp:
        ::shutdown(conn, SHUT_RDWR);
        if (i + 1 < steps_.size()) {
          addFailure(where + "steps after hangUp() never run");
        }
        return false;
    }
  }
  return true;
}

}  // namespace vandra::testing
