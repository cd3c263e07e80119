// Fencing of controllers: every command a controller sends carries its leadership epoch
// (header X-Vandra-Epoch, db/database.h's lease). The agent keeps the highest epoch it has
// seen, on disk before it answers, and refuses a change that carries a lower one (StaleEpoch,
// HTTP 409): a deposed leader that wakes up cannot act. Reads are never fenced, and a request
// without the header (an operator talking to the agent directly) is not a controller's.
//
//   change with epoch e:  e < seen ──► 409 stale_epoch, nothing done
//                         e = seen ──► allowed
//                         e > seen ──► seen := e (written, fsync'd), allowed
#pragma once

#include <httplib.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "vandra/common/result.h"

namespace vandra::agent {

class EpochFence {
 public:
  /// Keeps the highest epoch in @p path (created on the first epoch seen). Errors: Io, and
  /// InvalidArgument for a file that does not hold a number.
  [[nodiscard]] static Result<EpochFence> open(const std::string& path);

  /// Admits a change carrying @p epoch (nullopt: no header). Errors: StaleEpoch, Io (could not
  /// record a higher one: refused, as it could not be remembered).
  [[nodiscard]] Result<void> admit(std::optional<int64_t> epoch);
  int64_t highest() const;

  EpochFence(EpochFence&& other) noexcept;

 private:
  explicit EpochFence(std::string path, int64_t highest)
      : path_(std::move(path)), highest_(highest) {}
  std::string path_;
  mutable std::mutex mu_;
  int64_t highest_ = 0;
};

/// The epoch a request carries: nullopt without the header. Errors: InvalidArgument (not a
/// whole number of at most 18 digits).
[[nodiscard]] Result<std::optional<int64_t>> requestEpoch(const httplib::Request& req);

/// For a pre-routing handler: checks a change (POST, PUT, PATCH, DELETE) against @p fence and,
/// when it may not run, answers it (409 stale_epoch, or 400 for a malformed header) and returns
/// true. Reads pass.
bool refuseUnfenced(const httplib::Request& req, httplib::Response& res, EpochFence& fence);

/// Makes @p server check every change against @p fence before any route runs (a server with
/// no other pre-routing handler; the agent's registerRoutes takes the fence instead). @p fence
/// must outlive the server.
void installEpochFence(httplib::Server& server, EpochFence& fence);

}  // namespace vandra::agent
