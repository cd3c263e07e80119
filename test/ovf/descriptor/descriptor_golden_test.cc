// Golden test of the OVF descriptor reader: each *.ovf under test/data/ovf/{dialects,hostile}
// is read and its result (VmSpec JSON + problem codes/lines, or the error) compared with
// <name>.expected.json. A missing expectation is written as <name>.actual.json for review and
// the case fails: nothing is ever accepted automatically. test/data/ovf/pending holds cases
// whose expectation records a known reader bug; they are reported and skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "vandra/ovf/descriptor_reader.h"
#include "vandra/ovf/vm_spec_json.h"

namespace vandra::ovf {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kData = fs::path(VANDRA_TEST_DATA) / "ovf";

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json errorJson(const Error& e) {
  return {{"code", std::string(toString(e.code))},
          {"line", e.line ? json(*e.line) : json(nullptr)}};
}

// The observable outcome of reading one descriptor with default options.
json outcome(const std::string& xml) {
  auto r = readDescriptor(xml, ReadOptions{});
  if (!r) {
    return {{"error", errorJson(r.error())}};
  }
  json problems = json::array();
  for (const auto& p : r->problems) {
    problems.push_back(errorJson(p));
  }
  return {{"spec", toJson(r->spec)}, {"problems", problems}};
}

std::vector<std::string> casesIn(const std::string& folder) {
  std::vector<std::string> out;
  const fs::path dir = kData / folder;
  if (!fs::is_directory(dir)) {
    return out;
  }
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".ovf") {
      out.push_back(folder + "/" + e.path().stem().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> allCases() {
  std::vector<std::string> out;
  for (const char* folder : {"dialects", "hostile", "pending"}) {
    auto c = casesIn(folder);
    out.insert(out.end(), c.begin(), c.end());
  }
  return out;
}

class DescriptorGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(DescriptorGolden, MatchesExpected) {
  const fs::path base = kData / GetParam();
  const fs::path ovf = fs::path(base.string() + ".ovf");
  const fs::path expected = fs::path(base.string() + ".expected.json");
  const fs::path actual = fs::path(base.string() + ".actual.json");
  const json got = outcome(readFile(ovf));
  const bool pending = GetParam().starts_with("pending/");

  if (!fs::exists(expected)) {
    std::ofstream(actual) << got.dump(2) << "\n";
    FAIL() << "No " << expected << "; wrote " << actual
           << " - review it against the descriptor and rename it to .expected.json";
  }
  const json want = json::parse(readFile(expected));
  if (pending) {
    // Expectation is what the reader SHOULD produce; a match means the bug was fixed.
    if (want == got) {
      FAIL() << GetParam() << " now matches; move it from pending/ to dialects/";
    }
    GTEST_SKIP() << "Known reader bug, see " << GetParam()
                 << ".expected.json (expected) vs the reader's current output";
  }
  if (want != got) {
    std::ofstream(actual) << got.dump(2) << "\n";
    ADD_FAILURE() << "Mismatch for " << ovf << "; actual output written to " << actual
                  << "\ndiff (expected -> actual): " << json::diff(want, got).dump(2);
  } else if (fs::exists(actual)) {
    fs::remove(actual);  // a stale review file from an earlier failing run
  }
}

// The golden set must not silently shrink to nothing (e.g. a wrong VANDRA_TEST_DATA).
TEST(DescriptorGoldenSet, HasCases) {
  EXPECT_GE(casesIn("dialects").size(), 20U);
  EXPECT_GE(casesIn("hostile").size(), 15U);
}

std::string caseName(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param;
  for (char& c : n) {
    if (!std::isalnum(static_cast<unsigned char>(c))) {
      c = '_';
    }
  }
  return n;
}

INSTANTIATE_TEST_SUITE_P(Ovf, DescriptorGolden, ::testing::ValuesIn(allCases()), caseName);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(DescriptorGolden);

}  // namespace
}  // namespace vandra::ovf
