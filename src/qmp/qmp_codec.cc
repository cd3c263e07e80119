// QMP line framing and message classification. Must not do I/O or throw: every JSON access
// checks the type first, parsing uses allow_exceptions=false and dumping replaces bad UTF-8.
#include "qmp_codec.h"

#include <limits>

namespace vandra::qmp {
namespace {

using nlohmann::json;

Unexpected protocol(std::string what) {
  return fail(ErrorCode::QmpProtocol, std::move(what));
}

// Returns obj[key] when obj has it, else nullptr.
const json* member(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::optional<int> smallInt(const json* v) {
  if (v == nullptr || !v->is_number_integer()) {
    return std::nullopt;
  }
  const auto n = v->get<int64_t>();
  if (n < 0 || n > std::numeric_limits<int>::max()) {
    return std::nullopt;
  }
  return static_cast<int>(n);
}

std::string shortDump(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 200) {
    s.resize(200);
    s += "...";
  }
  return s;
}

Result<QmpGreeting> decodeGreeting(const json& qmp) {
  if (!qmp.is_object()) {
    return protocol("QMP greeting is not an object");
  }
  const json* version = member(qmp, "version");
  const json* qemu =
      version != nullptr && version->is_object() ? member(*version, "qemu") : nullptr;
  if (qemu == nullptr || !qemu->is_object()) {
    return protocol("QMP greeting has no version.qemu object");
  }
  QmpGreeting g;
  auto major = smallInt(member(*qemu, "major"));
  auto minor = smallInt(member(*qemu, "minor"));
  auto micro = smallInt(member(*qemu, "micro"));
  if (!major || !minor || !micro) {
    return protocol("QMP greeting version.qemu lacks integer major/minor/micro");
  }
  g.major = *major;
  g.minor = *minor;
  g.micro = *micro;
  if (const json* pkg = member(*version, "package"); pkg != nullptr && pkg->is_string()) {
    g.package = pkg->get<std::string>();
  }
  const json* caps = member(qmp, "capabilities");
  if (caps == nullptr || !caps->is_array()) {
    return protocol("QMP greeting has no capabilities array");
  }
  for (const auto& c : *caps) {
    if (c.is_string()) {
      g.capabilities.push_back(c.get<std::string>());
    }
  }
  return g;
}

Result<std::optional<std::string>> decodeId(const json& obj) {
  const json* id = member(obj, "id");
  if (id == nullptr) {
    return std::optional<std::string>();
  }
  if (!id->is_string()) {
    // vandra only sends string ids, so anything else cannot answer one of ours.
    return protocol("QMP reply id is not a string: " + shortDump(*id));
  }
  return std::optional<std::string>(id->get<std::string>());
}

}  // namespace

Result<void> LineFramer::append(std::string_view bytes) {
  // Compact first so the buffer holds at most one partial line plus this read.
  if (start_ > 0) {
    buf_.erase(0, start_);
    tail_ -= start_;
    start_ = 0;
  }
  const size_t scan_from = buf_.size();
  buf_.append(bytes);
  // Only the new bytes are scanned: linear in the stream, whatever the chunking.
  for (size_t nl = buf_.find('\n', scan_from); nl != std::string::npos;
       nl = buf_.find('\n', nl + 1)) {
    if (nl - tail_ > max_) {
      return fail(ErrorCode::LimitExceeded,
                  "QMP line longer than " + std::to_string(max_) + " bytes");
    }
    tail_ = nl + 1;
  }
  if (buf_.size() - tail_ > max_) {
    return fail(ErrorCode::LimitExceeded,
                "QMP line longer than " + std::to_string(max_) + " bytes");
  }
  return {};
}

std::optional<std::string> LineFramer::next() {
  if (start_ >= tail_) {
    return std::nullopt;  // only a partial line (or nothing) is buffered
  }
  const size_t nl = buf_.find('\n', start_);  // exists: tail_ is just past a newline
  std::string line = buf_.substr(start_, nl - start_);
  start_ = nl + 1;
  if (!line.empty() && line.back() == '\r') {
    line.pop_back();
  }
  return line;
}

std::string_view toString(MessageKind k) {
  switch (k) {
    case MessageKind::Greeting:
      return "greeting";
    case MessageKind::Return:
      return "return";
    case MessageKind::Error:
      return "error";
    case MessageKind::Event:
      return "event";
  }
  return "unknown";
}

Result<QmpMessage> decodeMessage(std::string_view line) {
  json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    std::string head(line.substr(0, 80));
    return protocol("QMP sent a line that is not JSON: '" + head + "'");
  }
  if (!j.is_object()) {
    return protocol("QMP message is not a JSON object: " + shortDump(j));
  }
  QmpMessage m;
  if (const json* qmp = member(j, "QMP")) {
    m.kind = MessageKind::Greeting;
    VANDRA_TRY_ASSIGN(m.greeting, decodeGreeting(*qmp));
    m.value = *qmp;
    return m;
  }
  if (const json* ret = member(j, "return")) {
    m.kind = MessageKind::Return;
    VANDRA_TRY_ASSIGN(m.id, decodeId(j));
    m.value = *ret;
    return m;
  }
  if (const json* err = member(j, "error")) {
    m.kind = MessageKind::Error;
    VANDRA_TRY_ASSIGN(m.id, decodeId(j));
    if (!err->is_object()) {
      return protocol("QMP error member is not an object: " + shortDump(*err));
    }
    const json* cls = member(*err, "class");
    const json* desc = member(*err, "desc");
    if (cls == nullptr || !cls->is_string() || desc == nullptr || !desc->is_string()) {
      return protocol("QMP error lacks string class/desc: " + shortDump(*err));
    }
    m.error_class = cls->get<std::string>();
    m.error_desc = desc->get<std::string>();
    return m;
  }
  if (const json* ev = member(j, "event")) {
    if (!ev->is_string()) {
      return protocol("QMP event name is not a string: " + shortDump(*ev));
    }
    m.kind = MessageKind::Event;
    m.event.name = ev->get<std::string>();
    const json* data = member(j, "data");
    m.event.data = data != nullptr && data->is_object() ? *data : json::object();
    if (const json* ts = member(j, "timestamp"); ts != nullptr && ts->is_object()) {
      const json* s = member(*ts, "seconds");
      const json* us = member(*ts, "microseconds");
      if (s != nullptr && s->is_number_integer()) {
        m.event.seconds = s->get<int64_t>();
      }
      if (us != nullptr && us->is_number_integer()) {
        m.event.microseconds = us->get<int64_t>();
      }
    }
    return m;
  }
  return protocol("QMP message is neither greeting, return, error nor event: " + shortDump(j));
}

std::string encodeCommand(std::string_view name, const nlohmann::json& args, std::string_view id,
                          bool out_of_band) {
  json cmd = json::object();
  cmd[out_of_band ? "exec-oob" : "execute"] = std::string(name);
  if (!args.is_null() && !(args.is_object() && args.empty())) {
    cmd["arguments"] = args;
  }
  cmd["id"] = std::string(id);
  std::string out = cmd.dump(-1, ' ', false, json::error_handler_t::replace);
  out += '\n';
  return out;
}

}  // namespace vandra::qmp
