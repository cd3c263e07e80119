// Tests for src/tunnel/control: every message round-trips, and the decoder refuses unknown
// members, wrong types, out-of-range numbers, long strings, bad ids, oversized text and
// nesting bombs with the right code and a message naming the member.
#include "vandra/tunnel/control.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>

namespace vandra::tunnel {
namespace {

using nlohmann::json;

const std::string kDigest(64, 'a');

Preflight samplePreflight() {
  Preflight p;
  p.migration_id = "mig-2024.06_11";
  p.vm_id = "vm-web-1";
  p.spec = json::parse(R"({"name": "web-1", "cpus": 2, "memory_mib": 2048,
                           "disks": [{"id": "disk0", "capacity": 10737418240}],
                           "nics": [{"network": "VM Network", "mac": "52:54:00:12:34:56"}],
                           "ratio": 0.5, "tags": null, "neg": -3})");
  p.source_site = "zurich-1";
  p.sla = json::parse(R"({"downtime_budget_ms": 500, "jurisdictions": ["EU"]})");
  p.disks = {{"disk0", 10737418240ull, kDigest}, {"disk1", 1, ""}};
  p.machine_type = "pc-q35-7.2";
  p.cpu_model = "Skylake-Server,+vmx";
  p.networks = {"VM Network", "storage \xc3\xa9"};
  p.memory_mib = 2048;
  p.vcpus = 2;
  return p;
}

std::vector<ControlMessage> everyMessage() {
  std::vector<ControlMessage> v;
  v.emplace_back(samplePreflight());
  Preflight mapped = samplePreflight();
  mapped.network_map = {{"VM Network", "lan"}, {"storage \xc3\xa9", "san 2"}};
  v.emplace_back(mapped);
  v.emplace_back(PreflightResult{
      "m1", true, {}, "geneva-2", "EU", {16, 65536, 1ull << 40}, {kDigest, std::string(64, '0')}});
  v.emplace_back(PreflightResult{
      "m1", false, {"not enough memory", "no network 'x'"}, "geneva-2", "", {0, 0, 0}, {}});
  v.emplace_back(Prepare{"m1"});
  v.emplace_back(Prepared{"m1", {{"disk0", "m1-disk0"}, {"disk1", "m1-disk1"}}, true});
  v.emplace_back(Prepared{"m1", {}, false});
  v.emplace_back(Switchover{"m1"});
  v.emplace_back(Started{"m1", 4242});
  v.emplace_back(Confirm{"m1"});
  v.emplace_back(Confirmed{"m1"});
  v.emplace_back(
      Abort{"m1", "mirror of disk0 failed: connection reset", MigrationPhase::MirrorDisks});
  v.emplace_back(Aborted{"m1", true, {}});
  v.emplace_back(Aborted{"m1", false, {"/var/lib/vandra/m1/disk0.qcow2"}});
  v.emplace_back(
      Progress{"m1", MigrationPhase::PrecopyRam, 123, std::numeric_limits<uint64_t>::max(), 0});
  v.emplace_back(Query{"m1"});
  v.emplace_back(Status{"m1", true, "confirm", true});
  v.emplace_back(Status{"m1", false, "", false});
  v.emplace_back(Recover{"m1", 1});
  v.emplace_back(Recovering{"m1", kMaxRecoverAttempt});
  return v;
}

// decodeControl must fail with @p code and a message containing @p text.
void expectRefused(const std::string& input, ErrorCode code, const std::string& text) {
  auto r = decodeControl(input);
  ASSERT_FALSE(r) << "accepted: " << input.substr(0, 200);
  EXPECT_EQ(r.error().code, code) << r.error().message;
  EXPECT_NE(r.error().message.find(text), std::string::npos)
      << "message: " << r.error().message << "\nwant: " << text;
}

// The JSON of a valid message of @p type, to be broken by a test.
json validJson(std::string_view type) {
  for (const auto& m : everyMessage()) {
    if (typeName(m) == type) {
      return json::parse(*encodeControl(m));
    }
  }
  ADD_FAILURE() << "no sample of " << type;
  return json::object();
}

TEST(ControlTest, EveryMessageRoundTrips) {
  std::set<std::string_view> types;
  for (const auto& m : everyMessage()) {
    SCOPED_TRACE(std::string(typeName(m)));
    types.insert(typeName(m));
    auto text = encodeControl(m);
    ASSERT_TRUE(text) << text.error().message;
    EXPECT_LE(text->size(), kMaxControlMessage);
    auto back = decodeControl(*text);
    ASSERT_TRUE(back) << back.error().message << "\n" << *text;
    EXPECT_TRUE(*back == m) << *text;
    EXPECT_EQ(typeName(*back), typeName(m));
    EXPECT_EQ(migrationId(*back), migrationId(m));
    EXPECT_EQ(json::parse(*text)["type"], std::string(typeName(m)));
  }
  EXPECT_EQ(types.size(), std::variant_size_v<ControlMessage>);
}

TEST(ControlTest, DecodesHandWrittenMessages) {
  auto a = decodeControl(R"( {"type":"abort", "migration_id":"m-7",
                               "reason":"operator cancelled", "phase":"switchover"} )");
  ASSERT_TRUE(a) << a.error().message;
  const auto& abort = std::get<Abort>(*a);
  EXPECT_EQ(abort.migration_id, "m-7");
  EXPECT_EQ(abort.reason, "operator cancelled");
  EXPECT_EQ(abort.phase, MigrationPhase::Switchover);

  auto s = decodeControl(R"({"migration_id":"m-7","target_pid":31337,"type":"started"})");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(std::get<Started>(*s).target_pid, 31337u);
}

TEST(ControlTest, UnknownMembersAreRefused) {
  json j = validJson("prepare");
  j["extra"] = 1;
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "prepare: unknown member 'extra'");
  j = validJson("preflight");
  j["disks"][0]["format"] = "qcow2";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "disks[0]: unknown member 'format'");
  j = validJson("preflight_result");
  j["free"]["gpus"] = 0;
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "free: unknown member 'gpus'");
}

TEST(ControlTest, MissingMembersAreRefused) {
  for (const char* member : {"vm_id", "spec", "sla", "disks", "networks", "vcpus"}) {
    json j = validJson("preflight");
    j.erase(member);
    expectRefused(j.dump(), ErrorCode::TunnelProtocol,
                  std::string("preflight: member '") + member + "' is missing");
  }
  json j = validJson("started");
  j.erase("migration_id");
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "member 'migration_id' is missing");
}

TEST(ControlTest, TypeMustBeKnown) {
  expectRefused(R"({"migration_id":"m"})", ErrorCode::TunnelProtocol, "no string member 'type'");
  expectRefused(R"({"type":7,"migration_id":"m"})", ErrorCode::TunnelProtocol,
                "no string member 'type'");
  expectRefused(R"({"type":"teleport","migration_id":"m"})", ErrorCode::TunnelProtocol,
                "unknown type 'teleport'");
}

TEST(ControlTest, NotAnObjectOrNotJson) {
  expectRefused("[1,2]", ErrorCode::TunnelProtocol, "is a array, not a JSON object");
  expectRefused("\"prepare\"", ErrorCode::TunnelProtocol, "not a JSON object");
  expectRefused("", ErrorCode::TunnelProtocol, "not valid JSON");
  expectRefused(R"({"type":"prepare","migration_id":"m"} {})", ErrorCode::TunnelProtocol,
                "not valid JSON");
  expectRefused(R"({"type":"prepare","migration_id":"m",})", ErrorCode::TunnelProtocol,
                "not valid JSON");
  expectRefused("{\"type\":\"prepare\",\"migration_id\":\"m\xff\"}", ErrorCode::TunnelProtocol,
                "not valid JSON");
}

TEST(ControlTest, DuplicateKeysAreRefused) {
  expectRefused(R"({"type":"prepare","migration_id":"a","migration_id":"b"})",
                ErrorCode::TunnelProtocol, "has the key 'migration_id' twice");
  json j = validJson("preflight");
  std::string text = j.dump();
  // A duplicate inside the opaque spec is refused as well.
  const auto pos = text.find("\"spec\":{");
  ASSERT_NE(pos, std::string::npos);
  text.insert(pos + 8, R"("name":"x",)");
  expectRefused(text, ErrorCode::TunnelProtocol, "has the key 'name' twice");
  // The same key in sibling objects is fine.
  auto ok = decodeControl(R"({"type":"prepared","migration_id":"m","ready":true,
      "exports":[{"disk_id":"a","export_name":"a"},{"disk_id":"b","export_name":"b"}]})");
  EXPECT_TRUE(ok) << ok.error().message;
}

TEST(ControlTest, WrongTypesAreRefused) {
  struct Case {
    const char* type;
    const char* member;
    json value;
    const char* text;
  };
  for (const Case& c : {
           Case{"preflight", "vcpus", "4",
                "member 'vcpus' must be a non-negative integer, not a string"},
           Case{"preflight", "vcpus", 1.5, "not a non-integer number"},
           Case{"preflight", "vcpus", 2.0, "not a non-integer number"},
           Case{"preflight", "memory_mib", true, "not a boolean"},
           Case{"preflight", "spec", json::array(), "member 'spec' must be an object, not a array"},
           Case{"preflight", "sla", "EU", "member 'sla' must be an object"},
           Case{"preflight", "disks", json::object(),
                "member 'disks' must be an array, not a object"},
           Case{"preflight", "networks", json::array({1}),
                "networks[0] must be a string, not a number"},
           Case{"preflight", "migration_id", 5, "member 'migration_id' must be a string"},
           Case{"preflight_result", "ok", "true",
                "member 'ok' must be true or false, not a string"},
           Case{"preflight_result", "free", json::array(), "free must be an object, not a array"},
           Case{"preflight_result", "bases_present", json::array({json()}),
                "bases_present[0] must be a string, not a null"},
           Case{"prepared", "exports", json::array({"m1-disk0"}),
                "exports[0] must be an object, not a string"},
           Case{"prepared", "ready", 1, "member 'ready' must be true or false, not a number"},
           Case{"aborted", "leftovers", "none", "member 'leftovers' must be an array"},
           Case{"abort", "phase", 3, "member 'phase' must be a string"},
       }) {
    json j = validJson(c.type);
    j[c.member] = c.value;
    SCOPED_TRACE(j.dump());
    expectRefused(j.dump(), ErrorCode::TunnelProtocol, c.text);
  }
}

TEST(ControlTest, OutOfRangeNumbersAreRefused) {
  struct Case {
    const char* type;
    const char* member;
    std::string value;  // JSON text
    const char* text;
  };
  for (const Case& c : {
           Case{"preflight", "vcpus", "0", "member 'vcpus' must be 1..4096, not 0"},
           Case{"preflight", "vcpus", "4097", "must be 1..4096, not 4097"},
           Case{"preflight", "vcpus", "-1", "not a negative number"},
           Case{"preflight", "memory_mib", "0", "member 'memory_mib' must be 1.."},
           Case{"preflight", "memory_mib", "18446744073709551616", "not a non-integer number"},
           Case{"preflight", "memory_mib", "1e3", "not a non-integer number"},
           Case{"started", "target_pid", "0", "member 'target_pid' must be 1..2147483647, not 0"},
           Case{"started", "target_pid", "2147483648", "not 2147483648"},
           Case{"progress", "bytes_sent", "-9223372036854775808", "not a negative number"},
           Case{"recover", "attempt", "0", "member 'attempt' must be 1..1000000, not 0"},
           Case{"recovering", "attempt", "1000001", "must be 1..1000000, not 1000001"},
       }) {
    json j = validJson(c.type);
    j[c.member] = 0;
    std::string text = j.dump();
    const std::string needle = "\"" + std::string(c.member) + "\":0";
    const auto pos = text.find(needle);
    ASSERT_NE(pos, std::string::npos) << text;
    text.replace(pos, needle.size(), "\"" + std::string(c.member) + "\":" + c.value);
    SCOPED_TRACE(text);
    expectRefused(text, ErrorCode::TunnelProtocol, c.text);
  }
  json j = validJson("preflight_result");
  j["free"]["vcpus"] = 4294967296ull;
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "free: member 'vcpus' must be 0..4294967295");
  j = validJson("preflight");
  j["disks"][1]["virtual_size"] = 0;
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "disks[1]: member 'virtual_size' must be 1..");
  // The largest values are fine.
  j = validJson("progress");
  j["bytes_sent"] = std::numeric_limits<uint64_t>::max();
  EXPECT_TRUE(decodeControl(j.dump()));
}

TEST(ControlTest, StringsAreBounded) {
  json j = validJson("abort");
  j["reason"] = std::string(kMaxAbortReason, 'r');
  EXPECT_TRUE(decodeControl(j.dump()));
  j["reason"] = std::string(kMaxAbortReason + 1, 'r');
  expectRefused(j.dump(), ErrorCode::TunnelProtocol,
                "member 'reason' must be 1..1024 bytes, not 1025");
  j["reason"] = "";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "must be 1..1024 bytes, not 0");
  j["reason"] = "line\nbreak";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "contains control characters");

  j = validJson("preflight_result");
  j["jurisdiction"] = std::string(65, 'J');
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "member 'jurisdiction' must be 0..64 bytes");
  j = validJson("preflight_result");
  j["reasons"] = json::array({std::string(kMaxControlText + 1, 'x')});
  j["ok"] = false;
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "reasons[0] must be 1..512 bytes");
  j = validJson("preflight");
  j["networks"] = json::array();
  for (size_t i = 0; i <= kMaxControlList; ++i) j["networks"].push_back("n" + std::to_string(i));
  expectRefused(j.dump(), ErrorCode::TunnelProtocol,
                "member 'networks' has 65 elements, the limit is 64");
  j = validJson("preflight");
  j["machine_type"] = std::string(129, 'q');
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "member 'machine_type' is 'qqq");
  j["machine_type"] = "pc q35";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "not [A-Za-z0-9_.:,+=-]{1,128}");
}

TEST(ControlTest, BadIdsSitesAndDigests) {
  for (const std::string& bad :
       std::vector<std::string>{"", "a b", "x/y", "caf\xc3\xa9", std::string(65, 'i'), "m\"1"}) {
    json j = validJson("confirm");
    j["migration_id"] = bad;
    SCOPED_TRACE(bad);
    expectRefused(j.dump(), ErrorCode::TunnelProtocol, "not an id [A-Za-z0-9_.-]{1,64}");
  }
  json j = validJson("confirm");
  j["migration_id"] = std::string(64, 'i');
  EXPECT_TRUE(decodeControl(j.dump()));

  j = validJson("preflight");
  j["source_site"] = "Zurich";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol,
                "member 'source_site' is 'Zurich', not a site name");
  j = validJson("prepared");
  j["exports"][0]["export_name"] = "a/b";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "exports[0]: member 'export_name' is 'a/b'");
  for (const std::string& bad : {std::string(63, 'a'), std::string(64, 'A'), std::string(65, 'a'),
                                 std::string(63, 'a') + "g"}) {
    j = validJson("preflight");
    j["disks"][0]["base_digest"] = bad;
    expectRefused(j.dump(), ErrorCode::TunnelProtocol, "not \"\" or a sha256 digest");
  }
  j = validJson("preflight_result");
  j["bases_present"] = json::array({""});
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "bases_present[0] is '', not a sha256 digest");
  j = validJson("progress");
  j["phase"] = "teleport";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol,
                "member 'phase' is 'teleport', not one of preflight, prepare");
}

TEST(ControlTest, CrossMemberRules) {
  json j = validJson("preflight_result");
  j["reasons"] = json::array({"why not"});
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "ok is true but reasons are given");
  j["ok"] = false;
  j["reasons"] = json::array();
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "ok is false but no reason is given");
  j = validJson("aborted");
  j["cleaned"] = true;
  j["leftovers"] = json::array({"x"});
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "cleaned is true but leftovers are listed");
  j = validJson("preflight");
  j["disks"][1]["id"] = "disk0";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "disk id 'disk0' appears twice");
  j = validJson("prepared");
  j["exports"][1]["export_name"] = "m1-disk0";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "appears twice");
  // status: a phase exactly when known; no running guest for an unknown migration.
  j = validJson("status");
  j["phase"] = "";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "a known migration needs its phase");
  j["known"] = false;
  j["guest_running"] = false;
  j["phase"] = "done";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "an unknown migration has no phase");
  j["phase"] = "";
  j["guest_running"] = true;
  expectRefused(j.dump(), ErrorCode::TunnelProtocol,
                "guest_running for a migration that is not known");
  j = validJson("status");
  j["phase"] = "Confirm";
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "phase 'Confirm' is not a-z and _");
  j["phase"] = std::string(33, 'a');
  expectRefused(j.dump(), ErrorCode::TunnelProtocol, "member 'phase'");
}

TEST(ControlTest, SizeLimits) {
  // Pad a valid message with whitespace to exactly the limit, then one byte more.
  const std::string base = *encodeControl(Prepare{"m1"});
  std::string text = base + std::string(kMaxControlMessage - base.size(), ' ');
  ASSERT_EQ(text.size(), kMaxControlMessage);
  EXPECT_TRUE(decodeControl(text));
  text.push_back(' ');
  expectRefused(text, ErrorCode::LimitExceeded, "Control message of 65537 bytes exceeds 65536");

  json j = validJson("preflight");
  j["spec"] = {{"blob", std::string(kMaxControlSpec, 'x')}};
  expectRefused(j.dump(), ErrorCode::LimitExceeded,
                "member 'spec' is 49163 bytes of JSON, the limit is 49152");
  j["spec"] = {{"blob", std::string(kMaxControlSpec - 11, 'x')}};  // {"blob":"..."} = limit
  EXPECT_TRUE(decodeControl(j.dump())) << decodeControl(j.dump()).error().message;
  j = validJson("preflight");
  j["sla"] = {{"blob", std::string(kMaxControlSla, 'x')}};
  expectRefused(j.dump(), ErrorCode::LimitExceeded, "member 'sla' is");
}

TEST(ControlTest, CompactFormIsBoundedToo) {
  // 40 KiB of text whose compact form is over 64 KiB: "1e9" is dumped as "1000000000.0".
  json j = validJson("preflight");
  std::string floats = "[";
  for (int i = 0; i < 3500; ++i) floats += "1e9,";
  floats.back() = ']';
  j["networks"] = json::array();
  for (size_t i = 0; i < kMaxControlList; ++i) j["networks"].push_back(std::string(400, 'n'));
  std::string text = j.dump();
  const auto pos = text.find("\"spec\":{");
  ASSERT_NE(pos, std::string::npos);
  text.insert(pos + 8, "\"f\":" + floats + ",");
  ASSERT_LT(text.size(), kMaxControlMessage);
  expectRefused(text, ErrorCode::LimitExceeded, "bytes in compact JSON, the limit is 65536");
}

TEST(ControlTest, NestingBombsAreRefusedBeforeParsing) {
  for (const std::string& bomb :
       {std::string(10000, '['), std::string(10000, '[') + std::string(10000, ']'),
        std::string(10000, '{'), [] {
          std::string s;
          for (int i = 0; i < 5000; ++i) s += "{\"a\":";
          return s;
        }()}) {
    expectRefused(bomb, ErrorCode::LimitExceeded, "deeper than 32 levels");
  }
  // Inside a valid message: a deep spec.
  std::string deep = "1";
  for (size_t i = 0; i < kMaxControlDepth; ++i) deep = "[" + deep + "]";
  expectRefused(R"({"type":"preflight","migration_id":"m","spec":{"x":)" + deep + "}}",
                ErrorCode::LimitExceeded, "deeper than 32 levels");
  // Brackets inside strings do not count, escaped quotes do not end strings.
  json j = validJson("abort");
  j["reason"] = std::string(500, '[') + "\\\"" + std::string(500, '{');
  EXPECT_TRUE(decodeControl(j.dump())) << decodeControl(j.dump()).error().message;
  // The deepest accepted message: 32 levels in all.
  deep = "1";
  for (size_t i = 0; i < kMaxControlDepth - 2; ++i) deep = "[" + deep + "]";
  j = validJson("preflight");
  j["spec"] = {{"x", json::parse(deep)}};
  EXPECT_TRUE(decodeControl(j.dump())) << decodeControl(j.dump()).error().message;
}

TEST(ControlTest, EncoderRefusesWhatThePeerWouldRefuse) {
  Preflight p = samplePreflight();
  p.vm_id = "not an id";
  auto r = encodeControl(p);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message.find("Cannot encode: Control message preflight: member 'vm_id'"),
            std::string::npos)
      << r.error().message;

  p = samplePreflight();
  p.spec = json::array();
  EXPECT_EQ(encodeControl(p).error().code, ErrorCode::InvalidArgument);

  p = samplePreflight();
  p.spec = {{"blob", std::string(kMaxControlMessage, 'x')}};
  EXPECT_EQ(encodeControl(p).error().code, ErrorCode::LimitExceeded);

  p = samplePreflight();
  p.networks = {"bad \xff utf-8"};
  r = encodeControl(p);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);

  p = samplePreflight();
  p.spec = {{"x", std::nan("")}};
  r = encodeControl(p);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message.find("does not survive JSON"), std::string::npos);

  // A caller's deeply nested spec is refused without recursing through it.
  p = samplePreflight();
  json deep = json::object();
  for (int i = 0; i < 100000; ++i) {
    json outer = json::array();
    outer.push_back(std::move(deep));
    deep = std::move(outer);
  }
  p.spec = json::object();
  p.spec["x"] = std::move(deep);
  r = encodeControl(ControlMessage(std::move(p)));  // moved: a copy would recurse
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::LimitExceeded);

  EXPECT_EQ(encodeControl(Abort{"m", "", MigrationPhase::PrecopyRam}).error().code,
            ErrorCode::InvalidArgument);
  EXPECT_EQ(encodeControl(Abort{"m", "x", static_cast<MigrationPhase>(9)}).error().code,
            ErrorCode::InvalidArgument);
  EXPECT_EQ(encodeControl(Started{"m", 0}).error().code, ErrorCode::InvalidArgument);
}

// network_map is the one optional member: an unmapped preflight does not carry it (an agent
// that predates it reads the message as before), and what it renames is checked.
TEST(ControlTest, ThePreflightsNetworkMapIsOptionalAndChecked) {
  EXPECT_FALSE(json::parse(*encodeControl(samplePreflight())).contains("network_map"));
  json j = validJson("preflight");
  j["network_map"] = json::object();
  auto empty = decodeControl(j.dump());
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_TRUE(std::get<Preflight>(*empty).network_map.empty());
  j["network_map"] = {{"VM Network", "lan"}};
  auto one = decodeControl(j.dump());
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(std::get<Preflight>(*one).network_map,
            (std::map<std::string, std::string>{{"VM Network", "lan"}}));

  struct Case {
    json map;
    const char* text;
  };
  json many = json::object();
  for (size_t i = 0; i <= kMaxControlList; ++i) {
    many["n" + std::to_string(i)] = "x";
  }
  for (const Case& c : {
           Case{json::array({"lan"}), "network_map must be an object, not a array"},
           Case{many, "network_map has 65 entries, the limit is 64"},
           Case{{{"VM Network", 1}}, "network_map['VM Network'] must be a string, not a number"},
           Case{{{"VM Network", ""}}, "must be 1..64 bytes, not 0"},
           Case{{{"VM Network", std::string(65, 'n')}}, "must be 1..64 bytes, not 65"},
           Case{{{"VM Network", "l\nan"}}, "contains control characters"},
           Case{{{"", "lan"}}, "network_map key must be 1..64 bytes, not 0"},
           Case{{{"dmz", "lan"}}, "renames 'dmz', which is not one of the VM's networks"},
       }) {
    SCOPED_TRACE(c.map.dump());
    j["network_map"] = c.map;
    expectRefused(j.dump(), ErrorCode::TunnelProtocol, c.text);
  }
  // The encoder applies the same rules.
  Preflight p = samplePreflight();
  p.network_map = {{"dmz", "lan"}};
  auto r = encodeControl(p);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
}

TEST(ControlTest, PhasesAreTheOrchestratorsByItsNames) {
  EXPECT_EQ(toString(MigrationPhase::Preflight), "preflight");
  EXPECT_EQ(toString(MigrationPhase::PrepareTarget), "prepare_target");
  EXPECT_EQ(toString(MigrationPhase::MirrorDisks), "mirror_disks");
  EXPECT_EQ(toString(MigrationPhase::PrecopyRam), "precopy_ram");
  EXPECT_EQ(toString(MigrationPhase::Switchover), "switchover");
  EXPECT_EQ(toString(MigrationPhase::Confirm), "confirm");
  // Abort and progress name a phase the sender can be in while the migration runs.
  for (MigrationPhase p :
       {MigrationPhase::Invalid, MigrationPhase::Done, MigrationPhase::RollingBack,
        MigrationPhase::RolledBack, MigrationPhase::Failed}) {
    EXPECT_EQ(encodeControl(Abort{"m", "x", p}).error().code, ErrorCode::InvalidArgument)
        << toString(p);
  }
  auto old = decodeControl(R"({"type":"abort","migration_id":"m","reason":"r","phase":"mirror"})");
  ASSERT_FALSE(old);
  EXPECT_NE(old.error().message.find("mirror_disks"), std::string::npos) << old.error().message;
}

}  // namespace
}  // namespace vandra::tunnel
