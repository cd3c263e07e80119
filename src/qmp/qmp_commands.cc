// Command catalogue: timeout table and reply parsers. Parsers check every type before reading
// (nlohmann::json would throw otherwise) and never trust QEMU's reply shape.
#include "qmp_commands.h"

namespace vandra::qmp {
namespace {

using nlohmann::json;

Unexpected badReply(std::string_view cmd, std::string_view what) {
  return fail(ErrorCode::QmpProtocol, "Reply to " + std::string(cmd) + " " + std::string(what));
}

}  // namespace

std::chrono::milliseconds timeoutFor(std::string_view name) {
  if (name.starts_with("query-")) {
    return kQueryTimeout;
  }
  if (name == "blockdev-add" || name == "device_add") {
    return kBlockdevAddTimeout;
  }
  if (name == "blockdev-mirror" || name == "drive-mirror" || name == "blockdev-del" ||
      name == "block-job-cancel") {
    return kLongBlockTimeout;
  }
  return kDefaultTimeout;
}

QmpCommand makeCommand(std::string name, nlohmann::json args) {
  QmpCommand c;
  c.timeout = timeoutFor(name);
  c.name = std::move(name);
  c.args = std::move(args);
  return c;
}

Result<QueryStatus::Reply> QueryStatus::parse(const json& ret) {
  if (!ret.is_object()) {
    return badReply(kName, "is not an object");
  }
  auto running = ret.find("running");
  auto status = ret.find("status");
  if (running == ret.end() || !running->is_boolean() || status == ret.end() ||
      !status->is_string()) {
    return badReply(kName, "lacks boolean 'running' / string 'status'");
  }
  return Reply{running->get<bool>(), status->get<std::string>()};
}

Result<QueryVersion::Reply> QueryVersion::parse(const json& ret) {
  if (!ret.is_object()) {
    return badReply(kName, "is not an object");
  }
  auto qemu = ret.find("qemu");
  if (qemu == ret.end() || !qemu->is_object()) {
    return badReply(kName, "lacks the 'qemu' object");
  }
  Reply r;
  for (auto [key, out] :
       {std::pair{"major", &r.major}, std::pair{"minor", &r.minor}, std::pair{"micro", &r.micro}}) {
    auto v = qemu->find(key);
    if (v == qemu->end() || !v->is_number_integer()) {
      return badReply(kName, std::string("lacks integer qemu.") + key);
    }
    *out = v->get<int>();
  }
  if (auto p = ret.find("package"); p != ret.end() && p->is_string()) {
    r.package = p->get<std::string>();
  }
  return r;
}

Result<Quit::Reply> Quit::parse(const json& /*ret*/) {
  return Reply{};
}

}  // namespace vandra::qmp
