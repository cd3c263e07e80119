#include "vandra/agent/epoch_fence.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <fstream>

#include "vandra/agent/http_api.h"
#include "vandra/common/unique_fd.h"

namespace vandra::agent {
namespace {

Result<int64_t> parseEpoch(const std::string& text, const std::string& what) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || text.size() > 18 || ec != std::errc() || p != end || v < 0) {
    return fail(ErrorCode::InvalidArgument,
                what + " '" + text.substr(0, 40) + "' is not a whole number of at most 18 digits");
  }
  return v;
}

// Written to a temporary file, synced, then renamed: a crash leaves the old or the new value.
Result<void> record(const std::string& path, int64_t epoch) {
  if (auto r = replaceFile(path, std::to_string(epoch) + "\n"); !r) {
    Error e = r.error();
    e.message = "Cannot record the controller epoch in " + path + ": " + e.message;
    return fail(std::move(e));
  }
  return {};
}

}  // namespace

Result<EpochFence> EpochFence::open(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return EpochFence(path, 0);
  }
  std::string text;
  std::getline(in, text);
  VANDRA_TRY_ASSIGN(auto v, parseEpoch(text, "The controller epoch in " + path));
  return EpochFence(path, v);
}

EpochFence::EpochFence(EpochFence&& other) noexcept
    : path_(std::move(other.path_)), highest_(other.highest_) {}

int64_t EpochFence::highest() const {
  std::lock_guard lock(mu_);
  return highest_;
}

Result<void> EpochFence::admit(std::optional<int64_t> epoch) {
  if (!epoch) {
    return {};
  }
  std::lock_guard lock(mu_);
  if (*epoch < highest_) {
    return fail(ErrorCode::StaleEpoch, "Controller epoch " + std::to_string(*epoch) +
                                           " is older than epoch " + std::to_string(highest_) +
                                           " this agent has seen: that controller no longer leads");
  }
  if (*epoch > highest_) {
    VANDRA_TRY(record(path_, *epoch));
    highest_ = *epoch;
  }
  return {};
}

Result<std::optional<int64_t>> requestEpoch(const httplib::Request& req) {
  if (!req.has_header("X-Vandra-Epoch")) {
    return std::optional<int64_t>();
  }
  VANDRA_TRY_ASSIGN(auto v, parseEpoch(req.get_header_value("X-Vandra-Epoch"), "X-Vandra-Epoch"));
  return std::optional<int64_t>(v);
}

bool refuseUnfenced(const httplib::Request& req, httplib::Response& res, EpochFence& fence) {
  if (req.method == "GET" || req.method == "HEAD") {
    return false;
  }
  auto epoch = requestEpoch(req);
  auto admitted = epoch ? fence.admit(*epoch) : Result<void>(fail(epoch.error()));
  if (admitted) {
    return false;
  }
  sendError(res, admitted.error());
  return true;
}

void installEpochFence(httplib::Server& server, EpochFence& fence) {
  server.set_pre_routing_handler([&fence](const httplib::Request& req, httplib::Response& res) {
    return refuseUnfenced(req, res, fence) ? httplib::Server::HandlerResponse::Handled
                                           : httplib::Server::HandlerResponse::Unhandled;
  });
}

}  // namespace vandra::agent
