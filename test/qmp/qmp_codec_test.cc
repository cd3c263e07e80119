// Tests for src/qmp/qmp_codec: line framing limits and message classification. Pure.
#include "qmp_codec.h"

#include <gtest/gtest.h>

namespace vandra::qmp {
namespace {

TEST(LineFramerTest, SplitsLinesAcrossChunksAndStripsCr) {
  LineFramer f(100);
  ASSERT_TRUE(f.append("{\"a\":1}\r\n{\"b\""));
  EXPECT_EQ(f.next(), std::optional<std::string>("{\"a\":1}"));
  EXPECT_EQ(f.next(), std::nullopt);
  EXPECT_EQ(f.pending(), 4u);
  ASSERT_TRUE(f.append(":2}\n"));
  EXPECT_EQ(f.next(), std::optional<std::string>("{\"b\":2}"));
  EXPECT_EQ(f.next(), std::nullopt);
}

TEST(LineFramerTest, RefusesOversizedCompleteLine) {
  LineFramer f(8);
  auto r = f.append(std::string(9, 'x') + "\n");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::LimitExceeded);
}

TEST(LineFramerTest, RefusesOversizedPartialLineAsSoonAsItArrives) {
  LineFramer f(8);
  ASSERT_TRUE(f.append("12345678"));  // exactly the limit, no newline yet
  auto r = f.append("9");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::LimitExceeded);
}

TEST(LineFramerTest, LineOfExactlyTheLimitIsAccepted) {
  LineFramer f(8);
  ASSERT_TRUE(f.append("12345678\n12345678\n"));
  EXPECT_EQ(f.next(), std::optional<std::string>("12345678"));
  EXPECT_EQ(f.next(), std::optional<std::string>("12345678"));
}

TEST(QmpCodecTest, ClassifiesGreeting) {
  auto m = decodeMessage(
      R"({"QMP": {"version": {"qemu": {"micro": 1, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}})");
  ASSERT_TRUE(m) << m.error().describe();
  EXPECT_EQ(m->kind, MessageKind::Greeting);
  EXPECT_EQ(m->greeting.major, 7);
  EXPECT_EQ(m->greeting.minor, 2);
  EXPECT_EQ(m->greeting.micro, 1);
  EXPECT_EQ(m->greeting.package, "Debian");
  EXPECT_EQ(m->greeting.capabilities, std::vector<std::string>{"oob"});
}

TEST(QmpCodecTest, GreetingWithoutVersionIsProtocolError) {
  for (const char* line :
       {R"({"QMP": {"capabilities": []}})",
        R"({"QMP": {"version": {"qemu": {"major": "7"}}, "capabilities": []}})",
        R"({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}}})",
        R"({"QMP": 3})"}) {
    auto m = decodeMessage(line);
    ASSERT_FALSE(m) << line;
    EXPECT_EQ(m.error().code, ErrorCode::QmpProtocol) << line;
  }
}

TEST(QmpCodecTest, ClassifiesReturnErrorEvent) {
  auto r = decodeMessage(R"({"return": {"status": "running"}, "id": "vq-3"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, MessageKind::Return);
  EXPECT_EQ(r->id, std::optional<std::string>("vq-3"));
  EXPECT_EQ(r->value["status"], "running");

  auto e = decodeMessage(R"({"error": {"class": "GenericError", "desc": "no"}, "id": "vq-4"})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, MessageKind::Error);
  EXPECT_EQ(e->error_class, "GenericError");
  EXPECT_EQ(e->error_desc, "no");

  auto ev = decodeMessage(R"({"event": "STOP", "timestamp": {"seconds": 12, "microseconds": 34}})");
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->kind, MessageKind::Event);
  EXPECT_EQ(ev->event.name, "STOP");
  EXPECT_TRUE(ev->event.data.is_object());
  EXPECT_EQ(ev->event.seconds, 12);
  EXPECT_EQ(ev->event.microseconds, 34);
}

TEST(QmpCodecTest, GarbageIsProtocolErrorNotException) {
  for (const char* line :
       {"not json", "{\"return\": ", "[1,2]", "42", "{}", R"({"return": {}, "id": 5})",
        R"({"error": "x"})", R"({"error": {"class": 1, "desc": "x"}})", R"({"event": 7})",
        "\xff\xfe"}) {
    auto m = decodeMessage(line);
    ASSERT_FALSE(m) << line;
    EXPECT_EQ(m.error().code, ErrorCode::QmpProtocol) << line;
  }
}

TEST(QmpCodecTest, EncodesCommandWithIdAndOptionalArguments) {
  auto plain =
      nlohmann::json::parse(encodeCommand("query-status", nlohmann::json::object(), "vq-1"));
  EXPECT_EQ(plain, nlohmann::json::parse(R"({"execute": "query-status", "id": "vq-1"})"));
  const std::string line = encodeCommand("stop", {{"x", "\xff"}}, "vq-2");
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // exactly one line
  auto j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["id"], "vq-2");
  EXPECT_TRUE(j["arguments"]["x"].is_string());  // invalid UTF-8 replaced, not thrown
}

TEST(LineFramerTest, LargestAllowedLineInSmallChunks) {
  // 16 MiB in 64 KiB reads: only new bytes are scanned, so this stays linear.
  constexpr size_t kMax = 16 * 1024 * 1024;
  LineFramer f(kMax);
  const std::string chunk(64 * 1024, 'x');
  for (size_t n = 0; n < kMax; n += chunk.size()) {
    ASSERT_TRUE(f.append(chunk)) << n;
    ASSERT_EQ(f.next(), std::nullopt);
  }
  ASSERT_TRUE(f.append("\n"));
  auto line = f.next();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->size(), kMax);
}

TEST(QmpCodecTest, MutatedMessagesNeverThrowOrCrash) {
  // Deterministic mutations of valid messages (no fuzzing engine needed in the unit build).
  const std::vector<std::string> seeds = {
      R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}})",
      R"({"return": {"running": true, "status": "running"}, "id": "vq-1"})",
      R"({"error": {"class": "GenericError", "desc": "x"}, "id": "vq-2"})",
      R"({"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}})"};
  uint32_t state = 12345;
  auto rnd = [&state] {
    state = state * 1103515245U + 12345U;
    return state >> 8;
  };
  size_t ok = 0;
  for (int i = 0; i < 8000; ++i) {
    std::string m = seeds[rnd() % seeds.size()];
    const int edits = 1 + static_cast<int>(rnd() % 4);
    for (int e = 0; e < edits && !m.empty(); ++e) {
      const size_t pos = rnd() % m.size();
      switch (rnd() % 3) {
        case 0:
          m[pos] = static_cast<char>(rnd() & 0xff);
          break;
        case 1:
          m.erase(pos, 1 + rnd() % 8);
          break;
        default:
          m.insert(pos, m.substr(rnd() % m.size(), rnd() % 16));
          break;
      }
    }
    auto r = decodeMessage(m);  // must return, never throw
    if (r) {
      ++ok;
    } else {
      EXPECT_EQ(r.error().code, ErrorCode::QmpProtocol) << m;
    }
  }
  EXPECT_GT(ok, 0u);  // some mutations stay valid: the classifier is exercised both ways
}

}  // namespace
}  // namespace vandra::qmp
