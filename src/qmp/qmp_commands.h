// QMP command catalogue: per-command timeouts (Proxmox's table) and typed descriptors
// {name, arguments, reply parser, timeout} for the commands vandra uses. Pure: builds and
// parses JSON, never talks to a socket.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "vandra/common/result.h"
#include "vandra/qmp/qmp_client.h"

namespace vandra::qmp {

/// Reply timeouts. Rationale: queries answer from memory (5 s covers a loaded host);
/// blockdev-add opens image files (60 s for slow/remote storage); mirror start, blockdev-del
/// and job cancel may flush or drain large in-flight I/O (10 min); the rest 30 s.
inline constexpr std::chrono::milliseconds kQueryTimeout{5'000};
inline constexpr std::chrono::milliseconds kBlockdevAddTimeout{60'000};
inline constexpr std::chrono::milliseconds kLongBlockTimeout{600'000};
inline constexpr std::chrono::milliseconds kDefaultTimeout{30'000};

/// The catalogue timeout for command @p name.
std::chrono::milliseconds timeoutFor(std::string_view name);

/// A typed command: Cmd::name, Cmd::command(...) -> QmpCommand, Cmd::parse(json) -> Reply.
/// Use with execute<Cmd>(client, ...).
struct QueryStatus {
  static constexpr std::string_view kName = "query-status";
  struct Reply {
    bool running = false;
    std::string status;  // RunState: "prelaunch", "paused", "running", "inmigrate", ...
  };
  static QmpCommand command() { return makeCommand(std::string(kName)); }
  [[nodiscard]] static Result<Reply> parse(const nlohmann::json& ret);
};

struct QueryVersion {
  static constexpr std::string_view kName = "query-version";
  struct Reply {
    int major = 0;
    int minor = 0;
    int micro = 0;
    std::string package;
  };
  static QmpCommand command() { return makeCommand(std::string(kName)); }
  [[nodiscard]] static Result<Reply> parse(const nlohmann::json& ret);
};

struct Quit {
  static constexpr std::string_view kName = "quit";
  struct Reply {};
  static QmpCommand command() { return makeCommand(std::string(kName)); }
  [[nodiscard]] static Result<Reply> parse(const nlohmann::json& ret);
};

/// Sends a typed command and parses its reply. Errors: those of QmpClient::execute, plus
/// QmpProtocol when the reply does not have the documented shape.
template <class Cmd, class... Args>
[[nodiscard]] Result<typename Cmd::Reply> execute(QmpClient& client, Args&&... args) {
  VANDRA_TRY_ASSIGN(auto ret, client.execute(Cmd::command(std::forward<Args>(args)...)));
  return Cmd::parse(ret);
}

}  // namespace vandra::qmp
